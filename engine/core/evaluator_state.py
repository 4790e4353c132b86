"""Value types of the evaluator's state: alert state machine, counts, and the whole.

They are what `Evaluator` hands out (`alerts()`, `counts()`, `state()`) and takes back
(`load_state()`), so that readers (the API, /metrics, snapshots, summaries) never touch
the evaluator's own arrays. Arrays in them are non-writeable; see each accessor for
whether they are copies or live views.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from engine.core.arrays import F64, I64, Bool, read_only_copy
from engine.core.config import Correction
from engine.core.periods import PeriodState
from engine.core.windows import WindowState, check_like

__all__ = ["AlertState", "BudgetAlertState", "EvaluatorState", "EventCounts"]


@dataclass(frozen=True, slots=True)
class AlertState:
    """The alert state machine, one alert per (SLO, severity): arrays of shape
    (n_slo, n_severity), SLOs in config order and severities in `Evaluator.severities`
    order, except `budget_at_tick_ratio`, which is per SLO. Times are event-time epoch
    seconds, NaN when unset."""

    firing: Bool
    firing_row: I64
    """Index into `Evaluator.rows` (every distinct row of the config) of the row that
    holds (or held last) while firing; -1 before the alert first fired."""
    firing_since_s: F64
    """Tick at which the alert fired; NaN while it does not fire."""
    pending_since_s: F64
    """First tick of the current run of ticks at which the condition holds (`for`)."""
    last_true_s: F64
    """Last tick at which the condition held (`keep_firing_for`)."""
    budget_at_tick_ratio: F64
    """(n_slo,) error budget remaining at the last tick, as its transitions report it."""

    def copy(self) -> AlertState:
        """Non-writeable copies of every array, as they are now."""
        return AlertState(
            firing=read_only_copy(self.firing),
            firing_row=read_only_copy(self.firing_row),
            firing_since_s=read_only_copy(self.firing_since_s),
            pending_since_s=read_only_copy(self.pending_since_s),
            last_true_s=read_only_copy(self.last_true_s),
            budget_at_tick_ratio=read_only_copy(self.budget_at_tick_ratio),
        )

    def check_like(self, like: AlertState) -> None:
        """Raise ValueError unless every array has the dtype and shape of `like`'s."""
        for f in fields(self):
            check_like(f.name, getattr(self, f.name), getattr(like, f.name))


@dataclass(frozen=True, slots=True)
class BudgetAlertState:
    """The budget alerts and escalations (engine.core.budget_alerts): arrays of shape
    (n_slo, n_alerts), alerts in `keys` order (`AlertColumn.key`, which names them across
    restarts and config changes)."""

    keys: tuple[str, ...]
    firing: Bool
    firing_since_s: F64
    """Tick at which the alert fired; NaN while it does not fire."""

    def copy(self) -> BudgetAlertState:
        return BudgetAlertState(
            keys=self.keys,
            firing=read_only_copy(self.firing),
            firing_since_s=read_only_copy(self.firing_since_s),
        )


@dataclass(frozen=True, slots=True)
class EventCounts:
    """What the evaluator counted since it started (or since the state it loaded)."""

    events_total: I64
    """(n_slo,) events counted per SLO (an event selected by two SLOs counts in both)."""
    bad_events_total: I64
    """(n_slo,) bad events counted per SLO."""
    accepted_events: int
    """Events that passed the time checks, whether or not an SLO selects them."""
    unmatched_events: int
    """Accepted events that no SLO selects."""
    unknown_status_events: int
    """Accepted events whose status the taxonomy does not know."""
    rejected: Mapping[str, int]
    """Rejected records and events by reason (a copy: changing it changes nothing)."""
    excluded_events: I64
    """(n_slo,) events left out of the SLO by a correction (engine.core.corrections)."""

    def check_like(self, like: EventCounts) -> None:
        """Raise ValueError unless the arrays fit `like`'s and no count is negative."""
        check_like("events_total", self.events_total, like.events_total)
        check_like("bad_events_total", self.bad_events_total, like.bad_events_total)
        check_like("excluded_events", self.excluded_events, like.excluded_events)
        if (self.excluded_events < 0).any():
            raise ValueError("negative excluded count")
        if any(n < 0 for n in self.rejected.values()):
            raise ValueError("negative rejection count")
        if min(self.accepted_events, self.unmatched_events, self.unknown_status_events) < 0:
            raise ValueError("negative event count")


@dataclass(frozen=True, slots=True)
class EvaluatorState:
    """Everything an evaluator needs to carry on as if it had never stopped."""

    windows: WindowState
    alerts: AlertState
    counts: EventCounts
    watermark_s: float
    """Highest event time accepted so far (-inf before the first)."""
    next_tick_s: float | None
    """Next grid tick to evaluate; None before the first event or advance."""
    evaluated_at_s: float | None
    """Last tick evaluated; None before the first."""
    max_event_ts_s: float
    """Latest event time counted into the windows (-inf before the first)."""
    periods: PeriodState | None = None
    """The calendar periods' counts; None when no SLO has a calendar period (or the
    state is from before calendar periods: they start empty)."""
    corrections: tuple[Correction, ...] = ()
    """The corrections added at run time (`Evaluator.add_correction`), oldest first."""
    budget_alerts: BudgetAlertState | None = None
    """The budget alerts' state; None when none is kept (a state from before them: they
    start not firing)."""
    groups: tuple[tuple[tuple[str | None, ...], ...], ...] = ()
    """Per grouped SLO (config order), its group keys in column order: which column
    each group has (`Classifier.group_state`). Empty without grouped SLOs."""
