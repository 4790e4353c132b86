"""Columns that always hold the same counts: summed once, their sums shared.

A backtest evaluates every SLO once per candidate policy (`engine.core.backtest`): the
copies of one SLO select the same events, in the same order, into the same groups,
with the same corrections, so their rings and the pairs counted into them are the same
column for column; only their rows and alert settings differ. The multi-tick pass
(`engine.core.evaluator_multitick`) spends its time on window sums and their bounds,
per column: summing every copy repeats the same work once per candidate.

A *column source* map says, per column, which column holds the same counts (itself
when none other does; the lowest such column, so a source is its own source). The
evaluator then keeps only the pairs of source columns (`Evaluator._count_pairs`): the
windows count them into the sources' rings and copy the buckets they changed to every
other column of the same source, and the totals go to every such column too
(`Copies`), so each ring and count is what the column's own pairs would have made. The
multi-tick pass sums and bounds the sources of the columns it needs once each, and
hands every column its source's sums: the same numbers it would have summed from its
own pairs and rings, so every comparison, transition and state after it is the same
(tested against the evaluator without the map, tick by tick and in the pass).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.core.arrays import F64, I32, I64, Bool

__all__ = ["Copies", "Sources", "copies_of"]


@dataclass(frozen=True, slots=True)
class Sources:
    """Of some columns: their distinct sources (ascending), and where each column's
    source is among them (None: the columns are their own sources, in that order)."""

    columns: I64
    position: I64 | None

    @classmethod
    def of(cls, column_source: I64 | None, columns: I64) -> Sources:
        if column_source is None:
            return cls(columns, None)
        src = column_source[columns]
        if np.array_equal(src, columns):
            return cls(columns, None)
        unique, position = np.unique(src, return_inverse=True)
        return cls(unique.astype(np.int64, copy=False), position.astype(np.int64, copy=False))

    def any(self, flags: Bool) -> Bool:
        """Per-column `flags` ((n, len(columns))) as per-source flags ((n,
        len(self.columns))): True where any column of the source's is."""
        if self.position is None:
            return flags
        out = np.zeros((len(self.columns), flags.shape[0]), dtype=bool)
        np.logical_or.at(out, self.position, flags.T)
        return out.T

    def of_sources(self, idx: I64) -> I64:
        """The columns (indices into those given) whose sources are `self.columns[idx]`
        (`idx` ascending), ascending."""
        if self.position is None:
            return idx
        out: I64 = np.flatnonzero(np.isin(self.position, idx))
        return out

    def expand(self, sums: F64, only: list[int] | None, axis: int = 2) -> F64:
        """Per-source `sums` as per-column sums (axis `axis` indexes the sources);
        along the first axis (windows) only `only` is filled (None: all)."""
        if self.position is None:
            return sums
        if only is None:
            return np.take(sums, self.position, axis=axis)
        shape = list(sums.shape)
        shape[axis] = len(self.position)
        out = np.zeros(shape)
        for w in only:
            out[w] = np.take(sums[w], self.position, axis=axis - 1)
        return out


@dataclass(frozen=True, slots=True)
class Copies:
    """Every column grouped by its source, so that counts made for the sources alone
    reach each column that holds the same: the cells of rings and sums that a batch
    changed are copied (`mirror`), or rows given per source repeated (`expand`)."""

    copy: I64
    """The columns that are not their own source..."""
    source: I64
    """... and the source of each."""
    order: I64
    """The columns, grouped by source (each group ascending)."""
    start: I64
    """Per column: where the columns whose source it is begin in `order`..."""
    count: I64
    """... and how many there are (0: the column is not a source)."""
    tiled: tuple[int, int] | None
    """(n_copies, columns) when the map is `copies_of(n_copies, columns)`."""

    @classmethod
    def of(cls, column_source: I64) -> Copies:
        order = np.argsort(column_source, kind="stable").astype(np.int64)
        count = np.bincount(column_source, minlength=len(column_source)).astype(np.int64)
        start = np.concatenate(([0], np.cumsum(count)[:-1])).astype(np.int64)
        copy = np.flatnonzero(column_source != np.arange(len(column_source)))
        n = len(column_source) - len(copy)
        k = len(column_source) // n if n else 0
        tiled = (k, n) if n and np.array_equal(column_source, copies_of(k, n)) else None
        return cls(copy, column_source[copy], order, start, count, tiled)

    def mirror(self, grid: npt.NDArray[Any], rows: slice) -> None:
        """Make every copy's cells of `grid` (rows, columns, ...) in `rows` its
        source's. When the columns are `n_copies` copies of the first `columns`
        (`copies_of`), as a backtest's are, one broadcast copy of contiguous memory
        (splitting the column axis in two is always a view of `grid`, never a copy)."""
        if self.tiled is not None:
            k, n = self.tiled
            g = grid.reshape(grid.shape[0], k, n, *grid.shape[2:])[rows]
            g[:, 1:] = g[:, :1]
        else:
            grid[rows, self.copy] = grid[rows, self.source]

    def expand(self, column: I64 | I32, *rows: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], ...]:
        """Rows given for source columns (`column`), repeated for every column whose
        source that is: (columns, *rows) of the result, a source's own row among them."""
        cnt = self.count[column]
        which = np.repeat(np.arange(len(column)), cnt)
        within = np.arange(len(which)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        return (self.order[self.start[column][which] + within], *(r[which] for r in rows))


def copies_of(n_copies: int, columns: int) -> I64:
    """The column source of an evaluator holding `n_copies` copies of `columns` columns
    each, copy k in columns [k * columns, (k + 1) * columns): the first copy's."""
    out: I64 = np.tile(np.arange(columns, dtype=np.int64), n_copies)
    return out
