"""`burnrate check` refuses every config `burnrate run` refuses, with the same lines.

Both commands go through engine.commands.preflight. Each config below was once passed by
`check` and refused by `run` (or worse: a traceback, a 14.6 TiB allocation, a retry loop
taken for an outage). Here `check` must exit 2 with the expected `$.path` line, and `run`
must exit 2 with exactly the same lines before it starts anything: no listening socket,
no log line, no connection attempt (bootstrap points at a port nothing listens on).
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec
import pytest

TIMEOUT_S = 30.0
VALID_SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()

Doc = dict[str, object]


def base() -> Doc:
    return {
        "slos": [
            {"name": "api-availability", "service": "api", "sli": "availability", "objective": 99.9}
        ],
        "kafka": {"bootstrap_servers": "127.0.0.1:1"},
        "http": {"listen": "127.0.0.1:0"},
    }


def with_(section: str, **values: object) -> Doc:
    doc = base()
    current = doc.get(section)
    doc[section] = {**current, **values} if isinstance(current, dict) else values
    return doc


def with_slo(**values: object) -> Doc:
    doc = base()
    doc["slos"] = [{**doc["slos"][0], **values}]  # type: ignore[index]
    return doc


def with_security(**values: object) -> Doc:
    return with_("kafka", bootstrap_servers="127.0.0.1:1", security=values)


def with_receiver(**values: object) -> Doc:
    doc = base()
    doc["receivers"] = [values]
    return doc


def many_slos(n: int) -> Doc:
    """`n` SLOs whose finest window (30 s at a 1 s tick, so 1 s buckets) is held a day
    ahead."""
    doc = base()
    doc["slos"] = [
        {"name": f"slo-{i}", "service": "api", "sli": "availability", "objective": 99.9}
        for i in range(n)
    ]
    doc["policy"] = [{"severity": "page", "long": "1h", "short": "30s", "burn_rate": 14.4}]
    doc["evaluation"] = {"future_limit": "1d", "tick": "1s"}
    return doc


CASES = [
    pytest.param(
        with_slo(period="999999999999d"),
        "$.slos[0].period: at most 400d, got 999999999999d",
        id="a period of 999999999999d (run allocated 14.6 TiB)",
    ),
    pytest.param(
        {
            **base(),
            "policy": [
                {"severity": "page", "long": "999999999999w", "short": "5m", "burn_rate": 14.4}
            ],
        },
        "$.policy[0].long: at most 400d, got 999999999999w",
        id="a policy window of 999999999999w",
    ),
    pytest.param(
        with_slo(period="100000007s"),
        "$.slos[0].period: at most 400d, got 100000007s",
        id="a prime-second period of 3 years (run kept it at 1 s buckets)",
    ),
    pytest.param(
        many_slos(1600),
        "$.slos: the windows of 1600 SLOs need about 1.3 GiB (822.4 KiB per SLO), more than "
        "the limit of 1 GiB",
        id="window arrays over the memory limit",
    ),
    pytest.param(
        with_slo(policy=[]),
        "$.slos[0].policy: at least one row is required (omit the key for the top-level policy)",
        id="an empty per-SLO policy (an SLO that could never alert)",
    ),
    pytest.param(
        with_slo(policy=[{"severity": "page", "long": "999d", "short": "5m", "burn_rate": 2}]),
        "$.slos[0].policy[0].long: at most 400d, got 999d",
        id="a per-SLO policy window over the maximum",
    ),
    pytest.param(
        with_("http", listen="notahost"),
        "$.http.listen: expected HOST:PORT, got 'notahost'",
        id="a listen address without a port (run: traceback)",
    ),
    pytest.param(
        with_("http", listen="127.0.0.1:99999"),
        "$.http.listen: expected HOST:PORT, got '127.0.0.1:99999'",
        id="a listen port over 65535 (run: traceback)",
    ),
    pytest.param(
        with_receiver(type="webhook", url="ftp://hooks.example/x"),
        "$.receivers[0].url: must be an absolute http:// or https:// URL",
        id="an ftp webhook URL",
    ),
    pytest.param(
        with_receiver(type="alertmanager", urls=["http://am:9093", "am:9093"]),
        "$.receivers[0].urls[1]: must be an absolute http:// or https:// URL",
        id="an Alertmanager URL without a scheme",
    ),
    pytest.param(
        with_receiver(type="webhook", url="http://hooks.example/x", secret_env="BURNRATE_BAD"),
        "$.receivers[0].secret_env: secret #1: webhook secret is not valid base64",
        id="a whsec_ secret that is not base64",
    ),
    pytest.param(
        with_receiver(type="webhook", url="http://hooks.example/x", secret_env="BURNRATE_UNSET"),
        "$.receivers[0].secret_env: environment variable BURNRATE_UNSET is not set",
        id="a webhook secret variable that is not set",
    ),
    pytest.param(
        with_receiver(type="webhook", url="http://hooks.example/x", timeout="0s"),
        "$.receivers[0].timeout: must be longer than 0s",
        id="a webhook timeout of 0s",
    ),
    pytest.param(
        with_receiver(type="pagerduty", routing_key_env="BURNRATE_UNSET"),
        "$.receivers[0].routing_key_env: environment variable BURNRATE_UNSET is not set",
        id="a PagerDuty routing key variable that is not set",
    ),
    pytest.param(
        with_receiver(type="pagerduty", routing_key_env="BURNRATE_PD", routing_key_file="/k"),
        "$.receivers[0]: give one of routing_key_env and routing_key_file, not both",
        id="two PagerDuty routing key sources",
    ),
    pytest.param(
        with_("http", auth_token_env="BURNRATE_TOKEN", auth_token_file="/run/token"),
        "$.http: give at most one of auth_token_env or auth_token_file",
        id="both auth_token_env and auth_token_file",
    ),
    pytest.param(
        with_("http", auth_token_env="BURNRATE_UNSET"),
        "$.http.auth_token_env: environment variable BURNRATE_UNSET is not set",
        id="a bearer token variable that is not set",
    ),
    pytest.param(
        with_security(protocol="PLAINTEXT", sasl_username="u", sasl_password_env="BURNRATE_PW"),
        "$.kafka.security.protocol: PLAINTEXT sends no SASL credentials, but sasl_username, "
        "sasl_password_env are set",
        id="SASL credentials with PLAINTEXT (silently ignored)",
    ),
    pytest.param(
        with_security(protocol="SASL_PLAINTEXT", ssl_cafile="/etc/ca.pem"),
        "$.kafka.security.protocol: SASL_PLAINTEXT uses no TLS, but ssl_cafile is set",
        id="a CA file without TLS (silently ignored)",
    ),
    pytest.param(
        with_security(protocol="SASL_SSL", sasl_username="u", sasl_password_file="/nonexistent"),
        "$.kafka.security.sasl_password_file: cannot read /nonexistent",
        id="an unreadable SASL password file",
    ),
    pytest.param(
        with_("kafka", bootstrap_servers="127.0.0.1:99999"),
        "$.kafka.bootstrap_servers: the port of '127.0.0.1:99999' is not a number from 1 to 65535",
        id="a broker port over 65535 (run: retried forever)",
    ),
    pytest.param(
        with_("kafka", topics=[]),
        "$.kafka.topics: at least one topic is required",
        id="no topic (run: retried forever)",
    ),
    pytest.param(
        with_("kafka", topics=["events"], dead_letter_topic="events"),
        "$.kafka.dead_letter_topic: 'events' is also in kafka.topics",
        id="the dead-letter topic among the consumed topics",
    ),
]


def burnrate(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-m", "engine", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"burnrate {' '.join(args)} still running after {TIMEOUT_S:.0f}s: {exc.stderr!r}"
        )


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BURNRATE_", "KAFKA_"))}
    env["BURNRATE_BAD"] = "whsec_not!base64"
    env["BURNRATE_PW"] = "hunter2"
    env["BURNRATE_TOKEN"] = "t0ken"
    env["BURNRATE_PD"] = "R0UTINGKEY0123456789abcdefABCDEF"
    return env


def check_and_run(doc: Doc, tmp_path: Path) -> tuple[list[str], list[str], Path]:
    """stderr lines of `burnrate check` and of `burnrate run`, both asserted to exit 2."""
    config = tmp_path / "burnrate.yaml"
    config.write_bytes(msgspec.yaml.encode(doc))
    env = environment()
    with ThreadPoolExecutor(2) as pool:  # the two processes at once: half the wait
        checking = pool.submit(burnrate, ["check", str(config)], tmp_path, env)
        running = pool.submit(burnrate, ["run", "--config", str(config)], tmp_path, env)
        check, run = checking.result(), running.result()
    assert check.returncode == 2, check.stdout + check.stderr
    assert check.stdout == ""
    report = f"run exited {run.returncode}; stderr:\n{run.stderr}"
    assert run.returncode == 2, report
    assert "Traceback" not in run.stderr, report
    return check.stderr.splitlines(), run.stderr.splitlines(), config


@pytest.mark.parametrize(("doc", "expected"), CASES)
def test_check_refuses_what_run_refuses_with_the_same_line(
    doc: Doc, expected: str, tmp_path: Path
) -> None:
    check, run, config = check_and_run(doc, tmp_path)
    assert any(line.startswith(f"{config}: {expected}") for line in check), check
    assert run == check  # same lines, and nothing else: no log line, nothing started


def test_every_problem_is_reported_at_once_by_both(tmp_path: Path) -> None:
    doc = with_slo(period="999999999999d")
    doc["http"] = {"listen": "notahost", "auth_token_env": "BURNRATE_UNSET"}
    doc["kafka"] = {"bootstrap_servers": "127.0.0.1:1", "security": {"sasl_username": "u"}}
    doc["receivers"] = [
        {"type": "webhook", "urls": ["ftp://a", "http://ok.example", "b"]},
        {"type": "webhook", "url": "http://ok.example", "secret_env": "BURNRATE_BAD"},
    ]
    check, run, config = check_and_run(doc, tmp_path)
    assert [line.removeprefix(f"{config}: ").split(": ")[0] for line in check] == [
        "$.slos[0].period",
        "$.kafka.security.protocol",
        "$.http.listen",
        "$.http.auth_token_env",
        "$.receivers[0].urls[0]",
        "$.receivers[0].urls[2]",
        "$.receivers[1].secret_env",
    ]
    assert run == check


def test_a_config_check_passes_gets_past_the_checks_of_run(tmp_path: Path) -> None:
    """The other half: what `check` accepts, `run` does not refuse as a config; here it
    gets as far as binding its port, which is taken (exit 1, not 2)."""
    secret = tmp_path / "secret"
    secret.write_text(VALID_SECRET + "\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        doc = with_slo(period="2591999s")  # 30 days less a second: no step divides it
        doc["slos"].append(  # type: ignore[attr-defined]
            {
                "name": "batch-availability",
                "service": "batch",
                "sli": "availability",
                "objective": 99,
                "policy": [{"severity": "ticket", "long": "1d", "short": "2h", "burn_rate": 2}],
            }
        )
        doc["http"] = {
            "listen": f"127.0.0.1:{taken.getsockname()[1]}",
            "auth_token_env": "BURNRATE_TOKEN",
        }
        doc["receivers"] = [
            {"type": "webhook", "url": "https://hooks.example/x", "secret_file": str(secret)},
            {"type": "pagerduty", "name": "oncall", "routing_key_env": "BURNRATE_PD"},
        ]
        config = tmp_path / "burnrate.yaml"
        config.write_bytes(msgspec.yaml.encode(doc))
        env = environment()
        check = burnrate(["check", str(config)], tmp_path, env)
        assert (check.returncode, check.stderr) == (0, ""), check.stderr
        run = burnrate(["run", "--config", str(config)], tmp_path, env)
    assert run.returncode == 1, run.stderr
    assert "cannot run:" in run.stderr
    assert "Traceback" not in run.stderr


def test_run_refuses_an_unusable_bootstrap_override_before_starting(tmp_path: Path) -> None:
    """KAFKA_BOOTSTRAP_SERVERS replaces the configured brokers in `run` (not in `check`,
    which checks the file): a malformed value is refused as a usage error too."""
    config = tmp_path / "burnrate.yaml"
    config.write_bytes(msgspec.yaml.encode(base()))
    env = {**environment(), "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:99999"}
    run = burnrate(["run", "--config", str(config)], tmp_path, env)
    assert run.returncode == 2, run.stderr
    assert run.stderr.splitlines() == [
        "burnrate run: KAFKA_BOOTSTRAP_SERVERS: the port of '127.0.0.1:99999' is not a "
        "number from 1 to 65535"
    ]
