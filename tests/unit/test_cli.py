"""The `burnrate` command line: `check`, `replay` and their help."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine import __version__
from engine.cli import main
from engine.core.config import load_config
from engine.core.decode import RecordDecoder

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "configs" / "example.yaml"
SAMPLE = ROOT / "configs" / "sample-events.jsonl.gz"

BROKEN = """\
slos:
  - name: a
    service: api
    sli: availability
    objective: 150
  - name: a
    service: api
    sli: latency
    objective: 99
receivers:
  - type: webhook
"""


def _run(argv: list[str]) -> int:
    """The exit code of `burnrate ARGV`, whether main returns it or exits with it."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1


# --- check -------------------------------------------------------------------------------


def test_check_a_valid_config_prints_one_line_and_exits_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _run(["check", str(EXAMPLE)]) == 0
    out, err = capsys.readouterr()
    assert out == (
        f"{EXAMPLE}: ok: 4 SLOs, 4 policy rows (page/ticket: 1h/5m, 6h/30m, 1d/2h, 3d/6h), "
        "1 receivers\n"
    )
    assert err == ""


def test_check_prints_every_error_with_its_path_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    assert _run(["check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{path}: $.slos[0].objective: must be > 0 and < 100 (percent), got 150.0",
        f"{path}: $.slos[1].name: duplicate SLO name 'a' (first at $.slos[0])",
        f"{path}: $.slos[1].threshold_ms: required for a latency SLO",
        f"{path}: $.receivers[0]: needs url or urls",
    ]


@pytest.mark.parametrize(
    ("content", "name", "expected"),
    [
        pytest.param(
            "slos: []\nbogus: 1\n",
            "c.yaml",
            "$: Object contains unknown field `bogus`",
            id="an unknown top-level key is reported at $",
        ),
        pytest.param("slos: [\n", "c.yaml", "$: not valid YAML", id="broken YAML is reported at $"),
        pytest.param(
            '[[slos]]\nname = "a"\nservice = "s"\nsli = "availability"\nobjective = 100\n',
            "c.toml",
            "$.slos[0].objective: must be > 0 and < 100",
            id="a TOML config is checked too",
        ),
        pytest.param(
            None, "missing.yaml", "$: cannot read", id="a missing file is reported, not a crash"
        ),
    ],
)
def test_check_reports_bad_files(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    name: str,
    expected: str,
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    assert _run(["check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"{path}: {expected}")


def test_check_accepts_a_valid_toml_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[slos]]\nname = "a"\nservice = "s"\nsli = "availability"\nobjective = 99\n')
    assert _run(["check", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: ok: 1 SLOs, 4 policy rows")


# --- replay ------------------------------------------------------------------------------


def test_replay_writes_transitions_to_output_and_a_summary_to_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "transitions.jsonl"
    argv = ["replay", "--config", str(EXAMPLE), "--events", str(SAMPLE), "--output", str(output)]
    assert _run(argv) == 0
    out, err = capsys.readouterr()
    assert out == ""
    transitions = [json.loads(line) for line in output.read_text().splitlines()]
    pages = [
        t["state"]
        for t in transitions
        if t["slo"] == "checkout-availability" and t["severity"] == "page"
    ]
    assert pages[:2] == ["firing", "resolved"]
    assert "checkout-availability" in err
    assert "records: 10789," in err


def test_replay_without_output_writes_to_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "transitions.jsonl"
    base = ["replay", "--config", str(EXAMPLE), "--events", str(SAMPLE)]
    assert _run([*base, "--output", str(output)]) == 0
    capsys.readouterr()
    assert _run(base) == 0
    assert capsys.readouterr().out == output.read_text()


@pytest.mark.parametrize(
    "events",
    [
        pytest.param("missing.jsonl", id="an events file that does not exist"),
        pytest.param(".", id="an events path that is a directory"),
    ],
)
def test_replay_without_an_events_file_exits_2_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], events: str
) -> None:
    path = tmp_path / events
    assert _run(["replay", "--config", str(EXAMPLE), "--events", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"burnrate replay: no such events file: {path}\n"


def test_replay_with_a_bad_config_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text(BROKEN)
    assert _run(["replay", "--config", str(config), "--events", str(SAMPLE)]) == 2
    assert f"{config}: $.slos[0].objective" in capsys.readouterr().err


# --- usage and help ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        pytest.param(["--help"], "usage: burnrate", id="burnrate --help"),
        pytest.param(["check", "--help"], "usage: burnrate check", id="burnrate check --help"),
        pytest.param(["replay", "--help"], "usage: burnrate replay", id="burnrate replay --help"),
    ],
)
def test_help_works_for_every_command(
    capsys: pytest.CaptureFixture[str], argv: list[str], usage: str
) -> None:
    assert _run(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith(usage)


def test_replay_help_names_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    _run(["replay", "--help"])
    out = capsys.readouterr().out
    for option in ("--config", "--events", "--output"):
        assert option in out


def test_top_level_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    _run(["--help"])
    out = capsys.readouterr().out
    assert "check" in out
    assert "replay" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["--version"]) == 0
    assert capsys.readouterr().out == f"burnrate {__version__}\n"


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([], id="no command at all"),
        pytest.param(["frobnicate"], id="an unknown command"),
        pytest.param(["check"], id="check without a config"),
        pytest.param(["replay", "--config", "x.yaml"], id="replay without --events"),
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert _run(argv) == 2
    assert "usage: burnrate" in capsys.readouterr().err


# --- what a command imports -------------------------------------------------------------

# Runs `main(argv)` in a fresh interpreter and prints, as its last line, the heavy
# packages loaded by then and, for each, the engine frames that imported it first.
_IMPORT_PROBE = """\
import json, sys, traceback

HEAVY = ("aiokafka", "aiohttp", "rich")
first_import = {}


class Spy:
    @staticmethod
    def find_spec(name, path=None, target=None):
        top = name.partition(".")[0]
        if top in HEAVY and top not in first_import:
            first_import[top] = [
                f"{frame.filename}:{frame.lineno}"
                for frame in traceback.extract_stack()
                if "/engine/" in frame.filename
            ]
        return None


sys.meta_path.insert(0, Spy)
from engine.cli import main

try:
    code = main(json.loads(sys.argv[1]))
except SystemExit as exc:
    code = exc.code
loaded = {name: first_import.get(name) for name in HEAVY if name in sys.modules}
print(json.dumps({"code": code, "loaded": loaded}))
"""


def _heavy_imports(argv: list[str], cwd: Path) -> dict[str, list[str] | None]:
    """The heavy packages `burnrate ARGV` loads, each with the engine frames behind it."""
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE, json.dumps(argv)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["code"] == 0, proc.stderr
    loaded: dict[str, list[str] | None] = result["loaded"]
    return loaded


def test_check_imports_no_kafka_client_http_server_or_terminal_ui(tmp_path: Path) -> None:
    loaded = _heavy_imports(["check", str(EXAMPLE)], tmp_path)
    assert loaded == {}, f"burnrate check imported (by engine frames): {loaded}"


def test_check_reads_secrets_and_receivers_without_the_clients(tmp_path: Path) -> None:
    """Every adapter check of `check` (engine.commands.preflight) runs here, and none of
    them may load the Kafka client or aiohttp to do it."""
    secret = tmp_path / "webhook-secret"
    secret.write_text("whsec_" + base64.b64encode(b"k" * 32).decode() + "\n")
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    password = tmp_path / "kafka-password"
    password.write_text("hunter2\n")
    config = tmp_path / "c.yaml"
    config.write_text(
        EXAMPLE.read_text()
        + f"""\
  - type: webhook
    url: https://hooks.example/x
    secret_file: {secret}
  - type: alertmanager
    urls: [http://am1:9093, http://am2:9093]
"""
    )
    config.write_text(
        config.read_text()
        .replace(
            "  listen: 127.0.0.1:9464\n",
            f"  listen: 127.0.0.1:9464\n  auth_token_file: {token}\n",
        )
        .replace(
            "  dead_letter_topic: request-events-dlq\n",
            "  dead_letter_topic: request-events-dlq\n  security:\n"
            "    protocol: SASL_PLAINTEXT\n    sasl_username: burnrate\n"
            f"    sasl_password_file: {password}\n",
        )
    )
    assert "auth_token_file" in config.read_text()
    assert "sasl_password_file" in config.read_text()
    loaded = _heavy_imports(["check", str(config)], tmp_path)
    assert loaded == {}, f"burnrate check imported (by engine frames): {loaded}"


def test_check_refuses_what_run_would_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BURNRATE_TEST_UNSET_TOKEN", raising=False)
    path = tmp_path / "c.yaml"
    path.write_text(
        "slos:\n  - {name: a, service: s, sli: availability, objective: 99, period: 401d}\n"
        "http:\n  listen: notahost\n  auth_token_env: BURNRATE_TEST_UNSET_TOKEN\n"
        "receivers:\n  - {type: webhook, url: 'ftp://x'}\n"
    )
    assert _run(["check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{path}: $.slos[0].period: at most 400d, got 401d",
        f"{path}: $.http.listen: expected HOST:PORT, got 'notahost'",
        f"{path}: $.http.auth_token_env: environment variable BURNRATE_TEST_UNSET_TOKEN is not set",
        f"{path}: $.receivers[0].url: must be an absolute http:// or https:// URL",
    ]


def test_replay_imports_no_kafka_client_or_http_server(tmp_path: Path) -> None:
    argv = ["replay", "--config", str(EXAMPLE), "--events", str(SAMPLE)]
    loaded = _heavy_imports([*argv, "--output", str(tmp_path / "out.jsonl")], tmp_path)
    network = {name: who for name, who in loaded.items() if name in ("aiokafka", "aiohttp")}
    assert network == {}, f"burnrate replay imported (by engine frames): {network}"


def test_check_counts_the_slos_with_their_own_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "slos:\n"
        "  - {name: a, service: s, sli: availability, objective: 99}\n"
        "  - name: b\n"
        "    service: s\n"
        "    sli: availability\n"
        "    objective: 99\n"
        "    policy: [{severity: ticket, long: 1d, short: 2h, burn_rate: 2}]\n"
    )
    assert _run(["check", str(path)]) == 0
    assert capsys.readouterr().out.startswith(
        f"{path}: ok: 2 SLOs (1 with its own policy), 4 policy rows"
    )


def test_check_accepts_a_composite_slo_and_counts_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "slos:\n"
        "  - {name: a, service: s, sli: availability, objective: 99}\n"
        "  - {name: b, service: t, sli: latency, threshold_ms: 200, objective: 99}\n"
        "  - {name: ab, composite: [{slo: a, weight: 2}, {slo: b}], objective: 99.5}\n"
    )
    assert _run(["check", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: ok: 3 SLOs (1 composite), 4 policy rows")


def test_check_refuses_bad_composites_with_every_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "slos:\n"
        "  - {name: a, service: s, sli: availability, objective: 99}\n"
        "  - {name: ab, service: s, composite: [{slo: a, weight: 0}, {slo: x}], objective: 99}\n"
    )
    assert _run(["check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    for line in (
        "$.slos[1].service: a composite SLO has no service of its own",
        "$.slos[1].composite[0].weight: must be > 0",
        '$.slos[1].composite[1].slo: unknown SLO "x"',
    ):
        assert line in err


# --- check: labels and grouped SLOs -------------------------------------------------------


def test_check_accepts_grouped_and_label_selecting_slos(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "slos:\n"
        "  - {name: a, service: s, sli: availability, objective: 99,"
        " group_by: [region, operation], max_groups: 10000, match_labels: {env: prod}}\n"
        "  - {name: b, service: s, sli: availability, objective: 99, group_by: [tier]}\n"
        "  - {name: c, service: s, sli: availability, objective: 99,"
        " match_labels: {tier: gold, '€': '€'}}\n"
    )
    assert _run(["check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"{path}: ok: 3 SLOs (2 grouped, up to 10,100 groups), 4 policy rows")
    assert err == ""


GROUPS_BROKEN = f"""\
slos:
  - {{name: a, service: s, sli: availability, objective: 99, group_by: [region], max_groups: 0}}
  - name: b
    service: s
    sli: availability
    objective: 99
    group_by: [region, operation, region]
    max_groups: 10001
  - {{name: c, service: s, sli: availability, objective: 99, max_groups: 5}}
  - name: d
    service: s
    sli: availability
    objective: 99
    group_by: ["", "{"k" * 129}"]
    match_labels: {{"": x, tier: "{"€" * 43}"}}
  - {{name: e, composite: [{{slo: a}}], objective: 99, group_by: [region],
      match_labels: {{tier: gold}}}}
"""


def test_check_refuses_bad_groups_and_match_labels_with_every_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(GROUPS_BROKEN)
    assert _run(["check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{path}: $.slos[0].max_groups: must be from 1 to 10000, got 0",
        f"{path}: $.slos[1].max_groups: must be from 1 to 10000, got 10001",
        f"{path}: $.slos[1].group_by[2]: 'region' twice",
        f"{path}: $.slos[2].max_groups: only with group_by",
        f"{path}: $.slos[3].match_labels: a label name must not be empty",
        # 43 x 3 bytes: within 128 characters, over 128 bytes
        f"{path}: $.slos[3].match_labels.tier: label value over 128 bytes (no event carries one)",
        f"{path}: $.slos[3].group_by[0]: must not be empty",
        f"{path}: $.slos[3].group_by[1]: label name over 128 bytes (no event carries one)",
        f'{path}: $.slos[4].composite[0].slo: "a" is grouped (group_by); members must be ungrouped',
        f"{path}: $.slos[4].match_labels: a composite SLO has no match_labels of its own "
        "(its members do)",
        f"{path}: $.slos[4].group_by: a composite SLO cannot be grouped",
    ]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param(
            "group_by: region", "$.slos[0].group_by: Expected `array`, got `str`", id="not a list"
        ),
        pytest.param(
            "match_labels: {tier: 1}",
            "$.slos[0].match_labels[...]: Expected `str`, got `int`",
            id="a value that is not a string",
        ),
        pytest.param(
            "group_by: [region], max_groups: many",
            "$.slos[0].max_groups: Expected `int | null`, got `str`",
            id="max_groups not a number",
        ),
        pytest.param(
            "group_by: [" + ", ".join(f"l{i}" for i in range(17)) + ", operation]",
            "$.slos[0].group_by: at most 16 labels and operation",
            id="more keys than an event has labels",
        ),
        pytest.param(
            "match_labels: {" + ", ".join(f"l{i}: v" for i in range(17)) + "}",
            "$.slos[0].match_labels: at most 16 labels (an event carries no more)",
            id="more pairs than an event has labels",
        ),
    ],
)
def test_check_reports_each_bad_group_or_label_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fields: str, expected: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        f"slos:\n  - {{name: a, service: s, sli: availability, objective: 99, {fields}}}\n"
    )
    assert _run(["check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"{path}: {expected}\n"


def test_the_readme_examples_of_labels_and_groups_are_valid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's grouped config passes `check`, and its event decodes with its labels."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Labels and grouped SLOs", 1)[1]
    config = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "c.yaml"
    path.write_text(config)
    assert _run(["check", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: ok: 1 SLOs")
    cfg = load_config(path)
    [slo] = cfg.slos
    assert (slo.match_labels, slo.group_by, slo.max_groups) == ({"env": "prod"}, ["region"], 20)

    event = readme.split("## Events", 1)[1].split("```json\n", 1)[1].split("```", 1)[0]
    [decoded] = RecordDecoder("json").decode_one(event.encode())
    assert decoded.labels == {"region": "eu", "env": "prod"}
    assert slo.matches_labels(decoded.labels)


def test_check_reports_escalations_to_receivers_nobody_configured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "escalate.yaml"
    path.write_text(
        "slos: [{name: a, service: api, sli: availability, objective: 99}]\n"
        "receivers: [{type: console, name: chat}]\n"
        "budget_alerts: {horizon: 0s}\n"
        "budget_policy:\n"
        "  - {budget_remaining_at_most: 0, decision: fail, escalate: [chat, oncall]}\n"
    )
    assert _run(["check", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{path}: $.budget_alerts.horizon: must be longer than 0s",
        f"{path}: $.budget_policy[0].escalate[1]: no receiver is named 'oncall' (receiver "
        "names: chat)",
    ]
    path.write_text(path.read_text().replace("0s", "1d").replace(", oncall", ""))
    assert _run(["check", str(path)]) == 0
