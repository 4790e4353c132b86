"""Error budget arithmetic, in one place: consumed, remaining, time to exhaustion.

Definitions
-----------
An SLO of objective O over a period P has an error budget of b = 1 - O (as a ratio):
the share of its events that may be bad over P. Over the events of the period,

    consumed_ratio  = (bad / total) / b        0: untouched, 1: all spent, > 1: overspent
    remaining_ratio = 1 - consumed_ratio       1: untouched, <= 0: spent

and both are NaN when the period holds no events (no data is neither good nor bad). A
burn rate is the same ratio over a shorter window: at burn rate r the whole budget
lasts P / r, so what is left lasts

    time_to_exhaustion_s = remaining_ratio * P / r

It is 0 once the budget is spent, and None (never) without data or while nothing burns.

For a calendar period (engine.core.periods) the events are those of the period to date
and P is its nominal length (30 days for a month, 7 for a week, 91 for a quarter),
the one the policy factors use (docs/design.md, "Calendar periods"); the counts are
chosen by the evaluator (`Evaluator.period_sums`), the arithmetic here is the same.

Rounding: none beyond IEEE double arithmetic, evaluated in the order written above
(`(bad / total) / b`, then `1 - ...`; `(remaining_ratio * P) / r`). So every reader gets
bit-identical numbers (the API, /metrics, alert payloads), and whoever shows a duration
to people rounds it there (alert texts to seconds, minutes or hours).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from engine.core.arrays import F64

__all__ = [
    "EXHAUSTION_WINDOW_S",
    "burn_rate_consuming",
    "consumed_ratio",
    "exhaustion_window_s",
    "remaining_ratio",
    "remaining_ratio_of",
    "time_to_exhaustion_s",
    "times_to_exhaustion_s",
]

EXHAUSTION_WINDOW_S = 3600
"""The burn-rate window time to exhaustion is reported at, when it is kept."""

Counts = npt.NDArray[np.int64] | F64


def consumed_ratio(total: Counts, bad: Counts, budget_ratio: F64) -> F64:
    """Share of the error budget spent by `bad` of `total` events; NaN where total is 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        out: F64 = (bad / total) / budget_ratio
    return out


def remaining_ratio(total: Counts, bad: Counts, budget_ratio: F64) -> F64:
    """Share of the error budget left (1 = untouched, negative = overspent); NaN where
    total is 0."""
    out: F64 = 1.0 - consumed_ratio(total, bad, budget_ratio)
    return out


def remaining_ratio_of(error_ratio: F64, budget_ratio: F64) -> F64:
    """`remaining_ratio` from an error ratio (a composite SLO's, which has no counts of
    its own): 1 - error_ratio / b; NaN where the ratio is (no data)."""
    out: F64 = 1.0 - error_ratio / budget_ratio
    return out


def time_to_exhaustion_s(
    remaining_ratio: float | None, burn_rate: float | None, period_s: float
) -> float | None:
    """Seconds until the budget left is gone at `burn_rate` (1 = the whole budget per
    period): remaining_ratio * period_s / burn_rate, not rounded. 0 when already spent;
    None without data (None or NaN) or while nothing burns."""
    if remaining_ratio is None or math.isnan(remaining_ratio):
        return None
    if remaining_ratio <= 0:
        return 0.0
    if burn_rate is None or math.isnan(burn_rate) or burn_rate <= 0:
        return None
    return remaining_ratio * period_s / burn_rate


def times_to_exhaustion_s(remaining_ratio: F64, burn_rate: F64, period_s: F64) -> F64:
    """`time_to_exhaustion_s` of whole arrays (one element per SLO column), NaN where
    that gives None: the same arithmetic in the same order, so the numbers are
    bit-identical to the scalar function's."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        out: F64 = (remaining_ratio * period_s) / burn_rate
    out[~(burn_rate > 0)] = np.nan  # nothing burns (0, negative or NaN): never
    out[remaining_ratio <= 0] = 0.0  # spent: now, whatever burns
    out[np.isnan(remaining_ratio)] = np.nan  # no data
    return out


def exhaustion_window_s(windows_s: Sequence[int], long_windows_s: Iterable[int]) -> int:
    """The burn-rate window time to exhaustion is judged at when none is configured:
    `EXHAUSTION_WINDOW_S` (1h) when it is among the windows kept, else the shortest
    policy long window (always kept)."""
    if EXHAUSTION_WINDOW_S in windows_s:
        return EXHAUSTION_WINDOW_S
    return min(long_windows_s)


def burn_rate_consuming(consumed_ratio: float, within_s: float, period_s: float) -> float:
    """The burn rate that spends `consumed_ratio` of a `period_s` budget in `within_s`
    (2% of a 30-day budget in 1h: 14.4)."""
    return consumed_ratio * period_s / within_s
