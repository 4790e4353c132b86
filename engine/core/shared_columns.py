"""Columns that always hold the same counts: summed once, their sums shared.

A backtest evaluates every SLO once per candidate policy (`engine.core.backtest`): the
copies of one SLO select the same events, in the same order, into the same groups,
with the same corrections, so their rings and the pairs counted into them are the same
column for column; only their rows and alert settings differ. The multi-tick pass
(`engine.core.evaluator_multitick`) spends its time on window sums and their bounds,
per column: summing every copy repeats the same work once per candidate.

A *column source* map says, per column, which column holds the same counts (itself
when none other does; the lowest such column, so a source is its own source). The pass
then keeps only the pairs of source columns, sums and bounds the sources of the
columns it needs once each, and hands every column its source's sums: the same
numbers it would have summed from its own pairs and rings, so every comparison,
transition and state after it is the same (tested against the pass without the map).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.core.arrays import F64, I64
from engine.core.multitick import Bool

__all__ = ["Sources", "copies_of", "source_pairs"]


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


def copies_of(n_copies: int, columns: int) -> I64:
    """The column source of an evaluator holding `n_copies` copies of `columns` columns
    each, copy k in columns [k * columns, (k + 1) * columns): the first copy's."""
    out: I64 = np.tile(np.arange(columns, dtype=np.int64), n_copies)
    return out


def source_pairs(
    column_source: I64 | None, pairs: tuple[I64, F64, I64, I64, I64]
) -> tuple[I64, F64, I64, I64, I64]:
    """The pairs (column, ts, total, bad, applied) counted into source columns: those
    of any other column are a source's pairs again."""
    if column_source is None:
        return pairs
    slo = pairs[0]
    keep = column_source[slo] == slo
    if keep.all():
        return pairs
    s, ts, total, bad, applied = pairs
    return s[keep], ts[keep], total[keep], bad[keep], applied[keep]
