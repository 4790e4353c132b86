"""Budget policy rows as config: conditions on an SLO's error budget -> a gate decision.

A row names exactly one condition and the decision (and escalation) it leads to:

    budget_policy:
      - {budget_remaining_at_most: 0, decision: fail, escalate: [oncall]}
      - {budget_remaining_below: 0.25, decision: warn}
      - {exhaustion_within: 3d, lookback: 6h, decision: warn}
      - {alert_firing: page, decision: fail}

`budget_remaining_*` compare the share of the budget left over the SLO's period (1:
untouched, <= 0: spent); `exhaustion_within` holds when the budget left runs out within
that horizon at the burn rate over `lookback` (engine.core.budget.time_to_exhaustion_s;
a spent budget is exhausted now, so it holds too); `alert_firing` when an alert of that
severity fires for the SLO. Without data (no events in the period or the lookback) no
budget condition holds. How rows combine is engine.core.governance; this module is the
config side: the row type, the default and the `$.path` checks.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import msgspec

from engine.core.durations import DURATION_PATTERN, format_duration, parse_duration_s
from engine.core.ladder import MAX_WINDOW_S

__all__ = [
    "DECISIONS",
    "DEFAULT_BUDGET_ALERT_HORIZON",
    "DEFAULT_BUDGET_POLICY",
    "DEFAULT_LOOKBACK",
    "DEFAULT_OVERRIDE_MAX_TTL",
    "MAX_OVERRIDE_TTL_S",
    "BudgetAlertSettings",
    "BudgetPolicyRow",
    "Decision",
    "GateSettings",
    "budget_alert_errors",
    "budget_policy_errors",
    "escalation_errors",
    "gate_settings_errors",
]

Decision = Literal["pass", "warn", "fail"]
DECISIONS: tuple[Decision, ...] = ("pass", "warn", "fail")
"""Best to worst: a service's decision is the worst of its SLOs'."""

_Duration = Annotated[str, msgspec.Meta(pattern=DURATION_PATTERN)]
_Name = Annotated[str, msgspec.Meta(pattern=r"\A[a-z0-9_.-]+\Z", max_length=128)]

DEFAULT_LOOKBACK = "1h"
"""The burn-rate window of an `exhaustion_within` row that names none."""
DEFAULT_OVERRIDE_MAX_TTL = "24h"
MAX_OVERRIDE_TTL_S = 7 * 86400
"""The most `gate.override_max_ttl` may be: a break-glass override is for hours or a
day, not a way to switch a gate off for good."""

_CONDITIONS = (
    "budget_remaining_below",
    "budget_remaining_at_most",
    "exhaustion_within",
    "alert_firing",
)


class BudgetPolicyRow(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One condition on an SLO and the gate decision it leads to."""

    budget_remaining_below: float | None = None
    """Holds when the budget left (ratio) is < this."""
    budget_remaining_at_most: float | None = None
    """Holds when the budget left (ratio) is <= this (0: spent)."""
    exhaustion_within: _Duration | None = None
    """Holds when the budget left runs out within this at the burn rate over `lookback`."""
    lookback: _Duration | None = None
    """The burn-rate window of `exhaustion_within` (default `DEFAULT_LOOKBACK`)."""
    alert_firing: Literal["page", "ticket"] | None = None
    """Holds while an alert of this severity fires for the SLO."""
    decision: Decision
    escalate: list[_Name] = []
    """Receivers to tell when the row holds (carried as data; names, in order)."""

    @property
    def lookback_s(self) -> int | None:
        """The burn-rate window of an `exhaustion_within` row; None for other rows."""
        if self.exhaustion_within is None:
            return None
        return int(parse_duration_s(self.lookback or DEFAULT_LOOKBACK))

    @property
    def horizon_s(self) -> float | None:
        return None if self.exhaustion_within is None else parse_duration_s(self.exhaustion_within)


DEFAULT_BUDGET_POLICY: tuple[BudgetPolicyRow, ...] = (
    BudgetPolicyRow(budget_remaining_at_most=0.0, decision="fail"),
    BudgetPolicyRow(alert_firing="page", decision="fail"),
    BudgetPolicyRow(budget_remaining_below=0.25, decision="warn"),
    BudgetPolicyRow(alert_firing="ticket", decision="warn"),
)
"""No budget left or a page firing: fail; under a quarter left or a ticket firing: warn."""


DEFAULT_BUDGET_ALERT_HORIZON = "3d"
"""How soon a projected exhaustion must be to alert, unless `budget_alerts.horizon` says."""

_Severity = Literal["page", "ticket"]


class BudgetAlertSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """`budget_alerts:`, the alerts on the error budget itself, beside the burn-rate ones
    (engine.core.budget_alerts). Present (even empty): both alerts on, with these
    defaults; absent: none, so an upgrade sends no alert nobody asked for."""

    exhausted: bool = True
    """`ErrorBudgetExhausted`: the budget left over the SLO's period is <= 0."""
    exhausted_severity: _Severity = "ticket"
    projected: bool = True
    """`ErrorBudgetExhaustionProjected`: some budget is left and it runs out within
    `horizon` at the burn rate over `lookback`."""
    projected_severity: _Severity = "ticket"
    horizon: _Duration = DEFAULT_BUDGET_ALERT_HORIZON
    lookback: _Duration | None = None
    """The burn-rate window of the projection; None: the window time to exhaustion is
    reported at elsewhere (1h when kept, else the shortest policy long window)."""

    @property
    def horizon_s(self) -> float:
        return parse_duration_s(self.horizon)

    @property
    def lookback_s(self) -> int | None:
        return None if self.lookback is None else int(parse_duration_s(self.lookback))


def budget_alert_errors(settings: BudgetAlertSettings, tick_s: float) -> list[str]:
    errors: list[str] = []
    if not settings.horizon_s > 0:
        errors.append("$.budget_alerts.horizon: must be longer than 0s")
    if settings.lookback is not None:
        errors += _lookback_errors(
            "$.budget_alerts.lookback",
            settings.lookback,
            parse_duration_s(settings.lookback),
            tick_s,
        )
    return errors


def _lookback_errors(where: str, given: str | None, lookback: float, tick_s: float) -> list[str]:
    if lookback != int(lookback) or lookback < tick_s:
        return [
            f"{where}: must be whole seconds and at least the evaluation tick "
            f"({format_duration(tick_s)}), got {given}"
        ]
    if lookback > MAX_WINDOW_S:
        return [f"{where}: at most {format_duration(MAX_WINDOW_S)}, got {given}"]
    return []


def escalation_errors(path: str, rows: list[BudgetPolicyRow], receivers: list[str]) -> list[str]:
    """`escalate` names no configured receiver calls itself (`receivers[i].name`)."""
    known = ", ".join(receivers) if receivers else "none is named"
    return [
        f"{path}[{i}].escalate[{j}]: no receiver is named {name!r} (receiver names: {known})"
        for i, row in enumerate(rows)
        for j, name in enumerate(row.escalate)
        if name not in receivers
    ]


class GateSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """`gate:` settings of the release gate."""

    override_max_ttl: _Duration = DEFAULT_OVERRIDE_MAX_TTL
    """The longest an override may last; also the TTL of one that gives none."""

    @property
    def override_max_ttl_s(self) -> float:
        return parse_duration_s(self.override_max_ttl)


def gate_settings_errors(gate: GateSettings) -> list[str]:
    ttl = gate.override_max_ttl_s
    if not ttl > 0:
        return ["$.gate.override_max_ttl: must be longer than 0s"]
    if ttl > MAX_OVERRIDE_TTL_S:
        return [
            f"$.gate.override_max_ttl: at most {format_duration(MAX_OVERRIDE_TTL_S)}, "
            f"got {gate.override_max_ttl}"
        ]
    return []


def budget_policy_errors(path: str, rows: list[BudgetPolicyRow], tick_s: float) -> list[str]:
    """The problems of one list of budget policy rows, at `path` (`$.budget_policy` or an
    SLO's own). An empty list is fine: that SLO never holds a gate back."""
    errors: list[str] = []
    for i, row in enumerate(rows):
        at = f"{path}[{i}]"
        given = [name for name in _CONDITIONS if getattr(row, name) is not None]
        if len(given) != 1:
            errors.append(f"{at}: give exactly one of {', '.join(_CONDITIONS)}")
        for name in ("budget_remaining_below", "budget_remaining_at_most"):
            value = getattr(row, name)
            if value is not None and not (math.isfinite(value) and value <= 1):
                errors.append(f"{at}.{name}: must be a finite ratio <= 1, got {value}")
        if row.lookback is not None and row.exhaustion_within is None:
            errors.append(f"{at}.lookback: only with exhaustion_within")
        if row.exhaustion_within is not None:
            horizon = parse_duration_s(row.exhaustion_within)
            if not horizon > 0:
                errors.append(f"{at}.exhaustion_within: must be longer than 0s")
            lookback = parse_duration_s(row.lookback or DEFAULT_LOOKBACK)
            errors += _lookback_errors(f"{at}.lookback", row.lookback, lookback, tick_s)
        seen: set[str] = set()
        for j, name in enumerate(row.escalate):
            if name in seen:
                errors.append(f"{at}.escalate[{j}]: {name!r} twice")
            seen.add(name)
    return errors
