"""The evaluator's multi-tick pass: when a batch (or an `advance`) spans many ticks,
evaluate them all in whole-array operations (`engine.core.multitick`) instead of one by
one, with the same transitions, alert state, windows and counts.

It sums the windows at every tick only where some row may hold: every window's sums
are first bounded over blocks of `multi_tick_block` ticks (`engine.core.eventdriven`),
and the blocks and columns whose bounds rule every row out are never summed; the
state machine steps through them with the condition false, which is what it is
there. A transition's burn rates come from the sums of its run (or, past a run, of its
tick alone) and its budget from one sum of the period windows over the transitions.
Columns that always hold the same counts (a backtest's copies of one SLO,
`column_source`) are summed and bounded once (`engine.core.shared_columns`), in the
windows their rows read. A row whose two windows are shorter than a block is bounded
over blocks `FINE_BLOCKS` times shorter: over a whole block no pair stays in such a
window, so its total's lower bound is 0 and would rule out nothing.

`MultiTickMixin` holds those methods of `Evaluator`. It covers plain and grouped SLOs
with their own policies, every alert option (`for`, `keep_firing_for`, `min_events`,
`min_bad_events`, per column by `set_alert_settings`), lateness, watermark caps and
corrections (applied before counting). Configurations with state that moves tick by
tick in ways it does not model are evaluated tick by tick, always
(`multi_tick_unsupported` says why): calendar periods (their counts roll at period
ends), budget alerts (their own state machine), composite SLOs (a matrix product per
tick whose rounding the pass does not promise to reproduce bit for bit), and a tick
that is not a whole number of seconds (its grid is accumulated in floating point).
So is a batch once the counts could reach 2^52 (the pass adds in float64, exact below
2^53) or bring a ring bucket near saturation (`bucket_cap`), where the order of adds
matters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from engine.core import budget
from engine.core.arrays import F64, I64
from engine.core.multitick import Bool, may_hold, step_alerts
from engine.core.multitick_sums import MultiTickSumsMixin
from engine.core.shared_columns import Copies, Sources
from engine.core.transitions import Transition
from engine.core.windows import bucket_cap

if TYPE_CHECKING:
    from engine.core.budget_alerts import AlertColumn
    from engine.core.config import Correction, PolicyRow, Severity, Slo
    from engine.core.evaluator_state import AlertState
    from engine.core.periods import PeriodCounts
    from engine.core.windows import WindowSet

__all__ = ["MULTI_TICK_FROM", "MULTI_TICK_MAX_COLUMNS", "MultiTickMixin"]

MULTI_TICK_FROM = 4
"""Ticks a batch must span for the multi-tick pass (below, one by one is as cheap)."""
MULTI_TICK_MAX_COLUMNS = 256
"""Columns above which the pass is never taken. Its cost grows with columns x ticks
(every cell of every window), tick-by-tick evaluation's mostly with ticks: measured on
an evaluator with traffic in every window, the pass cost about 1.1 us per column and
tick plus 0.25 ms per column to set up, one tick about 0.4 ms plus 0.27 us per column,
so past about 400 columns it loses however many ticks a batch spans (at 1,000 columns
and 360 ticks it took 2.6x as long, at 10,000 columns and 6 ticks 40x)."""
MULTI_TICK_TICKS_PER_COLUMN = 1.0
"""Ticks a batch must span per column (the set-up cost is paid back after about one
tick per column: 100 columns need about 80)."""
CHUNK_CELLS = 1 << 21
"""Ticks are taken in chunks of about this many (tick, window, column) cells, so that
memory stays bounded however many ticks a batch spans."""
MIN_CHUNK = 16
MULTI_TICK_BLOCK = 64
"""Ticks per block of the bounds (`engine.core.eventdriven`): 64 at 10 s is under 11
minutes, short against the long windows whose bounds do the pruning (on the 100-SLO
month's first 3 days, 16 and 32 cost 15-20 % more CPU)."""
FINE_BLOCKS = 8
"""Finer blocks to a block, for the rows whose windows are shorter than a block."""


class MultiTickMixin(MultiTickSumsMixin):
    """The multi-tick pass of `Evaluator`."""

    if TYPE_CHECKING:
        tick_s: float
        windows: WindowSet
        slos: list[Slo]
        rows: list[PolicyRow]
        severities: tuple[Severity, ...]
        _severity_rows: list[I64]
        row_long: I64
        row_short: I64
        row_rank: I64
        row_mask: npt.NDArray[np.bool_]
        factor: F64
        budget_ratio: F64
        period_index: npt.NDArray[np.int64]
        composite_index: I64
        for_s: F64
        keep_firing_for_s: F64
        min_events: I64
        min_bad_events: I64
        _thin: bool
        _alerts: AlertState
        _periods: PeriodCounts
        budget_alert_columns: list[AlertColumn]
        _events_total: I64
        _runtime_corrections: list[Correction]
        _next_tick_s: float | None
        _evaluated_at_s: float | None

        def _quiet(self) -> bool: ...

        def budget_remaining(self) -> F64: ...

        def _apply(
            self,
            slo: npt.NDArray[np.int32],
            ts: F64,
            total: I64,
            bad: I64,
            *,
            resum_at: float | None = None,
        ) -> None: ...

        def _transition(
            self,
            i: int,
            severity: Severity,
            state: Literal["firing", "resolved"],
            t: float,
            r: int,
            burn: F64,
            remaining: F64,
        ) -> Transition: ...

    multi_tick_from: int | None = MULTI_TICK_FROM
    """Take the multi-tick pass for a batch spanning at least this many ticks; None:
    never (every tick one by one)."""
    multi_tick_max_columns: int | None = MULTI_TICK_MAX_COLUMNS
    """Never take it with more columns than this; None: no limit (tests)."""
    multi_tick_block: int | None = MULTI_TICK_BLOCK
    """Bound the window sums over blocks of this many ticks and compute them tick by
    tick only where a row may hold (`_evaluate_blocks`); None: at every tick."""
    multi_tick_ticks_per_column: float = MULTI_TICK_TICKS_PER_COLUMN
    """And only for a batch spanning at least this many ticks per column (0: no such
    bound, tests)."""
    _column_source: I64 | None = None
    _copies: Copies | None = None

    @property
    def column_source(self) -> I64 | None:
        """Per column, the column that always holds the same counts (itself when none
        does), whose window sums the pass computes once for both, and whose counts are
        aggregated once for both (`engine.core.shared_columns`): a backtest's copies of
        one SLO. None: every column its own. A correction added at run time may tell
        copies apart, so then it is not used."""
        return self._column_source

    @column_source.setter
    def column_source(self, source: I64 | None) -> None:
        self._column_source = source
        self._copies = None if source is None else Copies.of(source)

    def _sources(self) -> I64 | None:
        return None if self._runtime_corrections else self._column_source

    def _shared_copies(self) -> Copies | None:
        return None if self._runtime_corrections else self._copies

    def _multi_tick_min_ticks(self) -> int | None:
        """The fewest ticks a batch must span for the pass, None when it is never
        taken (the thresholds above)."""
        if self.multi_tick_from is None:
            return None
        columns = len(self.slos)
        if self.multi_tick_max_columns is not None and columns > self.multi_tick_max_columns:
            return None
        return max(self.multi_tick_from, math.ceil(self.multi_tick_ticks_per_column * columns))

    def multi_tick_unsupported(self) -> str | None:
        """Why this evaluator always evaluates tick by tick, or None (see the module
        docstring)."""
        if self._periods.any:
            return "calendar periods"
        if self.budget_alert_columns:
            return "budget alerts"
        if len(self.composite_index):
            return "composite SLOs"
        if self.tick_s != int(self.tick_s):
            return "a tick of a fraction of a second"
        return None

    def _multi_ticks(self, watermark_s: float, total: I64 | None) -> F64 | None:
        """The ticks before `watermark_s` still to evaluate, when the multi-tick pass is
        to evaluate them (`total`: the weights of the pairs about to be counted)."""
        start = self._next_tick_s
        least = self._multi_tick_min_ticks()
        if least is None or start is None or not watermark_s > start:
            return None
        if not math.isfinite(watermark_s):
            return None
        n = math.ceil((watermark_s - start) / self.tick_s) + 1
        if n - 1 < least or self.multi_tick_unsupported() is not None:
            return None
        # No sum past 2^53 (the pass adds in float64) and no bucket near saturation: no
        # window or bucket holds more than every count ever made.
        counted = float(self._events_total.sum()) + (float(total.sum()) if total is not None else 0)
        if counted >= min(2.0**52, *(bucket_cap(lv.length) / 2 for lv in self.windows.levels)):
            return None
        ticks: F64 = start + self.tick_s * np.arange(n, dtype=np.float64)
        ticks = ticks[ticks < watermark_s]
        return ticks if len(ticks) >= least else None

    def _evaluate_many(
        self,
        ticks: F64,
        slo: npt.NDArray[np.int32],
        ts: F64,
        total: I64,
        bad: I64,
        wm: F64,
    ) -> tuple[list[Transition], int]:
        """Evaluate `ticks`, counting each pair before the first tick >= its `wm` (the
        watermark after its event; ascending). Returns the transitions and how many
        pairs were counted (the rest come after the last tick)."""
        out: list[Transition] = []
        cells = max(1, len(self.windows.windows_s) * len(self.slos))
        chunk = max(MIN_CHUNK, CHUNK_CELLS // cells)
        n_ticks, pos, k = len(ticks), 0, 0
        while k < n_ticks:
            if self._quiet():
                # Nothing in any window, nothing pending or firing: every tick before the
                # next pair counts is empty (as `_evaluate_until` skips them too).
                nxt = int(np.searchsorted(ticks, wm[pos])) if pos < len(wm) else n_ticks
                k = max(k, min(nxt, n_ticks - 1))
            end = min(n_ticks, k + chunk)
            part = ticks[k:end]
            hi = int(np.searchsorted(wm, part[-1], side="right"))
            applied = np.searchsorted(part, wm[pos:hi], side="left").astype(np.int64)
            pairs = (slo[pos:hi].astype(np.int64), ts[pos:hi], total[pos:hi], bad[pos:hi], applied)
            # Only columns a row could hold in, or with an alert not at rest, can change.
            alerts = self._alerts
            active = may_hold(self.windows, self._short_windows, int(part[0]), pairs[0], pairs[3])
            source = self._sources()
            if source is not None:  # the pairs are the sources' (`_count_pairs`)
                active = active[source]
            active |= alerts.firing.any(axis=1) | ~np.isnan(alerts.pending_since_s).all(axis=1)
            cols = np.flatnonzero(active)
            if len(cols) and self.multi_tick_block is not None:
                out += self._evaluate_blocks(part, pairs, cols, self.multi_tick_block)
            elif len(cols):
                sums_of = partial(self._chunk_sums, int(part[0]), len(part), pairs, cols)
                out += self._evaluate_ticks(part, sums_of, cols)
            self._apply(
                slo[pos:hi], ts[pos:hi], total[pos:hi], bad[pos:hi], resum_at=float(part[-1])
            )
            self._alerts.budget_at_tick_ratio[...] = self.budget_remaining()
            self._evaluated_at_s = float(part[-1])
            self._next_tick_s = float(part[-1]) + self.tick_s
            pos, k = hi, end
        return out, pos

    @property
    def _short_windows(self) -> set[int]:
        return set(self.row_short.tolist())

    def _evaluate_blocks(
        self, ticks: F64, pairs: tuple[I64, F64, I64, I64, I64], c: I64, block: int
    ) -> list[Transition]:
        """`_evaluate_ticks` with exact sums only where a row may hold: the ticks are
        cut into blocks of `block`, every window's sums bounded over each block
        (`engine.core.eventdriven`), and the sums computed tick by tick only for the
        blocks and columns whose bounds let some row hold. Everywhere else no row
        holds, and the state machine steps through those ticks with that."""
        n_ticks = len(ticks)
        src = Sources.of(self._sources(), c)
        # Rows whose windows are both shorter than a block are bounded over finer blocks
        # (a window shorter than its block has no pair counted at every tick of it, so
        # its total's lower bound is 0 and rules nothing out), and may hold in a block
        # where they may in one of its finer ones.
        window_s = np.maximum(self.row_long, self.row_short)
        short = np.asarray(self.windows.windows_s)[window_s] < block * self.tick_s
        fine = block // FINE_BLOCKS
        if fine < 1 or block % FINE_BLOCKS:
            short[:] = False
        maybe = self._may_hold(ticks, pairs, c, src, block, np.flatnonzero(~short))
        if short.any():
            finer = self._may_hold(ticks, pairs, c, src, fine, np.flatnonzero(short))
            n_blocks = len(maybe)
            padded = np.zeros((n_blocks * FINE_BLOCKS, len(c)), dtype=bool)
            padded[: len(finer)] = finer
            maybe |= padded.reshape(n_blocks, FINE_BLOCKS, len(c)).any(axis=1)
        shape = (n_ticks, len(c))
        conditions = [
            (np.zeros(shape, dtype=bool), np.zeros(shape, dtype=np.int64)) for _ in self.severities
        ]
        summed: list[tuple[int, int, I64, F64]] = []
        for j0, j1, idx, windows in self._runs_to_sum(maybe, c, src):
            # one tick past the run too: where an alert that held to its end resolves
            k0, k1 = j0 * block, min(j1 * block + 1, n_ticks)
            sums = self._range_sums(ticks, k0, k1, pairs, c[idx], windows)
            summed.append((k0, k1, idx, sums))
            for (holds, first), (h, f) in zip(
                conditions, self._conditions(sums, c[idx], windows), strict=True
            ):
                holds[k0:k1, idx] = h
                first[k0:k1, idx] = f
        found = self._step(ticks, conditions, c)
        if not found:
            return []
        return self._emit(ticks, found, c, self._sums_at(ticks, found, pairs, c, summed))

    def _evaluate_ticks(
        self, ticks: F64, sums_of: Callable[[list[int]], F64], c: I64
    ) -> list[Transition]:
        """`Evaluator._evaluate` at every tick of `ticks` for the columns `c` (the others
        stay at rest), given the window sums there (`sums_of(windows)`: (n_windows, K,
        len(c), 2), exact float64, the windows asked for filled); leaves the alert state
        as after the last tick, but for the budget at the tick, which the caller reads
        from the windows then."""
        row_windows = self._row_windows()
        sums = sums_of(row_windows)
        found = self._step(ticks, self._conditions(sums, c), c)
        if not found:
            return []
        # the budget at the ticks with transitions, from the SLOs' period windows
        extra = sorted(set(self.period_index[c].tolist()) - set(row_windows))
        periods = sums_of(extra) if extra else None  # the windows not summed yet

        def at(k: int) -> F64:
            return sums[:, k] if periods is None else sums[:, k] + periods[:, k]

        return self._emit(ticks, found, c, at)

    def _conditions(
        self, sums: F64, c: I64, windows: list[int] | None = None
    ) -> list[tuple[Bool, I64]]:
        """Per severity, whether its condition holds ((K, len(c))) and the row that
        would fire (meaningless where none holds), from the window sums (n_windows, K,
        len(c), 2) at the K ticks, exactly as `Evaluator._evaluate` decides them.
        `windows`: those summed (None: every policy window), every window of the rows
        of `c` among them; the rows no column of `c` has hold nowhere."""
        row_windows = self._row_windows() if windows is None else windows
        budget_ratio = self.budget_ratio[c]
        n_ticks = sums.shape[1]
        burn: dict[int, F64] = {}
        with np.errstate(invalid="ignore", divide="ignore"):
            for w in row_windows:  # exactly `burn_rates()`: the same values, the same order
                burn[w] = (sums[w, ..., 1] / sums[w, ..., 0]) / budget_ratio  # (K, len(c))
        holds_rows = np.zeros((len(self.rows), n_ticks, len(c)), dtype=bool)
        min_events, min_bad = self.min_events[c], self.min_bad_events[c]
        for u in np.flatnonzero(self.row_mask[c].any(axis=0)).tolist():
            wl, ws = int(self.row_long[u]), int(self.row_short[u])
            f = self.factor[c, u]
            np.greater_equal(burn[wl], f, out=holds_rows[u])
            holds_rows[u] &= burn[ws] >= f
            holds_rows[u] &= self.row_mask[c, u]
            if self._thin:
                for w in (wl, ws):
                    holds_rows[u] &= sums[w, ..., 0] >= min_events
                    holds_rows[u] &= sums[w, ..., 1] >= min_bad
        n_rows = len(self.rows)
        out: list[tuple[Bool, I64]] = []
        for j in range(len(self.severities)):
            rows = self._severity_rows[j]
            sev_rows = holds_rows[rows]  # (n_rows of j, K, len(c))
            if len(rows) == 1:
                holds: Bool = sev_rows[0]
                first: I64 = np.full(holds.shape, rows[0])
            else:
                holds = np.asarray(sev_rows.any(axis=0))
                rank = np.where(sev_rows, self.row_rank[c][:, rows].T[:, None, :], n_rows)
                first = rows[np.argmin(rank, axis=0)]
            out.append((holds, first))
        return out

    def _step(
        self, ticks: F64, conditions: list[tuple[Bool, I64]], c: I64
    ) -> list[tuple[int, int, int, Literal["firing", "resolved"], int]]:
        """Step the alerts of the columns `c` through `ticks` with these conditions
        (`_conditions`), leaving their state as after the last tick; returns the
        transitions as (tick index, index into c, severity index, state, row), in the
        order `Evaluator._evaluate` makes them."""
        alerts = self._alerts
        found: list[tuple[int, int, int, Literal["firing", "resolved"], int]] = []
        all_c = c
        for j, (all_holds, all_first) in enumerate(conditions):
            # An alert at rest whose condition holds at no tick stays at rest, and only
            # its pending run (if any) ends: the state machine steps the others alone.
            live = all_holds.any(axis=0) | alerts.firing[all_c, j]
            idle = all_c[~live]
            alerts.pending_since_s[idle, j] = np.nan
            alerts.firing_since_s[idle, j] = np.nan
            at = np.flatnonzero(live)  # of those in `all_c`
            if not len(at):
                continue
            c, holds, first = all_c[at], all_holds[:, at], all_first[:, at]
            firing0 = alerts.firing[c, j]
            row0 = alerts.firing_row[c, j]
            steps = step_alerts(
                ticks,
                holds,
                first,
                for_s=self.for_s[c],
                keep_firing_for_s=self.keep_firing_for_s[c],
                firing=firing0,
                firing_row=row0,
                pending_since_s=alerts.pending_since_s[c, j],
                last_true_s=alerts.last_true_s[c, j],
                firing_since_s=alerts.firing_since_s[c, j],
            )
            was = np.vstack([firing0[None, :], steps.firing[:-1]])
            for k, i in zip(*np.nonzero(steps.firing & ~was), strict=True):
                found.append((int(k), int(at[i]), j, "firing", int(first[k, i])))
            for k, i in zip(*np.nonzero(~steps.firing & was), strict=True):
                if steps.row is not None:
                    r = int(steps.row[k, i])
                else:  # fired while holding: the row of the tick before
                    r = int(first[k - 1, i]) if k > 0 else int(row0[i])
                found.append((int(k), int(at[i]), j, "resolved", r))
            alerts.firing[c, j] = steps.firing[-1]
            alerts.firing_row[c, j] = steps.firing_row
            alerts.pending_since_s[c, j] = steps.pending_since_s
            alerts.last_true_s[c, j] = steps.last_true_s
            alerts.firing_since_s[c, j] = steps.firing_since_s
        # by tick, then as `_evaluate` does (by column, then severity; `c` is ascending)
        found.sort(key=lambda x: (x[0], x[1], x[2]))
        return found

    def _emit(
        self,
        ticks: F64,
        found: list[tuple[int, int, int, Literal["firing", "resolved"], int]],
        c: I64,
        at: Callable[[int], F64],
    ) -> list[Transition]:
        """The transitions `found` (`_step`), their burn rates and budget from the sums
        of every window the transition reads at their tick (`at(k)`: (n_windows,
        len(c), 2))."""
        n_slo, n_windows = len(self.slos), len(self.windows.windows_s)
        budget_ratio = self.budget_ratio[c]
        burn_at = np.full((n_windows, n_slo), np.nan)
        remaining = np.full(n_slo, np.nan)
        out = []
        for k, i, j, state, r in found:
            sums = at(k)
            period = sums[self.period_index[c], np.arange(len(c))]
            remaining[c] = budget.remaining_ratio(period[:, 0], period[:, 1], budget_ratio)
            with np.errstate(invalid="ignore", divide="ignore"):
                burn_at[:, c] = (sums[..., 1] / sums[..., 0]) / budget_ratio
            tick, sev = float(ticks[k]), self.severities[j]
            out.append(self._transition(int(c[i]), sev, state, tick, r, burn_at, remaining))
        return out
