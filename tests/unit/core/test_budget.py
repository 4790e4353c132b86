"""Error budget arithmetic against the formulas written out naively, one float at a time."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.core.budget import (
    burn_rate_consuming,
    consumed_ratio,
    remaining_ratio,
    time_to_exhaustion_s,
)
from engine.core.config import DEFAULT_POLICY

PERIOD_30D_S = 30 * 86400

objective = st.floats(50, 99.999)
counts = st.integers(0, 10**12).flatmap(
    lambda total: st.tuples(st.just(total), st.integers(0, total))
)


def naive_consumed(total: int, bad: int, budget: float) -> float:
    return math.nan if total == 0 else (bad / total) / budget


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@given(st.lists(st.tuples(counts, objective), min_size=1, max_size=20))
def test_remaining_and_consumed_equal_the_naive_formula_bit_for_bit(
    slos: list[tuple[tuple[int, int], float]],
) -> None:
    total = np.array([t for (t, _), _ in slos], dtype=np.int64)
    bad = np.array([b for (_, b), _ in slos], dtype=np.int64)
    budget = np.array([1.0 - o / 100.0 for _, o in slos])
    remaining = remaining_ratio(total, bad, budget)
    consumed = consumed_ratio(total, bad, budget)
    for i, ((t, b), o) in enumerate(slos):
        want = naive_consumed(t, b, 1.0 - o / 100.0)
        assert same(float(consumed[i]), want)
        assert same(float(remaining[i]), 1.0 - want)


def test_no_events_is_no_data_and_no_bad_events_is_an_untouched_budget() -> None:
    remaining = remaining_ratio(
        np.array([0, 10, 10], dtype=np.int64),
        np.array([0, 0, 10], dtype=np.int64),
        np.array([0.01, 0.01, 0.5]),
    )
    assert math.isnan(remaining[0])
    assert remaining[1:].tolist() == [1.0, -1.0]


@given(
    remaining=st.one_of(st.none(), st.floats(-5, 1, allow_nan=False)),
    burn=st.one_of(st.none(), st.floats(0, 1e6, allow_nan=False)),
    period_s=st.sampled_from([3600, 7 * 86400, PERIOD_30D_S]),
)
def test_time_to_exhaustion_equals_the_naive_formula(
    remaining: float | None, burn: float | None, period_s: int
) -> None:
    got = time_to_exhaustion_s(remaining, burn, period_s)
    if remaining is None:
        assert got is None
    elif remaining <= 0:
        assert got == 0.0
    elif burn is None or burn == 0:
        assert got is None
    else:
        assert got == remaining * period_s / burn


@pytest.mark.parametrize(
    ("remaining", "burn", "expected"),
    [
        (0.5, 0.5, PERIOD_30D_S),
        (0.25, 14.4, 0.25 * PERIOD_30D_S / 14.4),
        (1.0, 0.0, None),  # nothing burns: never
        (0.5, None, None),  # no data in the window
        (None, None, None),  # no data in the period
        (0.0, 3.0, 0.0),  # spent
        (-2.0, 3.0, 0.0),  # overspent
        (-2.0, None, 0.0),
    ],
)
def test_time_to_exhaustion(
    remaining: float | None, burn: float | None, expected: float | None
) -> None:
    got = time_to_exhaustion_s(remaining, burn, PERIOD_30D_S)
    if expected is None:
        assert got is None
    else:
        assert got is not None
        assert math.isclose(got, expected, rel_tol=1e-12)


def test_nan_reads_as_no_data() -> None:
    assert time_to_exhaustion_s(math.nan, 2.0, PERIOD_30D_S) is None
    assert time_to_exhaustion_s(0.5, math.nan, PERIOD_30D_S) is None


@pytest.mark.parametrize(
    ("period_s", "factors"),
    [(PERIOD_30D_S, [14.4, 6.0, 3.0, 1.0]), (28 * 86400, [13.44, 5.6, 2.8, 0.9333])],
)
def test_the_burn_rate_consuming_a_share_of_the_budget_gives_the_default_factors(
    period_s: int, factors: list[float]
) -> None:
    got = [
        burn_rate_consuming(row.budget_consumed_ratio or 0.0, row.long_s, period_s)
        for row in DEFAULT_POLICY
    ]
    assert got == pytest.approx(factors, abs=1e-4)
    assert got == [row.factor_for(period_s) for row in DEFAULT_POLICY]
