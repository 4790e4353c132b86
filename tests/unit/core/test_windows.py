"""Window sums against a naive full re-sum, for any batch split, late data and long gaps."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.config import Evaluation
from engine.core.ladder import (
    LADDER_S,
    MAX_WINDOW_S,
    level_sizes,
    max_span_error_s,
    resolution_for,
    span_error_s,
    tick_grain_s,
    window_bytes,
)
from engine.core.windows import RING_MAX, WindowSet
from tests.unit.core.reference import window_sum

WINDOWS = [60, 300, 1800, 3600, 21600, 86400]
AHEAD_S = 120
TICK_S = 10.0

DEFAULT_WINDOWS = [300, 1800, 3600, 7200, 21600, 86400, 259200]
"""The default policy's windows (5m, 30m, 1h, 2h, 6h, 1d, 3d)."""
THIRTY_DAYS = 2592000


@pytest.mark.parametrize(
    ("window_s", "expected_r", "worst_error_s"),
    [
        pytest.param(300, 10, 0, id="5m: 10s buckets, exact"),
        pytest.param(1800, 10, 0, id="30m: 10s buckets, exact"),
        pytest.param(3600, 10, 0, id="1h: 10s buckets, exact"),
        pytest.param(7200, 10, 0, id="2h: 10s buckets, exact"),
        pytest.param(21600, 30, 20, id="6h: 30s buckets, at most 20s short"),
        pytest.param(86400, 120, 110, id="1d: 2m buckets, at most 110s short"),
        pytest.param(259200, 300, 290, id="3d: 5m buckets, at most 290s short"),
        pytest.param(THIRTY_DAYS, 3600, 3590, id="30d: 1h buckets, at most 3590s short"),
    ],
)
def test_default_windows_at_the_default_tick_are_within_one_six_hundredth(
    window_s: int, expected_r: int, worst_error_s: int
) -> None:
    r = resolution_for(window_s, TICK_S)
    assert r == expected_r
    assert span_error_s(window_s, r, TICK_S) == worst_error_s
    assert worst_error_s <= max(window_s / 600, 1)


def test_the_default_policy_and_a_thirty_day_period_fit_in_64_kib_per_slo() -> None:
    ev = Evaluation()
    windows = [*DEFAULT_WINDOWS, THIRTY_DAYS]
    assert window_bytes(windows, ev.ahead_s, ev.tick_s) <= 64 * 1024
    ws = WindowSet(1000, windows, ahead_s=ev.ahead_s, tick_s=ev.tick_s)
    assert ws.nbytes() / 1000 <= 64 * 1024


def test_a_batch_is_aggregated_at_a_grain_every_ring_divides() -> None:
    """1d and 3d at a 10s tick are rings of 2 min and 5 min: neither divides the other,
    so a batch is aggregated per minute, not per bucket of the finest ring."""
    ws = WindowSet(1, [86400, 259200], ahead_s=AHEAD_S, tick_s=TICK_S)
    assert [lv.r for lv in ws.levels] == [120, 300]
    assert ws.grain_s == 60


# --- the ladder for windows no coarse step divides, and what windows cost ----------------

ODD_WINDOWS = [61, 299, 3599, 7207, 86401]
"""Windows no coarse ladder step divides: at 10 s, 1 s, 5 s, 10 s and 2 min buckets at
the 10 s tick."""


@pytest.mark.parametrize(
    ("window_s", "expected_r"),
    [
        pytest.param(3599, 5, id="1h less 1s uses 5s buckets, not 1s"),
        pytest.param(7207, 10, id="2h and 7s uses 10s buckets"),
        pytest.param(86401, 120, id="1d and 1s uses 2m buckets"),
        pytest.param(2591999, 1800, id="30d less 1s uses 30m buckets, not 2.6 million of 1s"),
        pytest.param(100000007, 86400, id="a prime number of seconds uses 1d buckets"),
        pytest.param(400 * 86400 + 3600, 43200, id="400d1h: 12h buckets, not the 1h dividing it"),
    ],
)
def test_a_window_no_coarse_step_divides_still_gets_a_coarse_one(
    window_s: int, expected_r: int
) -> None:
    r = resolution_for(window_s, TICK_S)
    assert r == expected_r
    assert span_error_s(window_s, r, TICK_S) <= window_s / 600


TICKS = st.sampled_from([1.0, 5.0, 10.0, 60.0, 7.0, 15.0, 1.5])
"""The ticks people use, an odd one and one with milliseconds (no alignment assumed)."""


@settings(max_examples=2000, deadline=None)
@given(window_s=st.integers(1, MAX_WINDOW_S), tick_s=TICKS)
def test_every_window_up_to_the_maximum_gets_the_coarsest_step_within_its_bound(
    window_s: int, tick_s: float
) -> None:
    r = resolution_for(window_s, tick_s)
    bound = max_span_error_s(window_s)
    assert span_error_s(window_s, r, tick_s) <= bound
    for step in LADDER_S:  # none coarser meets the bound, or the rule would have taken it
        if step > r:
            assert span_error_s(window_s, step, tick_s) > bound
    # never finer than the coarsest step of at most W/1200 (which always meets the bound),
    # so never 1 s buckets for a long window, and a bounded number of buckets
    assert r >= max(step for step in LADDER_S if step == 1 or step <= window_s / 1200)
    n = window_s // r
    assert n < 3600 if window_s >= 6000 else n <= window_s


def test_the_span_error_takes_the_tick_alignment_into_account() -> None:
    assert tick_grain_s(30, 10) == 10
    assert tick_grain_s(120, 60) == 60
    assert tick_grain_s(60, 1.5) == 0
    assert span_error_s(3600, 10, 10) == 0  # r divides the tick and W: exact
    assert span_error_s(3600, 60, 10) == 50  # the bucket's end is up to 50 s after t
    assert span_error_s(3601, 10, 10) == 1  # W mod r
    assert span_error_s(3600, 10, 1.5) == 10  # nothing assumed of a millisecond tick


@settings(max_examples=100, deadline=None)
@given(
    windows=st.lists(st.integers(1, MAX_WINDOW_S), min_size=1, max_size=6),
    ahead_s=st.floats(0, 90_000, allow_nan=False),
    tick_s=TICKS,
    n_slo=st.integers(1, 3),
)
def test_the_memory_estimate_is_what_a_window_set_allocates(
    windows: list[int], ahead_s: float, tick_s: float, n_slo: int
) -> None:
    ws = WindowSet(n_slo, windows, ahead_s=ahead_s, tick_s=tick_s)
    assert ws.nbytes() == n_slo * window_bytes(windows, ahead_s, tick_s)
    sizes = level_sizes(ws.windows_s, ahead_s, tick_s)
    assert [(lv.resolution_s, lv.length) for lv in ws.state().levels] == [
        (size.resolution_s, size.length) for size in sizes
    ]


def test_a_prime_period_costs_kilobytes_not_megabytes() -> None:
    """30d less a second is not a whole number of 1 h buckets: it takes 30 min ones, 1,443
    buckets instead of 724 (11 KiB more), not 2.6 million of 1 s."""
    ahead_s = 600 + 60 + 20
    with_odd = window_bytes([*DEFAULT_WINDOWS, 2591999], ahead_s, TICK_S)
    assert with_odd < 96 * 1024
    assert with_odd - window_bytes([*DEFAULT_WINDOWS, THIRTY_DAYS], ahead_s, TICK_S) < 16 * 1024


# --- what a window counts at the evaluation times, against exact sets of events ---------

EDGE_WINDOWS = [*DEFAULT_WINDOWS, THIRTY_DAYS, 61, 299, 3599, 7207, 86401, 2591999, 100003]
"""The default policy's windows, 30 days, and windows no coarse step divides."""


@st.composite
def grid_cases(draw: st.DrawFn) -> tuple[int, float, float, int, list[tuple[int, bool]]]:
    """(W, tick, t = k * tick, ticks between the first writes and t, [(age in eighths of a
    second, written after the advance to t)]). Ages are eighths so that `t - age` is exact
    in float64; they run from events ahead of t (the evaluator holds up to its future
    limit) to well past W, and include the edges W, W - max(W/600, 1 s), 0."""
    window_s = draw(st.one_of(st.sampled_from(EDGE_WINDOWS), st.integers(1, 40 * 86400)))
    tick_s = draw(st.sampled_from([1.0, 5.0, 10.0, 60.0]))
    k = draw(st.integers(math.ceil(1e9 / tick_s), math.floor(2e9 / tick_s)))
    lag = draw(st.integers(0, 3))
    r = resolution_for(window_s, tick_s)
    e = max_span_error_s(window_s)
    edges = [window_s, window_s - e, 0, -e, window_s - span_error_s(window_s, r, tick_s)]
    edge_eighths = sorted(
        {f(x * 8) + d for x in edges for f in (math.floor, math.ceil) for d in (-1, 0, 1)}
    )
    age = st.one_of(
        st.integers(-60 * 8, (window_s + 2 * r + 10) * 8),
        st.sampled_from(edge_eighths).filter(lambda a: a >= -60 * 8),
    )
    events = draw(st.lists(st.tuples(age, st.booleans()), max_size=48))
    return window_s, tick_s, k * tick_s, lag, events


@settings(max_examples=400, deadline=None)
@given(case=grid_cases())
def test_at_every_tick_a_window_counts_all_but_its_oldest_w_over_600_and_nothing_older(
    case: tuple[int, float, float, int, list[tuple[int, bool]]],
) -> None:
    """Event i weighs 2^i, so the window's total says exactly which events it counts.
    At t = k * tick, every event of age in [0, W - e) is counted and none of age W or more,
    with e = max(W/600, 1 s); one ahead of t counts only when less than e ahead; and a
    window whose span error is 0 is exactly (t - W, t]. Half the events are written
    before the advance to t (summed as the window moves), half after (late writes)."""
    window_s, tick_s, t, lag, events = case
    ahead_s = 60 + 4 * tick_s
    ws = WindowSet(1, [window_s], ahead_s=ahead_s, tick_s=tick_s)
    ws.advance_to(t - lag * tick_s - window_s - tick_s)
    ws.advance_to(t - lag * tick_s)
    ts = [t - a / 8 for a, _ in events]
    for after in (False, True):
        rows = [i for i, (_, late) in enumerate(events) if late == after]
        if rows:
            ws.add(
                np.zeros(len(rows), dtype=np.int32),
                np.array([ts[i] for i in rows]),
                np.array([1 << i for i in rows], dtype=np.int64),
                np.zeros(len(rows), dtype=np.int64),
            )
        if not after:
            ws.advance_to(t)
    got = int(ws.sums(window_s)[0, 0])
    e = max_span_error_s(window_s)
    exact = span_error_s(window_s, ws.resolution_s(window_s), tick_s) == 0
    for i, (a8, _) in enumerate(events):
        age = t - ts[i]
        assert age == a8 / 8
        counted = bool(got >> i & 1)
        if 0 <= age < window_s - e:
            assert counted, (i, age)
        if age >= window_s:
            assert not counted, (i, age)
        if counted:
            assert age >= -e, (i, age)
        if exact:
            assert counted == (0 <= age < window_s), (i, age)


# A program is a list of steps: ("add", [(slo, offset_s, total, bad), ...]) relative to the
# current evaluation time, or ("advance", delta_s).
step = st.one_of(
    st.tuples(
        st.just("add"),
        st.lists(
            st.tuples(
                st.integers(0, 2),
                st.floats(-60, AHEAD_S, allow_nan=False),
                st.integers(1, 5),
                st.integers(0, 1),
            ),
            max_size=12,
        ),
    ),
    st.tuples(
        st.just("advance"),
        st.one_of(
            st.floats(0.5, 30),
            st.sampled_from([5.0, 60.0, 299.0, 3600.0, 7200.0, 90000.0, 3 * 86400.0]),
        ),
    ),
)


@settings(max_examples=150, deadline=None)
@given(start=st.floats(1e9, 2e9, allow_nan=False), program=st.lists(step, max_size=25))
def test_window_sums_equal_a_naive_full_resum(
    start: float, program: list[tuple[str, object]]
) -> None:
    ws = WindowSet(3, WINDOWS, ahead_s=AHEAD_S, tick_s=TICK_S)
    t: float = math.floor(start)
    ws.advance_to(t)
    applied: list[tuple[int, float, int, int]] = []
    for kind, arg in program:
        if kind == "add":
            rows = [(s, t + off, tot, min(bad * tot, tot)) for s, off, tot, bad in arg]  # type: ignore[attr-defined]
            if rows:
                ws.add(
                    np.array([r[0] for r in rows], dtype=np.int32),
                    np.array([r[1] for r in rows]),
                    np.array([r[2] for r in rows], dtype=np.int64),
                    np.array([r[3] for r in rows], dtype=np.int64),
                )
                applied.extend(rows)
        else:
            t = t + float(arg)  # type: ignore[arg-type]
            ws.advance_to(t)
        for w in WINDOWS:
            got = ws.sums(w)
            for slo in range(3):
                assert tuple(got[slo]) == window_sum(applied, slo, t, w, TICK_S), (w, slo)


@pytest.mark.parametrize(
    "windows",
    [
        pytest.param(ODD_WINDOWS, id="windows no coarse step divides"),
        pytest.param([86400, 259200], id="rings of 2m and 5m, aggregated per minute"),
    ],
)
@settings(max_examples=100, deadline=None)
@given(start=st.floats(1e9, 2e9, allow_nan=False), program=st.lists(step, max_size=25))
def test_odd_windows_and_rings_equal_a_naive_full_resum(
    windows: list[int], start: float, program: list[tuple[str, object]]
) -> None:
    ws = WindowSet(2, windows, ahead_s=AHEAD_S, tick_s=TICK_S)
    t: float = math.floor(start)
    ws.advance_to(t)
    applied: list[tuple[int, float, int, int]] = []
    for kind, arg in program:
        if kind == "add":
            rows = [(s % 2, t + off, tot, min(bad * tot, tot)) for s, off, tot, bad in arg]  # type: ignore[attr-defined]
            if rows:
                ws.add(
                    np.array([r[0] for r in rows], dtype=np.int32),
                    np.array([r[1] for r in rows]),
                    np.array([r[2] for r in rows], dtype=np.int64),
                    np.array([r[3] for r in rows], dtype=np.int64),
                )
                applied.extend(rows)
        else:
            t = t + float(arg)  # type: ignore[arg-type]
            ws.advance_to(t)
        for w in windows:
            got = ws.sums(w)
            for slo in range(2):
                assert tuple(got[slo]) == window_sum(applied, slo, t, w, TICK_S), (w, slo)


@settings(max_examples=100, deadline=None)
@given(
    t=st.floats(1e9, 2e9, allow_nan=False),
    offsets=st.lists(st.floats(0, 90000, allow_nan=False), max_size=40),
)
def test_off_the_tick_grid_a_window_is_within_a_bucket_and_w_mod_r(
    t: float, offsets: list[float]
) -> None:
    """A WindowSet advanced to a time off its tick grid (the evaluator never is) still
    counts every event younger than W - r - (W mod r) and none of age W or more."""
    windows = sorted({*WINDOWS, *ODD_WINDOWS})
    ws = WindowSet(1, windows, ahead_s=AHEAD_S, tick_s=TICK_S)
    ws.advance_to(t - 100000)
    ts = np.array([t - o for o in offsets])
    ws.advance_to(t)
    ws.add(
        np.zeros(len(ts), dtype=np.int32),
        ts,
        np.ones(len(ts), np.int64),
        np.zeros(len(ts), np.int64),
    )
    for w in windows:
        r = ws.resolution_s(w)
        got = int(ws.sums(w)[0, 0])
        assert sum(1 for o in offsets if o < w - r - w % r) <= got
        assert got <= sum(1 for o in offsets if o < w)


def test_a_gap_longer_than_every_ring_clears_all_windows() -> None:
    ws = WindowSet(2, WINDOWS, ahead_s=AHEAD_S, tick_s=TICK_S)
    ws.advance_to(1_000_000)
    ws.add(
        np.array([0, 1], np.int32),
        np.array([999_990.0, 999_999.0]),
        np.array([5, 7]),
        np.array([1, 2]),
    )
    assert ws.sums(60).tolist() == [[5, 1], [7, 2]]
    ws.advance_to(1_000_000 + 10 * 86400)
    assert not ws.all_sums.any()
    ws.add(
        np.array([0], np.int32),
        np.array([1_000_000 + 10 * 86400 - 1.0]),
        np.array([1]),
        np.array([0]),
    )
    assert ws.sums(86400).tolist() == [[1, 0], [0, 0]]


def filled_window_set() -> WindowSet:
    ws = WindowSet(2, WINDOWS, ahead_s=AHEAD_S, tick_s=TICK_S)
    ws.advance_to(1_000_000)
    ws.add(
        np.array([0, 1, 1], np.int32),
        np.array([999_990.0, 999_999.0, 1_000_030.0]),
        np.array([5, 7, 2]),
        np.array([1, 2, 2]),
    )
    return ws


def test_state_loaded_into_a_new_set_carries_on_identically() -> None:
    ws = filled_window_set()
    other = WindowSet(2, WINDOWS, ahead_s=AHEAD_S, tick_s=TICK_S)
    other.load_state(ws.state())
    for w in (ws, other):
        w.advance_to(1_000_100)
        w.add(np.array([0], np.int32), np.array([1_000_099.0]), np.array([3]), np.array([0]))
        w.advance_to(1_004_000)
    np.testing.assert_array_equal(other.all_sums, ws.all_sums)
    for a, b in zip(other.state().levels, ws.state().levels, strict=True):
        assert (a.resolution_s, a.length, a.head) == (b.resolution_s, b.length, b.head)
        np.testing.assert_array_equal(a.buckets, b.buckets)


def test_what_a_window_set_hands_out_is_read_only() -> None:
    ws = filled_window_set()
    state = ws.state()
    for array in (ws.all_sums, ws.sums(60), state.sums, *(lv.buckets for lv in state.levels)):
        with pytest.raises(ValueError, match="read-only"):
            array[...] = 0
    assert ws.sums(60).tolist() == [[5, 1], [7, 2]]


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(lambda: WindowSet(3, WINDOWS, ahead_s=AHEAD_S, tick_s=TICK_S), id="more SLOs"),
        pytest.param(
            lambda: WindowSet(2, WINDOWS[1:], ahead_s=AHEAD_S, tick_s=TICK_S), id="other windows"
        ),
        pytest.param(
            lambda: WindowSet(2, WINDOWS, ahead_s=10 * AHEAD_S, tick_s=TICK_S), id="longer rings"
        ),
    ],
)
def test_state_of_another_shape_is_refused_and_changes_nothing(other: object) -> None:
    target = filled_window_set()
    before = target.state()
    sums, heads = before.sums.copy(), [lv.head for lv in before.levels]
    with pytest.raises(ValueError, match="expected"):
        target.load_state(other().state())  # type: ignore[operator]
    np.testing.assert_array_equal(target.all_sums, sums)
    assert [lv.head for lv in target.state().levels] == heads
    assert target.t == 1_000_000


# --- large weights: exact int64 sums, and saturation instead of overflow -----------------

INT64_MAX = 2**63 - 1


def _add_rows(ws: WindowSet, rows: list[tuple[int, float, int, int]]) -> None:
    ws.add(
        np.array([r[0] for r in rows], dtype=np.int32),
        np.array([r[1] for r in rows]),
        np.array([r[2] for r in rows], dtype=np.int64),
        np.array([r[3] for r in rows], dtype=np.int64),
    )


def heavy_steps(max_weight: int) -> st.SearchStrategy[tuple[str, object]]:
    """Programs like `step`, with weights up to `max_weight` (at most 12 rows a batch)."""
    return st.one_of(
        st.tuples(
            st.just("add"),
            st.lists(
                st.tuples(
                    st.integers(0, 2),
                    st.floats(-60, AHEAD_S, allow_nan=False),
                    st.one_of(st.integers(1, max_weight), st.just(max_weight)),
                    st.floats(0, 1),
                ),
                max_size=12,
            ),
        ),
        st.tuples(st.just("advance"), st.sampled_from([0.5, 5.0, 60.0, 299.0, 3600.0, 90000.0])),
    )


@settings(max_examples=100, deadline=None)
@given(
    start=st.floats(1e9, 2e9, allow_nan=False),
    program=st.lists(heavy_steps(2**40), max_size=25),
)
def test_large_weights_sum_exactly_like_python_ints(
    start: float, program: list[tuple[str, object]]
) -> None:
    """Weights far past 2^53 (where float sums lose units) and sums near 2^45 are exact:
    the reference adds Python ints."""
    run_heavy_program(WindowSet(3, WINDOWS, ahead_s=AHEAD_S, tick_s=TICK_S), start, program)


def run_heavy_program(
    ws: WindowSet, start: float, program: list[tuple[str, object]]
) -> list[tuple[int, float, int, int]]:
    """Run a `heavy_steps` program on the 3 SLOs of `ws`, checking after every step that
    each window equals a re-sum of Python ints; the rows added."""
    t: float = math.floor(start)
    ws.advance_to(t)
    applied: list[tuple[int, float, int, int]] = []
    for kind, arg in program:
        if kind == "add":
            rows = [(s, t + off, tot, int(tot * share)) for s, off, tot, share in arg]  # type: ignore[attr-defined]
            if rows:
                _add_rows(ws, rows)
                applied.extend(rows)
        else:
            t = t + float(arg)  # type: ignore[arg-type]
            ws.advance_to(t)
        for w in WINDOWS:
            got = ws.sums(w)
            for slo in range(3):
                assert tuple(int(x) for x in got[slo]) == window_sum(applied, slo, t, w, TICK_S)
    return applied


def test_weights_past_two_to_the_53_are_not_rounded() -> None:
    ws = WindowSet(1, WINDOWS, ahead_s=AHEAD_S, tick_s=TICK_S)
    ws.advance_to(1_000_000)
    big = 2**53 + 1  # the first integer a float64 cannot hold
    _add_rows(ws, [(0, 999_999.0, big, big), (0, 999_999.5, 1, 0), (0, 999_999.7, big, 1)])
    assert ws.sums(60).tolist() == [[2 * big + 1, big + 1]]


# --- compact rings: uint32 buckets, promoted to int64 when one would overflow -----------


def _dtypes(ws: WindowSet) -> list[str]:
    return [lv.buckets.dtype.name for lv in ws.state().levels]


@settings(max_examples=100, deadline=None)
@given(
    start=st.floats(1e9, 2e9, allow_nan=False),
    program=st.lists(heavy_steps(2**31), max_size=25),
)
def test_rings_stay_uint32_until_a_bucket_would_overflow_and_sums_stay_exact(
    start: float, program: list[tuple[str, object]]
) -> None:
    """Weights around 2^31 take a bucket past 2^32 - 1 after a few batches: the level is
    promoted before it would wrap, only then, and every window equals a re-sum of Python
    ints before and after."""
    ws = WindowSet(3, WINDOWS, ahead_s=AHEAD_S, tick_s=TICK_S)
    assert set(_dtypes(ws)) == {"uint32"}
    applied = run_heavy_program(ws, start, program)
    if sum(tot for _, _, tot, _ in applied) <= RING_MAX:
        assert set(_dtypes(ws)) == {"uint32"}, "promoted with no bucket near 2^32"


def test_a_bucket_past_two_to_the_32_promotes_its_level_for_every_slo() -> None:
    ws = WindowSet(2, WINDOWS, ahead_s=AHEAD_S, tick_s=TICK_S)
    ws.advance_to(1_000_000)
    _add_rows(ws, [(0, 999_999.0, RING_MAX, 0)])
    assert set(_dtypes(ws)) == {"uint32"}, "exactly 2^32 - 1 still fits"
    before = ws.nbytes()
    _add_rows(ws, [(0, 999_999.5, 1, 1), (1, 999_999.0, 3, 0)])
    assert set(_dtypes(ws)) == {"int64"}
    assert ws.nbytes() > before
    assert ws.sums(60).tolist() == [[RING_MAX + 1, 1], [3, 0]]
    ws.advance_to(1_000_030)
    assert ws.sums(60).tolist() == [[RING_MAX + 1, 1], [3, 0]]
    ws.advance_to(1_000_100)
    assert ws.sums(60).tolist() == [[0, 0], [0, 0]]
    assert ws.sums(300).tolist() == [[RING_MAX + 1, 1], [3, 0]]


def test_saved_int64_rings_load_compact_when_they_fit_and_promoted_when_not() -> None:
    small, big = filled_window_set(), filled_window_set()
    _add_rows(big, [(1, 999_999.0, RING_MAX, 0)])
    assert set(_dtypes(big)) == {"int64"}
    widened = small.state()
    widened = type(widened)(
        t_s=widened.t_s,
        levels=tuple(
            type(lv)(lv.resolution_s, lv.length, lv.head, lv.buckets.astype(np.int64))
            for lv in widened.levels
        ),
        sums=widened.sums,
    )
    for saved, dtype in ((widened, "uint32"), (big.state(), "int64")):
        fresh = WindowSet(2, WINDOWS, ahead_s=AHEAD_S, tick_s=TICK_S)
        fresh.load_state(saved)
        assert set(_dtypes(fresh)) == {dtype}
        for a, b in zip(fresh.state().levels, saved.levels, strict=True):
            np.testing.assert_array_equal(a.buckets, b.buckets)
        np.testing.assert_array_equal(fresh.all_sums, saved.sums)


def test_a_saved_ring_with_a_negative_count_is_refused() -> None:
    saved = filled_window_set().state()
    bad = saved.levels[0].buckets.astype(np.int64)
    bad[0, 0] = -1
    broken = type(saved)(
        t_s=saved.t_s,
        levels=(
            type(saved.levels[0])(
                saved.levels[0].resolution_s, saved.levels[0].length, saved.levels[0].head, bad
            ),
            *saved.levels[1:],
        ),
        sums=saved.sums,
    )
    with pytest.raises(ValueError, match="negative count"):
        WindowSet(2, WINDOWS, ahead_s=AHEAD_S, tick_s=TICK_S).load_state(broken)


class SaturatingRings:
    """Naive model of the rings with saturating buckets: a dict per level from
    (slo, bucket) to [total, bad], Python ints, each bucket capped at
    (2^63 - 1) // ring length after each batch, bad <= total."""

    def __init__(self, ws: WindowSet) -> None:
        self.levels = [(lv.resolution_s, lv.length) for lv in ws.state().levels]
        self.cells: list[dict[tuple[int, int], list[int]]] = [{} for _ in self.levels]
        self.heads: list[int | None] = [None] * len(self.levels)

    def _move(self, i: int, b: int) -> None:
        head = self.heads[i]
        if head is None or b > head:
            self.heads[i] = b
            length = self.levels[i][1]
            self.cells[i] = {k: v for k, v in self.cells[i].items() if k[1] > b - length}

    def add(self, rows: list[tuple[int, float, int, int]]) -> None:
        for i, (r, length) in enumerate(self.levels):
            batch: dict[tuple[int, int], list[int]] = {}
            for s, ts, tot, bad in rows:
                cell = batch.setdefault((s, math.ceil(ts / r) - 1), [0, 0])
                cell[0] += tot
                cell[1] += bad
            self._move(i, max(b for _, b in batch))
            head = self.heads[i]
            assert head is not None
            cap = INT64_MAX // length
            for key, (tot, bad) in batch.items():
                if key[1] <= head - length:
                    continue
                old = self.cells[i].setdefault(key, [0, 0])
                old[0] = min(old[0] + tot, cap)
                old[1] = min(old[1] + bad, old[0])

    def advance(self, t: float) -> None:
        for i, (r, _) in enumerate(self.levels):
            self._move(i, math.ceil(t / r) - 1)

    def window(self, ws: WindowSet, slo: int, t: float, w: int) -> tuple[int, int]:
        i = [r for r, _ in self.levels].index(ws.resolution_s(w))
        r = self.levels[i][0]
        hi = math.ceil(t / r) - 1
        lo = hi - ws.buckets[ws.index(w)] + 1
        total = bad = 0
        for (s, b), (tot, bd) in self.cells[i].items():
            if s == slo and lo <= b <= hi:
                total += tot
                bad += bd
        return total, bad


@settings(max_examples=150, deadline=None)
@given(
    start=st.floats(1e9, 2e9, allow_nan=False),
    program=st.lists(heavy_steps(2**58), max_size=25),
)
def test_hostile_weights_saturate_buckets_and_never_wrap(
    start: float, program: list[tuple[str, object]]
) -> None:
    """Weights up to 2^58 (a batch still sums below 2^63): buckets saturate as the naive
    model says, every window stays in [0, 2^63 - 1] with bad <= total, and the window
    sums stay equal to a re-sum of the rings."""
    ws = WindowSet(3, WINDOWS, ahead_s=AHEAD_S, tick_s=TICK_S)
    model = SaturatingRings(ws)
    t: float = math.floor(start)
    ws.advance_to(t)
    model.advance(t)
    for kind, arg in program:
        if kind == "add":
            rows = [(s, t + off, tot, int(tot * share)) for s, off, tot, share in arg]  # type: ignore[attr-defined]
            if rows:
                _add_rows(ws, rows)
                model.add(rows)
        else:
            t = t + float(arg)  # type: ignore[arg-type]
            ws.advance_to(t)
            model.advance(t)
        sums = ws.all_sums
        assert (sums >= 0).all()
        assert (sums[..., 1] <= sums[..., 0]).all()
        for w in WINDOWS:
            for slo in range(3):
                got = tuple(int(x) for x in ws.sums(w)[slo])
                assert got == model.window(ws, slo, t, w), (w, slo)
        for level in ws.state().levels:
            assert (level.buckets >= 0).all()
            assert (level.buckets <= INT64_MAX // level.length).all()
