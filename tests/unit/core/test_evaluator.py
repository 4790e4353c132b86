"""The evaluator against the naive reference, plus pinned behaviours of the alert rules."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.config import Config, parse_config
from engine.core.decode import Event
from engine.core.evaluator import Evaluator, Transition
from tests.unit.core.reference import against_reference, run_engine

BASE = """
slos:
  - {name: api-avail, service: api, sli: availability, objective: 95, period: 1h}
  - {name: api-lat, service: api, sli: latency, threshold_ms: 100, objective: 90, period: 1h}
  - {name: db-avail, service: db, operation: "q.*", sli: availability, objective: 99, period: 1h}
policy:
  - {severity: page, long: 5m, short: 1m, burn_rate: 4}
  - {severity: page, long: 10m, short: 2m, burn_rate: 2}
  - {severity: ticket, long: 30m, short: 5m, burn_rate: 1}
"""


def make_config(tick: str = "10s", extra: str = "") -> Config:
    return parse_config(BASE + f"evaluation: {{tick: {tick}, allowed_lateness: 30s{extra}}}\n")


def key(tr: Transition) -> tuple[str, str, str, float, int, int]:
    return (tr.slo, tr.severity, tr.state, tr.at, tr.long_window_s, tr.short_window_s)


event = st.builds(
    lambda service, op, status, lat, count: Event(
        service=service, operation=op, status=status, latency_ms=lat, count=count
    ),
    st.sampled_from(["api", "db", "other"]),
    st.sampled_from([None, "q.read", "w.write"]),
    st.sampled_from([200, 404, 500, 503, "UNAVAILABLE", "ok", None]),
    st.one_of(st.none(), st.floats(0, 300)),
    st.integers(1, 3),
)
# Time steps: mostly forward, sometimes backwards (late, within or beyond lateness), gaps.
dt = st.one_of(
    st.floats(0, 5),
    st.floats(-45, 0),
    st.sampled_from([60.0, 600.0, 3600.0]),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.integers(1_600_000_000, 1_700_000_000),
    steps=st.lists(st.tuples(dt, event), min_size=1, max_size=80),
    cuts=st.lists(st.integers(0, 120), max_size=8),
    tick=st.sampled_from(["5s", "10s", "60s"]),
    options=st.sampled_from(
        ["", ", for: 30s", ", keep_firing_for: 1m", ", min_events: 5, min_bad_events: 2"]
    ),
)
def test_transitions_equal_the_naive_evaluator_for_any_batch_split(
    start: int,
    steps: list[tuple[float, Event]],
    cuts: list[int],
    tick: str,
    options: str,
) -> None:
    cfg = make_config(tick, options)
    _, ref, ev, got = against_reference(cfg, start, steps, cuts)
    assert [key(tr) for tr in got] == ref.transitions
    counts = ev.counts()
    assert counts.rejected.get("too_late", 0) == ref.rejected_late
    for i in range(len(cfg.slos)):
        assert (int(counts.events_total[i]), int(counts.bad_events_total[i])) == ref.totals(i)


def outage_events(
    start: float, seconds: int, per_s: int, bad_from: float, bad_to: float
) -> list[Event]:
    out = []
    for s in range(seconds):
        for k in range(per_s):
            ts = start + s + k / per_s
            bad = bad_from <= ts - start < bad_to
            out.append(Event(service="api", ts=ts, status=503 if bad else 200, latency_ms=10.0))
    return out


def test_a_full_outage_pages_and_resolves_with_the_row_that_fired() -> None:
    cfg = make_config()
    _, trs = run_engine(cfg, [outage_events(1_000_000, 1800, 2, 600, 900)])
    pages = [tr for tr in trs if tr.slo == "api-avail" and tr.severity == "page"]
    assert [tr.state for tr in pages] == ["firing", "resolved"]
    fired, resolved = pages
    assert (fired.long_window_s, fired.short_window_s) == (300, 60)
    assert fired.burn_rate_long is not None
    assert fired.burn_rate_long >= 4
    assert fired.burn_rate_short is not None
    assert fired.burn_rate_short >= 4
    assert 1_000_600 < fired.at <= 1_000_700
    assert resolved.at > 1_000_900


def test_zero_traffic_is_no_data_not_good_and_not_nan_in_transitions() -> None:
    cfg = make_config()
    ev = Evaluator(cfg)
    assert ev.ingest(ev.classifier.columns([])) == []
    ev.ingest(ev.classifier.columns([Event(service="db", operation="q.read", ts=1000.0)]))
    ev.advance(1100.0)
    ratios = ev.error_ratios()
    assert math.isnan(ratios[0, 0])  # api: no events, no data
    assert not ev.alerts().firing.any()
    assert math.isnan(ev.budget_remaining()[0])
    assert ev.budget_remaining()[2] == 1.0


def test_a_late_event_within_lateness_counts_and_beyond_it_is_rejected() -> None:
    cfg = make_config()
    ev = Evaluator(cfg)
    cols = ev.classifier.columns(
        [
            Event(service="api", ts=1000.0),
            Event(service="api", ts=1100.0),
            Event(service="api", ts=1075.0),  # 25 s late: counted
            Event(service="api", ts=1060.0),  # 40 s late: rejected
        ]
    )
    ev.ingest(cols)
    assert ev.rejected_counts()["too_late"] == 1
    assert int(ev.counts().events_total[0]) == 3


def test_events_too_far_in_the_future_are_rejected_in_live_mode() -> None:
    cfg = make_config()
    ev = Evaluator(cfg)
    cols = ev.classifier.columns(
        [Event(service="api", ts=1000.0), Event(service="api", ts=1000.0 + 601)]
    )
    ev.ingest(cols, now_s=1000.0)
    assert ev.rejected_counts()["too_far_in_future"] == 1
    assert int(ev.counts().events_total[0]) == 1


def test_events_without_time_are_rejected_when_there_is_no_record_time() -> None:
    cfg = make_config()
    ev = Evaluator(cfg)
    ev.ingest(ev.classifier.columns([Event(service="api")]))
    assert ev.rejected_counts()["missing_ts"] == 1


@pytest.mark.parametrize(
    ("period", "factors"),
    [
        pytest.param("30d", [14.4, 6.0, 3.0, 1.0], id="default policy factors for 30 days"),
        pytest.param(
            "28d", [13.44, 5.6, 2.8, 0.9333], id="default policy factors scale to 28 days"
        ),
    ],
)
def test_default_policy_factors_are_pinned(period: str, factors: list[float]) -> None:
    cfg = parse_config(
        f"slos: [{{name: a, service: a, sli: availability, objective: 99.9, period: {period}}}]"
    )
    ev = Evaluator(cfg)
    assert ev.factor[0].tolist() == pytest.approx(factors, abs=1e-4)
    assert [(r.severity, r.long, r.short) for r in cfg.policy] == [
        ("page", "1h", "5m"),
        ("page", "6h", "30m"),
        ("ticket", "1d", "2h"),
        ("ticket", "3d", "6h"),
    ]


def test_an_idle_service_drains_its_windows_as_time_advances() -> None:
    cfg = make_config()
    ev = Evaluator(cfg)
    trs = ev.ingest(ev.classifier.columns(outage_events(5000, 400, 2, 0, 400)))
    assert any(tr.state == "firing" for tr in trs)
    trs = ev.advance(5000 + 400 + 4000)
    assert {tr.state for tr in trs} == {"resolved"}
    assert not ev.alerts().firing.any()
    assert not ev.window_sums().any()
