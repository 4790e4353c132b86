"""The evaluator: event-time ingestion, multi-window multi-burn-rate alerting.

Theory of operation
-------------------
Events arrive as columns. Each one is checked against the *watermark* (the highest
event time accepted so far; in live mode capped at the wall clock passed in as
`now_s`): older than `watermark - allowed_lateness` is `too_late`. Accepted events are
expanded into (event, SLO) pairs by the classifier and counted into the windows;
pairs inside a correction for their SLO (`engine.core.corrections`) are left out and
counted apart (`EventCounts.excluded_events`); with no corrections that costs nothing.

Event time passes only what has been consumed. A caller reading several streams (the
Kafka source: one per partition) passes `watermark_cap_s`, the newest event time
consumed from the stream furthest behind (None when every stream is caught up): the
watermark never passes it, so the events a lagging stream still holds are judged
against its own past, not against a stream that is ahead, and no tick is evaluated
before they are in. `advance` takes the same cap. The caller does the bookkeeping per
stream; the evaluator only sees the one number. One bound remains: an accepted event
is never more than `future_limit + allowed_lateness` (the windows' ring headroom)
ahead of the watermark, so a stream ahead of the cap by more than that pushes the
watermark up to `its event - that headroom` (the rings cannot hold more).

Too far in the future: in live mode, later than `now_s + future_limit` (the wall
clock). Without a wall clock (replay, `stream_future=True`), later than
`watermark + future_limit`, after the first event (which sets the watermark) -- unless
the next record (line) continues there, which makes it a gap in the stream rather
than a bad timestamp: a lone far-future line is rejected, not believed (believing it
would make every later event `too_late`), while a recorded silence longer than the
limit is just a gap. The caller hands over the time of the first event after the
batch (`next_ts_s`) for the last record's lookahead.

Evaluation happens on a fixed grid of event times T = k * tick. Tick T is evaluated
as soon as the watermark passes it, i.e. just before the first event with a later
time is counted, so a batch is cut at those points and the result does not depend
on how the stream was split into batches. At T every window is (T - W, T] (to within
one bucket, see `windows`), the burn rate is error ratio / error budget, and an alert
of severity S holds when, for some policy row of S of that SLO, both its long and
short window burn at >= the row's factor. A window without events is *no data*: its
ratio is NaN internally, never good, never bad, and NaN compares false, so it cannot
fire.

An SLO's rows are its own `policy:` or else the top-level one. The evaluator keeps
one list of rows, the union of every distinct row some SLO uses, evaluates all of them
for all SLOs in one pass of whole-array operations, and masks out the rows an SLO does
not have (`row_mask`); the first holding row is the first in *that SLO's* policy order
(`row_rank`). An SLO without rows of a severity never fires it.

A composite SLO (`composite:` in the config) has no events of its own: its column of
every (window, SLO) array is derived each tick from its members' with one matrix
product, and from there on it is one more SLO to the alert and budget code. Its error
ratio over a window is the weighted average of its members' error ratios over the
members with events in that window (weights renormalised over them; no member with
events is no data), which is 1 - the weighted average of their good ratios (OpenSLO
`compositeWeight`). Its window sums (`window_sums`, `min_events`, `min_bad_events`) and
totals (`counts`) are the sums of its members'; its own columns of the rings stay empty.

Alerts are one per (SLO, severity). By default (the SRE Workbook rule, like Sloth)
an alert fires at the first tick its condition holds and resolves at the first tick
it does not. `for` delays firing until the condition has held that long,
`keep_firing_for` delays resolving until it has been false that long, and
`min_events`/`min_bad_events` treat thin windows as no data. The result of ingest
is a list of `Transition` values; the evaluator does no I/O.

Reading and restoring
---------------------
The evaluator's arrays are its own; readers get values and read-only arrays:

- `error_ratios()`, `burn_rates()`: (n_windows, n_slo) at the last evaluation, NaN
  where a window has no events; `window_sums()`: the (total, bad) counts behind them;
  `budget_remaining()`: per SLO over its period (math in `engine.core.budget`), and
  `period_sums()` the counts behind it: a rolling SLO's period window, a calendar
  SLO's period to date (`engine.core.periods`), whose bounds `period_bounds()` gives;
- `alerts()`: an `AlertState`, the state machine of every (SLO, severity) alert;
- `counts()`: an `EventCounts`, per-SLO totals and accepted/unmatched/rejected counts
  (`rejected_counts()` for the rejections alone);
- `watermark_s`, `next_tick_s`, `evaluated_at_s`: the event-time clock, read-only;
- `state()` / `load_state()`: all of the above and the window rings, as one
  `EvaluatorState`; `engine.core.snapshot` turns it into bytes and back. Loading
  checks everything fits before it changes anything.

Records rejected before they reach the evaluator (undecodable, invalid) are counted
with `reject(reason)`, so that all rejections are in one place.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import fields
from typing import Literal

import numpy as np
import numpy.typing as npt

from engine.core import budget, budget_alerts
from engine.core.arrays import F64, I32, I64, read_only
from engine.core.config import Config, Correction, Evaluation, Severity
from engine.core.corrections import CorrectionIndex
from engine.core.evaluator_budget import BudgetAlertsMixin
from engine.core.evaluator_counts import CountsMixin
from engine.core.evaluator_groups import GroupsMixin
from engine.core.evaluator_multitick import MultiTickMixin
from engine.core.evaluator_state import AlertState, BudgetAlertState, EvaluatorState, EventCounts
from engine.core.evaluator_views import ViewsMixin
from engine.core.matching import Classifier, EventColumns
from engine.core.periods import PeriodCounts
from engine.core.transitions import SEVERITIES, AlertKey, ChangeNote, Transition, none_if_nan
from engine.core.windows import WindowSet, sum_by

__all__ = [
    "SEVERITIES",
    "AlertKey",
    "AlertState",
    "BudgetAlertState",
    "ChangeNote",
    "Evaluator",
    "EvaluatorState",
    "EventCounts",
    "Transition",
]


class Evaluator(ViewsMixin, BudgetAlertsMixin, GroupsMixin, MultiTickMixin, CountsMixin):
    """All SLOs of one config: windows, alert state, counters."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.config_slos = list(config.slos)
        self.classifier = Classifier(self.config_slos, config.taxonomy)
        self.column_slo = read_only(self.classifier.column_slo)
        """The configured SLO of each column: one column per SLO, `max_groups + 1` per
        grouped SLO (its groups, then the overflow group)."""
        self.slos = [self.config_slos[j] for j in self.column_slo]
        """The SLO of each column (a grouped SLO's once per group)."""
        self.names = [s.name for s in self.slos]
        """The SLO name of each column (a grouped SLO's for each of its groups)."""
        self.column_base = read_only(self.classifier.column_base)
        """The first column of each configured SLO."""
        n = len(self.slos)
        ev = config.evaluation
        self.tick_s = ev.tick_s
        self.lateness_s = ev.allowed_lateness_s
        self.future_s = ev.future_limit_s
        # per column: the config's for every column, unless `set_alert_settings` says
        self.for_s = np.full(n, ev.for_s)
        self.keep_firing_for_s = np.full(n, ev.keep_firing_for_s)
        self.min_events = np.full(n, ev.min_events, dtype=np.int64)
        self.min_bad_events = np.full(n, ev.min_bad_events, dtype=np.int64)
        self._thin = bool(ev.min_events or ev.min_bad_events)
        self.windows = WindowSet(
            n,
            config.windows_s(),
            ahead_s=self.future_s + self.lateness_s + 2 * self.tick_s,
            tick_s=self.tick_s,
        )
        self._headroom_s = self.future_s + self.lateness_s
        """How far ahead of the watermark an event may be counted: the rings hold up to
        `ahead_s`, and the windows' time trails the watermark by less than 2 ticks."""
        # Config-derived arrays are public but read-only: nothing outside may change them.
        self.budget_ratio = read_only(np.array([s.error_budget_ratio for s in self.slos]))
        self.rows = config.policy_rows()
        """Every distinct row some SLO uses (`Config.policy_rows`): `firing_row`,
        `row_long`, `row_short`, `row_windows_s` and the columns of `factor`,
        `row_mask` and `row_rank` index this list."""
        n_rows = len(self.rows)
        union = {r.key: u for u, r in enumerate(self.rows)}
        rank = np.full((n, n_rows), n_rows, dtype=np.int64)
        for i, slo in enumerate(self.slos):
            own = dict.fromkeys(r.key for r in config.policy_of(slo))  # distinct, in order
            for k, key in enumerate(own):
                rank[i, union[key]] = k
        self.row_rank = read_only(rank)
        """(n_slo, n_rows) position of each row in the SLO's own policy order (after
        removing repeats), `n_rows` where the SLO does not have the row: of the rows that
        hold, the one of lowest rank is reported, as if the SLO's rows were the only ones."""
        self.row_mask = read_only(rank < n_rows)
        """(n_slo, n_rows) True where the SLO is evaluated with the row."""
        self.severities: tuple[Severity, ...] = tuple(
            s for s in SEVERITIES if any(r.severity == s for r in self.rows)
        )
        self._severity_rows = [
            np.array([u for u, r in enumerate(self.rows) if r.severity == sev], dtype=np.int64)
            for sev in self.severities
        ]
        self.row_windows_s = [(r.long_s, r.short_s) for r in self.rows]
        self.row_long = read_only(np.array([self.windows.index(r.long_s) for r in self.rows]))
        self.row_short = read_only(np.array([self.windows.index(r.short_s) for r in self.rows]))
        # Every (SLO, row), the rows an SLO does not have included: whole-array compares
        # are cheaper than gathers, and `row_mask` discards those cells.
        self.factor = read_only(
            np.array([[r.factor_for(s.period_s) for r in self.rows] for s in self.slos]).reshape(
                n, len(self.rows)
            )
        )
        self.period_index = read_only(
            np.array(
                [0 if s.calendar else self.windows.index(s.period_s) for s in self.slos], dtype=int
            )
        )
        """Per SLO, the window its budget is over (0, unused, for a calendar SLO)."""
        self._periods = PeriodCounts(
            [(c.calendar, c.time_zone) if (c := s.calendar) else None for s in self.slos]
        )
        # Composite SLOs: more columns of every (window, SLO) array, derived from their
        # members' (their own window columns stay empty: the classifier selects no events
        # for them). See docs/design.md, "Composite SLOs".
        base = self.classifier.column_base
        index = {s.name: int(base[j]) for j, s in enumerate(self.config_slos) if not s.group_by}
        composites = [i for i, s in enumerate(self.slos) if s.composite is not None]
        weights = np.zeros((len(composites), n))
        for k, i in enumerate(composites):
            for member in self.slos[i].composite or ():
                weights[k, index[member.slo]] = member.weight
        self.composite_index = read_only(np.array(composites, dtype=np.int64))
        """Columns (SLO indices) of the composite SLOs, in config order."""
        self.composite_weights = read_only(weights)
        """(n_composite, n_slo) each composite's member weights, 0 off its members."""
        self._members = read_only((weights > 0).astype(np.int64))
        shape = (n, len(self.severities))
        # alert state machine (see AlertState); mutated in place by _evaluate
        self._alerts = AlertState(
            firing=np.zeros(shape, dtype=bool),
            firing_row=np.full(shape, -1, dtype=np.int64),
            firing_since_s=np.full(shape, np.nan),
            pending_since_s=np.full(shape, np.nan),
            last_true_s=np.full(shape, np.nan),
            budget_at_tick_ratio=np.full(n, np.nan),
        )
        # budget alerts and escalations (engine.core.budget_alerts); mutated by _evaluate
        self.budget_alert_columns = budget_alerts.alert_columns(config, self.slos)
        """Every budget alert and escalation, in the order of the second axis of
        `budget_alerts()`."""
        settings = config.budget_alerts
        self.budget_lookback_s = (settings.lookback_s if settings else None) or (
            budget.exhaustion_window_s(self.windows_s, (r.long_s for r in self.rows))
        )
        """The burn-rate window budget alerts project at: `budget_alerts.lookback`, else
        the window time to exhaustion is reported at (1h, or the shortest long window)."""
        self.budget_horizon_s = settings.horizon_s if settings else None
        self.period_s = read_only(np.array([s.period_s for s in self.slos], dtype=np.float64))
        k = len(self.budget_alert_columns)
        self._budget = BudgetAlertState(
            keys=tuple(c.key for c in self.budget_alert_columns),
            firing=np.zeros((n, k), dtype=bool),
            firing_since_s=np.full((n, k), np.nan),
        )
        # corrections: the config's, then those added at run time
        self._runtime_corrections: list[Correction] = []
        self._corrections = CorrectionIndex(config.corrections, self.slos)
        # counters
        self._events_total = np.zeros(n, dtype=np.int64)
        self._excluded_total = np.zeros(n, dtype=np.int64)
        self._bad_events_total = np.zeros(n, dtype=np.int64)
        self._rejected: Counter[str] = Counter()
        self._accepted_events = 0
        self._unmatched_events = 0
        self._unknown_status_events = 0
        self.on_counted: Callable[[I32, F64, I64, I64], None] | None = None
        """Told of every (event, SLO) pair counted, as (column, ts, total, bad) arrays
        (a backtest keeps its own per-bucket series with it); None: nobody. With a
        `column_source`, only the pairs of source columns: each other column counted
        its source's again."""
        # time
        self._watermark_s = -math.inf
        self._next_tick_s: float | None = None
        self._evaluated_at_s: float | None = None
        self._max_event_ts = -math.inf
        self._held_s = -math.inf
        """Where the watermark would stand without the caller's caps: the newest event
        time accepted while a cap held it back (capped at the wall clock). `advance`
        without a cap releases it, so once every stream is caught up an idle engine
        evaluates up to the newest event it has read, not only to the wall clock minus
        the lateness."""

    def set_alert_settings(self, columns: slice, evaluation: Evaluation) -> None:
        """Give `columns` the alert settings of `evaluation` (`for`, `keep_firing_for`,
        `min_events`, `min_bad_events`) in place of the config's; the tick, lateness and
        future limit stay the config's. For a backtest that evaluates candidates with
        their own settings as copies of every SLO in one evaluator."""
        self.for_s[columns] = evaluation.for_s
        self.keep_firing_for_s[columns] = evaluation.keep_firing_for_s
        self.min_events[columns] = evaluation.min_events
        self.min_bad_events[columns] = evaluation.min_bad_events
        self._thin = bool(self.min_events.any() or self.min_bad_events.any())

    # -- the event-time clock (read-only) --------------------------------------------

    @property
    def watermark_s(self) -> float:
        """Highest event time accepted so far (capped at the wall clock in live mode, and
        at the caller's `watermark_cap_s`)."""
        return self._watermark_s

    @property
    def held_s(self) -> float:
        """The event time a cap holds back (see `_held_s`); -inf when none."""
        return self._held_s

    def hold(self, t_s: float) -> None:
        """Hold back event time `t_s` as well (a config reload carries the old
        evaluator's, engine.core.reload)."""
        self._held_s = max(self._held_s, t_s)

    @property
    def next_tick_s(self) -> float | None:
        """The next grid tick to evaluate; None before the first event or advance."""
        return self._next_tick_s

    @property
    def evaluated_at_s(self) -> float | None:
        """The last tick evaluated: every window is (t - W, t] at this t."""
        return self._evaluated_at_s

    # -- ingestion -------------------------------------------------------------------

    def ingest(
        self,
        cols: EventColumns,
        now_s: float | None = None,
        *,
        watermark_cap_s: float | None = None,
        stream_future: bool = False,
        next_ts_s: float | None = None,
    ) -> list[Transition]:
        """Count a batch of events and evaluate every tick the watermark passes.

        `now_s`: the wall clock of a live stream; events later than `now_s +
        future_limit` are rejected and the watermark never passes `now_s`.
        `watermark_cap_s`: nor does it pass this (the newest event time consumed from
        the stream furthest behind; None: no stream is behind).
        `stream_future`: no wall clock (replay): the future limit counts from the
        watermark, and `next_ts_s` is the time of the first event after the batch (of
        another record; None at the end of the stream). See the module docstring."""
        n = len(cols)
        if n == 0:
            return []
        if stream_future and now_s is not None:
            raise ValueError("stream_future is for streams without a wall clock (now_s)")
        ts = cols.ts_s
        ok = ~np.isnan(ts)
        if not ok.all():
            self._rejected["missing_ts"] += int((~ok).sum())
        future: npt.NDArray[np.bool_] | None = None
        if now_s is not None:
            future = ok & (ts > now_s + self.future_s)
            cand_ts = np.minimum(ts, now_s)
        else:
            if stream_future:
                future = self._beyond_stream_future(ts, ok, cols.record, next_ts_s)
            cand_ts = ts
        if future is not None and future.any():
            self._rejected["too_far_in_future"] += int(future.sum())
            ok &= ~future
        admitted = self._admit(ts, ok, cand_ts, watermark_cap_s)
        if admitted is None:
            return []
        ok, wm_after = admitted
        nslo = self.classifier.slo_count(cols)
        self._accepted_events += int(cols.count[ok].sum())
        self._unmatched_events += int(cols.count[ok & (nslo == 0)].sum())
        self._unknown_status_events += int(
            cols.count[ok & self.classifier.unknown_status(cols)].sum()
        )
        pairs = self.classifier.pairs(cols)
        keep = ok[pairs.event]
        p_event = pairs.event[keep]
        p_slo = self.classifier.assign(pairs.entry[keep], pairs.column[keep])  # columns
        p_total, p_bad = pairs.total[keep], pairs.bad[keep]
        return self._count_pairs(p_event, p_slo, ts[p_event], p_total, p_bad, wm_after)

    def _admit(
        self,
        ts: F64,
        ok: npt.NDArray[np.bool_],
        cand_ts: F64,
        watermark_cap_s: float | None,
        weight: npt.NDArray[np.int64] | None = None,
    ) -> tuple[npt.NDArray[np.bool_], F64] | None:
        """The time checks `ingest` and `ingest_counts` share: of the rows `ok` so far,
        those not too late against the running watermark (`cand_ts` moves it, capped at
        `watermark_cap_s` but for the rings' headroom), and the watermark after each row;
        None when no row is left. Late rows count as `too_late` rejections one each, or
        `weight` each. Starts the tick grid at the first row kept."""
        uncapped = cand_ts
        if watermark_cap_s is not None:
            # Never past the cap, except as far as the rings' headroom demands.
            cand_ts = np.maximum(np.minimum(cand_ts, watermark_cap_s), ts - self._headroom_s)
        cand = np.where(ok, cand_ts, -np.inf)
        wm_after = np.maximum.accumulate(np.concatenate(([self._watermark_s], cand)))
        wm_before, wm_after = wm_after[:-1], wm_after[1:]
        late = ok & (ts < wm_before - self.lateness_s)
        if late.any():
            self._rejected["too_late"] += int((late if weight is None else weight[late]).sum())
            ok = ok & ~late
        if not ok.any():
            return None
        if watermark_cap_s is not None:
            self._held_s = max(self._held_s, float(uncapped[ok].max()))
        if self._next_tick_s is None:
            first = float(ts[np.argmax(ok)])
            self._next_tick_s = math.ceil(first / self.tick_s) * self.tick_s
            self.windows.advance_to(self._next_tick_s - self.tick_s)
            self._periods.roll(self._next_tick_s - self.tick_s)
        return ok, wm_after

    def _count_pairs(
        self,
        p_event: npt.NDArray[np.int64],
        p_slo: npt.NDArray[np.int32],
        p_ts: F64,
        p_total: npt.NDArray[np.int64],
        p_bad: npt.NDArray[np.int64],
        wm_after: F64,
    ) -> list[Transition]:
        """Count admitted (row, column) pairs, `p_event` the row of each (ascending),
        evaluating each tick just before the first row past it (the multi-tick pass when
        it pays), corrections applied; then the watermark is the last row's."""
        n = len(wm_after)
        assert self._next_tick_s is not None  # `_admit` started the grid
        if self._corrections.active:
            out = self._corrections.excluded(p_slo, p_ts)
            if out.any():
                self._count_excluded(p_slo[out], p_total[out])
                keep = ~out
                p_event, p_slo, p_ts = p_event[keep], p_slo[keep], p_ts[keep]
                p_total, p_bad = p_total[keep], p_bad[keep]
        source = self._sources()
        if source is not None:  # a copy's pairs are its source's again: `_apply`
            keep = source[p_slo] == p_slo
            if not keep.all():
                p_event, p_slo, p_ts = p_event[keep], p_slo[keep], p_ts[keep]
                p_total, p_bad = p_total[keep], p_bad[keep]
        transitions: list[Transition] = []
        ticks = self._multi_ticks(float(wm_after[-1]), p_total)
        if ticks is not None:
            transitions, done = self._evaluate_many(
                ticks, p_slo, p_ts, p_total, p_bad, wm_after[p_event]
            )
            self._apply(p_slo[done:], p_ts[done:], p_total[done:], p_bad[done:])
            self._watermark_s = float(wm_after[-1])
            return transitions
        start = 0
        while True:
            cut = int(np.searchsorted(wm_after, self._next_tick_s, side="right"))
            lo, hi = np.searchsorted(p_event, [start, cut])
            self._apply(p_slo[lo:hi], p_ts[lo:hi], p_total[lo:hi], p_bad[lo:hi])
            if cut >= n:
                break
            transitions += self._evaluate_until(float(wm_after[cut]))
            start = cut
        self._watermark_s = float(wm_after[-1])
        return transitions

    def advance(self, t_s: float, *, watermark_cap_s: float | None = None) -> list[Transition]:
        """Move event time to `t_s` without events (idle partitions follow the wall clock),
        but not past `watermark_cap_s` (see `ingest`). Without a cap, at least to the
        newest event time a cap held back (the streams are caught up: it may pass)."""
        t_s = min(t_s, watermark_cap_s) if watermark_cap_s is not None else max(t_s, self._held_s)
        if t_s <= self._watermark_s:
            return []
        self._watermark_s = t_s
        if self._next_tick_s is None:
            self._next_tick_s = math.ceil(t_s / self.tick_s) * self.tick_s
            self.windows.advance_to(self._next_tick_s - self.tick_s)
            self._periods.roll(self._next_tick_s - self.tick_s)
            return []
        return self._evaluate_until(t_s)

    def _beyond_stream_future(
        self,
        ts: F64,
        ok: npt.NDArray[np.bool_],
        record: npt.NDArray[np.int32],
        next_ts_s: float | None,
    ) -> npt.NDArray[np.bool_]:
        """Events more than `future_limit` ahead of the running watermark that the next
        record does not confirm (see the module docstring), in batch order."""
        out = np.zeros(len(ts), dtype=bool)
        idx = np.flatnonzero(ok)
        if len(idx) == 0:
            return out
        t = ts[idx]
        f = self.future_s
        before = np.maximum.accumulate(np.concatenate(([self._watermark_s], t)))[:-1]
        # By induction: while no event is ahead of the running maximum of all events by
        # more than the limit, none is rejected and the watermark is that maximum (the
        # usual case, decided with whole-array operations).
        jump = np.isfinite(before) & (t > before + f)
        if not jump.any():
            return out
        # Otherwise decide in order from the first candidate, with one event of lookahead.
        rec = record[idx]
        change = np.flatnonzero(rec[1:] != rec[:-1]) + 1
        nxt_at = np.searchsorted(change, np.arange(len(t)), side="right")
        nxt = np.append(change, len(t))[nxt_at].tolist()
        times = t.tolist()
        first = int(np.argmax(jump))
        wm = float(before[first])
        rejected = np.zeros(len(t), dtype=bool)
        for k in range(first, len(times)):
            tk = times[k]
            if tk > wm + f:
                j = nxt[k]
                tj = times[j] if j < len(times) else next_ts_s
                if tj is not None and tj > wm + f and abs(tj - tk) <= f:
                    wm = tk  # the next record goes on from there: a gap, not a bad time
                else:
                    rejected[k] = True
            elif tk > wm:
                wm = tk
        out[idx[rejected]] = True
        return out

    def flush(self) -> list[Transition]:
        """Evaluate the tick that closes the last event seen (end of a replay)."""
        if self._next_tick_s is None or self._evaluated_at_s == self._next_tick_s:
            return []
        return self._evaluate_until(self._next_tick_s + self.tick_s / 2)

    def reject(self, reason: str, n: int = 1) -> None:
        """Count `n` records rejected for `reason` before they became events (decoding,
        validation), next to the evaluator's own time rejections."""
        if n < 0:
            raise ValueError(f"cannot reject a negative number of records ({n})")
        if n:
            self._rejected[reason] += n

    def _apply(
        self,
        slo: npt.NDArray[np.int32],
        ts: F64,
        total: npt.NDArray[np.int64],
        bad: npt.NDArray[np.int64],
        *,
        resum_at: float | None = None,
    ) -> None:
        """Count (event, SLO) pairs into the windows and the per-SLO totals. All integer
        adds (float weights are inexact past 2^53); the totals saturate at 2^63 - 1,
        with bad <= total kept, instead of wrapping (docs/design.md, "Bounds").
        `resum_at`: then move the windows to that tick (the multi-tick pass, whose pairs
        may lie ticks ahead of the windows: `WindowSet.add_and_advance`). With a
        `column_source` in use, the pairs are those of source columns only, and every
        column counts its source's (`engine.core.shared_columns`)."""
        copies = self._shared_copies()
        if resum_at is not None:
            self.windows.add_and_advance(slo, ts, total, bad, resum_at, copies)
            self._periods.roll(resum_at)
        if len(slo) == 0:
            return
        if self._periods.any:
            every = (slo, ts, total, bad) if copies is None else copies.expand(slo, ts, total, bad)
            self._periods.add(*every)
        if self.on_counted is not None:
            self.on_counted(slo, ts, total, bad)
        if resum_at is None:
            self.windows.add(slo, ts, total, bad, copies)
        n = len(self.slos)
        add_total, add_bad = sum_by(slo, total, n), sum_by(slo, bad, n)  # exact
        if copies is not None:
            source = self._column_source
            assert source is not None
            add_total, add_bad = add_total[source], add_bad[source]
        room = np.iinfo(np.int64).max - self._events_total  # totals are never negative
        self._events_total += np.minimum(add_total, room)
        self._bad_events_total += np.minimum(add_bad, self._events_total - self._bad_events_total)
        self._max_event_ts = max(self._max_event_ts, float(ts.max()))

    def _count_excluded(self, slo: npt.NDArray[np.int32], total: npt.NDArray[np.int64]) -> None:
        """Count pairs a correction left out, per SLO (exact int64, saturating like the
        totals)."""
        add = sum_by(slo, total, len(self.slos))
        self._excluded_total += np.minimum(add, np.iinfo(np.int64).max - self._excluded_total)

    # -- corrections -----------------------------------------------------------------

    @property
    def corrections(self) -> tuple[Correction, ...]:
        """Every correction in force: the config's, then those added at run time."""
        return (*self.config.corrections, *self._runtime_corrections)

    @property
    def runtime_corrections(self) -> tuple[Correction, ...]:
        """The corrections added with `add_correction` (kept in `state()`), oldest first."""
        return tuple(self._runtime_corrections)

    def add_correction(self, correction: Correction) -> None:
        """Apply `correction` (checked by the caller: `config.correction_errors`) to every
        event ingested from now on; events already counted stay counted."""
        self._set_runtime_corrections([*self._runtime_corrections, correction])

    def _set_runtime_corrections(self, corrections: list[Correction]) -> None:
        index = CorrectionIndex([*self.config.corrections, *corrections], self.slos)
        self._runtime_corrections, self._corrections = corrections, index

    # -- evaluation ------------------------------------------------------------------

    def _evaluate_until(self, watermark_s: float) -> list[Transition]:
        """Evaluate every grid tick T < watermark_s not evaluated yet."""
        assert self._next_tick_s is not None
        ticks = self._multi_ticks(watermark_s, None)
        if ticks is not None:
            none, times = np.zeros(0, dtype=np.int64), np.zeros(0)
            many, _ = self._evaluate_many(ticks, none.astype(np.int32), times, none, none, times)
            return many
        out: list[Transition] = []
        while self._next_tick_s < watermark_s:
            t = self._next_tick_s
            if self._quiet():
                # Nothing counted and nothing pending: every tick up to the last one before
                # the watermark would see empty windows, so skip straight to it.
                t = max(t, (math.ceil(watermark_s / self.tick_s) - 1) * self.tick_s)
            self.windows.advance_to(t)
            self._periods.roll(t)
            out += self._evaluate(t)
            self._evaluated_at_s = t
            self._next_tick_s = t + self.tick_s
        return out

    def _quiet(self) -> bool:
        """True when no counted event lies ahead of the windows' time and all is at rest."""
        t = self.windows.t
        return (
            t is not None
            and self._max_event_ts <= t
            and self.windows.is_empty()
            and not self._alerts.firing.any()
            and not self._budget.firing.any()
            and bool(np.isnan(self._alerts.pending_since_s).all())
        )

    def _evaluate(self, t: float) -> list[Transition]:
        burn = self.burn_rates()
        alerts = self._alerts
        # once per tick, not per transition
        alerts.budget_at_tick_ratio[...] = self.budget_remaining()
        budget_now = alerts.budget_at_tick_ratio
        long_b, short_b = burn[self.row_long].T, burn[self.row_short].T  # (n_slo, n_rows)
        holds_rows = (long_b >= self.factor) & (short_b >= self.factor) & self.row_mask
        if self._thin:
            sums = self.window_sums()  # a composite's: the sums of its members'
            for side in (self.row_long, self.row_short):
                s = sums[side]  # (n_rows, n_slo, 2)
                thick = (s[..., 0] >= self.min_events) & (s[..., 1] >= self.min_bad_events)
                holds_rows &= thick.T
        out: list[tuple[int, int, Transition]] = []
        n_rows = len(self.rows)
        for j, sev in enumerate(self.severities):
            cols = self._severity_rows[j]
            sev_rows = holds_rows[:, cols]
            holds = sev_rows.any(axis=1)
            # the holding row first in the SLO's own order (meaningless where none holds)
            first = cols[np.argmin(np.where(sev_rows, self.row_rank[:, cols], n_rows), axis=1)]
            pending = alerts.pending_since_s[:, j]
            pending[holds & np.isnan(pending)] = t
            pending[~holds] = np.nan
            last_true = alerts.last_true_s[:, j]
            last_true[holds] = t
            firing = alerts.firing[:, j]
            with np.errstate(invalid="ignore"):
                ready = holds & (t - pending >= self.for_s)
                kept = firing & ~holds & (t - last_true < self.keep_firing_for_s)
            should = ready | (firing & holds) | kept
            row = alerts.firing_row[:, j]
            for i in np.flatnonzero(should & ~firing):
                row[i] = first[i]
                alerts.firing_since_s[i, j] = t
                out.append(
                    (
                        int(i),
                        j,
                        self._transition(int(i), sev, "firing", t, int(first[i]), burn, budget_now),
                    )
                )
            for i in np.flatnonzero(firing & ~should):
                out.append(
                    (
                        int(i),
                        j,
                        self._transition(int(i), sev, "resolved", t, int(row[i]), burn, budget_now),
                    )
                )
                alerts.firing_since_s[i, j] = np.nan
            update = should & holds
            row[update] = first[update]
            firing[:] = should
        out.sort(key=lambda x: (x[0], x[1]))  # per tick: by SLO in config order, then severity
        result = [tr for _, _, tr in out]
        if self.budget_alert_columns:
            result += self._evaluate_budget(t, burn)
        return result

    def _transition(
        self,
        i: int,
        severity: Severity,
        state: Literal["firing", "resolved"],
        t: float,
        r: int,
        burn: F64,
        remaining: F64,
    ) -> Transition:
        return Transition(
            slo=self.names[i],
            severity=severity,
            state=state,
            at=t,
            long_window_s=self.row_windows_s[r][0],
            short_window_s=self.row_windows_s[r][1],
            burn_rate_long=none_if_nan(float(burn[self.row_long[r], i])),
            burn_rate_short=none_if_nan(float(burn[self.row_short[r], i])),
            factor=float(self.factor[i, r]),
            error_budget_remaining_ratio=none_if_nan(float(remaining[i])),
            group=self.group_of(i),
        )

    # -- state -----------------------------------------------------------------------

    def state(self) -> EvaluatorState:
        """All state. The window rings are read-only views of the live arrays (they may
        be megabytes, so they are not copied): use them before the evaluator next
        ingests or advances. Alerts and counts are copies."""
        return EvaluatorState(
            windows=self.windows.state(),
            alerts=self.alerts(),
            counts=self._own_counts(),
            watermark_s=self._watermark_s,
            next_tick_s=self._next_tick_s,
            evaluated_at_s=self._evaluated_at_s,
            max_event_ts_s=self._max_event_ts,
            periods=self._periods.state() if self._periods.any else None,
            corrections=self.runtime_corrections,
            budget_alerts=self.budget_alerts() if self.budget_alert_columns else None,
            groups=self.classifier.group_state(),
        )

    def _check_firing_rows(self, firing_row: I64) -> None:
        """Raise ValueError unless every `firing_row` is -1 or a row of its SLO and
        severity: the API, /metrics and deliveries index the rows with it."""
        n_rows = len(self.rows)
        if ((firing_row < -1) | (firing_row >= n_rows)).any():
            raise ValueError(f"firing_row: a row index outside -1..{n_rows - 1}")
        sev = np.array([self.severities.index(r.severity) for r in self.rows], dtype=np.int64)
        i, j = np.nonzero(firing_row >= 0)
        r = firing_row[i, j]
        if not (self.row_mask[i, r] & (sev[r] == j)).all():
            raise ValueError("firing_row: a row the SLO does not have for that severity")

    def load_state(self, state: EvaluatorState) -> None:
        """Continue from a `state()` of an evaluator of a config of the same shape.
        Raises ValueError, changing nothing, when it does not fit (the caller checks the
        config's shape: rows and SLOs of the same sizes fit whatever they mean)."""
        state.alerts.check_like(self._alerts)
        self._check_firing_rows(state.alerts.firing_row)
        state.counts.check_like(self.counts())
        self._periods.check(state.periods)
        self.classifier.check_groups(state.groups)
        index = CorrectionIndex([*self.config.corrections, *state.corrections], self.slos)
        budget_firing, budget_since = self._budget_state_of(state.budget_alerts)
        self.windows.load_state(state.windows)  # checks first: may raise, changing nothing
        # Everything checked: from here on nothing can fail.
        for f in fields(AlertState):
            getattr(self._alerts, f.name)[...] = getattr(state.alerts, f.name)
        counts = state.counts
        self._events_total[...] = counts.events_total
        self._bad_events_total[...] = counts.bad_events_total
        self._excluded_total[...] = counts.excluded_events
        self._runtime_corrections, self._corrections = list(state.corrections), index
        self._rejected = Counter(counts.rejected)
        self._accepted_events = counts.accepted_events
        self._unmatched_events = counts.unmatched_events
        self._unknown_status_events = counts.unknown_status_events
        self._watermark_s = state.watermark_s
        self._next_tick_s = state.next_tick_s
        self._evaluated_at_s = state.evaluated_at_s
        self._max_event_ts = state.max_event_ts_s
        self._periods.load_state(state.periods, self.windows.t)
        self.classifier.load_groups(state.groups)
        self._budget.firing[...] = budget_firing
        self._budget.firing_since_s[...] = budget_since
