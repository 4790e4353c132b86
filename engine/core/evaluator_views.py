"""What an evaluator shows of itself: ratios, burn rates, budget, sums and counts at
the last evaluation, as values and read-only arrays (see engine.core.evaluator,
"Reading and restoring").

`ViewsMixin` holds those methods of `Evaluator`; the arrays they read are the
evaluator's own, declared below for the type checker.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from engine.core import budget
from engine.core.arrays import F64, I64, read_only, read_only_copy
from engine.core.evaluator_state import AlertState, EventCounts

if TYPE_CHECKING:
    from engine.core.config import Slo
    from engine.core.periods import PeriodCounts
    from engine.core.windows import WindowSet

__all__ = ["ViewsMixin"]


class ViewsMixin:
    """The reading methods of `Evaluator`."""

    if TYPE_CHECKING:
        slos: list[Slo]
        windows: WindowSet
        budget_ratio: F64
        period_index: npt.NDArray[np.int64]
        composite_index: I64
        composite_weights: F64
        _members: I64
        _periods: PeriodCounts
        _alerts: AlertState
        _evaluated_at_s: float | None
        _events_total: I64
        _bad_events_total: I64
        _excluded_total: I64
        _rejected: Counter[str]
        _accepted_events: int
        _unmatched_events: int
        _unknown_status_events: int

    def burn_rates(self) -> F64:
        """(n_windows, n_slo) burn rates at the evaluation time; NaN where no data."""
        out: F64 = self.error_ratios() / self.budget_ratio
        return out

    def error_ratios(self) -> F64:
        """(n_windows, n_slo) error ratios; NaN where a window has no events. A
        composite's is the weighted average of its members' over those with events (NaN
        when none has): one matrix product for all composites."""
        sums = self.windows.all_sums
        with np.errstate(invalid="ignore", divide="ignore"):
            out: F64 = sums[..., 1] / sums[..., 0]
            if len(self.composite_index):
                have = ~np.isnan(out)
                num = np.where(have, out, 0.0) @ self.composite_weights.T
                out[:, self.composite_index] = num / (have @ self.composite_weights.T)
        return out

    def budget_remaining(self) -> F64:
        """Share of each SLO's error budget left over its period (1 = untouched,
        negative = overspent); NaN when the period holds no events (for a composite:
        from its error ratio over its period, NaN when no member has events there)."""
        sums = self.period_sums()
        out = budget.remaining_ratio(sums[:, 0], sums[:, 1], self.budget_ratio)
        c = self.composite_index
        if len(c):
            ratio = self.error_ratios()[self.period_index[c], c]
            out[c] = budget.remaining_ratio_of(ratio, self.budget_ratio[c])
        return out

    def _member_sums(self, a: I64) -> I64:
        """(..., n_slo) counts -> (..., n_composite): the sums of each composite's
        members' counts, saturating at 2^63 - 1 like the counts themselves."""
        members = self._members.T
        out: I64 = a @ members
        over = (out < 0) | (a.astype(np.float64) @ members.astype(np.float64) >= 2.0**63)
        out[over] = np.iinfo(np.int64).max
        return out

    def period_sums(self) -> I64:
        """(n_slo, 2) (total, bad) over each SLO's period at the evaluation time: the
        period window of a rolling SLO, the calendar period to date of a calendar one."""
        sums = self.windows.all_sums[self.period_index, np.arange(len(self.slos))]
        if self._periods.any:
            sums = np.where(self._periods.is_calendar[:, None], self._periods.current, sums)
        return read_only(sums)

    def range_sums(
        self, start_s: float, end_s: float, columns: npt.NDArray[np.int64]
    ) -> tuple[I64, int] | None:
        """(len(columns), 2) (total, bad) of the events in (start_s, min(end_s, the
        evaluation time)] as the window rings hold them, in whole buckets of the finest
        ring that reaches back to `start_s`, with that ring's resolution
        (`WindowSet.range_sums`); None before the first evaluation or when no ring
        reaches back that far. Columns of plain SLOs only (a composite's stay empty)."""
        t = self._evaluated_at_s
        if t is None:
            return None
        return self.windows.range_sums(start_s, min(end_s, t), columns)

    def bucket_sums(
        self,
        start_s: float,
        end_s: float,
        columns: npt.NDArray[np.int64],
        *,
        partial: bool = False,
    ) -> tuple[I64, float, int] | None:
        """The buckets behind `range_sums`, one by one (`WindowSet.bucket_sums`):
        (n_buckets, len(columns), 2) (total, bad) oldest first, the end time of the first
        bucket and the resolution; None as for `range_sums`. `partial`: the last bucket
        may be the one holding `end_s` (not cut at the evaluation time), with everything
        counted in it so far: events after `end_s`, up to any counted ahead of the
        evaluation time, included."""
        t = self._evaluated_at_s
        if t is None:
            return None
        end = end_s if partial else min(end_s, t)
        return self.windows.bucket_sums(start_s, end, columns, partial=partial)

    def period_bounds(self) -> tuple[F64, F64]:
        """(start, end) epoch seconds per SLO of the calendar period holding the
        evaluation time, [start, end); NaN for rolling SLOs and before the first event."""
        return read_only_copy(self._periods.start_s), read_only_copy(self._periods.end_s)

    @property
    def windows_s(self) -> tuple[int, ...]:
        """The window lengths kept (every policy window and SLO period), shortest first:
        the order of the first axis of `window_sums`, `error_ratios` and `burn_rates`."""
        return tuple(self.windows.windows_s)

    def window_index(self, window_s: int) -> int:
        """Where the window of `window_s` seconds is on that axis (ValueError if not kept)."""
        return self.windows.index(window_s)

    def window_sums(self) -> I64:
        """(n_windows, n_slo, 2) (total, bad) per window at the evaluation time, windows
        in `windows_s` order: a read-only view of the live sums. With composite SLOs, a
        read-only copy in which a composite's are the sums of its members' (an event two
        members select counts twice)."""
        sums = self.windows.all_sums
        if not len(self.composite_index):
            return sums
        out = sums.copy()
        out[:, self.composite_index] = np.moveaxis(
            self._member_sums(np.moveaxis(sums, 1, -1)), -1, 1
        )
        return read_only(out)

    def alerts(self) -> AlertState:
        """The alert state machine now, as read-only copies."""
        return self._alerts.copy()

    def counts(self) -> EventCounts:
        """What was counted so far; the arrays are read-only copies. A composite's
        totals (and events excluded by corrections) are the sums of its members' (its
        own, kept in `state()`, are 0)."""
        own = self._own_counts()
        c = self.composite_index
        if not len(c):
            return own
        total, bad = own.events_total.copy(), own.bad_events_total.copy()
        excluded = own.excluded_events.copy()
        total[c], bad[c] = self._member_sums(total), self._member_sums(bad)
        excluded[c] = self._member_sums(excluded)
        return replace(
            own,
            events_total=read_only(total),
            bad_events_total=read_only(bad),
            excluded_events=read_only(excluded),
        )

    def _own_counts(self) -> EventCounts:
        return EventCounts(
            events_total=read_only_copy(self._events_total),
            bad_events_total=read_only_copy(self._bad_events_total),
            accepted_events=self._accepted_events,
            unmatched_events=self._unmatched_events,
            unknown_status_events=self._unknown_status_events,
            rejected=self.rejected_counts(),
            excluded_events=read_only_copy(self._excluded_total),
        )

    def rejected_counts(self) -> dict[str, int]:
        """Rejections by reason (a copy)."""
        return dict(self._rejected)
