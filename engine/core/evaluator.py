"""The evaluator: event-time ingestion, multi-window multi-burn-rate alerting.

Theory of operation
-------------------
Events arrive as columns. Each one is checked against the *watermark* (the highest
event time accepted so far; in live mode capped at the wall clock passed in as
`now_s`): older than `watermark - allowed_lateness` is `too_late`, later than
`now_s + future_limit` is `too_far_in_future`. Accepted events are expanded into
(event, SLO) pairs by the classifier and counted into the windows.

Evaluation happens on a fixed grid of event times T = k * tick. Tick T is evaluated
as soon as the watermark passes it, i.e. just before the first event with a later
time is counted, so a batch is cut at those points and the result does not depend
on how the stream was split into batches. At T every window is (T - W, T] (to within
one bucket, see `windows`), the burn rate is error ratio / error budget, and an alert
of severity S holds when, for some policy row of S, both its long and short window
burn at >= the row's factor. A window without events is *no data*: its ratio is NaN
internally, never good, never bad, and NaN compares false, so it cannot fire.

Alerts are one per (SLO, severity). By default (the SRE Workbook rule, like Sloth)
an alert fires at the first tick its condition holds and resolves at the first tick
it does not. `for` delays firing until the condition has held that long,
`keep_firing_for` delays resolving until it has been false that long, and
`min_events`/`min_bad_events` treat thin windows as no data. The result of ingest
is a list of `Transition` values; the evaluator does no I/O.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Literal

import msgspec
import numpy as np
import numpy.typing as npt

from engine.core import snapshot as _snapshot
from engine.core.config import Config
from engine.core.matching import Classifier, EventColumns
from engine.core.windows import WindowSet

F64 = npt.NDArray[np.float64]
SEVERITIES: tuple[str, ...] = ("page", "ticket")


class Transition(msgspec.Struct, frozen=True, kw_only=True):
    """An alert changed state. For `resolved`, the row is the one that held last."""

    slo: str
    severity: str
    state: Literal["firing", "resolved"]
    at: float
    long_window_s: int
    short_window_s: int
    burn_rate_long: float | None
    burn_rate_short: float | None
    factor: float
    error_budget_remaining_ratio: float | None


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


class Evaluator:
    """All SLOs of one config: windows, alert state, counters."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.slos = list(config.slos)
        self.names = [s.name for s in self.slos]
        n = len(self.slos)
        ev = config.evaluation
        self.tick_s = ev.tick_s
        self.lateness_s = ev.allowed_lateness_s
        self.future_s = ev.future_limit_s
        self.for_s = ev.for_s
        self.keep_firing_for_s = ev.keep_firing_for_s
        self.min_events = ev.min_events
        self.min_bad_events = ev.min_bad_events
        self.classifier = Classifier(self.slos, config.taxonomy)
        self.windows = WindowSet(
            n, config.windows_s(), ahead_s=self.future_s + self.lateness_s + 2 * self.tick_s
        )
        self.budget_ratio = np.array([s.error_budget_ratio for s in self.slos])
        self.rows = list(config.policy)
        self.severities = [s for s in SEVERITIES if any(r.severity == s for r in self.rows)]
        self.row_windows_s = [(r.long_s, r.short_s) for r in self.rows]
        self._budget_at_tick = np.full(n, np.nan)
        self.row_long = np.array([self.windows.index(r.long_s) for r in self.rows])
        self.row_short = np.array([self.windows.index(r.short_s) for r in self.rows])
        self.factor = np.array(
            [[r.factor_for(s.period_s) for r in self.rows] for s in self.slos]
        ).reshape(n, len(self.rows))
        self.period_index = np.array([self.windows.index(s.period_s) for s in self.slos], dtype=int)
        shape = (n, len(self.severities))
        self.firing = np.zeros(shape, dtype=bool)
        self.firing_row = np.full(shape, -1, dtype=np.int64)
        self.firing_since = np.full(shape, np.nan)
        self._pending_since = np.full(shape, np.nan)
        self._last_true = np.full(shape, np.nan)
        # counters
        self.events_total = np.zeros(n, dtype=np.int64)
        self.bad_events_total = np.zeros(n, dtype=np.int64)
        self.rejected: Counter[str] = Counter()
        self.accepted_events = 0
        self.unmatched_events = 0
        self.unknown_status_events = 0
        # time
        self.watermark_s = -math.inf
        self.next_tick_s: float | None = None
        self.evaluated_at_s: float | None = None
        self._max_event_ts = -math.inf

    # -- ingestion -------------------------------------------------------------------

    def ingest(self, cols: EventColumns, now_s: float | None = None) -> list[Transition]:
        """Count a batch of events and evaluate every tick the watermark passes."""
        n = len(cols)
        if n == 0:
            return []
        ts = cols.ts_s
        ok = ~np.isnan(ts)
        if not ok.all():
            self.rejected["missing_ts"] += int((~ok).sum())
        if now_s is not None:
            future = ok & (ts > now_s + self.future_s)
            if future.any():
                self.rejected["too_far_in_future"] += int(future.sum())
                ok &= ~future
            cand = np.where(ok, np.minimum(ts, now_s), -np.inf)
        else:
            cand = np.where(ok, ts, -np.inf)
        wm_after = np.maximum.accumulate(np.concatenate(([self.watermark_s], cand)))
        wm_before, wm_after = wm_after[:-1], wm_after[1:]
        late = ok & (ts < wm_before - self.lateness_s)
        if late.any():
            self.rejected["too_late"] += int(late.sum())
            ok &= ~late
        if not ok.any():
            return []
        if self.next_tick_s is None:
            first = float(ts[np.argmax(ok)])
            self.next_tick_s = math.ceil(first / self.tick_s) * self.tick_s
            self.windows.advance_to(self.next_tick_s - self.tick_s)
        nslo = self.classifier.slo_count(cols)
        self.accepted_events += int(cols.count[ok].sum())
        self.unmatched_events += int(cols.count[ok & (nslo == 0)].sum())
        self.unknown_status_events += int(
            cols.count[ok & self.classifier.unknown_status(cols)].sum()
        )
        pairs = self.classifier.pairs(cols)
        keep = ok[pairs.event]
        p_event, p_slo = pairs.event[keep], pairs.slo[keep]
        p_total, p_bad = pairs.total[keep], pairs.bad[keep]
        p_ts = ts[p_event]
        transitions: list[Transition] = []
        start = 0
        while True:
            cut = int(np.searchsorted(wm_after, self.next_tick_s, side="right"))
            lo, hi = np.searchsorted(p_event, [start, cut])
            self._apply(p_slo[lo:hi], p_ts[lo:hi], p_total[lo:hi], p_bad[lo:hi])
            if cut >= n:
                break
            transitions += self._evaluate_until(float(wm_after[cut]))
            start = cut
        self.watermark_s = float(wm_after[-1])
        return transitions

    def advance(self, t_s: float) -> list[Transition]:
        """Move event time to `t_s` without events (idle partitions follow the wall clock)."""
        if t_s <= self.watermark_s:
            return []
        self.watermark_s = t_s
        if self.next_tick_s is None:
            self.next_tick_s = math.ceil(t_s / self.tick_s) * self.tick_s
            self.windows.advance_to(self.next_tick_s - self.tick_s)
            return []
        return self._evaluate_until(t_s)

    def flush(self) -> list[Transition]:
        """Evaluate the tick that closes the last event seen (end of a replay)."""
        if self.next_tick_s is None or self.evaluated_at_s == self.next_tick_s:
            return []
        return self._evaluate_until(self.next_tick_s + self.tick_s / 2)

    def _apply(
        self,
        slo: npt.NDArray[np.int32],
        ts: F64,
        total: npt.NDArray[np.int64],
        bad: npt.NDArray[np.int64],
    ) -> None:
        if len(slo) == 0:
            return
        self.windows.add(slo, ts, total, bad)
        self.events_total += np.bincount(slo, weights=total, minlength=len(self.slos)).astype(
            np.int64
        )
        self.bad_events_total += np.bincount(slo, weights=bad, minlength=len(self.slos)).astype(
            np.int64
        )
        self._max_event_ts = max(self._max_event_ts, float(ts.max()))

    # -- evaluation ------------------------------------------------------------------

    def _evaluate_until(self, watermark_s: float) -> list[Transition]:
        """Evaluate every grid tick T < watermark_s not evaluated yet."""
        assert self.next_tick_s is not None
        out: list[Transition] = []
        while self.next_tick_s < watermark_s:
            t = self.next_tick_s
            if self._quiet():
                # Nothing counted and nothing pending: every tick up to the last one before
                # the watermark would see empty windows, so skip straight to it.
                t = max(t, (math.ceil(watermark_s / self.tick_s) - 1) * self.tick_s)
            self.windows.advance_to(t)
            out += self._evaluate(t)
            self.evaluated_at_s = t
            self.next_tick_s = t + self.tick_s
        return out

    def _quiet(self) -> bool:
        """True when no counted event lies ahead of the windows' time and all is at rest."""
        t = self.windows.t
        return (
            t is not None
            and self._max_event_ts <= t
            and self.windows.is_empty()
            and not self.firing.any()
            and bool(np.isnan(self._pending_since).all())
        )

    def burn_rates(self) -> F64:
        """(n_windows, n_slo) burn rates at the evaluation time; NaN where no data."""
        out: F64 = self.error_ratios() / self.budget_ratio
        return out

    def _evaluate(self, t: float) -> list[Transition]:
        sums = self.windows.all_sums
        burn = self.burn_rates()
        self._budget_at_tick = self.budget_remaining()  # once per tick, not per transition
        long_b, short_b = burn[self.row_long].T, burn[self.row_short].T  # (n_slo, n_rows)
        holds_rows = (long_b >= self.factor) & (short_b >= self.factor)
        if self.min_events or self.min_bad_events:
            for side in (self.row_long, self.row_short):
                s = sums[side]  # (n_rows, n_slo, 2)
                thick = (s[..., 0] >= self.min_events) & (s[..., 1] >= self.min_bad_events)
                holds_rows &= thick.T
        out: list[tuple[int, int, Transition]] = []
        for j, sev in enumerate(self.severities):
            cols = [i for i, r in enumerate(self.rows) if r.severity == sev]
            sev_rows = holds_rows[:, cols]
            holds = sev_rows.any(axis=1)
            first = np.asarray(cols)[np.argmax(sev_rows, axis=1)]
            pending = self._pending_since[:, j]
            pending[holds & np.isnan(pending)] = t
            pending[~holds] = np.nan
            last_true = self._last_true[:, j]
            last_true[holds] = t
            firing = self.firing[:, j]
            with np.errstate(invalid="ignore"):
                ready = holds & (t - pending >= self.for_s)
                kept = firing & ~holds & (t - last_true < self.keep_firing_for_s)
            should = ready | (firing & holds) | kept
            row = self.firing_row[:, j]
            for i in np.flatnonzero(should & ~firing):
                row[i] = first[i]
                self.firing_since[i, j] = t
                out.append(
                    (int(i), j, self._transition(int(i), sev, "firing", t, int(first[i]), burn))
                )
            for i in np.flatnonzero(firing & ~should):
                out.append(
                    (int(i), j, self._transition(int(i), sev, "resolved", t, int(row[i]), burn))
                )
                self.firing_since[i, j] = np.nan
            update = should & holds
            row[update] = first[update]
            firing[:] = should
        out.sort(key=lambda x: (x[0], x[1]))  # per tick: by SLO in config order, then severity
        return [tr for _, _, tr in out]

    def _transition(
        self,
        i: int,
        severity: str,
        state: Literal["firing", "resolved"],
        t: float,
        r: int,
        burn: F64,
    ) -> Transition:
        return Transition(
            slo=self.names[i],
            severity=severity,
            state=state,
            at=t,
            long_window_s=self.row_windows_s[r][0],
            short_window_s=self.row_windows_s[r][1],
            burn_rate_long=_none_if_nan(float(burn[self.row_long[r], i])),
            burn_rate_short=_none_if_nan(float(burn[self.row_short[r], i])),
            factor=float(self.factor[i, r]),
            error_budget_remaining_ratio=_none_if_nan(float(self._budget_at_tick[i])),
        )

    # -- snapshots -------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """All state (windows, alerts, counters, event time) as bytes; see `restore`."""
        return _snapshot.snapshot(self)

    def restore(self, data: bytes) -> None:
        """Continue from a `snapshot()` taken by an evaluator of a config of the same
        shape; raises SnapshotError (changing nothing) when it does not fit."""
        _snapshot.restore(self, data)

    # -- reporting -------------------------------------------------------------------

    def error_ratios(self) -> F64:
        """(n_windows, n_slo) error ratios; NaN where a window has no events."""
        sums = self.windows.all_sums
        with np.errstate(invalid="ignore", divide="ignore"):
            out: F64 = sums[..., 1] / sums[..., 0]
        return out

    def budget_remaining(self) -> F64:
        """Share of each SLO's error budget left over its period (1 = untouched,
        negative = overspent); NaN when the period holds no events."""
        sums = self.windows.all_sums[self.period_index, np.arange(len(self.slos))]
        with np.errstate(invalid="ignore", divide="ignore"):
            return 1.0 - (sums[:, 1] / sums[:, 0]) / self.budget_ratio  # type: ignore[no-any-return]
