"""Where the multi-tick pass (engine.core.evaluator_multitick) sums exactly, and how:
the bounds that rule blocks out (`_may_hold`), the runs of blocks and the columns to sum
in them (`_runs_to_sum`, `_spans`), each group of columns in the windows its rows read
(`_window_groups`), the sums over a range of ticks (`_range_sums`), and the sums a
transition reports (`_sums_at`). Columns that always hold the same counts are summed
once for all of them (`engine.core.shared_columns`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from engine.core.arrays import F64, I64
from engine.core.eventdriven import block_bounds, may_hold_blocks, runs
from engine.core.multitick import Bool, tick_sums
from engine.core.shared_columns import Sources

if TYPE_CHECKING:
    from engine.core.windows import WindowSet

__all__ = ["MultiTickSumsMixin"]

RUN_BRIDGE = 2
"""Runs of blocks where a row may hold at most this many blocks apart are summed in
one call."""
SPLIT_RUNS = 24
"""At most this many calls to sum a run's columns over their own runs (`_spans`)."""


class MultiTickSumsMixin:
    """The sums of the multi-tick pass of `Evaluator`."""

    if TYPE_CHECKING:
        tick_s: float
        windows: WindowSet
        row_long: I64
        row_short: I64
        row_mask: npt.NDArray[np.bool_]
        factor: F64
        budget_ratio: F64
        period_index: npt.NDArray[np.int64]

        def _sources(self) -> I64 | None: ...

    def _chunk_sums(
        self,
        first_s: int,
        n_ticks: int,
        pairs: tuple[I64, F64, I64, I64, I64],
        columns: I64,
        only: list[int],
    ) -> F64:
        slo, ts, total, bad, applied = pairs
        tick = int(self.tick_s)
        src = Sources.of(self._sources(), columns)
        sums = tick_sums(
            self.windows,
            first_s,
            tick,
            n_ticks,
            slo,
            ts,
            total,
            bad,
            applied,
            only=only,
            columns=src.columns,
        )
        return src.expand(sums, only)

    def _may_hold(
        self,
        ticks: F64,
        pairs: tuple[I64, F64, I64, I64, I64],
        c: I64,
        src: Sources,
        block: int,
        rows: I64,
    ) -> Bool:
        """(n_blocks, len(c)): where one of `rows` may hold in a block of `block` ticks
        (`engine.core.eventdriven`), the bounds of each source summed once."""
        n_ticks = len(ticks)
        n_blocks = -(-n_ticks // block)
        if not len(rows):
            return np.zeros((n_blocks, len(c)), dtype=bool)
        windows = sorted({*self.row_long[rows].tolist(), *self.row_short[rows].tolist()})
        bounds = block_bounds(
            self.windows,
            int(ticks[0]),
            int(self.tick_s),
            n_ticks,
            block,
            *pairs,
            only=windows,
            columns=src.columns,
        )
        if src.position is not None:
            bounds = {
                w: (up[:, src.position], lo[:, src.position]) for w, (up, lo) in bounds.items()
            }
        return may_hold_blocks(
            bounds,
            self.row_long[rows],
            self.row_short[rows],
            self.factor[c][:, rows],
            self.row_mask[c][:, rows],
            self.budget_ratio[c],
        )

    def _runs_to_sum(
        self, maybe: Bool, c: I64, src: Sources
    ) -> list[tuple[int, int, I64, list[int]]]:
        """The sums to compute, as (first block, end block, columns (indices into `c`),
        windows): the runs of blocks where the columns may hold (`_spans`), of the
        columns' sources, each summed once for all its columns, in the windows of
        their group (`_window_groups`); the same run of the same sources in several
        groups is summed once, in the windows of them all."""
        merged: dict[tuple[int, int, bytes], tuple[list[I64], set[int]]] = {}
        for members, windows in self._window_groups(c, src):
            sub = Sources.of(self._sources(), c[members])
            for j0, j1, of_src in _spans(sub.any(maybe[:, members])):
                key = (j0, j1, sub.columns[of_src].tobytes())
                idx, ws = merged.setdefault(key, ([], set()))
                idx.append(members[sub.of_sources(of_src)])
                ws.update(windows)
        return [
            (j0, j1, np.sort(np.concatenate(idx)), sorted(ws))
            for (j0, j1, _), (idx, ws) in merged.items()
        ]

    def _window_groups(self, c: I64, src: Sources) -> list[tuple[I64, list[int]]]:
        """The columns `c` to sum (indices into it) and the windows to sum them in: all
        together in every policy window, or, when columns share their sums (`src`),
        grouped by the windows their own rows read (a backtest's candidates: one with
        short windows only may hold everywhere, and summing the others' long windows
        there too would be wasted), each group's period windows among those too (the
        budget a transition reports is read from them)."""
        row_windows = self._row_windows()
        if src.position is None:
            return [(np.arange(len(c)), row_windows)]
        policy = set(row_windows)
        key = np.column_stack([self.row_mask[c], self.period_index[c]])
        patterns, of = np.unique(key, axis=0, return_inverse=True)
        out: list[tuple[I64, list[int]]] = []
        for g, pattern in enumerate(patterns):
            rows = np.flatnonzero(pattern[:-1])
            windows = {*self.row_long[rows].tolist(), *self.row_short[rows].tolist()}
            if int(pattern[-1]) in policy:
                windows.add(int(pattern[-1]))
            out.append((np.flatnonzero(of.reshape(-1) == g), sorted(windows)))
        return out

    def _sums_at(
        self,
        ticks: F64,
        found: list[tuple[int, int, int, Literal["firing", "resolved"], int]],
        pairs: tuple[I64, F64, I64, I64, I64],
        c: I64,
        summed: list[tuple[int, int, I64, F64]],
    ) -> Callable[[int], F64]:
        """`_emit`'s sums at the transitions' ticks, of their columns only (it reads no
        other): the policy windows from the runs summed already (`summed`: first and
        end tick, columns, sums) or, for a tick outside them (a `keep_firing_for` run
        out), summed for it alone; the period windows summed once over the span of
        the transitions."""
        row_windows = self._row_windows()
        of_tick: dict[int, list[int]] = {}
        for k, i, *_ in found:
            of_tick.setdefault(k, []).append(i)
        cols = np.unique([i for _, i, *_ in found])
        k_lo, k_hi = found[0][0], found[-1][0] + 1  # `found` is by tick
        extra = sorted(set(self.period_index[c[cols]].tolist()) - set(row_windows))
        periods = self._range_sums(ticks, k_lo, k_hi, pairs, c[cols], extra) if extra else None
        n_windows = len(self.windows.windows_s)

        def at(k: int) -> F64:
            out = np.zeros((n_windows, len(c), 2))
            for i in set(of_tick[k]):
                for k0, k1, idx, sums in summed:
                    if not k0 <= k < k1:
                        continue
                    p = int(np.searchsorted(idx, i))
                    if p < len(idx) and idx[p] == i:
                        out[:, i] = sums[:, k - k0, p]
                        break
                else:
                    one = self._range_sums(ticks, k, k + 1, pairs, c[[i]], row_windows)
                    out[:, i] = one[:, 0, 0]
                if periods is not None:
                    out[:, i] += periods[:, k - k_lo, int(np.searchsorted(cols, i))]
            return out

        return at

    def _range_sums(
        self,
        ticks: F64,
        k0: int,
        k1: int,
        pairs: tuple[I64, F64, I64, I64, I64],
        columns: I64,
        only: list[int] | None,
    ) -> F64:
        """`tick_sums` of the ticks k0 .. k1 - 1 of `ticks` for `columns`: the pairs
        applied before k0 count from its first tick, those applied from k1 on not (the
        pairs are in event order, so `applied` ascends: those are a prefix)."""
        slo, ts, total, bad, applied = pairs
        end = int(np.searchsorted(applied, k1))
        src = Sources.of(self._sources(), columns)
        sums = tick_sums(
            self.windows,
            int(ticks[k0]),
            int(self.tick_s),
            k1 - k0,
            slo[:end],
            ts[:end],
            total[:end],
            bad[:end],
            np.maximum(applied[:end] - k0, 0),
            only=only,
            columns=src.columns,
        )
        return src.expand(sums, only)

    def _row_windows(self) -> list[int]:
        return sorted({*self.row_long.tolist(), *self.row_short.tolist()})


def _spans(maybe: Bool) -> list[tuple[int, int, I64]]:
    """The blocks and columns to sum exactly, as (first block, end block, columns):
    per run of blocks where some column may hold, its columns over the whole run, or,
    when the columns' own runs cover much less (columns that may hold at different
    times: a backtest's services with outages at their own hours), per distinct run of
    a column, if there are few (each is a call)."""
    out: list[tuple[int, int, I64]] = []
    for j0, j1 in runs(np.asarray(maybe.any(axis=1)), RUN_BRIDGE):
        idx = np.flatnonzero(maybe[j0:j1].any(axis=0))
        own: dict[tuple[int, int], list[int]] = {}
        for i in idx.tolist():
            for a, z in runs(maybe[j0:j1, i], RUN_BRIDGE):
                own.setdefault((j0 + a, j0 + z), []).append(i)
        cells = sum((z - a) * len(cols) for (a, z), cols in own.items())
        if len(own) <= SPLIT_RUNS and 2 * cells < (j1 - j0) * len(idx):
            out += [(a, z, np.array(cols, dtype=np.int64)) for (a, z), cols in own.items()]
        else:
            out.append((j0, j1, idx))
    return out
