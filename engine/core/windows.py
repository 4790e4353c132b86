"""Sliding event-time windows of good/total counts for many SLOs at once.

Theory of operation
-------------------
Time is cut into buckets; bucket k of resolution r holds the events with
k*r < ts <= (k+1)*r (right-closed, so that a window (t - W, t] is a whole number of
buckets when r divides t and W). A window of length W uses the coarsest resolution r
from a ladder whose worst span error at the evaluation times t = k * tick,
r - gcd(r, tick) + (W mod r), is within max(W/600, 1 s), and is n = floor(W/r) buckets
long: it counts every event younger than W minus that error and none of age W or more,
and is exactly (t - W, t] when r divides the tick and W (the rule, its proof and the
ring sizes are in engine.core.ladder, shared with the config check). Each resolution
is a *level*: one ring buffer of L buckets per SLO, held for all SLOs in one array
of shape (L, n_slo, 2) (total, bad): slot-major, so that the few buckets a tick
reads or clears are contiguous across all SLOs. A 30-day window at 1h buckets is 720
buckets, so a month costs a few KiB per SLO instead of the 518,400 buckets of 5 s
resolution.

Rings are uint32 (8 bytes a bucket, half of int64): a bucket overflows only past
4,294,967,295 events, over 1.19 M events/s for one SLO (or group) sustained through a
whole 1 h bucket. A batch that would take a bucket past that promotes that level, for
every SLO, to int64 first (`promote`): exact always, compact while traffic allows, and
the memory of a promoted level doubles (docs/design.md, "Windows"). Every read of
a ring sums into int64.

The ring's *head* is the newest bucket it holds; slots of buckets between the old
and the new head are zeroed when the head moves, which is also how a silent gap
longer than the ring clears it. Counts are written to every level after first being
aggregated per (SLO, bucket of the grain: the gcd of the levels' resolutions, whose
buckets each lie in one bucket of every level), so a batch touches each level a handful
of times.

Window sums are kept incrementally: `advance_to(t)` adds the buckets that enter each
window and subtracts those that leave, instead of re-summing thousands of buckets.
Late events whose bucket already lies inside a window are added to that window's sum
directly. Sums are int64 and exact, so incremental and full re-sums never drift.

The caller (the evaluator) guarantees the invariants that make the ring big enough:
no event is written more than `ahead_s` after the evaluation time, and time only
moves forward.

Everything a restart needs (evaluation time, each ring's head and buckets, the window
sums) comes out of `state()` as a `WindowState` of read-only views and goes back in
through `load_state()`, which checks it fits before taking any of it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.core.arrays import F64, I32, I64, read_only
from engine.core.ladder import LADDER_S as LADDER_S
from engine.core.ladder import grain_s, level_sizes
from engine.core.ladder import resolution_for as resolution_for
from engine.core.shared_columns import Copies

Ring = np.ndarray[Any, np.dtype[np.uint32 | np.int64]]
"""A level's buckets: RING_DTYPE until a bucket needs more, then int64."""

RING_DTYPE: Any = np.uint32
RING_MAX: int = int(np.iinfo(np.uint32).max)


def bucket_of(ts_s: F64, r: int) -> I64:
    """Right-closed bucket index: k such that k*r < ts <= (k+1)*r."""
    return (np.ceil(ts_s / r) - 1).astype(np.int64)


def bucket_of_scalar(ts_s: float, r: int) -> int:
    return math.ceil(ts_s / r) - 1


@dataclass(frozen=True, slots=True)
class LevelState:
    """One ring buffer: its bucket resolution and length (fixed by the config), the
    newest bucket it holds (None before the first event or tick), and its buckets,
    (length * n_slo, 2) of (total, bad), slot-major: uint32, or int64 once promoted."""

    resolution_s: int
    length: int
    head: int | None
    buckets: Ring


@dataclass(frozen=True, slots=True)
class WindowState:
    """All a `WindowSet` holds: evaluation time, rings, and the (n_windows, n_slo, 2)
    window sums kept incrementally from them."""

    t_s: float | None
    levels: tuple[LevelState, ...]
    sums: I64


@dataclass
class _Level:
    r: int
    length: int
    data: Ring  # (length * n_slo, 2): slot-major, so a bucket of every SLO is contiguous
    n_slo: int = 0
    head: int | None = None
    windows: list[int] = field(default_factory=list)  # indexes into WindowSet.windows_s

    def grid(self) -> Ring:
        return self.data.reshape(self.length, -1, 2)

    def cols_sum(self, first: int, last: int) -> I64:
        """Sum over buckets first..last inclusive (at most `length` of them) for every SLO."""
        if last < first:
            return np.zeros((self.n_slo, 2), dtype=np.int64)
        slots = np.arange(first, last + 1) % self.length
        if len(slots) == 1:
            one: I64 = self.grid()[int(slots[0])].astype(np.int64)
            return one
        out: I64 = self.grid()[slots].sum(axis=0, dtype=np.int64)
        return out

    def slots(self, first: int, last: int) -> list[slice]:
        """The slots of buckets first..last (at most the whole ring), as slices."""
        if last - first + 1 >= self.length:
            return [slice(None)]
        lo, hi = first % self.length, last % self.length
        if lo <= hi:
            return [slice(lo, hi + 1)]
        return [slice(lo, None), slice(0, hi + 1)]

    def promote(self) -> None:
        """Hold this level's buckets as int64 from now on (values unchanged)."""
        if self.data.dtype != np.int64:
            self.data = self.data.astype(np.int64)

    def move_head(self, new_head: int) -> None:
        """Make `new_head` the newest bucket, zeroing the slots of the buckets skipped."""
        if self.head is None:
            self.head = new_head
            return
        if new_head <= self.head:
            return
        grid = self.grid()
        if new_head - self.head >= self.length:
            grid[:] = 0
        else:
            slots = np.arange(self.head + 1, new_head + 1) % self.length
            grid[slots] = 0
        self.head = new_head


class WindowSet:
    """Exact (total, bad) sums over several window lengths for `n_slo` SLOs."""

    def __init__(
        self, n_slo: int, windows_s: Sequence[int], *, ahead_s: float, tick_s: float
    ) -> None:
        """`ahead_s`: how far past the evaluation time events may be written; `tick_s`:
        the grid of evaluation times the resolutions are chosen for (at other times a
        window is still within r + (W mod r) of its length, and sums stay exact)."""
        if not windows_s:
            raise ValueError("at least one window is required")
        self.n_slo = n_slo
        self.windows_s = sorted({int(w) for w in windows_s})
        self.ahead_s = ahead_s
        self.tick_s = tick_s
        self.t: float | None = None
        self.levels: list[_Level] = []
        self._level_of: list[int] = [0] * len(self.windows_s)
        self.buckets = [0] * len(self.windows_s)
        for size in level_sizes(self.windows_s, ahead_s, tick_s):
            r, length, idx = size.resolution_s, size.length, list(size.windows)
            data: Ring = np.zeros((length * n_slo, 2), dtype=RING_DTYPE)
            level = _Level(r, length, data, n_slo=n_slo, windows=idx)
            for i in idx:
                self._level_of[i] = len(self.levels)
                self.buckets[i] = self.windows_s[i] // r
            self.levels.append(level)
        self.grain_s = grain_s([lv.r for lv in self.levels])
        self._sums = np.zeros((len(self.windows_s), n_slo, 2), dtype=np.int64)

    # -- reading ----------------------------------------------------------------------

    def index(self, window_s: int) -> int:
        return self.windows_s.index(int(window_s))

    def sums(self, window_s: int) -> I64:
        """(n_slo, 2) array of (total, bad) over the window ending at the evaluation time
        (a read-only view, live)."""
        return read_only(self._sums[self.index(window_s)])

    @property
    def all_sums(self) -> I64:
        """(n_windows, n_slo, 2), windows in `windows_s` order: a read-only view, live."""
        return read_only(self._sums)

    def range_sums(self, start_s: float, end_s: float, columns: I64) -> tuple[I64, int] | None:
        """(len(columns), 2) (total, bad) of the events in the whole buckets inside
        (start_s, end_s], read from the finest ring that still holds the bucket after
        `start_s`, and that ring's resolution r: the events of (ceil(start/r) * r,
        floor(end/r) * r], exactly (start_s, end_s] when r divides both. None when no
        ring reaches back that far. `end_s` should not pass the evaluation time (a ring
        may hold events written ahead of it)."""
        got = self.bucket_sums(start_s, end_s, columns)
        if got is None:
            return None
        cells, _, r = got
        out: I64 = cells.sum(axis=0, dtype=np.int64)
        return out, r

    def bucket_sums(
        self, start_s: float, end_s: float, columns: I64, *, partial: bool = False
    ) -> tuple[I64, float, int] | None:
        """The buckets `range_sums` adds up, one by one: (n_buckets, len(columns), 2)
        (total, bad) of the whole buckets inside (start_s, end_s] of the finest ring that
        still holds the bucket after `start_s`, oldest first; the end time of the first
        bucket; that ring's resolution r. None when no ring reaches back that far.
        `partial`: the last bucket may be the one holding `end_s`, with all it holds
        (events after `end_s` too)."""
        for level in sorted(self.levels, key=lambda lv: lv.r):
            first = math.ceil(start_s / level.r)
            last = (math.ceil(end_s / level.r) if partial else math.floor(end_s / level.r)) - 1
            if level.head is None:
                return np.zeros((0, len(columns), 2), dtype=np.int64), 0.0, level.r
            if first <= level.head - level.length:
                continue
            last = min(last, level.head)
            end_of_first = float((first + 1) * level.r)
            if last < first:
                return np.zeros((0, len(columns), 2), dtype=np.int64), end_of_first, level.r
            slots = np.arange(first, last + 1) % level.length
            cells: I64 = level.grid()[slots[:, None], columns[None, :]].astype(np.int64)
            return cells, end_of_first, level.r
        return None

    def resolution_s(self, window_s: int) -> int:
        return self.levels[self._level_of[self.index(window_s)]].r

    def nbytes(self) -> int:
        return int(sum(lv.data.nbytes for lv in self.levels) + self._sums.nbytes)

    def is_empty(self) -> bool:
        return not self._sums.any()

    # -- writing ----------------------------------------------------------------------

    def add(self, slo: I32, ts_s: F64, total: I64, bad: I64, copies: Copies | None = None) -> None:
        """Count events (already checked against lateness and `ahead_s` by the caller).
        `copies`: the pairs are those of source columns only, and every other column
        holds its source's counts (`engine.core.shared_columns`): the buckets they
        changed, and the window sums, are copied to those columns.

        Every sum is exact int64. A uint32 level about to hold more than RING_MAX in a
        bucket is promoted to int64 first (module docstring). A bucket saturates at
        `bucket_cap(level length)`, i.e. 2^63 - 1 split evenly over the ring, so no sum
        of a ring's buckets (a window, the buckets entering or leaving it) can overflow,
        whatever the input: what a saturated bucket could not take is dropped from the
        bucket and from the window sums alike, which stay equal to a re-sum of the
        buckets. With the decoder's weight bound (`MAX_COUNT`), saturating a bucket takes
        over 2^63 requests per ring span: out of reach at the engine's throughput (about 1 M
        events/s) for any ring spanning less than 107 days."""
        if len(slo) == 0:
            return
        g = self.grain_s
        b0 = bucket_of(ts_s, g)
        slo_u, b0_u, vals = _aggregate(slo.astype(np.int64), b0, total, bad, self.n_slo)
        batch_total = int(vals[:, 0].sum())  # exact: at most events x MAX_COUNT
        for level in self.levels:
            # grain bucket k is (k*g, (k+1)*g], inside level bucket floor(k*g / r)
            b = b0_u if level.r == g else (b0_u * g) // level.r
            level.move_head(int(b.max()))
            assert level.head is not None
            keep = b > level.head - level.length
            if keep.all():
                s, v = slo_u, vals
            elif keep.any():
                s, b, v = slo_u[keep], b[keep], vals[keep]
            else:
                continue  # every row is older than this ring: nothing to count or copy
            cells = (b % level.length) * self.n_slo + s
            top = int(level.data[cells, 0].max()) + batch_total
            if top > RING_MAX:
                level.promote()
            if top > bucket_cap(level.length):
                s, b, v = _add_saturating(level.data, cells, b, v, self.n_slo, level.length)
            else:
                _add_columns(level.data, cells, v)
            if copies is not None:
                for rows in level.slots(int(b.min()), int(b.max())):
                    copies.mirror(level.grid(), rows)
            if self.t is None:
                continue
            now_b = bucket_of_scalar(self.t, level.r)
            for wi in level.windows:
                inside = (b <= now_b) & (b > now_b - self.buckets[wi])
                if inside.any():
                    _add_columns(self._sums[wi], s[inside], v[inside])
        if copies is not None and self.t is not None:
            copies.mirror(self._sums, slice(None))

    def advance_to(self, t_s: float) -> None:
        """Move the evaluation time forward to `t_s`; windows become (t_s - W, t_s]."""
        if self.t is not None and t_s <= self.t:
            return
        old_t = self.t
        self.t = t_s
        for level in self.levels:
            new_b = bucket_of_scalar(t_s, level.r)
            old_b = None if old_t is None else bucket_of_scalar(old_t, level.r)
            small = [
                wi for wi in level.windows if old_b is not None and new_b - old_b < self.buckets[wi]
            ]
            leaving = {
                wi: level.cols_sum(old_b - self.buckets[wi] + 1, new_b - self.buckets[wi])
                for wi in small
                if old_b is not None
            }
            if level.head is None or new_b > level.head:
                level.move_head(new_b)
            if small and old_b is not None:
                entering = level.cols_sum(old_b + 1, new_b)
                for wi in small:
                    self._sums[wi] += entering - leaving[wi]
            for wi in level.windows:
                if wi not in leaving:
                    self._sums[wi] = level.cols_sum(new_b - self.buckets[wi] + 1, new_b)

    def add_and_advance(
        self,
        slo: I32,
        ts_s: F64,
        total: I64,
        bad: I64,
        t_s: float,
        copies: Copies | None = None,
    ) -> None:
        """Count events, then move the evaluation time to `t_s` and re-sum every window
        from the rings. For the multi-tick pass (`engine.core.multitick`): its events
        span many ticks, so they may lie further ahead of the evaluation time than `add`
        allows, but none more than `ahead_s` after `t_s`. The rings end as if the
        events had been added tick by tick: a bucket a tick-by-tick add would have
        dropped or seen zeroed lies behind the new head by a ring's length, and is
        zeroed here too."""
        if self.t is not None and t_s < self.t:
            raise ValueError(f"evaluation time cannot move back ({t_s} < {self.t})")
        saved, self.t = self.t, None  # no incremental sums: re-summed below
        try:
            self.add(slo, ts_s, total, bad, copies)
        finally:
            self.t = saved
        self.t = t_s
        for level in self.levels:
            new_b = bucket_of_scalar(t_s, level.r)
            if level.head is None or new_b > level.head:
                level.move_head(new_b)
            for wi in level.windows:
                self._sums[wi] = level.cols_sum(new_b - self.buckets[wi] + 1, new_b)

    # -- state ----------------------------------------------------------------------

    def state(self) -> WindowState:
        """Read-only views of the live arrays (no copy: a ring may be megabytes), so use
        or copy them before the next `add` or `advance_to`."""
        return WindowState(
            t_s=self.t,
            levels=tuple(
                LevelState(
                    resolution_s=lv.r, length=lv.length, head=lv.head, buckets=read_only(lv.data)
                )
                for lv in self.levels
            ),
            sums=read_only(self._sums),
        )

    def load_state(self, state: WindowState) -> None:
        """Take over a `state()` of a WindowSet of the same shape. Raises ValueError,
        changing nothing, when it does not fit. Rings may come as uint32 or int64
        (promoted, or written before rings were compact): int64 buckets that all fit in
        uint32 are held compact again, others keep the level promoted."""
        self.check_state(state)
        self.t = state.t_s
        for level, saved in zip(self.levels, state.levels, strict=True):
            fits = (
                saved.buckets.dtype == RING_DTYPE or int(saved.buckets.max(initial=0)) <= RING_MAX
            )
            level.data = np.array(saved.buckets, dtype=RING_DTYPE if fits else np.int64)
            level.head = saved.head
        self._sums[...] = state.sums

    def check_state(self, state: WindowState) -> None:
        """Raise ValueError unless `state` has this set's rings and sums."""
        if len(state.levels) != len(self.levels):
            raise ValueError(
                f"window state has {len(state.levels)} levels, expected {len(self.levels)}"
            )
        for level, saved in zip(self.levels, state.levels, strict=True):
            if (saved.resolution_s, saved.length) != (level.r, level.length):
                raise ValueError(
                    f"window level of {saved.resolution_s}s x {saved.length} buckets, "
                    f"expected {level.r}s x {level.length}"
                )
            check_ring(f"level {level.r}s", saved.buckets, level.data.shape)
        check_like("window sums", state.sums, self._sums)


RING_DTYPES: tuple[np.dtype[Any], ...] = (np.dtype(RING_DTYPE), np.dtype(np.int64))
"""The dtypes a ring is held in, and a saved ring may come in."""


def check_ring(what: str, got: np.ndarray[Any, Any], shape: tuple[int, ...]) -> None:
    """Raise ValueError unless `got` has a ring dtype and this shape, and holds no
    negative count."""
    if got.dtype not in RING_DTYPES or got.shape != shape:
        raise ValueError(
            f"{what} is {got.dtype.str}{got.shape}, expected "
            f"{' or '.join(d.str for d in RING_DTYPES)}{shape}"
        )
    if got.dtype == np.int64 and got.size and int(got.min()) < 0:
        raise ValueError(f"{what} holds a negative count")


def check_like(what: str, got: np.ndarray[Any, Any], like: np.ndarray[Any, Any]) -> None:
    """Raise ValueError unless `got` has the dtype and shape of `like`."""
    if got.dtype != like.dtype or got.shape != like.shape:
        raise ValueError(
            f"{what} is {got.dtype.str}{got.shape}, expected {like.dtype.str}{like.shape}"
        )


_INT64_MAX = int(np.iinfo(np.int64).max)


def bucket_cap(length: int) -> int:
    """Most a bucket of a ring of `length` buckets holds: any sum of the ring's buckets
    then fits in an int64."""
    return _INT64_MAX // length


def sum_by(index: I64 | I32, weights: I64, size: int) -> I64:
    """(size,) int64 sums of the integer `weights` per `index`, exactly (integer adds).
    One-dimensional `np.add.at` of matching int64 arrays takes numpy's fast path (about
    as fast as `np.bincount`, which adds in float64); adding rows of (total, bad) at
    once into a 2-D array does not, and is about ten times slower: hence one column at
    a time here and in `_add_columns`."""
    out = np.zeros(size, dtype=np.int64)
    np.add.at(out, index, weights.astype(np.int64, copy=False))
    return out


def _add_columns(data: Ring | I64, cells: I64, vals: I64) -> None:
    """`data[cells] += vals`, rows of (total, bad), with repeated cells all added:
    `np.add.at` per column (see `sum_by`)."""
    v = vals.astype(data.dtype, copy=False)
    np.add.at(data[:, 0], cells, v[:, 0])
    np.add.at(data[:, 1], cells, v[:, 1])


def _add_saturating(
    data: Ring, cells: I64, bucket: I64, vals: I64, n_slo: int, length: int
) -> tuple[I64, I64, I64]:
    """Add `vals` (total, bad) into the ring's `cells`, each bucket saturating at
    `bucket_cap(length)` with bad <= total kept. Returns (slo, bucket, (total, bad)
    actually added) per distinct cell, for the window sums."""
    cap = bucket_cap(length)
    uniq, first, inv = np.unique(cells, return_index=True, return_inverse=True)
    add_t = sum_by(inv, vals[:, 0], len(uniq))
    add_b = sum_by(inv, vals[:, 1], len(uniq))
    old_t, old_b = data[uniq, 0], data[uniq, 1]
    new_t = old_t + np.minimum(add_t, cap - old_t)  # old_t <= cap: never overflows
    new_b = old_b + np.minimum(add_b, new_t - old_b)  # old_b <= old_t <= new_t
    data[uniq, 0], data[uniq, 1] = new_t, new_b
    added = np.stack([new_t - old_t, new_b - old_b], axis=1)
    return uniq % n_slo, bucket[first], added


def _aggregate(slo: I64, bucket: I64, total: I64, bad: I64, n_slo: int) -> tuple[I64, I64, I64]:
    """Sum weights per distinct (slo, bucket): batches span few buckets, so this shrinks
    them a lot before the scattered adds into every level. Integer adds only (float
    weights lose exactness past 2^53 and wrap silently when cast back)."""
    bmin = int(bucket.min())
    span = int(bucket.max()) - bmin + 1
    key = slo * span + (bucket - bmin)
    if n_slo * span <= max(4 * len(key), 1 << 16):
        size = n_slo * span
        tot = sum_by(key, total, size)
        uniq = np.flatnonzero(tot)
        tot, bd = tot[uniq], sum_by(key, bad, size)[uniq]
    else:
        uniq, inv = np.unique(key, return_inverse=True)
        tot = sum_by(inv, total, len(uniq))
        bd = sum_by(inv, bad, len(uniq))
    vals = np.stack([tot, bd], axis=1)
    return uniq // span, uniq % span + bmin, vals
