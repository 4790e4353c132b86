"""Postmortems offline (engine.runtime.postmortem): a generated stream with a known
outage replayed, and the postmortem's numbers checked against counts taken from the
generated events themselves, not from the engine."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from engine.core.config import Config, parse_config
from engine.core.postmortem import PostmortemIncident
from engine.runtime.postmortem import offline_postmortems

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
OUTAGE_S = (3600, 3600 + 1200)
"""Seconds after T0 during which every other shop event fails."""
SPAN_S = 4 * 3600


CONFIG_TEXT = (
    "slos:\n"
    "  - {name: shop-avail, service: shop, sli: availability, objective: 99.9}\n"
    "  - {name: blog-avail, service: blog, sli: availability, objective: 99}\n"
    "policy:\n"
    "  - {severity: page, long: 1h, short: 5m, burn_rate: 14.4}\n"
    "  - {severity: ticket, long: 6h, short: 30m, burn_rate: 6}\n"
    "evaluation: {tick: 10s}\n"
    "incidents: {quiet_period: 15m}\n"
)


def config() -> Config:
    return parse_config(CONFIG_TEXT)


Event = dict[str, object]


def events() -> list[Event]:
    """Shop every 2 s (every 4th second fails during the outage, latency always fine),
    blog every 2 s and always fine."""
    out: list[Event] = []
    for s in range(0, SPAN_S, 2):
        bad = OUTAGE_S[0] <= s < OUTAGE_S[1] and s % 4 == 0
        out.append(
            {"service": "shop", "ts": T0 + s + 0.5, "status": 500 if bad else 200, "latency_ms": 20}
        )
        out.append({"service": "blog", "ts": T0 + s + 1, "status": 200, "latency_ms": 20})
    return out


def write(path: Path, evs: list[Event]) -> Path:
    with path.open("w") as f:
        for k in range(0, len(evs), 3):  # three events a line, as arrays
            f.write(json.dumps(evs[k : k + 3]) + "\n")
    return path


def counted(evs: list[Event], service: str, start: float, end: float) -> tuple[int, int]:
    """(total, bad) of the service's events in (start, end], from the events themselves."""
    inside = [e for e in evs if e["service"] == service and start < float(e["ts"]) <= end]  # type: ignore[arg-type]
    return len(inside), sum(e["status"] == 500 for e in inside)


@pytest.fixture(scope="module")
def found(tmp_path_factory: pytest.TempPathFactory) -> list[PostmortemIncident]:
    path = write(tmp_path_factory.mktemp("pm") / "events.jsonl", events())
    return offline_postmortems(config(), path).incidents


def test_the_outage_is_one_closed_incident_of_the_failing_service(
    found: list[PostmortemIncident],
) -> None:
    [inc] = found
    assert (inc.service, inc.state) == ("shop", "closed")
    assert inc.detection.onset_at is not None
    assert inc.detection.onset_at <= T0 + OUTAGE_S[0] < inc.opened_at < T0 + OUTAGE_S[1]
    assert inc.impact_start_s == inc.detection.onset_at
    assert inc.impact_end_s == inc.closed_at
    assert inc.detection.time_to_detect_s == inc.opened_at - inc.detection.onset_at
    assert inc.closed_at is not None
    assert inc.detection.resolved_at is not None
    assert inc.closed_at == inc.detection.resolved_at + 900


def test_impact_numbers_are_the_exact_counts_of_the_interval(
    found: list[PostmortemIncident],
) -> None:
    [inc] = found
    evs = events()
    start, end = inc.impact_start_s, inc.impact_end_s
    total, bad = counted(evs, "shop", start, end)
    period_total, _ = counted(evs, "shop", end - 30 * 86400, end)
    avail = {s.slo: s for s in inc.slos}["shop-avail"]
    assert (avail.total_events, avail.bad_events) == (total, bad)
    assert bad == (OUTAGE_S[1] - OUTAGE_S[0]) // 4  # the whole outage lies inside
    assert avail.period_events == period_total
    assert avail.error_budget_consumed_ratio == pytest.approx(bad / (0.001 * period_total))
    assert avail.resolution_s == 10
    assert [s.slo for s in inc.slos] == ["shop-avail"]


def test_charts_hold_each_policy_windows_burn_rate_and_the_budget(
    found: list[PostmortemIncident],
) -> None:
    [inc] = found
    [charts] = inc.charts
    labels = [s.label for s in charts.burn_rates]
    assert labels == [
        "page long 3600s",
        "page short 300s",
        "ticket long 21600s",
        "ticket short 1800s",
    ]
    evs = events()
    for line in charts.burn_rates:
        assert line.threshold is not None
        assert line.window_s is not None
        assert line.times == sorted(line.times)
        assert line.times[0] >= inc.impact_start_s - 1000
        # spot checks against the events: the window's burn at three of its times
        for k in (0, len(line.times) // 2, -1):
            t = line.times[k]
            total, bad = counted(evs, "shop", t - line.window_s, t)
            want = None if not total else bad / total / 0.001
            got = line.values[k]
            assert (got is None) == (want is None)
            assert got is None or math.isclose(got, want or 0.0)
    budget = charts.budget_remaining
    assert budget is not None
    t, left = budget.times[-1], budget.values[-1]
    total, bad = counted(evs, "shop", t - 30 * 86400, t)
    assert left == pytest.approx(1 - bad / (0.001 * total))


def test_service_picks_the_incidents_of_one_service(tmp_path: Path) -> None:
    path = write(tmp_path / "events.jsonl", events())
    assert offline_postmortems(config(), path, service="blog").incidents == []
    [inc] = offline_postmortems(config(), path, service="shop", charts=False).incidents
    assert inc.charts == []
