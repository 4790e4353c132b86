"""Budget alerts and escalations: alerts on the error budget itself, beside the burn-rate ones.

Theory of operation
-------------------
Besides its burn-rate alerts (one per SLO and severity, engine.core.evaluator), an SLO
column can have *budget alerts*, each a condition on the budget evaluated at every tick
for every column at once:

- `ErrorBudgetExhausted` (`budget_exhausted`): the budget left over the SLO's period is
  <= 0 (`budget_alerts.exhausted`);
- `ErrorBudgetExhaustionProjected` (`budget_exhaustion_projected`): some budget is
  left and it runs out within `budget_alerts.horizon` at the burn rate over the
  lookback, i.e. 0 < time to exhaustion <= horizon (engine.core.budget). A spent budget
  is the other alert's: the two never fire together for one column;
- an *escalation* per budget-policy row that names receivers (`escalate`): it fires
  while the row's condition holds for the column (the same condition the gate applies,
  engine.core.governance) and goes to those receivers only.

Without data (NaN: no events over the period or the lookback) no budget condition holds.
Each alert (column, alert) fires at the first tick its condition holds and resolves at
the first tick it does not, like a burn-rate alert with the default settings (no `for`,
no `keep_firing_for`). The alerts an SLO column has are the `AlertColumn`s whose mask
covers it: an escalation row of the top-level `budget_policy` covers the SLOs without
their own, a row of an SLO's own covers that SLO's columns.

The reason texts of the gate and of escalations come from one function (`row_reason`),
and the vectorised condition (`row_holds`) is tested against it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from engine.core import budget
from engine.core.arrays import F64, Bool
from engine.core.budget_policy import BudgetPolicyRow
from engine.core.config import Config, Severity, Slo
from engine.core.durations import format_duration
from engine.core.transitions import TransitionKind

__all__ = [
    "ALERTNAMES",
    "AlertColumn",
    "TransitionKind",
    "alert_columns",
    "describe_row",
    "exhausted",
    "projected",
    "row_holds",
    "row_reason",
]

ALERTNAMES: Mapping[TransitionKind, str] = {
    "burn": "SLOErrorBudgetBurn",
    "budget_exhausted": "ErrorBudgetExhausted",
    "budget_exhaustion_projected": "ErrorBudgetExhaustionProjected",
    "escalation": "ErrorBudgetEscalation",
}
"""The `alertname` of each kind of alert."""


@dataclass(frozen=True, slots=True)
class AlertColumn:
    """One budget alert every column it covers may have."""

    key: str
    """Its identity across restarts: the kind, or `escalation:` and the row's path."""
    kind: TransitionKind
    severity: Severity
    mask: Bool
    """(n_columns,) the SLO columns that have it."""
    row: BudgetPolicyRow | None = None
    """An escalation's budget policy row."""
    path: str | None = None
    """An escalation row's place in the config: `$.budget_policy[0]`."""


def _severity_of(row: BudgetPolicyRow) -> Severity:
    """An escalation's severity: a page for a row that fails the gate, else a ticket."""
    return "page" if row.decision == "fail" else "ticket"


def alert_columns(config: Config, slos: Sequence[Slo]) -> list[AlertColumn]:
    """Every budget alert of `config` for the SLO of each column (`slos`, one per column):
    the two budget alerts when `budget_alerts:` enables them, then the escalations of the
    top-level rows, then of the SLOs' own rows, in config order."""
    n = len(slos)
    out: list[AlertColumn] = []
    settings = config.budget_alerts
    if settings is not None:
        every = np.ones(n, dtype=bool)
        if settings.exhausted:
            out.append(
                AlertColumn(
                    "budget_exhausted", "budget_exhausted", settings.exhausted_severity, every
                )
            )
        if settings.projected:
            out.append(
                AlertColumn(
                    "budget_exhaustion_projected",
                    "budget_exhaustion_projected",
                    settings.projected_severity,
                    every,
                )
            )
    top = np.array([s.budget_policy is None for s in slos], dtype=bool)
    if top.any():
        out += _escalations("$.budget_policy", config.budget_policy, top)
    for i, slo in enumerate(config.slos):
        if slo.budget_policy:
            mask = np.array([s.name == slo.name for s in slos], dtype=bool)
            out += _escalations(f"$.slos[{i}].budget_policy", slo.budget_policy, mask)
    return out


def _escalations(path: str, rows: Sequence[BudgetPolicyRow], mask: Bool) -> list[AlertColumn]:
    return [
        AlertColumn(
            f"escalation:{path}[{i}]",
            "escalation",
            _severity_of(row),
            mask,
            row=row,
            path=f"{path}[{i}]",
        )
        for i, row in enumerate(rows)
        if row.escalate
    ]


# -- conditions, vectorised over columns ----------------------------------------------------


def exhausted(remaining: F64) -> Bool:
    """Where the budget left is <= 0 (no data: NaN, False)."""
    out: Bool = remaining <= 0
    return out


def projected(remaining: F64, burn: F64, period_s: F64, horizon_s: float) -> Bool:
    """Where some budget is left and it runs out within `horizon_s` at `burn`."""
    tte = budget.times_to_exhaustion_s(remaining, burn, period_s)
    out: Bool = (remaining > 0) & (tte <= horizon_s)
    return out


def row_holds(
    row: BudgetPolicyRow,
    remaining: F64,
    burn: F64 | None,
    period_s: F64,
    firing: Mapping[Severity, Bool],
) -> Bool:
    """Where `row`'s condition holds: the columns for which `row_reason` is not None.
    `burn`: the burn rate over the row's lookback (`exhaustion_within` rows only);
    `firing`: per severity, where a burn-rate alert of it fires."""
    if row.budget_remaining_at_most is not None:
        out: Bool = remaining <= row.budget_remaining_at_most
        return out
    if row.budget_remaining_below is not None:
        out = remaining < row.budget_remaining_below
        return out
    if row.alert_firing is not None:
        none = np.zeros(len(remaining), dtype=bool)
        return firing.get(row.alert_firing, none).copy()
    horizon = row.horizon_s
    if horizon is None or burn is None:
        return np.zeros(len(remaining), dtype=bool)
    out = budget.times_to_exhaustion_s(remaining, burn, period_s) <= horizon
    return out


# -- reasons, for people ------------------------------------------------------------------


def _percent(ratio: float) -> str:
    return f"{100 * ratio:.4g}%"


def row_reason(
    row: BudgetPolicyRow,
    remaining: float | None,
    burn: float | None,
    period_s: float,
    firing: Sequence[Severity],
) -> str | None:
    """Why `row` holds for an SLO (a reason without the SLO's name), or None when it
    does not. `remaining`: the budget left (None: no data); `burn`: the burn rate over
    the row's lookback (None: no data); `firing`: the severities firing."""
    r = None if remaining is None or math.isnan(remaining) else remaining
    if row.budget_remaining_at_most is not None:
        if r is not None and r <= row.budget_remaining_at_most:
            return (
                f"error budget remaining {_percent(r)} is at or below "
                f"{_percent(row.budget_remaining_at_most)}"
            )
        return None
    if row.budget_remaining_below is not None:
        if r is not None and r < row.budget_remaining_below:
            limit = _percent(row.budget_remaining_below)
            return f"error budget remaining {_percent(r)} is below {limit}"
        return None
    if row.alert_firing is not None:
        return f"{row.alert_firing} alert firing" if row.alert_firing in firing else None
    lookback, horizon = row.lookback_s, row.horizon_s
    if lookback is None or horizon is None:
        return None
    tte = budget.time_to_exhaustion_s(r, burn, period_s)
    if tte is None or tte > horizon:
        return None
    if tte == 0:
        return f"error budget exhausted (within {format_duration(horizon)})"
    assert burn is not None
    return (
        f"error budget exhausted in {format_duration(round(tte))} at the "
        f"{format_duration(lookback)} burn rate {burn:.3g} (within {format_duration(horizon)})"
    )


def describe_row(row: BudgetPolicyRow) -> str:
    """The row's condition and decision for people: `error budget remaining at or below
    0% -> fail`."""
    if row.budget_remaining_at_most is not None:
        what = f"error budget remaining at or below {_percent(row.budget_remaining_at_most)}"
    elif row.budget_remaining_below is not None:
        what = f"error budget remaining below {_percent(row.budget_remaining_below)}"
    elif row.alert_firing is not None:
        what = f"{row.alert_firing} alert firing"
    else:
        lookback, horizon = row.lookback_s or 0, row.horizon_s or 0.0
        what = (
            f"error budget exhausted within {format_duration(horizon)} at the "
            f"{format_duration(lookback)} burn rate"
        )
    return f"{what} -> {row.decision}"
