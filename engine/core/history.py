"""A compact, downsampled history per SLO for the web UI's charts.

Theory of operation
-------------------
The window rings answer "what is the burn rate now"; a chart needs "what was it an
hour, a day, a month ago", which the rings cannot say (they hold counts, not the burn
rates and budget as they stood). `History` samples the evaluator after each
evaluation (`observe`, time passed in as the evaluation's event time) into a few
*tiers*, each a ring of fixed-width time buckets: by default the last hour at 1 minute,
the last day at 20 minutes and the last 30 days at 4 hours. A sample falling into the
newest bucket of a tier merges into it; one falling into a later bucket starts a new
point (the buckets skipped in between stay empty: no data, not zero), overwriting the
oldest. Merging keeps what a chart of alerts needs rather than an average that would
hide a spike:

- burn rate of each policy window: the *highest* of the bucket's samples, so a burn
  that crossed a row's factor for a moment still crosses it on the chart;
- error budget remaining: the *last* sample (the budget is a level, not a rate);
- good and bad events: the events counted between samples (the evaluator's running
  totals, differenced), summed over the bucket;
- the point's time: its last sample's, so the newest point is the evaluator now.

Memory is fixed at construction and bounded in bytes: per SLO column and point,
2 bytes of budget and 2 per window (float16: three significant digits are plenty for
a chart; values beyond float16's range are clipped to +-65504) and 8 for the two event
counts (float32), i.e. `bytes_per_slo` = sum over tiers of points * (10 + 2 * windows).
With the default tiers (312 points) and the default policy's 7 windows that is 7,488
bytes per SLO for 30 days. The history is not part of the state snapshot: it starts
empty at each start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from engine.core.evaluator import Evaluator

__all__ = [
    "DEFAULT_TIERS",
    "F16_MAX",
    "History",
    "HistoryTier",
    "Tier",
    "TierSeries",
    "policy_windows_s",
]

F16_MAX: Final = float(np.finfo(np.float16).max)


@dataclass(frozen=True, slots=True)
class Tier:
    """`points` buckets of `resolution_s` seconds: a span of their product."""

    resolution_s: int
    points: int

    def __post_init__(self) -> None:
        if self.resolution_s < 1 or self.points < 1:
            raise ValueError("a history tier needs resolution_s >= 1 and points >= 1")

    @property
    def span_s(self) -> int:
        return self.resolution_s * self.points


DEFAULT_TIERS: Final = (Tier(60, 60), Tier(1200, 72), Tier(4 * 3600, 180))
"""1 hour at 1 minute, 1 day at 20 minutes, 30 days at 4 hours."""


@dataclass(frozen=True, slots=True)
class TierSeries:
    """One tier's points for one SLO column, oldest first; None where no data."""

    resolution_s: int
    span_s: int
    t_s: list[float]
    budget_remaining: list[float | None]
    good: list[float]
    bad: list[float]
    burn_rates: list[list[float | None]]
    """One list per window of `History.windows_s`, in that order."""


def policy_windows_s(evaluator: Evaluator) -> tuple[int, ...]:
    """The long and short windows of the evaluator's policy rows, shortest first: what
    a chart or list of burn rates against the rows' factors shows (not the periods)."""
    kept = {w for r in evaluator.rows for w in (r.long_s, r.short_s)}
    return tuple(w for w in evaluator.windows_s if w in kept)


def _f16(a: npt.NDArray[np.float64]) -> npt.NDArray[np.float16]:
    return np.clip(a, -F16_MAX, F16_MAX).astype(np.float16)


def _nullable(a: npt.NDArray[np.floating]) -> list[float | None]:
    return [None if math.isnan(x) else x for x in a.astype(np.float64).tolist()]


class HistoryTier:
    """One ring of buckets for every SLO column."""

    def __init__(self, tier: Tier, n_slo: int, n_windows: int) -> None:
        self.tier = tier
        p = tier.points
        self.t_s = np.full(p, np.nan)
        self.budget = np.full((p, n_slo), np.nan, dtype=np.float16)
        self.burn = np.full((p, n_slo, n_windows), np.nan, dtype=np.float16)
        self.good = np.zeros((p, n_slo), dtype=np.float32)
        self.bad = np.zeros((p, n_slo), dtype=np.float32)
        self._head = p - 1
        self._bucket: int | None = None

    def _clear(self, slot: int) -> None:
        self.t_s[slot] = np.nan
        self.budget[slot] = np.nan
        self.burn[slot] = np.nan
        self.good[slot] = 0.0
        self.bad[slot] = 0.0

    def add(
        self,
        t_s: float,
        budget: npt.NDArray[np.float16],
        burn: npt.NDArray[np.float16],
        good: npt.NDArray[np.float32],
        bad: npt.NDArray[np.float32],
    ) -> None:
        bucket = math.floor(t_s / self.tier.resolution_s)
        p = self.tier.points
        if self._bucket is None or bucket > self._bucket:
            steps = p if self._bucket is None else min(bucket - self._bucket, p)
            for _ in range(steps):
                self._head = (self._head + 1) % p
                self._clear(self._head)
            self._bucket = bucket
        h = self._head
        self.t_s[h] = t_s
        self.budget[h] = np.where(np.isnan(budget), self.budget[h], budget)
        np.fmax(self.burn[h], burn, out=self.burn[h])
        self.good[h] += good
        self.bad[h] += bad

    def series(self, column: int) -> TierSeries:
        order = np.roll(np.arange(self.tier.points), -(self._head + 1))
        have = order[~np.isnan(self.t_s[order])]
        burn = self.burn[have, column, :]
        return TierSeries(
            resolution_s=self.tier.resolution_s,
            span_s=self.tier.span_s,
            t_s=self.t_s[have].tolist(),
            budget_remaining=_nullable(self.budget[have, column]),
            good=self.good[have, column].astype(np.float64).tolist(),
            bad=self.bad[have, column].astype(np.float64).tolist(),
            burn_rates=[_nullable(burn[:, w]) for w in range(burn.shape[1])],
        )


class History:
    """The tiers of every SLO column of an evaluator, and the windows they keep.

    The windows are the policy rows' long and short windows (what the charts draw
    against the rows' factors), shortest first."""

    def __init__(self, evaluator: Evaluator, tiers: tuple[Tier, ...] = DEFAULT_TIERS) -> None:
        if not tiers:
            raise ValueError("a history needs at least one tier")
        self.use(evaluator, tiers)

    def use(self, evaluator: Evaluator, tiers: tuple[Tier, ...] | None = None) -> None:
        """Start over for `evaluator` (its SLOs and windows), with `tiers` or the same
        tiers as before: after a config reload, whose SLO columns are others."""
        if tiers is None:
            tiers = tuple(t.tier for t in self.tiers)
        ev = evaluator
        self.windows_s = policy_windows_s(ev)
        self._window_rows = np.array([ev.window_index(w) for w in self.windows_s], dtype=int)
        n = len(ev.slos)
        self.tiers: list[HistoryTier] = [HistoryTier(t, n, len(self.windows_s)) for t in tiers]
        self._totals = np.zeros(n, dtype=np.int64)
        self._bad = np.zeros(n, dtype=np.int64)
        self._last_t: float | None = None

    @property
    def bytes_per_slo(self) -> int:
        """Bytes the tiers hold per SLO column (their time axes, shared, aside)."""
        per_point = 2 + 2 * len(self.windows_s) + 4 + 4
        return sum(t.tier.points for t in self.tiers) * per_point

    @property
    def nbytes(self) -> int:
        """Bytes of every array of every tier."""
        return sum(a.nbytes for t in self.tiers for a in (t.t_s, t.budget, t.burn, t.good, t.bad))

    def rebase(self, evaluator: Evaluator) -> None:
        """Take the evaluator's running totals as the point events are counted from (after
        it loaded a state snapshot: the events counted before are not this history's)."""
        counts = evaluator.counts()
        self._totals = counts.events_total.copy()
        self._bad = counts.bad_events_total.copy()

    def observe(self, evaluator: Evaluator) -> None:
        """Sample the evaluator at its evaluation time (nothing before its first)."""
        t = evaluator.evaluated_at_s
        if t is None:
            return
        counts = evaluator.counts()
        total, bad = counts.events_total, counts.bad_events_total
        d_total = np.maximum(total - self._totals, 0)
        d_bad = np.maximum(bad - self._bad, 0)
        self._totals, self._bad = total.copy(), bad.copy()
        if self._last_t is not None and t == self._last_t and not d_total.any():
            return  # nothing moved since the last sample
        self._last_t = t
        good32 = (d_total - d_bad).astype(np.float32)
        bad32 = d_bad.astype(np.float32)
        budget = _f16(evaluator.budget_remaining())
        burn = _f16(evaluator.burn_rates()[self._window_rows].T)
        for tier in self.tiers:
            tier.add(t, budget, burn, good32, bad32)

    def series(self, column: int) -> list[TierSeries]:
        """Every tier's points for the SLO column, finest tier first."""
        return [t.series(column) for t in self.tiers]
