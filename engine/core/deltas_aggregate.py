"""Pre-aggregation of counted pairs into count deltas (the ingest role's core).

An ingest worker (`burnrate run --role ingest`) counts events as `burnrate run` does
and is told of every (event, SLO) pair that counted, as (column, ts, total, bad) arrays
(`Evaluator.on_counted`). What the evaluate workers need of them is far less: the sums
per (column, epoch second), the resolution of the windows' buckets. `DeltaAggregator`
keeps those sums between flushes and hands them out, one `SloDelta` per SLO, in the
shape of the counts record (`engine.core.deltas`).

Each batch is reduced as it comes (a sort of its pairs by (column, second) and one
`np.add.reduceat`), so what waits for the flush is bounded by the distinct (column,
second) cells of the flush interval, not by the events; `drain` reduces the batches'
cells once more and cuts them per SLO. A grouped SLO owns several columns (its groups
and its overflow group): its record carries every group's buckets, each group's seconds
ascending, with the group's name per bucket as `Evaluator.group_of` writes it (read at
drain time: a group's column keeps its name once assigned). Integer sums throughout:
counts are exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["DeltaAggregator", "SloDelta"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class SloDelta:
    """One SLO's buckets since the last drain: the body of one counts record."""

    slo: str
    seconds: list[int]
    total: list[int]
    bad: list[int]
    groups: list[str] | None
    """One group name per bucket for a grouped SLO, else None."""


def _reduce(col: I64, sec: I64, total: I64, bad: I64) -> tuple[I64, I64, I64, I64]:
    """Sum `total` and `bad` per distinct (col, sec), sorted by column, then second."""
    if len(col) == 0:
        return col, sec, total, bad
    order = np.lexsort((sec, col))
    col, sec, total, bad = col[order], sec[order], total[order], bad[order]
    starts = np.flatnonzero(np.concatenate(([True], (col[1:] != col[:-1]) | (sec[1:] != sec[:-1]))))
    return (
        col[starts],
        sec[starts],
        np.add.reduceat(total, starts),
        np.add.reduceat(bad, starts),
    )


class DeltaAggregator:
    """Sums of (column, second) cells between drains.

    `column_slo`: the configured SLO index of each column; `slo_names`: each configured
    SLO's name; `grouped`: per configured SLO, whether it has `group_by`; `group_name`:
    a grouped column's group name (None: not assigned, which a counted pair's column
    always is)."""

    def __init__(
        self,
        column_slo: Sequence[int] | npt.NDArray[np.integer],
        slo_names: Sequence[str],
        grouped: Sequence[bool],
        group_name: Callable[[int], str | None],
    ) -> None:
        self._column_slo = np.asarray(column_slo, dtype=np.int64)
        self._names = list(slo_names)
        self._grouped = list(grouped)
        self._group_name = group_name
        self._parts: list[tuple[I64, I64, I64, I64]] = []
        self._cells = 0
        self.pairs_added = 0
        """Pairs handed to `add` since the start (for the worker's metrics)."""

    @property
    def cells(self) -> int:
        """(column, second) cells waiting, counted per batch (an upper bound)."""
        return self._cells

    def add(
        self,
        column: npt.NDArray[np.integer],
        ts_s: F64,
        total: npt.NDArray[np.integer],
        bad: npt.NDArray[np.integer],
    ) -> None:
        """Count pairs: their columns, event times (epoch seconds) and weights. The
        signature of `Evaluator.on_counted`."""
        n = len(column)
        if n == 0:
            return
        self.pairs_added += n
        part = _reduce(
            np.asarray(column, dtype=np.int64),
            np.floor(ts_s).astype(np.int64),
            np.asarray(total, dtype=np.int64),
            np.asarray(bad, dtype=np.int64),
        )
        self._parts.append(part)
        self._cells += len(part[0])
        if len(self._parts) >= 64:  # bound the list of parts, not only their cells
            self._parts = [self._merged()]
            self._cells = len(self._parts[0][0])

    def _merged(self) -> tuple[I64, I64, I64, I64]:
        if len(self._parts) == 1:
            return self._parts[0]
        col, sec, total, bad = (np.concatenate(a) for a in zip(*self._parts, strict=True))
        return _reduce(col, sec, total, bad)

    def drain(self) -> list[SloDelta]:
        """Every SLO's buckets since the last drain, in SLO order (of `slo_names`), each
        SLO's cells ordered by column (group), then second; empties the aggregator."""
        if not self._parts:
            return []
        col, sec, total, bad = self._merged()
        self._parts, self._cells = [], 0
        keep = total > 0  # a pair of weight 0 cannot be (count >= 1), but never send one
        col, sec, total, bad = col[keep], sec[keep], total[keep], bad[keep]
        slo = self._column_slo[col]
        order = np.argsort(slo, kind="stable")  # cells are sorted by column already
        col, sec, total, bad, slo = col[order], sec[order], total[order], bad[order], slo[order]
        out: list[SloDelta] = []
        bounds = np.flatnonzero(np.concatenate(([True], slo[1:] != slo[:-1], [True])))
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            j = int(slo[a])
            groups: list[str] | None = None
            if self._grouped[j]:
                names: dict[int, str] = {}
                groups = []
                for c in col[a:b].tolist():
                    name = names.get(c)
                    if name is None:
                        name = self._group_name(c)
                        if name is None:
                            raise ValueError(f"column {c} of {self._names[j]!r} has no group")
                        names[c] = name
                    groups.append(name)
            out.append(
                SloDelta(
                    self._names[j],
                    sec[a:b].tolist(),
                    total[a:b].tolist(),
                    bad[a:b].tolist(),
                    groups,
                )
            )
        return out
