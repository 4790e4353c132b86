"""Columns whose sums are summed once and shared: the helpers against per-column loops,
and a backtest's combined evaluator taking the multi-tick pass with its copies sharing
their SLO's sums gives the same transitions, alert state, windows, counts and snapshot
as the same evaluator summing every copy itself, and as ticking it one by one."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.backtest import Candidate, combine, copy_name
from engine.core.config import Correction, PolicyRow
from engine.core.decode import Event
from engine.core.evaluator import Evaluator, Transition
from engine.core.shared_columns import Copies, Sources, copies_of
from engine.core.windows import WindowSet
from tests.unit.core.reference import split, stamped
from tests.unit.core.test_multitick import OPTIONS, assert_same, dt, event, make_config
from tests.unit.core.test_multitick import transitions_key as key


@st.composite
def source_maps(draw: st.DrawFn) -> np.ndarray:
    """A column source map: each column's source is the lowest column of its class."""
    classes = draw(st.lists(st.integers(0, 4), min_size=1, max_size=12))
    first: dict[int, int] = {}
    return np.array([first.setdefault(c, i) for i, c in enumerate(classes)], dtype=np.int64)


@settings(max_examples=200, deadline=None)
@given(source=source_maps(), data=st.data())
def test_sources_expand_to_each_columns_source(source: np.ndarray, data: st.DataObject) -> None:
    n = len(source)
    columns = np.array(
        sorted(data.draw(st.sets(st.integers(0, n - 1), min_size=1))), dtype=np.int64
    )
    src = Sources.of(source, columns)
    assert sorted(set(source[columns].tolist())) == src.columns.tolist()
    # sums of every source column: (windows, ticks, len(src.columns), 2)
    sums = np.arange(3 * 2 * len(src.columns) * 2, dtype=np.float64).reshape(
        3, 2, len(src.columns), 2
    )
    for only in (None, [0, 2]):
        got = src.expand(sums, only)
        assert got.shape == (3, 2, len(columns), 2)
        for w in range(3) if only is None else only:  # the others: the caller's to fill
            for i, c in enumerate(columns.tolist()):
                j = src.columns.tolist().index(int(source[c]))
                np.testing.assert_array_equal(got[w, :, i], sums[w, :, j])
    # the plain map (None) and columns that are their own sources change nothing
    assert Sources.of(None, columns).position is None
    assert Sources.of(np.arange(n), columns).position is None


@settings(max_examples=200, deadline=None)
@given(source=source_maps(), data=st.data())
def test_copies_hand_each_sources_rows_to_every_column_of_it(
    source: np.ndarray, data: st.DataObject
) -> None:
    n = len(source)
    sources = sorted(set(source.tolist()))
    column = np.array(data.draw(st.lists(st.sampled_from(sources), max_size=20)), dtype=np.int64)
    value = np.arange(len(column), dtype=np.int64) * 10
    got_col, got_value = Copies.of(source).expand(column, value)
    want = sorted(
        (c, int(v))
        for s, v in zip(column.tolist(), value, strict=True)
        for c in range(n)
        if source[c] == s
    )
    assert sorted(zip(got_col.tolist(), got_value.tolist(), strict=True)) == want


@settings(max_examples=200, deadline=None)
@given(
    source=st.one_of(
        source_maps(),
        st.builds(copies_of, st.integers(1, 4), st.integers(1, 5)),
    ),
    rows=st.integers(1, 6),
    data=st.data(),
)
def test_mirror_copies_each_sources_cells_in_the_rows_given(
    source: np.ndarray, rows: int, data: st.DataObject
) -> None:
    # a ring's grid is a reshaped view too; a column-strided one must be written in place
    base = np.arange(rows * len(source) * 4, dtype=np.uint32).reshape(rows, 2 * len(source), 2)
    grid = base[:, ::2] if data.draw(st.booleans()) else base[:, : len(source)]
    lo = data.draw(st.integers(0, rows))
    hi = data.draw(st.integers(lo, rows))
    want = grid.copy()
    for r in range(lo, hi):
        for c in range(len(source)):
            want[r, c] = grid[r, source[c]]
    Copies.of(source).mirror(grid, slice(lo, hi))
    np.testing.assert_array_equal(grid, want)


@settings(max_examples=200, deadline=None)
@given(
    n_copies=st.integers(1, 3),
    columns=st.integers(1, 3),
    steps=st.lists(
        st.tuples(
            st.floats(0, 400),  # how far the evaluation time moves first
            st.lists(  # events: column, age (negative: ahead), total (half of it bad)
                st.tuples(st.integers(0, 2), st.floats(-5, 3000), st.integers(1, 9)),
                max_size=12,
            ),
        ),
        max_size=12,
    ),
)
def test_windows_counting_sources_and_copying_equal_counting_every_copy(
    n_copies: int, columns: int, steps: list[tuple[float, list[tuple[int, float, int]]]]
) -> None:
    """Events older than a ring (dropped), ahead of the evaluation time, and in batches
    spread over several buckets: the rings and sums are those of counting every copy."""
    source = copies_of(n_copies, columns)
    copies = Copies.of(source)
    make = lambda: WindowSet(n_copies * columns, [60, 300, 1800], ahead_s=10, tick_s=10)  # noqa: E731
    plain, shared = make(), make()
    t = 1_000_000.0
    for move, events in steps:
        t += move
        for ws in (plain, shared):
            ws.advance_to(t)
        if not events:
            continue
        col = np.array([c % columns for c, _, _ in events], dtype=np.int32)
        ts = np.array([t - max(age, -9.0) for _, age, _ in events])
        total = np.array([n for _, _, n in events], dtype=np.int64)
        bad = total // 2
        shared.add(col, ts, total, bad, copies)
        every = np.concatenate([col + k * columns for k in range(n_copies)]).astype(np.int32)
        plain.add(every, np.tile(ts, n_copies), np.tile(total, n_copies), np.tile(bad, n_copies))
        a, b = plain.state(), shared.state()
        np.testing.assert_array_equal(b.sums, a.sums)
        for la, lb in zip(a.levels, b.levels, strict=True):
            assert (la.head, la.buckets.dtype) == (lb.head, lb.buckets.dtype)
            np.testing.assert_array_equal(lb.buckets, la.buckets)


def test_copies_share_the_first_copys_columns() -> None:
    assert copies_of(3, 2).tolist() == [0, 1, 0, 1, 0, 1]


ROWS = st.lists(
    st.builds(
        PolicyRow,
        severity=st.sampled_from(["page", "ticket"]),
        long=st.sampled_from(["5m", "10m", "30m", "1h"]),  # 1h: the SLOs' period too
        short=st.sampled_from(["1m", "2m", "5m"]),
        burn_rate=st.sampled_from([1.0, 2.0, 4.0, 10.0]),
    ),
    min_size=1,
    max_size=3,
)
ALERTS = st.fixed_dictionaries(
    {
        "for_": st.sampled_from(["0s", "20s", "1m"]),
        "keep_firing_for": st.sampled_from(["0s", "40s"]),
        "min_events": st.sampled_from([0, 3]),
    }
)


def forced(ev: Evaluator, block: int | None) -> Evaluator:
    """`ev` taking the multi-tick pass from 1 tick on (`block`: its bounds' block, None:
    sums at every tick), or tick by tick (block 0)."""
    if block == 0:
        ev.multi_tick_from = None
        return ev
    ev.multi_tick_from = 1
    ev.multi_tick_max_columns = None
    ev.multi_tick_ticks_per_column = 0
    ev.multi_tick_block = block
    assert ev.multi_tick_unsupported() is None
    return ev


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    candidates=st.lists(st.tuples(ROWS, ALERTS), min_size=1, max_size=3),
    steps=st.lists(st.tuples(dt, event), min_size=1, max_size=120),
    cuts=st.lists(st.integers(0, 150), max_size=8),
    advances=st.lists(st.tuples(st.integers(0, 150), st.floats(0, 900)), max_size=3),
    tick=st.sampled_from(["1s", "5s", "10s"]),
    options=st.sampled_from(OPTIONS),
    extra=st.sampled_from(["", "groups", "corrections", "groups corrections"]),
    block=st.sampled_from([None, 1, 3, 16, 64]),
    runtime_correction=st.booleans(),
)
def test_copies_sharing_their_sums_equal_copies_summing_their_own(
    candidates: list[tuple[list[PolicyRow], dict[str, Any]]],
    steps: list[tuple[float, Event]],
    cuts: list[int],
    advances: list[tuple[int, float]],
    tick: str,
    options: str,
    extra: str,
    block: int | None,
    runtime_correction: bool,
) -> None:
    cfg = make_config(tick, "30s", options, extra)
    cands = [Candidate("config", None, cfg.evaluation)] + [
        Candidate(
            f"c{i}",
            tuple(rows),
            msgspec.structs.replace(cfg.evaluation, **alerts),
        )
        for i, (rows, alerts) in enumerate(candidates)
    ]
    [combined] = combine(cfg, cands)
    shared = forced(combined.evaluator(), block)
    assert shared.column_source is not None
    plain = forced(combined.evaluator(), block)
    plain.column_source = None
    ref = forced(combined.evaluator(), 0)
    ref_plain = forced(combined.evaluator(), 0)
    ref_plain.column_source = None
    evaluators = (ref, plain, shared, ref_plain)
    if runtime_correction:  # tells the first copy of api-avail apart from the others
        fix = Correction(
            name="fix",
            start=1_000_000_300,
            duration="10m",
            slos=[copy_name("api-avail", 0)],
            reason="test",
        )
        for ev in evaluators:
            ev.add_correction(fix)
    got: list[list[Transition]] = [[], [], [], []]
    after = dict(advances)

    def check() -> None:
        assert key(got[3]) == key(got[2]) == key(got[1]) == key(got[0])
        assert_same(plain, shared)
        assert_same(ref, shared)
        assert_same(ref_plain, ref)

    for k, batch in enumerate(split(stamped(1_000_000_000.0, steps), cuts)):
        for i, ev in enumerate(evaluators):
            got[i] += ev.ingest(ev.classifier.columns(batch), stream_future=True)
        check()
        if k in after and math.isfinite(ref.watermark_s):
            for i, ev in enumerate(evaluators):
                got[i] += ev.advance(ev.watermark_s + after[k])
            check()
    for i, ev in enumerate(evaluators):
        got[i] += ev.flush()
    check()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    candidates=st.lists(st.tuples(ROWS, ALERTS), min_size=1, max_size=3),
    seconds=st.integers(1800, 3 * 3600),
    outages=st.lists(
        st.tuples(st.integers(0, 3 * 3600), st.integers(10, 1800), st.sampled_from(["api", "db"])),
        min_size=1,
        max_size=3,
    ),
    block=st.integers(50, 3000),
    size=st.sampled_from([None, 4, 64]),
    options=st.sampled_from(OPTIONS),
    extra=st.sampled_from(["", "groups"]),
)
def test_outages_fire_and_resolve_alike_in_every_copy(
    candidates: list[tuple[list[PolicyRow], dict[str, Any]]],
    seconds: int,
    outages: list[tuple[int, int, str]],
    block: int,
    size: int | None,
    options: str,
    extra: str,
) -> None:
    """Hours of traffic on two services with outages at their own times, in batches
    spanning many ticks: the copies' alerts fire and resolve, and sharing sums changes
    none of them."""
    cfg = make_config("10s", "30s", options, extra)
    cands = [Candidate("config", None, cfg.evaluation)] + [
        Candidate(f"c{i}", tuple(rows), msgspec.structs.replace(cfg.evaluation, **alerts))
        for i, (rows, alerts) in enumerate(candidates)
    ]
    [combined] = combine(cfg, cands)
    shared = forced(combined.evaluator(), size)
    plain = forced(combined.evaluator(), size)
    plain.column_source = None
    ref = forced(combined.evaluator(), 0)
    ref_plain = forced(combined.evaluator(), 0)
    ref_plain.column_source = None
    evaluators = (ref, plain, shared, ref_plain)
    start = 1_000_000_000.0
    events = []
    for s in range(0, seconds, 5):
        for service, op in (("api", "q.read"), ("db", "q.read"), ("api", "w.write")):
            down = any(a <= s < a + d and service == on for a, d, on in outages)
            events.append(
                Event(service=service, operation=op, ts=start + s, status=503 if down else 200)
            )
    got: list[list[Transition]] = [[], [], [], []]
    for i in range(0, len(events), block):
        batch = events[i : i + block]
        for k, ev in enumerate(evaluators):
            got[k] += ev.ingest(ev.classifier.columns(batch), stream_future=True)
    for k, ev in enumerate(evaluators):
        got[k] += ev.flush()
    assert key(got[3]) == key(got[2]) == key(got[1]) == key(got[0])
    assert_same(plain, shared)
    assert_same(ref, shared)
    assert_same(ref_plain, ref)
