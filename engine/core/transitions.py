"""The evaluator's output values: `Transition` (an alert changed state), the `ChangeNote`s
it may carry, `AlertKey` (which alert) and the kinds of alert (`TransitionKind`).

Plain frozen msgspec Structs and aliases, with no behaviour beyond naming: the
evaluator (engine.core.evaluator) makes them, the alert adapters encode them.
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec

from engine.core.budget_policy import Decision
from engine.core.config import Severity

__all__ = [
    "SEVERITIES",
    "AlertKey",
    "ChangeNote",
    "Transition",
    "TransitionKind",
    "none_if_nan",
]

TransitionKind = Literal["burn", "budget_exhausted", "budget_exhaustion_projected", "escalation"]

SEVERITIES: tuple[Severity, ...] = ("page", "ticket")

AlertKey = tuple[str, str | None, str]
"""One alert: (SLO name, group or None, severity), or for a budget alert or escalation
(SLO name, group or None, its key: `Transition.alert_id`)."""


class ChangeNote(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A change (engine.core.changes) named on an alert that fired within its attribution window."""

    id: int
    kind: str
    at: float
    version: str | None = None
    error_budget_consumed_ratio: float | None = None
    """What the alert's SLO (group) consumed after the change up to the alert, so far."""


class Transition(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An alert changed state. For `resolved`, the row is the one that held last.

    Most are of burn-rate alerts (`kind` `burn`, left out of the encoding). A budget
    alert or escalation (engine.core.budget_alerts) has the same fields: its `severity`
    is the configured one (an escalation's: `page` for a row deciding `fail`, else
    `ticket`), both windows are the lookback its burn rate is over (`burn_rate_long` =
    `burn_rate_short`), and `factor` is, for a projected exhaustion, the burn rate that
    spends the budget left within the horizon (0 otherwise)."""

    slo: str
    severity: Severity
    state: Literal["firing", "resolved"]
    at: float
    long_window_s: int
    short_window_s: int
    burn_rate_long: float | None
    burn_rate_short: float | None
    factor: float
    error_budget_remaining_ratio: float | None
    group: str | None = None
    """A grouped SLO's group (`Evaluator.group_of`); None for an SLO without groups
    (then left out of the encoding, so ungrouped output is as before groups)."""
    kind: TransitionKind = "burn"
    """`burn`, `budget_exhausted`, `budget_exhaustion_projected` or `escalation`."""
    time_to_exhaustion_s: float | None = None
    """Budget alerts and escalations: the budget left lasts this long at the burn rate
    over the lookback (0: spent; None: no data, or nothing burns)."""
    horizon_s: float | None = None
    """A projected exhaustion's horizon, or an `exhaustion_within` row's."""
    policy_row: str | None = None
    """An escalation's budget policy row: `$.budget_policy[0]`, `$.slos[2].budget_policy[1]`."""
    decision: Decision | None = None
    """An escalation's row decision (`pass`, `warn`, `fail`)."""
    reason: str | None = None
    """An escalation's reason: why the row holds (firing), or the row's condition
    (resolved)."""
    receivers: tuple[str, ...] = ()
    """An escalation's receivers (the row's `escalate`): the only ones it goes to,
    besides receivers with `escalations: all`."""

    @property
    def alert_id(self) -> str:
        """Which alert of its SLO (group) this is: a burn-rate alert's severity, else the
        budget alert's key (`budget_exhausted`, `escalation:$.budget_policy[0]`)."""
        if self.kind == "burn":
            return self.severity
        if self.kind == "escalation":
            return f"escalation:{self.policy_row}"
        return self.kind

    changes: tuple[ChangeNote, ...] = ()
    """Changes of the SLO's service whose attribution window holds `at`
    (engine.core.changes, `ChangeLog.annotate`); the evaluator leaves it empty."""

    @property
    def alert_key(self) -> AlertKey:
        """The alert this transition is of: (SLO, group, `alert_id`)."""
        return (self.slo, self.group, self.alert_id)


def none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else float(x)
