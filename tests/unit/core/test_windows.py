"""Window sums against a naive full re-sum, for any batch split, late data and long gaps."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.ladder import MAX_WINDOW_S, level_sizes, window_bytes
from engine.core.windows import LADDER_S, WindowSet, resolution_for
from tests.unit.core.reference import window_sum

WINDOWS = [60, 300, 1800, 3600, 21600, 86400]
AHEAD_S = 120


@pytest.mark.parametrize(
    ("window_s", "expected_r"),
    [
        pytest.param(300, 5, id="5m uses 5s buckets"),
        pytest.param(1800, 5, id="30m uses 5s buckets (30s is not on the ladder)"),
        pytest.param(3600, 60, id="1h uses 1m buckets"),
        pytest.param(86400, 900, id="1d uses 15m buckets"),
        pytest.param(259200, 900, id="3d uses 15m buckets"),
        pytest.param(2592000, 43200, id="30d uses 12h buckets"),
        pytest.param(61, 1, id="an odd window falls back to 1s buckets"),
    ],
)
def test_resolution_is_the_coarsest_within_one_sixtieth(window_s: int, expected_r: int) -> None:
    r = resolution_for(window_s)
    assert r == expected_r
    assert window_s % r == 0
    assert r <= window_s / 60


def test_ladder_values_divide_each_other() -> None:
    for a, b in itertools.pairwise(LADDER_S):
        assert b % a == 0


def test_thirty_day_default_windows_cost_little_memory_per_slo() -> None:
    ws = WindowSet(1000, [300, 1800, 3600, 7200, 21600, 86400, 259200, 2592000], ahead_s=680)
    assert ws.nbytes() / 1000 <= 64 * 1024


# --- the ladder for windows no coarse step divides, and what windows cost ----------------

ODD_WINDOWS = [61, 299, 3599, 7207, 86401]
"""Windows no coarse ladder step divides: at 1 s, 1 s, 5 s, 1 min and 15 min buckets."""


def divides_rule(window_s: int) -> int:
    """The ladder's first rule: the coarsest step dividing the window into >= 60 buckets."""
    return max(r for r in LADDER_S if r == 1 or (window_s % r == 0 and window_s // r >= 60))


@pytest.mark.parametrize(
    ("window_s", "expected_r"),
    [
        pytest.param(3599, 5, id="1h less 1s uses 5s buckets, not 1s"),
        pytest.param(7207, 60, id="2h and 7s uses 1m buckets"),
        pytest.param(86401, 900, id="1d and 1s uses 15m buckets"),
        pytest.param(2591999, 10800, id="30d less 1s uses 3h buckets, not 2.6 million of 1s"),
        pytest.param(100000007, 86400, id="a prime number of seconds uses 1d buckets"),
        pytest.param(400 * 86400 + 3600, 86400, id="400d1h: 1d buckets, not the 15m dividing it"),
    ],
)
def test_a_window_no_coarse_step_divides_still_gets_a_coarse_one(
    window_s: int, expected_r: int
) -> None:
    r = resolution_for(window_s)
    assert r == expected_r
    assert window_s // r >= 60
    assert r + window_s % r <= window_s / 60


@settings(max_examples=2000, deadline=None)
@given(window_s=st.integers(60, MAX_WINDOW_S))
def test_every_window_up_to_the_maximum_gets_the_coarsest_step_within_one_sixtieth(
    window_s: int,
) -> None:
    r = resolution_for(window_s)
    n = window_s // r
    # The window is n buckets ending with the one holding its end: it counts every event
    # younger than (n - 1) * r and none of age n * r <= W or more.
    assert window_s - (n - 1) * r <= window_s / 60
    assert 60 <= n < 1800
    coarser = [step for step in LADDER_S if step > r]
    for step in coarser:  # none meets the bound, or the rule would have taken it
        assert step + window_s % step > window_s / 60
    if window_s % r == 0:  # a step that divides is the one the first rule took
        assert r == divides_rule(window_s)


def test_windows_of_whole_ladder_units_keep_their_resolution() -> None:
    for window_s in [300, 1800, 3600, 7200, 21600, 86400, 259200, 604800, 2419200, 2592000]:
        assert resolution_for(window_s) == divides_rule(window_s), window_s


@settings(max_examples=100, deadline=None)
@given(
    windows=st.lists(st.integers(1, MAX_WINDOW_S), min_size=1, max_size=6),
    ahead_s=st.floats(0, 90_000, allow_nan=False),
    n_slo=st.integers(1, 3),
)
def test_the_memory_estimate_is_what_a_window_set_allocates(
    windows: list[int], ahead_s: float, n_slo: int
) -> None:
    ws = WindowSet(n_slo, windows, ahead_s=ahead_s)
    assert ws.nbytes() == n_slo * window_bytes(windows, ahead_s)
    sizes = level_sizes(ws.windows_s, ahead_s)
    assert [(lv.resolution_s, lv.length) for lv in ws.state().levels] == [
        (size.resolution_s, size.length) for size in sizes
    ]


def test_a_prime_period_costs_kilobytes_not_megabytes() -> None:
    default = [300, 1800, 3600, 7200, 21600, 86400, 259200]
    ahead_s = 600 + 60 + 20
    assert window_bytes([*default, 2591999], ahead_s) < 32 * 1024
    assert (
        window_bytes([*default, 2591999], ahead_s) - window_bytes([*default, 2592000], ahead_s)
        < 8 * 1024
    )


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
    ws = WindowSet(3, WINDOWS, ahead_s=AHEAD_S)
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
                assert tuple(got[slo]) == window_sum(applied, slo, t, w), (w, slo)


@settings(max_examples=100, deadline=None)
@given(
    t=st.floats(1e9, 2e9, allow_nan=False),
    offsets=st.lists(st.floats(0, 90000, allow_nan=False), max_size=40),
)
def test_each_window_spans_its_length_within_one_sixtieth(t: float, offsets: list[float]) -> None:
    ws = WindowSet(1, WINDOWS, ahead_s=AHEAD_S)
    ws.advance_to(t - 100000)
    ts = np.array([t - o for o in offsets])
    ws.advance_to(t)
    ws.add(
        np.zeros(len(ts), dtype=np.int32),
        ts,
        np.ones(len(ts), np.int64),
        np.zeros(len(ts), np.int64),
    )
    for w in WINDOWS:
        got = int(ws.sums(w)[0, 0])
        assert sum(1 for o in offsets if o < w - w / 60) <= got <= sum(1 for o in offsets if o < w)


@settings(max_examples=100, deadline=None)
@given(start=st.floats(1e9, 2e9, allow_nan=False), program=st.lists(step, max_size=25))
def test_windows_no_step_divides_equal_a_naive_full_resum(
    start: float, program: list[tuple[str, object]]
) -> None:
    ws = WindowSet(2, ODD_WINDOWS, ahead_s=AHEAD_S)
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
        for w in ODD_WINDOWS:
            got = ws.sums(w)
            for slo in range(2):
                assert tuple(got[slo]) == window_sum(applied, slo, t, w), (w, slo)


@settings(max_examples=100, deadline=None)
@given(
    t=st.floats(1e9, 2e9, allow_nan=False),
    offsets=st.lists(st.floats(0, 90000, allow_nan=False), max_size=40),
)
def test_windows_no_step_divides_span_their_length_within_one_sixtieth(
    t: float, offsets: list[float]
) -> None:
    ws = WindowSet(1, ODD_WINDOWS, ahead_s=AHEAD_S)
    ws.advance_to(t - 100000)
    ts = np.array([t - o for o in offsets])
    ws.advance_to(t)
    ws.add(
        np.zeros(len(ts), dtype=np.int32),
        ts,
        np.ones(len(ts), np.int64),
        np.zeros(len(ts), np.int64),
    )
    for w in ODD_WINDOWS:
        got = int(ws.sums(w)[0, 0])
        assert sum(1 for o in offsets if o < w - w / 60) <= got <= sum(1 for o in offsets if o < w)


def test_a_gap_longer_than_every_ring_clears_all_windows() -> None:
    ws = WindowSet(2, WINDOWS, ahead_s=AHEAD_S)
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
    ws = WindowSet(2, WINDOWS, ahead_s=AHEAD_S)
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
    other = WindowSet(2, WINDOWS, ahead_s=AHEAD_S)
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
        pytest.param(lambda: WindowSet(3, WINDOWS, ahead_s=AHEAD_S), id="more SLOs"),
        pytest.param(lambda: WindowSet(2, WINDOWS[1:], ahead_s=AHEAD_S), id="other windows"),
        pytest.param(lambda: WindowSet(2, WINDOWS, ahead_s=10 * AHEAD_S), id="longer rings"),
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
    ws = WindowSet(3, WINDOWS, ahead_s=AHEAD_S)
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
                assert tuple(int(x) for x in got[slo]) == window_sum(applied, slo, t, w)


def test_weights_past_two_to_the_53_are_not_rounded() -> None:
    ws = WindowSet(1, WINDOWS, ahead_s=AHEAD_S)
    ws.advance_to(1_000_000)
    big = 2**53 + 1  # the first integer a float64 cannot hold
    _add_rows(ws, [(0, 999_999.0, big, big), (0, 999_999.5, 1, 0), (0, 999_999.7, big, 1)])
    assert ws.sums(60).tolist() == [[2 * big + 1, big + 1]]


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
    ws = WindowSet(3, WINDOWS, ahead_s=AHEAD_S)
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
