"""Many evaluation ticks at once: window sums and the alert state machine over K ticks
in whole-array operations, with the results of K ticks evaluated one by one.

Theory of operation
-------------------
Ticked one at a time, the evaluator spends about a millisecond of fixed numpy work per
tick whatever the traffic, so a replay of a month at a 10 s tick (259,200 ticks) is
bound by the ticks, not the events. When a batch spans many ticks (a replay block, a
catch-up after lag, an `advance` over a gap) the same results come from a few
operations on (K, ...) arrays:

*Window sums.* Ticked one by one, the window of W = n buckets of resolution r at tick
T_k sums the ring buckets B_k - n < b <= B_k (B_k = the bucket holding T_k), counting
every (event, SLO) pair applied before the tick. A pair is applied before T_k exactly
when the watermark after its event is <= T_k (the batch is cut there), so it counts
at the ticks k >= its first such tick whose window holds its bucket: one interval of
k, as B_k only grows. The buckets the rings hold already count from the first tick
on. Each pair and each held bucket adds +v at its interval's start and -v past its
end into a (K + 1, n_slo, 2) array per window, and a cumulative sum over k gives every
tick's sums, exactly (int64). A bucket older than a ring's reach is never inside a
window at a later tick (the rings are sized for that), so dropping or zeroing it, as
the rings do, changes no sum.

*Alert state.* Per (SLO, severity) with holds_k the condition at tick k, the state
machine of `Evaluator._evaluate` reduces to: firing_k is decided by the last tick
j <= k that decides anything: holds_j and `for` met (pending long enough) sets it,
not holds_j with `keep_firing_for` run out (or never met) clears it; every other tick
keeps it. Pending-since, last-true and the firing row are running maxima of tick
indices or times. So the whole machine is a handful of `maximum.accumulate` passes,
and transitions are where firing changes.

Everything here is pure arithmetic on arrays handed in; `Evaluator` (its multi-tick
part in `engine.core.evaluator_multitick`) decides when to use it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from engine.core.arrays import F64, I64
from engine.core.windows import WindowSet, bucket_of

__all__ = ["AlertSteps", "Bool", "may_hold", "step_alerts", "tick_sums"]

Bool = npt.NDArray[np.bool_]


def tick_sums(
    windows: WindowSet,
    first_tick_s: int,
    tick_s: int,
    n_ticks: int,
    slo: I64,
    ts: F64,
    total: I64,
    bad: I64,
    applied: I64,
    only: Collection[int] | None = None,
    columns: I64 | None = None,
) -> F64:
    """(n_windows, K, n_slo, 2) (total, bad) of every window at the K = `n_ticks` ticks
    `first_tick_s + k * tick_s` (whole seconds), as `windows` would hold them after
    `advance_to(tick)` with the pairs (slo, ts, total, bad) whose `applied` index is
    <= k added before tick k, on top of what the rings hold now; windows not in
    `only` (indices into `windows_s`; None: all) are left 0. As float64, which the
    caller guarantees is exact: no sum reaches 2^53. `columns`: of these SLO columns
    only (the third axis follows their order), the other pairs ignored."""
    n_slo = windows.n_slo
    if columns is not None:
        position = np.full(n_slo, -1, dtype=np.int64)
        position[columns] = np.arange(len(columns))
        keep = position[slo] >= 0
        slo, ts, total, bad, applied = (
            position[slo[keep]],
            ts[keep],
            total[keep],
            bad[keep],
            applied[keep],
        )
        n_slo = len(columns)
    out = np.zeros((len(windows.windows_s), n_ticks, n_slo, 2))
    g = windows.grain_s
    slo, b0, applied, counts = _aggregate(slo, bucket_of(ts, g), applied, total, bad, n_slo)
    vals = counts.astype(np.float64)
    size = 2 * (n_ticks + 1) * n_slo
    for level in windows.levels:
        wanted = [wi for wi in level.windows if only is None or wi in only]
        if not wanted:
            continue
        r = level.r
        tick_b = _first_tick_bucket(first_tick_s, tick_s, n_ticks, r)
        grid = level.grid() if columns is None else level.grid()[:, columns]
        held = _held_cumsum(grid, level.head, level.length)
        b = b0 if r == g else (b0 * g) // r
        # Tick k's bucket B_k = ceil(T_k / r) - 1 reaches bucket b from the first k with
        # T_k > b * r: integer arithmetic on the grid, exact.
        lo = np.maximum(_first_tick_after(b * r, first_tick_s, tick_s, n_ticks), applied)
        for wi in wanted:
            n = windows.buckets[wi]
            target = out[wi].reshape(n_ticks, n_slo * 2)
            hi = _first_tick_after((b + n) * r, first_tick_s, tick_s, n_ticks)
            live = lo < hi
            diff: F64
            if live.any():
                s, v = 2 * slo[live], vals[live]
                start, stop = lo[live] * (2 * n_slo) + s, hi[live] * (2 * n_slo) + s
                index = np.concatenate([start, start + 1, stop, stop + 1])
                weight = np.concatenate([v[:, 0], v[:, 1], -v[:, 0], -v[:, 1]])
                counted = np.bincount(index, weight, size).astype(np.float64, copy=False)
                diff = counted.reshape(n_ticks + 1, n_slo * 2)
            elif held is not None:
                diff = np.zeros((n_ticks + 1, n_slo * 2))
            else:
                continue
            if held is not None:
                # What the ring holds, there from the first tick on (B_k - n < b <= B_k),
                # changes only where B_k does: its steps go into the differences too.
                cs, base = held
                at = np.flatnonzero(np.diff(tick_b, prepend=tick_b[0] - 1))
                b_at = tick_b[at]
                top = np.clip(b_at - base + 1, 0, len(cs) - 1)
                bottom = np.clip(b_at - n - base + 1, 0, len(cs) - 1)
                level_sums = cs[top] - cs[bottom]
                level_sums[1:] -= level_sums[:-1].copy()
                diff[at] += level_sums
            np.cumsum(diff[:n_ticks], axis=0, out=target)
    return out


def may_hold(
    windows: WindowSet, short: Collection[int], first_tick_s: int, slo: I64, bad: I64
) -> Bool:
    """(n_slo,) False for the columns whose windows `short` (the policy rows' short
    windows) hold no bad event at any tick from `first_tick_s` on, with the pairs
    (slo, bad) counted too: no row of theirs can hold (its factor is > 0), so the
    tick-by-tick evaluator would leave their alerts at rest."""
    out = np.zeros(windows.n_slo, dtype=bool)
    out[slo[bad > 0]] = True
    for level in windows.levels:
        if level.head is None:
            continue
        b0 = -(-first_tick_s // level.r) - 1  # the first tick's bucket
        for wi in level.windows:
            if wi not in short:
                continue
            first = max(b0 - windows.buckets[wi] + 1, level.head - level.length + 1)
            if first > level.head:
                continue
            slots = np.arange(first, level.head + 1) % level.length
            out |= level.grid()[slots, :, 1].any(axis=0)
    return out


def _aggregate(
    slo: I64, bucket: I64, applied: I64, total: I64, bad: I64, n_slo: int
) -> tuple[I64, I64, I64, I64]:
    """Sum the pairs per distinct (applied tick, grain bucket, SLO): a block of a replay
    holds many events per tick and bucket, and every later step is per pair."""
    if len(slo) == 0:
        return slo, bucket, applied, np.zeros((0, 2), dtype=np.int64)
    bmin = int(bucket.min())
    span = int(bucket.max()) - bmin + 1
    if (int(applied.max()) + 1) * span * n_slo >= 2**62:  # the key would not fit
        return slo, bucket, applied, np.stack([total, bad], axis=1).astype(np.int64)
    key = (applied * span + (bucket - bmin)) * n_slo + slo
    uniq, inverse = np.unique(key, return_inverse=True)
    vals = np.zeros((len(uniq), 2), dtype=np.int64)
    vals[:, 0] = np.bincount(inverse, total, len(uniq))  # exact: sums below 2^53
    vals[:, 1] = np.bincount(inverse, bad, len(uniq))
    rest, s = np.divmod(uniq, n_slo)
    a, b = np.divmod(rest, span)
    return s, b + bmin, a, vals


def _first_tick_after(t_s: I64, first_tick_s: int, tick_s: int, n_ticks: int) -> I64:
    """Index of the first tick later than each of `t_s`, in 0..n_ticks."""
    k: I64 = np.clip((t_s - first_tick_s) // tick_s + 1, 0, n_ticks)
    return k


def _held_cumsum(
    grid: npt.NDArray[np.generic], head: int | None, length: int
) -> tuple[F64, int] | None:
    """A ring's buckets oldest first as running sums ((length + 1, n_slo * 2), from 0)
    and the bucket of the first; None when the ring holds nothing."""
    if head is None or not grid.any():
        return None
    base = head - length + 1
    ordered = grid[np.arange(base, head + 1) % length].reshape(length, -1)
    cs = np.zeros((length + 1, ordered.shape[1]))
    np.cumsum(ordered, axis=0, out=cs[1:])
    return cs, base


def _first_tick_bucket(first_tick_s: int, tick_s: int, n_ticks: int, r: int) -> I64:
    """B_k = ceil(T_k / r) - 1 of every tick: the bucket the windows end with."""
    t = first_tick_s + tick_s * np.arange(n_ticks, dtype=np.int64)
    out: I64 = -((-t) // r) - 1
    return out


@dataclass(frozen=True, slots=True)
class AlertSteps:
    """The state machine of one severity over K ticks: `firing` after each tick
    ((K, n_slo)); the row a resolving alert reports, at each tick (`row`, or None when
    every alert fires exactly while its condition holds: then it is the row of the
    tick before); and the state after the last tick."""

    firing: Bool
    row: I64 | None
    firing_row: I64
    pending_since_s: F64
    last_true_s: F64
    firing_since_s: F64


def step_alerts(
    ticks: F64,
    holds: Bool,
    first: I64,
    *,
    for_s: F64,
    keep_firing_for_s: F64,
    firing: Bool,
    firing_row: I64,
    pending_since_s: F64,
    last_true_s: F64,
    firing_since_s: F64,
) -> AlertSteps:
    """Step the alerts of one severity through the ticks: `holds` and `first` (the row
    that would fire) are (K, n_slo); the keywords are the state before the first tick
    and the per-SLO settings. Returns what `Evaluator._evaluate` would leave."""
    n_ticks, n_slo = holds.shape
    cols = np.arange(n_slo)
    k = np.arange(n_ticks)[:, None]
    ever = holds.any(axis=0)
    # the last holding tick, and the last not holding (-1: none in these ticks)
    last_h = n_ticks - 1 - np.argmax(holds[::-1], axis=0)
    last_h = np.where(ever, last_h, -1)
    not_h = ~holds
    last_n = np.where(not_h.any(axis=0), n_ticks - 1 - np.argmax(not_h[::-1], axis=0), -1)
    # pending: the start of the last run of holding ticks, if it runs to the end
    run_from = ticks[np.minimum(last_n + 1, n_ticks - 1)]
    carried = np.where(np.isnan(pending_since_s), ticks[0], pending_since_s)
    pending = np.where(holds[-1], np.where(last_n >= 0, run_from, carried), np.nan)
    last_true = np.where(ever, ticks[np.maximum(last_h, 0)], last_true_s)
    if not (for_s.any() or keep_firing_for_s.any()):
        # The default rule: an alert fires exactly while its condition holds.
        fire = holds
        row: I64 | None = None
    else:
        t = ticks[:, None]
        before = np.vstack([~np.isnan(pending_since_s)[None, :], holds[:-1]])
        starts = np.where(holds & ~before, t, -np.inf)
        starts[0] = np.where(holds[0] & before[0], pending_since_s, starts[0])
        run_start = np.maximum.accumulate(starts, axis=0)
        last0 = np.where(np.isnan(last_true_s), -np.inf, last_true_s)
        last = np.maximum(np.maximum.accumulate(np.where(holds, t, -np.inf), axis=0), last0)
        with np.errstate(invalid="ignore"):
            on = holds & (t - run_start >= for_s)
            still = t - last < keep_firing_for_s  # -inf last: never held, nothing to keep
        off = not_h & ~still
        decided = np.maximum.accumulate(np.where(on | off, k, -1), axis=0)
        fire = np.where(decided >= 0, on[np.maximum(decided, 0), cols], firing)
        set_row = np.maximum.accumulate(np.where(fire & holds, k, -1), axis=0)
        row = np.where(set_row >= 0, first[np.maximum(set_row, 0), cols], firing_row)
    # the row after the last tick: of the last tick it fired or went on holding
    set_last = np.where(fire & holds, k, -1).max(axis=0)
    final_row = np.where(set_last >= 0, first[np.maximum(set_last, 0), cols], firing_row)
    was = np.vstack([firing[None, :], fire[:-1]])
    fired_at = np.where(fire & ~was, k, -1).max(axis=0)
    since = np.where(fired_at >= 0, ticks[np.maximum(fired_at, 0)], firing_since_s)
    return AlertSteps(
        firing=fire,
        row=row,
        firing_row=final_row,
        pending_since_s=pending,
        last_true_s=last_true,
        firing_since_s=np.where(fire[-1], since, np.nan),
    )
