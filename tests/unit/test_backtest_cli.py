"""`burnrate backtest` end to end on a recording with one known outage: the episode the
events show, each candidate's alerts and scores against it (the config's own equal to a
replay's), the table, `--incidents`, and every bad input with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli import main
from engine.core.config import load_config
from engine.runtime.replay import replay

T0 = 1_700_000_040.0  # a whole minute
OUTAGE = (3600.0, 7200.0)  # seconds after T0: an hour in which 4 % of requests fail
CONFIG = """\
slos:
  - {name: checkout, service: checkout, sli: availability, objective: 99.9}
  - {name: search, service: search, sli: availability, objective: 99}
evaluation: {tick: 10s}
"""
FAST = """\
name: fast
policy:
  - {severity: page, long: 5m, short: 1m, burn_rate: 14.4}
"""
NEVER = """\
policy:
  - {severity: page, long: 1h, short: 5m, burn_rate: 900}
evaluation: {for: 1m}
"""


def recording(path: Path) -> int:
    """3 hours of 10 requests a second per service in lines of 10 seconds; checkout
    fails 4 % of them during OUTAGE. Returns checkout's bad events."""
    bad_total = 0
    with path.open("w") as f:
        for k in range(3 * 360):
            t = T0 + 10 * (k + 1)
            bad = 4 if OUTAGE[0] < t - T0 <= OUTAGE[1] else 0
            bad_total += bad
            f.write(json.dumps({"service": "checkout", "ts": t, "count": 100 - bad}) + "\n")
            if bad:
                f.write(json.dumps({"service": "checkout", "ts": t, "status": 500, "count": bad}))
                f.write("\n")
            f.write(json.dumps({"service": "search", "ts": t, "count": 100}) + "\n")
    return bad_total


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {
        "config": tmp_path / "burnrate.yaml",
        "events": tmp_path / "events.jsonl",
        "fast": tmp_path / "fast.yaml",
        "never": tmp_path / "never.yaml",
    }
    out["config"].write_text(CONFIG)
    out["fast"].write_text(FAST)
    out["never"].write_text(NEVER)
    recording(out["events"])
    return out


def _args(files: dict[str, Path], *extra: str) -> list[str]:
    return [
        "backtest",
        "--config",
        str(files["config"]),
        "--events",
        str(files["events"]),
        *extra,
    ]


def test_the_outage_is_one_episode_and_each_policy_is_scored_against_it(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _args(files, "--policy", str(files["fast"]), "--policy", str(files["never"]))
    assert main([*argv, "--format", "json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["policies"] == ["config", "fast", "never"]
    assert got["episodes_from"] == "events"
    assert got["bucket_s"] == 60
    checkout, search = got["slos"]
    assert (checkout["slo"], search["slo"]) == ("checkout", "search")
    assert search["episodes"] == []
    (episode,) = checkout["episodes"]
    assert (episode["start"], episode["end"]) == (T0 + OUTAGE[0], T0 + OUTAGE[1])
    assert episode["bad_events"] == 360 * 4  # 360 lines of 10 s, 4 bad each
    assert episode["total_events"] == 360 * 100
    # a period of 30 days at 10 events/s, budget 0.1 %: 25,920 bad events
    assert episode["budget_consumed_ratio"] == pytest.approx(1440 / 25920)
    config, fast, never = checkout["policies"]
    assert [p["policy"] for p in checkout["policies"]] == ["config", "fast", "never"]
    assert never["alerts"] == 0
    assert never["recall"] == 0
    assert never["precision"] is None
    for p in (config, fast):
        assert p["recall"] == 1
        assert p["precision"] == 1
        assert p["episodes"][0]["detected"] is True
    # burning at 40x, the 5m window passes 14.4 in under 2 minutes
    assert fast["episodes"][0]["detection_delay_s"] <= 120
    # the config's own alerts are exactly a replay's
    transitions = []
    replay(load_config(files["config"]), files["events"], transitions.append)
    firing = [t for t in transitions if t.slo == "checkout" and t.state == "firing"]
    assert config["alerts"] == len(firing)
    assert config["pages"] == sum(t.severity == "page" for t in firing)
    assert config["episodes"][0]["detection_delay_s"] == firing[0].at - (T0 + OUTAGE[0])


def test_the_table_has_a_row_per_slo_and_policy(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_args(files, "--policy", str(files["fast"]))) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        *("slo", "policy", "episodes", "alerts", "pages", "firing", "recall"),
        *("precision", "delay", "p50", "reset", "p50"),
    ]
    assert lines[1].split()[:3] == ["checkout", "config", "1"]
    assert lines[2].split()[:2] == ["fast", "1"]
    assert lines[3].split()[:3] == ["search", "config", "0"]
    assert lines[-1].startswith("episodes: runs of 1m buckets burning at >= 1x; records: ")


def test_known_incidents_replace_the_episodes(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    incidents = tmp_path / "incidents.json"
    incidents.write_text(json.dumps([{"slo": "search", "start": T0 + 60, "end": T0 + 120}]))
    assert main([*_args(files), "--incidents", str(incidents), "--format", "json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["episodes_from"] == "incidents"
    checkout, search = got["slos"]
    assert checkout["episodes"] == []
    assert checkout["policies"][0]["precision"] == 0  # its alerts match no incident
    assert search["episodes"] == [{"start": T0 + 60, "end": T0 + 120}]
    assert search["policies"][0]["recall"] == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--policy", "nope.yaml"], "cannot read policy file nope.yaml"),
        (["--min-consumed", "0"], "--min-consumed must be > 0 and <= 1, got 0.0"),
        (["--incidents", "nope.json"], "cannot read nope.json"),
    ],
)
def test_bad_arguments_exit_2(
    files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    assert main(_args(files, *extra)) == 2
    assert message in capsys.readouterr().err


def test_bad_policy_and_incident_files_name_the_file_and_path(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("policy:\n  - {severity: page, long: 5m, short: 1h, burn_rate: 2}\n")
    assert main(_args(files, "--policy", str(bad), "--policy", str(files["fast"]))) == 2
    err = capsys.readouterr().err
    assert f"burnrate backtest: {bad}: $.policy[0]" in err
    twice = _args(files, "--policy", str(files["fast"]), "--policy", str(files["fast"]))
    assert main(twice) == 2
    assert "two candidates are named 'fast'" in capsys.readouterr().err
    incidents = tmp_path / "incidents.json"
    incidents.write_text('[{"slo": "cart", "start": 1, "end": 2}]')
    assert main([*_args(files), "--incidents", str(incidents)]) == 2
    err = capsys.readouterr().err
    assert f"{incidents}: $[0].slo: no SLO of the config is named 'cart'" in err
    missing = _args(files)
    missing[4] = str(tmp_path / "none.jsonl")
    with pytest.raises(SystemExit) as exc:  # as for a bad config: the command stops there
        main(missing)
    assert exc.value.code == 2
    assert "no such events file" in capsys.readouterr().err
