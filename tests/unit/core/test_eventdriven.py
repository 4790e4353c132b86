"""The event-driven part of the multi-tick pass: the block bounds contain every tick's
window sums (and are exact for blocks of one tick), and evaluating exactly only where
they let a row hold gives the tick-by-tick evaluator's transitions and state, for any
stream, gap, batch split, block size and option."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.decode import Event
from engine.core.evaluator import Evaluator, Transition
from engine.core.eventdriven import block_bounds, runs
from engine.core.multitick import tick_sums
from engine.core.windows import WindowSet
from tests.unit.core.reference import split, stamped
from tests.unit.core.test_multitick import (
    OPTIONS,
    assert_same,
    dt,
    event,
    make_config,
    transitions_key,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tick=st.sampled_from([1, 5, 7, 10]),
    steps=st.lists(
        st.tuples(
            st.one_of(st.floats(0, 8), st.floats(-50, 0), st.just(400.0)),
            st.integers(0, 2),
            st.integers(1, 9),
            st.integers(0, 9),
        ),
        min_size=1,
        max_size=80,
    ),
    before=st.integers(0, 40),
    n_ticks=st.integers(1, 120),
    block=st.integers(1, 40),
    columns=st.sampled_from([[0, 1, 2], [1], [0, 2]]),
)
def test_block_bounds_contain_the_sums_of_every_tick_of_the_block(
    tick: int,
    steps: list[tuple[float, int, int, int]],
    before: int,
    n_ticks: int,
    block: int,
    columns: list[int],
) -> None:
    """Against `tick_sums` (itself checked against a WindowSet ticked one by one): the
    rings holding what came before the first tick, late pairs, gaps."""
    windows_s = [60, 300, 1800, 3600]
    ahead = 120 + 2 * tick
    first = 1_000_000_000 - 1_000_000_000 % tick + 600
    ts, slo, total, bad = [], [], [], []
    t = float(first - before * tick)
    wm = -math.inf
    for d, s, n, b in steps:
        t += d
        if t < wm - 60:  # the evaluator rejects these as late
            continue
        ts.append(t)
        slo.append(s)
        total.append(n)
        bad.append(min(b, n))
        wm = max(wm, t)
    ticks = first + tick * np.arange(n_ticks)
    ts_a = np.array(ts)
    wm_a = np.maximum.accumulate(ts_a)
    w = WindowSet(3, windows_s, ahead_s=ahead, tick_s=tick)
    w.advance_to(float(first - tick))
    early = np.flatnonzero(wm_a <= first - tick)
    slo_a = np.array(slo, dtype=np.int64)
    tot_a = np.array(total, dtype=np.int64)
    bad_a = np.array(bad, dtype=np.int64)
    w.add(slo_a[early].astype(np.int32), ts_a[early], tot_a[early], bad_a[early])
    rest = np.flatnonzero(wm_a > first - tick)
    applied = np.searchsorted(ticks, wm_a[rest], side="left").astype(np.int64)
    pairs = (slo_a[rest], ts_a[rest], tot_a[rest], bad_a[rest], applied)
    cols = np.array(columns, dtype=np.int64)
    exact = tick_sums(w, first, tick, n_ticks, *pairs, columns=cols)
    every = range(len(windows_s))
    bounds = block_bounds(w, first, tick, n_ticks, block, *pairs, only=every, columns=cols)
    n_blocks = -(-n_ticks // block)
    for wi in every:
        bad_upper, total_lower = bounds[wi]
        assert bad_upper.shape == total_lower.shape == (n_blocks, len(columns))
        for k in range(n_ticks):
            j = k // block
            assert (total_lower[j] <= exact[wi, k, :, 0]).all(), (wi, k)
            assert (exact[wi, k, :, 1] <= bad_upper[j]).all(), (wi, k)
        if block == 1:  # a block of one tick: both are that tick's sums
            np.testing.assert_array_equal(bad_upper, exact[wi, :, :, 1])
            np.testing.assert_array_equal(total_lower, exact[wi, :, :, 0])


def test_runs_join_blocks_less_than_the_bridge_apart() -> None:
    flags = np.array([0, 1, 1, 0, 0, 1, 0, 0, 0, 1], dtype=bool)
    assert runs(flags, 2) == [(1, 6), (9, 10)]
    assert runs(flags, 1) == [(1, 3), (5, 6), (9, 10)]
    assert runs(np.zeros(4, dtype=bool), 2) == []


def three(cfg: Any, block: int) -> tuple[Evaluator, Evaluator]:
    """The tick-by-tick evaluator and one taking the event-driven pass from 1 tick on
    with blocks of `block` ticks."""
    ref = Evaluator(cfg)
    ref.multi_tick_from = None
    vec = Evaluator(cfg)
    vec.multi_tick_from = 1
    vec.multi_tick_max_columns = None
    vec.multi_tick_ticks_per_column = 0
    vec.multi_tick_block = block
    assert vec.multi_tick_unsupported() is None
    return ref, vec


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(st.tuples(dt, event), min_size=1, max_size=120),
    cuts=st.lists(st.integers(0, 150), max_size=10),
    advances=st.lists(st.tuples(st.integers(0, 150), st.floats(0, 900)), max_size=4),
    tick=st.sampled_from(["1s", "5s", "7s", "10s", "60s"]),
    lateness=st.sampled_from(["0s", "30s", "2m"]),
    options=st.sampled_from(OPTIONS),
    extra=st.sampled_from(["", "groups", "corrections", "groups corrections"]),
    block=st.sampled_from([1, 2, 3, 7, 16, 64]),
)
def test_the_event_driven_pass_equals_tick_by_tick(
    steps: list[tuple[float, Event]],
    cuts: list[int],
    advances: list[tuple[int, float]],
    tick: str,
    lateness: str,
    options: str,
    extra: str,
    block: int,
) -> None:
    cfg = make_config(tick, lateness, options, extra)
    ref, vec = three(cfg, block)
    after = dict(advances)
    got_ref: list[Transition] = []
    got_vec: list[Transition] = []
    for k, batch in enumerate(split(stamped(1_000_000_000.0, steps), cuts)):
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


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seconds=st.integers(1800, 4 * 3600),
    outages=st.lists(
        st.tuples(st.integers(0, 4 * 3600), st.integers(10, 1800), st.sampled_from(["api", "db"])),
        max_size=3,
    ),
    blips=st.lists(st.tuples(st.integers(0, 4 * 3600), st.sampled_from(["api", "db"])), max_size=6),
    block=st.integers(200, 5000),
    size=st.sampled_from([4, 16, 64]),
    options=st.sampled_from(OPTIONS),
    extra=st.sampled_from(["", "groups"]),
)
def test_sparse_streams_with_outages_are_evaluated_only_near_them(
    seconds: int,
    outages: list[tuple[int, int, str]],
    blips: list[tuple[int, str]],
    block: int,
    size: int,
    options: str,
    extra: str,
) -> None:
    """Hours of traffic at two services with outages and lone errors, in batches of many
    ticks: the same transitions and state as tick by tick, and (not vacuously) most
    ticks never summed exactly."""
    cfg = make_config("10s", "30s", options, extra)
    ref, vec = three(cfg, size)
    summed: list[int] = []
    original = vec._range_sums

    def counting(ticks: Any, k0: int, k1: int, *args: Any) -> Any:
        summed.append(k1 - k0)
        return original(ticks, k0, k1, *args)

    vec._range_sums = counting  # type: ignore[method-assign]
    start = 1_000_000_000.0
    lone = set(blips)
    events = []
    for s in range(0, seconds, 4):
        for service, op in (("api", "GET /a"), ("db", "q.read")):
            down = any(a <= s < a + d and svc == service for a, d, svc in outages)
            bad = down or any(abs(a - s) < 2 and svc == service for a, svc in lone)
            events.append(
                Event(
                    service=service,
                    operation=op,
                    ts=start + s,
                    status=503 if bad else 200,
                    latency_ms=20.0,
                    count=3,
                )
            )
    got_ref: list[Transition] = []
    got_vec: list[Transition] = []
    for i in range(0, len(events), block):
        batch = events[i : i + block]
        got_ref += ref.ingest(ref.classifier.columns(batch), stream_future=True)
        got_vec += vec.ingest(vec.classifier.columns(batch), stream_future=True)
        assert transitions_key(got_vec) == transitions_key(got_ref)
    got_ref += ref.flush()
    got_vec += vec.flush()
    assert transitions_key(got_vec) == transitions_key(got_ref)
    assert_same(ref, vec)
    ticks = seconds // 10
    outage_s = sum(d for _, d, _ in outages)
    if outage_s == 0 and not blips:
        assert sum(summed) == 0  # no bad event: nothing summed but the transitions
    elif seconds >= 3 * 3600 and outage_s < 600 and len(blips) <= 2:
        assert sum(summed) < ticks / 2  # far from an outage, nothing summed exactly


def test_an_outage_pages_and_quiet_hours_are_not_summed() -> None:
    """Not only equal: the page fires and resolves, and the hours without errors are
    skipped by the bounds."""
    cfg = make_config("10s", "30s", "", "")
    ev = Evaluator(cfg)
    summed: list[int] = []
    original = ev._range_sums

    def counting(ticks: Any, k0: int, k1: int, *args: Any) -> Any:
        summed.append(k1 - k0)
        return original(ticks, k0, k1, *args)

    ev._range_sums = counting  # type: ignore[method-assign]
    start = 1_000_000_000.0
    batch = [
        Event(service="api", ts=start + s, status=503 if 6000 <= s < 6300 else 200, count=5)
        for s in range(0, 14400, 2)
    ]
    trs = ev.ingest(ev.classifier.columns(batch), stream_future=True) + ev.flush()
    pages = [(tr.state, tr.slo) for tr in trs if tr.severity == "page"]
    assert ("firing", "api-avail") in pages
    assert ("resolved", "api-avail") in pages
    assert 0 < sum(summed) < 1440 / 2
