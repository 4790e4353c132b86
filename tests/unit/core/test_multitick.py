"""The multi-tick pass against the tick-by-tick evaluator: the same transitions, alert
state, window sums, counts and snapshot for any stream, gap, batch split and option,
and the fallback to tick-by-tick for the configurations the pass does not cover."""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core import snapshot
from engine.core.config import Config, parse_config
from engine.core.decode import Event
from engine.core.evaluator import Evaluator, Transition
from engine.core.evaluator_multitick import MULTI_TICK_MAX_COLUMNS
from engine.core.multitick import tick_sums
from engine.core.windows import WindowSet
from tests.unit.core.reference import split, stamped

SLOS = """
slos:
  - {name: api-avail, service: api, sli: availability, objective: 95, period: 1h}
  - {name: api-lat, service: api, sli: latency, threshold_ms: 100, objective: 90, period: 1h}
  - {name: db-avail, service: db, operation: "q.*", sli: availability, objective: 99, period: 1h}
"""
GROUPED = """
  - {name: by-op, service: api, sli: availability, objective: 99, period: 1h,
     group_by: [operation], max_groups: 2}
"""
OWN_POLICY = """
  - name: db-own
    service: db
    sli: availability
    objective: 90
    period: 1h
    policy: [{severity: ticket, long: 10m, short: 1m, burn_rate: 2}]
"""
POLICY = """
policy:
  - {severity: page, long: 5m, short: 1m, burn_rate: 4}
  - {severity: page, long: 10m, short: 2m, burn_rate: 2}
  - {severity: ticket, long: 30m, short: 5m, burn_rate: 1}
"""
CORRECTION = """
corrections:
  - {name: upkeep, start: 1000000600, duration: 5m, services: [api], reason: upkeep}
"""


def make_config(tick: str, lateness: str, options: str, extra: str) -> Config:
    slos = SLOS + (GROUPED + OWN_POLICY if "groups" in extra else "")
    corrections = CORRECTION if "corrections" in extra else ""
    return parse_config(
        slos
        + POLICY
        + corrections
        + f"evaluation: {{tick: {tick}, allowed_lateness: {lateness}{options}}}\n"
    )


def pair(cfg: Config) -> tuple[Evaluator, Evaluator]:
    """The tick-by-tick evaluator and one taking the multi-tick pass from 1 tick on."""
    ref = Evaluator(cfg)
    ref.multi_tick_from = None
    vec = Evaluator(cfg)
    vec.multi_tick_from = 1
    vec.multi_tick_max_columns = None
    vec.multi_tick_ticks_per_column = 0
    assert vec.multi_tick_unsupported() is None
    return ref, vec


def assert_same(ref: Evaluator, vec: Evaluator) -> None:
    """Everything an evaluator shows of itself is the same."""
    assert (vec.watermark_s, vec.next_tick_s, vec.evaluated_at_s) == (
        ref.watermark_s,
        ref.next_tick_s,
        ref.evaluated_at_s,
    )
    a, b = ref.alerts(), vec.alerts()
    for f in fields(a):
        np.testing.assert_array_equal(getattr(b, f.name), getattr(a, f.name), err_msg=f.name)
    if ref.evaluated_at_s is not None:
        np.testing.assert_array_equal(vec.window_sums(), ref.window_sums())
        np.testing.assert_array_equal(vec.burn_rates(), ref.burn_rates())
        np.testing.assert_array_equal(vec.budget_remaining(), ref.budget_remaining())
    ca, cb = ref.counts(), vec.counts()
    for f in fields(ca):
        x, y = getattr(ca, f.name), getattr(cb, f.name)
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(y, x, err_msg=f.name)
        else:
            assert y == x, f.name
    # the snapshot holds the rings: the same bytes
    assert snapshot.dump(vec) == snapshot.dump(ref)


def transitions_key(trs: list[Transition]) -> list[Any]:
    return [msgspec.structs.astuple(tr) for tr in trs]


event = st.builds(
    lambda service, op, status, lat, count: Event(
        service=service, operation=op, status=status, latency_ms=lat, count=count
    ),
    st.sampled_from(["api", "db", "other"]),
    st.sampled_from([None, "q.read", "w.write", "GET /a"]),
    st.sampled_from([200, 404, 500, 503, "UNAVAILABLE", "ok", None]),
    st.one_of(st.none(), st.floats(0, 300)),
    st.integers(1, 40),
)
# mostly forward, sometimes back (late within or beyond lateness), gaps long and short
dt = st.one_of(
    st.floats(0, 5),
    st.floats(0, 90),
    st.floats(-45, 0),
    st.sampled_from([60.0, 600.0, 3600.0, 7200.0]),
)
OPTIONS = [
    "",
    ", for: 30s",
    ", keep_firing_for: 1m",
    ", for: 20s, keep_firing_for: 40s",
    ", min_events: 5, min_bad_events: 2",
    ", for: 1m, keep_firing_for: 2m, min_events: 3",
]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    steps=st.lists(st.tuples(dt, event), min_size=1, max_size=120),
    cuts=st.lists(st.integers(0, 150), max_size=10),
    advances=st.lists(st.tuples(st.integers(0, 150), st.floats(0, 900)), max_size=4),
    tick=st.sampled_from(["1s", "5s", "10s", "60s"]),
    lateness=st.sampled_from(["0s", "30s", "2m"]),
    options=st.sampled_from(OPTIONS),
    extra=st.sampled_from(["", "groups", "corrections", "groups corrections"]),
    start=st.sampled_from([1_000_000_000.0, 1_000_000_400.5]),
)
def test_the_multi_tick_pass_equals_tick_by_tick(
    steps: list[tuple[float, Event]],
    cuts: list[int],
    advances: list[tuple[int, float]],
    tick: str,
    lateness: str,
    options: str,
    extra: str,
    start: float,
) -> None:
    cfg = make_config(tick, lateness, options, extra)
    ref, vec = pair(cfg)
    events = stamped(start, steps)
    after = dict(advances)  # after batch k, move event time this far past its watermark
    got_ref: list[Transition] = []
    got_vec: list[Transition] = []
    for k, batch in enumerate(split(events, cuts)):
        got_ref += ref.ingest(ref.classifier.columns(batch), stream_future=True)
        got_vec += vec.ingest(vec.classifier.columns(batch), stream_future=True)
        assert transitions_key(got_vec) == transitions_key(got_ref)
        assert_same(ref, vec)
        if k in after and math.isfinite(ref.watermark_s):
            got_ref += ref.advance(ref.watermark_s + after[k])
            got_vec += vec.advance(vec.watermark_s + after[k])
            assert transitions_key(got_vec) == transitions_key(got_ref)
            assert_same(ref, vec)
    got_ref += ref.flush()
    got_vec += vec.flush()
    assert transitions_key(got_vec) == transitions_key(got_ref)
    assert_same(ref, vec)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(st.tuples(dt, event), min_size=1, max_size=100),
    cuts=st.lists(st.integers(0, 120), max_size=8),
    clock=st.lists(st.floats(-30, 300), min_size=1, max_size=8),
    caps=st.lists(st.one_of(st.none(), st.floats(-600, 60)), min_size=1, max_size=8),
    options=st.sampled_from(OPTIONS),
    lateness=st.sampled_from(["0s", "30s", "2m"]),
)
def test_live_batches_with_a_wall_clock_and_caps_are_evaluated_alike(
    steps: list[tuple[float, Event]],
    cuts: list[int],
    clock: list[float],
    caps: list[float | None],
    options: str,
    lateness: str,
) -> None:
    """`run`'s path: a wall clock (`now_s`) and a lagging partition's cap
    (`watermark_cap_s`) on each batch, then `advance` with the clock, as after lag."""
    cfg = make_config("10s", lateness, options, "groups")
    ref, vec = pair(cfg)
    got_ref: list[Transition] = []
    got_vec: list[Transition] = []
    for k, batch in enumerate(split(stamped(1_000_000_000.0, steps), cuts)):
        newest = max(e.ts for e in batch if e.ts is not None)
        now = newest + clock[k % len(clock)]
        cap = caps[k % len(caps)]
        cap_s = None if cap is None else newest + cap
        for ev, got in ((ref, got_ref), (vec, got_vec)):
            got += ev.ingest(ev.classifier.columns(batch), now_s=now, watermark_cap_s=cap_s)
            got += ev.advance(now - 30, watermark_cap_s=cap_s)
        assert transitions_key(got_vec) == transitions_key(got_ref)
        assert_same(ref, vec)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seconds=st.integers(600, 4 * 3600),
    rate=st.integers(1, 5),
    outages=st.lists(st.tuples(st.integers(0, 4 * 3600), st.integers(10, 1800)), max_size=3),
    block=st.integers(50, 3000),
    options=st.sampled_from(OPTIONS),
)
def test_long_streams_with_outages_fire_and_resolve_alike(
    seconds: int,
    rate: int,
    outages: list[tuple[int, int]],
    block: int,
    options: str,
) -> None:
    """Hours of steady traffic with outages, in blocks spanning many ticks: the alerts
    really fire and resolve, and both evaluators agree on every one."""
    cfg = make_config("10s", "30s", options, "")
    ref, vec = pair(cfg)
    start = 1_000_000_000.0
    events = []
    for s in range(0, seconds, 7):
        down = any(a <= s < a + d for a, d in outages)
        events.append(
            Event(service="api", ts=start + s, status=503 if down else 200, count=rate * 7)
        )
    got_ref: list[Transition] = []
    got_vec: list[Transition] = []
    for i in range(0, len(events), block):
        batch = events[i : i + block]
        got_ref += ref.ingest(ref.classifier.columns(batch), stream_future=True)
        got_vec += vec.ingest(vec.classifier.columns(batch), stream_future=True)
    got_ref += ref.flush()
    got_vec += vec.flush()
    assert transitions_key(got_vec) == transitions_key(got_ref)
    assert_same(ref, vec)


def test_an_outage_pages_through_the_multi_tick_pass() -> None:
    """Not only equal: the pass is taken and the page fires and resolves."""
    cfg = make_config("10s", "30s", "", "")
    ev = Evaluator(cfg)
    calls: list[int] = []
    original = ev._evaluate_many

    def counting(*args: Any, **kwargs: Any) -> list[Transition]:
        calls.append(1)
        return original(*args, **kwargs)

    ev._evaluate_many = counting  # type: ignore[method-assign]
    start = 1_000_000_000.0
    batch = [
        Event(service="api", ts=start + s, status=503 if 600 <= s < 900 else 200, count=5)
        for s in range(3600)
    ]
    trs = ev.ingest(ev.classifier.columns(batch), stream_future=True) + ev.flush()
    pages = [(tr.state, tr.slo) for tr in trs if tr.severity == "page"]
    assert ("firing", "api-avail") in pages
    assert ("resolved", "api-avail") in pages
    assert calls


def many_slos(n: int) -> Config:
    slos = "".join(
        f"  - {{name: s{i}, service: s{i}, sli: availability, objective: 99, period: 1h}}\n"
        for i in range(n)
    )
    evaluation = "evaluation: {tick: 10s, allowed_lateness: 0s}\n"
    return parse_config("slos:\n" + slos + POLICY + evaluation)


@pytest.mark.parametrize(
    ("columns", "ticks", "taken"),
    [
        (2, 2, False),  # under MULTI_TICK_FROM
        (2, 6, True),
        (20, 15, False),  # under one tick per column: the set-up would not pay back
        (20, 40, True),
        (MULTI_TICK_MAX_COLUMNS + 1, 5000, False),  # too many columns, whatever the span
    ],
)
def test_by_default_the_pass_is_taken_only_where_it_is_cheaper(
    columns: int, ticks: int, taken: bool
) -> None:
    ev = Evaluator(many_slos(columns))
    assert len(ev.slos) == columns
    calls: list[int] = []
    original = ev._evaluate_many

    def counting(*args: Any, **kwargs: Any) -> list[Transition]:
        calls.append(1)
        return original(*args, **kwargs)

    ev._evaluate_many = counting  # type: ignore[method-assign]
    start = 1_000_000_000.0
    first = [Event(service="s0", ts=start, status=200)]
    ev.ingest(ev.classifier.columns(first), stream_future=True)
    last = [Event(service="s0", ts=start + 10 * ticks + 5, status=503)]
    ev.ingest(ev.classifier.columns(last), stream_future=True)
    assert bool(calls) is taken


FALLBACKS = {
    "calendar periods": SLOS.replace("period: 1h}", "period: {calendar: month, time_zone: UTC}}", 1)
    + POLICY,
    "budget alerts": SLOS + POLICY + "budget_alerts: {lookback: 1h}\n",
    "composite SLOs": SLOS
    + """  - {name: both, objective: 95, period: 1h,
     composite: [{slo: api-avail, weight: 1}, {slo: db-avail, weight: 2}]}
"""
    + POLICY,
    "a tick of a fraction of a second": SLOS + POLICY + "evaluation: {tick: 1500ms}\n",
}


@pytest.mark.parametrize("reason", sorted(FALLBACKS))
def test_configurations_the_pass_does_not_cover_are_evaluated_tick_by_tick(
    reason: str,
) -> None:
    cfg = parse_config(FALLBACKS[reason])
    ev = Evaluator(cfg)
    ev.multi_tick_from = 1
    ev.multi_tick_max_columns = None
    ev.multi_tick_ticks_per_column = 0
    assert ev.multi_tick_unsupported() == reason

    def refuse(*args: Any, **kwargs: Any) -> list[Transition]:
        raise AssertionError("the multi-tick pass was taken")

    ev._evaluate_many = refuse  # type: ignore[method-assign]
    start = 1_000_000_000.0
    batch = [
        Event(service="api", ts=start + s, status=503 if 600 <= s < 900 else 200)
        for s in range(0, 3600, 3)
    ]
    trs = ev.ingest(ev.classifier.columns(batch), stream_future=True) + ev.flush()
    trs += ev.advance(start + 7200)
    assert ev.evaluated_at_s is not None
    assert ev.evaluated_at_s >= start + 7000
    assert any(tr.state == "firing" for tr in trs)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tick=st.sampled_from([1, 5, 10]),
    steps=st.lists(
        st.tuples(
            st.one_of(st.floats(0, 8), st.floats(-50, 0), st.just(400.0)),
            st.integers(0, 2),
            st.integers(1, 9),
        ),
        min_size=1,
        max_size=80,
    ),
    before=st.integers(0, 40),
    n_ticks=st.integers(1, 120),
)
def test_window_sums_of_every_tick_equal_a_window_set_ticked_one_by_one(
    tick: int, steps: list[tuple[float, int, int]], before: int, n_ticks: int
) -> None:
    """`tick_sums` against a real WindowSet: pairs counted before the first tick at or
    after the watermark their event left (late ones too), ticks one by one."""
    windows_s = [60, 300, 1800, 3600]
    ahead = 120 + 2 * tick

    def fresh() -> WindowSet:
        return WindowSet(3, windows_s, ahead_s=ahead, tick_s=tick)

    first = 1_000_000_000 - 1_000_000_000 % tick + 600
    ts, slo, total = [], [], []
    t = float(first - before * tick)
    wm = -math.inf
    for d, s, n in steps:
        t += d
        if t < wm - 60:  # the evaluator rejects these as late
            continue
        ts.append(t)
        slo.append(s)
        total.append(n)
        wm = max(wm, t)
    ticks = first + tick * np.arange(n_ticks)
    ts_a = np.array(ts)
    wm_a = np.maximum.accumulate(ts_a)
    # the rings at the first tick hold what came before it (as the evaluator would)
    ref, got_w = fresh(), fresh()
    ref.advance_to(float(first - tick))
    got_w.advance_to(float(first - tick))
    early = wm_a <= first - tick
    for w in (ref, got_w):
        idx = np.flatnonzero(early)
        w.add(
            np.array(slo)[idx].astype(np.int32),
            ts_a[idx],
            np.array(total)[idx],
            np.array(total)[idx] // 2,
        )
    rest = np.flatnonzero(~early)
    slo_r = np.array(slo, dtype=np.int64)[rest]
    tot_r = np.array(total, dtype=np.int64)[rest]
    bad_r = tot_r // 2
    applied = np.searchsorted(ticks, wm_a[rest], side="left").astype(np.int64)
    got = tick_sums(got_w, first, tick, n_ticks, slo_r, ts_a[rest], tot_r, bad_r, applied)
    for k in range(n_ticks):
        now = applied == k
        ref.add(slo_r[now].astype(np.int32), ts_a[rest][now], tot_r[now], bad_r[now])
        ref.advance_to(float(ticks[k]))
        np.testing.assert_array_equal(got[:, k], ref.all_sums, err_msg=f"tick {k}")
