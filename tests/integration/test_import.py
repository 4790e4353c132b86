"""`burnrate import` end to end, as a user runs it: import OpenSLO and Sloth files, check
the result with `burnrate check`, and replay traffic against it with `burnrate replay`:
the imported SLOs select the events their sources meant and page on an incident."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "import"
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
INCIDENT = (T0 + 3600, T0 + 4500)


def burnrate(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def _events(path: Path) -> None:
    """Three hours of `api` and `checkout` traffic, ten events every ten seconds each;
    during the incident half of them fail slowly."""
    with path.open("w") as f:
        for t in range(T0, T0 + 3 * 3600, 10):
            bad = INCIDENT[0] <= t < INCIDENT[1]
            batch = [
                {
                    "service": service,
                    "operation": "POST /orders" if service == "checkout" else "GET /",
                    "ts": t + k + 0.5,
                    "status": 500 if bad and k % 2 else 200,
                    "latency_ms": 900.0 if bad and k % 2 else 40.0,
                }
                for service in ("api", "checkout")
                for k in range(10)
            ]
            f.write(json.dumps(batch) + "\n")


def test_imported_config_passes_check_and_pages_in_a_replay(tmp_path: Path) -> None:
    config = tmp_path / "burnrate.yaml"
    imported = burnrate("import", str(DATA / "openslo"), str(DATA / "sloth"), "-o", str(config))
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout == ""

    checked = burnrate("check", str(config))
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith(f"{config}: ok: 8 SLOs (1 composite, 3 with their own policy)")

    events = tmp_path / "events.jsonl"
    _events(events)
    transitions = tmp_path / "transitions.jsonl"
    replayed = burnrate(
        "replay", "--config", str(config), "--events", str(events), "--output", str(transitions)
    )
    assert replayed.returncode == 0, replayed.stderr
    lines = [json.loads(line) for line in transitions.read_text().splitlines()]
    fired = {(t["slo"], t["severity"]) for t in lines if t["state"] == "firing"}
    # Sloth: 5xx availability and the 300 ms latency SLO of job="api" (pages only);
    # OpenSLO: the burnrate-typed SLI of checkout POST /orders, with its 1h/5m 14.4x row.
    assert {
        ("requests-availability", "page"),
        ("requests-latency", "page"),
        ("checkout-availability", "page"),
    } <= fired
    assert ("requests-latency", "ticket") not in fired  # its ticket alert was disabled
    pages = [t for t in lines if t["slo"] == "checkout-availability" and t["severity"] == "page"]
    assert INCIDENT[0] < pages[0]["at"] < INCIDENT[0] + 600
    # the rows of the referenced fast-burn policy: short windows long / 12
    assert (pages[0]["long_window_s"], pages[0]["short_window_s"]) in {(3600, 300), (21600, 1800)}
    tickets = [
        t for t in lines if t["slo"] == "checkout-availability" and t["severity"] == "ticket"
    ]
    # the inline condition's annotation gave its short window: 3d/4h, not 3d/6h
    assert (tickets[0]["long_window_s"], tickets[0]["short_window_s"]) == (259200, 14400)
    # nothing selects traffic the sources did not mean: ledger and catalog saw no events
    assert not {t["slo"] for t in lines} & {"ledger-availability", "catalog-latency"}
    assert all(t["state"] == "resolved" for t in lines if t["at"] > INCIDENT[1] + 7200)


def test_a_config_that_fails_the_checks_is_refused_by_import_too(tmp_path: Path) -> None:
    """The only SLO's objective is 100%: `check` would refuse it, so nothing maps."""
    spec = tmp_path / "sloth.yaml"
    spec.write_text(
        "version: prometheus/v1\nservice: api\nslos:\n  - name: perfect\n    objective: 100\n"
        '    sli:\n      events:\n        error_query: x{job="api",code=~"5.."}\n'
        '        total_query: x{job="api"}\n'
    )
    result = burnrate("import", str(spec))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{spec}: $.slos[0]: SLO 'perfect' skipped: objective: must be > 0 and < 100 "
        "(percent), got 100.0",
        "burnrate import: nothing usable maps (see the warnings above); no config written",
    ]
