"""Window sums against a naive full re-sum, for any batch split, late data and long gaps."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    t = math.floor(start)
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
