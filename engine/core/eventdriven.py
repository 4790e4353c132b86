"""Where the alert conditions can hold: bounds on every window's sums over blocks of
ticks, so that the multi-tick pass computes exact sums only where a row may hold.

Theory of operation
-------------------
The multi-tick pass (`engine.core.multitick`) computes every (tick, window, column)
cell: a month of 10 s ticks at 100 SLOs is 2 x 10^8 cells per window, most of them
far from any threshold. A row holds at a tick only if both its windows burn at >= its
factor, which needs bad events in both. So the pass first bounds every window's sums
over blocks of B ticks, and computes exact sums only for the blocks (and columns)
whose bounds let some row hold; elsewhere no row holds, and the alert state machine
(`step_alerts`) runs over those ticks with the condition false, which is exactly what
the tick-by-tick evaluator would see there.

*The bounds.* As in `tick_sums`, every (event, SLO) pair is counted in window w at one
interval of ticks [lo, hi): lo is the first tick after its bucket starts (or its
pair's first tick, if later; the same for every window of a level), hi the first tick
its bucket has left w. Over block j, the ticks jB .. jB + B - 1, a pair is counted at
some tick iff lo // B <= j < ceil(hi / B), and at every tick iff ceil(lo / B) <= j <
hi // B. Summing the pairs over the first ranges gives an upper bound of every tick's
sums in the block, over the second a lower bound: (n_blocks + 1, columns) difference
arrays, so the work is per pair and per block, not per tick. What the rings hold
already is in the window at tick k as the buckets B_k - n < b <= B_k: at some tick of
a block those in (B_first - n, B_last], at every tick those in (B_last - n, B_first],
two differences of the ring's running sums per block.

*Pruning.* With bad <= upper bad and total >= lower total > 0, a window's burn rate
(bad / total) / budget is at most (upper bad / lower total) / budget, in floating
point too (a correctly rounded division is monotonic in both operands, and every count
is an exact float64 below 2^53). A row can hold in a block only if both its windows
pass that bound and have an upper bad count above 0 (its factor is > 0: a window
without bad events burns at 0, or is no data). `min_events` and `min_bad_events`
only make a condition stricter, so they prune nothing wrongly by being left out.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import numpy as np

from engine.core.arrays import F64, I64
from engine.core.multitick import Bool, _first_tick_after, _held_cumsum
from engine.core.windows import WindowSet, bucket_of

__all__ = ["block_bounds", "may_hold_blocks", "runs"]


def block_bounds(
    windows: WindowSet,
    first_tick_s: int,
    tick_s: int,
    n_ticks: int,
    block: int,
    slo: I64,
    ts: F64,
    total: I64,
    bad: I64,
    applied: I64,
    only: Collection[int],
    columns: I64,
) -> dict[int, tuple[F64, F64]]:
    """Per window index in `only`: (bad_upper, total_lower), each (n_blocks,
    len(columns)), bounding the sums `tick_sums` (same arguments) gives every tick of
    each block of `block` ticks: bad <= bad_upper[j] and total >= total_lower[j] at
    every tick jB <= k < (j+1)B (the last block ends at `n_ticks`). Only those two:
    a burn rate is bounded above by them, and the upper bound needs the pairs with
    bad events alone, the few."""
    n_blocks = -(-n_ticks // block)
    n_col = len(columns)
    position = np.full(windows.n_slo, -1, dtype=np.int64)
    position[columns] = np.arange(n_col)
    col = position[slo]
    keep = col >= 0
    if not keep.all():
        col, ts, total, bad, applied = col[keep], ts[keep], total[keep], bad[keep], applied[keep]
    b0, app = bucket_of(ts, windows.grain_s), applied
    vals = np.stack([total, bad], axis=1).astype(np.float64)
    g = windows.grain_s
    out: dict[int, tuple[F64, F64]] = {}
    # each block's first and last tick, for what the rings hold already
    first_k = np.arange(n_blocks, dtype=np.int64) * block
    last_k = np.minimum(first_k + block, n_ticks) - 1
    for level in windows.levels:
        wanted = [wi for wi in level.windows if wi in only]
        if not wanted:
            continue
        r = level.r
        b = b0 if r == g else (b0 * g) // r
        # A pair whose first tick is its bucket's ("on time"; `natural`, unclipped) is
        # counted in w over [natural, natural + n r / tick) when n r is a whole number
        # of ticks: its sums over a block come from running sums over `natural`, per
        # level, and need no work per window and pair. The others go one by one.
        natural = (b * r - first_tick_s) // tick_s + 1
        on_time = app <= np.clip(natural, 0, n_ticks)
        every = bool(on_time.all())
        running = (
            _running(natural, col, vals, n_col, n_ticks, block)
            if every
            else _running(natural[on_time], col[on_time], vals[on_time], n_col, n_ticks, block)
        )
        if running is None:
            c_rest, b_rest, a_rest, v_rest = col, b, app, vals
        elif every:
            c_rest, b_rest, a_rest, v_rest = col[:0], b[:0], app[:0], vals[:0]
        else:
            late = ~on_time
            c_rest, b_rest, a_rest, v_rest = col[late], b[late], app[late], vals[late]
        lo = np.maximum(_first_tick_after(b_rest * r, first_tick_s, tick_s, n_ticks), a_rest)
        lo_up = lo // block  # counted at some tick of the blocks from here
        lo_dn = -(-lo // block)  # counted at every tick of the blocks from here
        some_bad = v_rest[:, 1] > 0
        held = _held_cumsum(level.grid()[:, columns], level.head, level.length)
        ba = -(-(first_tick_s + tick_s * first_k) // r) - 1  # B_k of those ticks
        bz = -(-(first_tick_s + tick_s * last_k) // r) - 1
        for wi in wanted:
            n = windows.buckets[wi]
            aligned = running is not None and (n * r) % tick_s == 0
            if aligned:
                lo_r, up_r, dn_r = lo, lo_up, lo_dn
                c_r, b_r, v_r, bad_r = c_rest, b_rest, v_rest, some_bad
            else:  # every pair one by one
                lo_r = np.maximum(_first_tick_after(b * r, first_tick_s, tick_s, n_ticks), app)
                up_r, dn_r = lo_r // block, -(-lo_r // block)
                c_r, b_r, v_r, bad_r = col, b, vals, vals[:, 1] > 0
            hi = _first_tick_after((b_r + n) * r, first_tick_s, tick_s, n_ticks)
            live = lo_r < hi
            # a pair counted to the end is counted at every tick of the last block
            end = hi >= n_ticks
            up = live & bad_r
            bad_upper = _ranges(
                up_r[up],
                np.where(end[up], n_blocks, -(-hi[up] // block)),
                c_r[up],
                v_r[up, 1],
                n_blocks,
                n_col,
            )
            total_lower = _ranges(
                dn_r[live],
                np.where(end[live], n_blocks, hi[live] // block),
                c_r[live],
                v_r[live, 0],
                n_blocks,
                n_col,
            )
            if aligned and running is not None:
                # counted at some tick of [a, z]: a - d < natural <= z; at every tick:
                # z - d < natural <= a (d = n r / tick)
                at, d = running, n * r // tick_s
                bad_upper += at(last_k, 1, True) - at(first_k - d, 1, False)
                total_lower += np.maximum(at(first_k, 0, False) - at(last_k - d, 0, True), 0.0)
            if held is not None:
                # the rings' buckets B_k - n < b <= B_k: at some tick of a block those
                # of (B_first - n, B_last], at every tick those of (B_last - n, B_first]
                cs, base = held
                bad_upper += _span(cs, base, ba - n, bz, 1)
                total_lower += _span(cs, base, bz - n, ba, 0)
            out[wi] = (bad_upper, total_lower)
    return out


def _running(
    natural: I64, c: I64, v: F64, n_col: int, n_ticks: int, block: int
) -> Callable[[I64, int, bool], F64] | None:
    """For pairs first counted at tick `natural`: a function of ticks x, a channel and a
    direction giving, per column ((len(x), n_col)), the sum of the pairs with natural
    <= x' where x' is x rounded to a multiple of `block`, up (True: at least the sum at
    x) or down (at most). Running sums over blocks, not ticks: the bounds round their
    way. None when the pairs spread too far for a dense array (they go one by one)."""
    if len(natural) == 0:
        return lambda x, channel, up: np.zeros((len(x), n_col))
    m = -(-natural // block)  # the first multiple of `block` at or after
    low, high = int(m.min()), int(m.max())
    span = high - low + 1
    if span * n_col > 4 * (n_ticks // block + 2) * max(n_col, 1) + (1 << 16):
        return None
    key = (m - low) * n_col + c
    cs = np.zeros((2, span + 1, n_col))
    for channel in (0, 1):
        hist = np.bincount(key, v[:, channel], span * n_col).reshape(span, n_col)
        np.cumsum(hist, axis=0, out=cs[channel, 1:])

    def at(x: I64, channel: int, up: bool) -> F64:
        k = -(-x // block) if up else x // block
        out: F64 = cs[channel, np.clip(k - low + 1, 0, span)]
        return out

    return at


def _span(cs: F64, base: int, after: I64, upto: I64, channel: int) -> F64:
    """(n_blocks, n_col): the ring's sums of `channel` over the buckets after < b <=
    upto of each block, from its running sums `cs` ((length + 1, n_col * 2), bucket
    `base` first); 0 where the range is empty."""
    top = len(cs) - 1
    hi = np.clip(upto - base + 1, 0, top)
    lo = np.clip(after - base + 1, 0, top)
    out: F64 = np.maximum(cs[hi, channel::2] - cs[lo, channel::2], 0.0)
    return out


def _ranges(start: I64, stop: I64, c: I64, v: F64, n_blocks: int, n_col: int) -> F64:
    """(n_blocks, n_col): the sums of `v` over the blocks start <= j < stop of each
    column `c`."""
    if len(start) == 0:
        return np.zeros((n_blocks, n_col))
    index = np.concatenate([start * n_col + c, stop * n_col + c])
    weight = np.concatenate([v, -v])
    diff = np.bincount(index, weight, (n_blocks + 1) * n_col).reshape(n_blocks + 1, n_col)
    out: F64 = np.cumsum(diff[:n_blocks], axis=0)
    return out


def may_hold_blocks(
    bounds: dict[int, tuple[F64, F64]],
    row_long: I64,
    row_short: I64,
    factor: F64,
    row_mask: Bool,
    budget_ratio: F64,
) -> Bool:
    """(n_blocks, n_col) False where no row of the column can hold at any tick of the
    block (`factor`, `row_mask`: (n_col, n_rows) of these columns)."""
    first = next(iter(bounds.values()))[0]
    out = np.zeros(first.shape[:2], dtype=bool)
    for u in range(len(row_long)):
        f = factor[:, u]
        ok = np.broadcast_to(row_mask[:, u], out.shape).copy()
        for w in (int(row_long[u]), int(row_short[u])):
            bad_up, total_lo = bounds[w]
            with np.errstate(invalid="ignore", divide="ignore"):
                burn_up = (bad_up / total_lo) / budget_ratio
            ok &= (f <= 0) | ((bad_up > 0) & ((total_lo <= 0) | (burn_up >= f)))
        out |= ok
    return out


def runs(flags: Bool, bridge: int) -> list[tuple[int, int]]:
    """[start, stop) of the runs of True in `flags`, runs at most `bridge` False flags
    apart joined (each run costs a call; a few blocks more cost little)."""
    idx = np.flatnonzero(flags)
    if len(idx) == 0:
        return []
    gaps = np.flatnonzero(np.diff(idx) > bridge + 1)
    starts = np.concatenate([[idx[0]], idx[gaps + 1]])
    stops = np.concatenate([idx[gaps], [idx[-1]]]) + 1
    return list(zip(starts.tolist(), stops.tolist(), strict=True))
