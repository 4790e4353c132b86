"""The release gate: budget policy rows applied to SLOs, SLOs rolled up into a service.

Theory of operation
-------------------
An SLO is judged from a few facts read off the evaluator at its last evaluation
(`SloFacts`): the share of its error budget left over its period, the burn rate over
each lookback the budget policy names, its period and the severities of its alerts
firing. Every row of its budget policy (engine.core.budget_policy; the SLO's own rows,
else the top-level ones) that holds contributes its decision, a reason and its
receivers: the SLO's decision is the worst of them (`pass` when none holds), its
escalation the receivers of every holding row in row order, each once. Rows are
independent, so their order changes only the order of reasons and receivers.

A service's decision is the worst of its SLOs' (every plain SLO whose `service` it is;
a grouped SLO counts once per group in use, named `slo{group}` in the reasons;
composite SLOs have no service and count for none). Without data (no events over the
period or the lookback) a budget condition does not hold: no data is neither good nor
bad, so a service nobody has called yet passes unless an alert fires.

A break-glass override (engine.core.overrides) in force makes the decision `pass`; the
reasons then start with the override and go on with those it sets aside. Whether it is
in force is decided by the caller's clock (`now_s`), never read here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from engine.core import budget
from engine.core.budget_alerts import row_reason
from engine.core.budget_policy import DECISIONS, BudgetPolicyRow, Decision
from engine.core.config import Severity
from engine.core.evaluator import Evaluator
from engine.core.overrides import Override

__all__ = [
    "EXHAUSTION_WINDOW_S",
    "ServiceGate",
    "SloFacts",
    "SloGate",
    "all_gates",
    "decide_slo",
    "exhaustion_window_s",
    "service_gate",
    "services",
    "slo_facts",
    "worst",
]

EXHAUSTION_WINDOW_S = budget.EXHAUSTION_WINDOW_S


@dataclass(frozen=True, slots=True)
class SloFacts:
    """What the budget policy looks at for one SLO (or one group of a grouped SLO)."""

    slo: str
    group: str | None
    remaining_ratio: float | None
    """Budget left over the period; None without data."""
    burn_rates: Mapping[int, float | None]
    """Burn rate over each lookback (seconds) the rows name; None without data."""
    period_s: float
    firing: tuple[Severity, ...]

    @property
    def label(self) -> str:
        return self.slo if self.group is None else f"{self.slo}{{{self.group}}}"


@dataclass(frozen=True, slots=True)
class SloGate:
    slo: str
    group: str | None
    decision: Decision
    error_budget_remaining_ratio: float | None
    alerts_firing: tuple[Severity, ...]
    reasons: tuple[str, ...]
    escalate: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ServiceGate:
    service: str
    decision: Decision
    reasons: tuple[str, ...]
    slos: tuple[SloGate, ...]
    override: Override | None
    escalate: tuple[str, ...]
    """Receivers of every holding row of every SLO, each once (an override silences none)."""
    evaluated_at: float | None


def worst(decisions: Sequence[Decision]) -> Decision:
    """The worst of `decisions` (`pass` for none)."""
    return max(decisions, key=DECISIONS.index, default="pass")


def _holds(row: BudgetPolicyRow, f: SloFacts) -> str | None:
    """Why `row` holds for `f` (the text of a reason, without the SLO), or None."""
    burn = None if row.lookback_s is None else f.burn_rates.get(row.lookback_s)
    return row_reason(row, f.remaining_ratio, burn, f.period_s, f.firing)


def decide_slo(rows: Sequence[BudgetPolicyRow], f: SloFacts) -> SloGate:
    """Apply every row to `f`: the worst decision of the rows that hold, their reasons
    (`slo: why -> decision`) and receivers."""
    decisions: list[Decision] = []
    reasons: list[str] = []
    escalate: dict[str, None] = {}
    for row in rows:
        why = _holds(row, f)
        if why is None:
            continue
        decisions.append(row.decision)
        reasons.append(f"{f.label}: {why} -> {row.decision}")
        escalate.update(dict.fromkeys(row.escalate))
    return SloGate(
        slo=f.slo,
        group=f.group,
        decision=worst(decisions),
        error_budget_remaining_ratio=f.remaining_ratio,
        alerts_firing=f.firing,
        reasons=tuple(reasons),
        escalate=tuple(escalate),
    )


def services(ev: Evaluator) -> list[str]:
    """Every service some plain SLO of the config has, in config order."""
    return list(_columns(ev))


def exhaustion_window_s(ev: Evaluator) -> int:
    """The burn-rate window time to exhaustion is reported at (API, /metrics): 1h, or the
    shortest policy long window when 1h is not kept."""
    return budget.exhaustion_window_s(ev.windows_s, (row.long_s for row in ev.rows))


def _num(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def _columns(ev: Evaluator) -> dict[str, list[int]]:
    """The columns in use of each service's plain SLOs, services in config order."""
    used = ev.column_in_use()
    out: dict[str, list[int]] = {}
    for c, slo in enumerate(ev.slos):
        if slo.service is not None and slo.composite is None:
            cols = out.setdefault(slo.service, [])
            if used[c]:
                cols.append(c)
    return out


def slo_facts(ev: Evaluator, columns: Sequence[int]) -> list[SloFacts]:
    """The facts of the SLO (group) of each of `columns`, read at the last evaluation:
    the evaluator's arrays are read once for all of them."""
    lookbacks = {lb for c in columns for lb in _lookbacks(ev, c)}
    burn = ev.burn_rates()
    rows = {lb: burn[ev.window_index(lb)] for lb in lookbacks}
    remaining = ev.budget_remaining()
    firing = ev.alerts().firing
    out: list[SloFacts] = []
    for c in columns:
        slo = ev.slos[c]
        out.append(
            SloFacts(
                slo=slo.name,
                group=ev.group_of(c),
                remaining_ratio=_num(float(remaining[c])),
                burn_rates={lb: _num(float(rows[lb][c])) for lb in _lookbacks(ev, c)},
                period_s=slo.period_s,
                firing=tuple(s for j, s in enumerate(ev.severities) if firing[c, j]),
            )
        )
    return out


def _lookbacks(ev: Evaluator, column: int) -> list[int]:
    rows = ev.config.budget_policy_of(ev.slos[column])
    return [lb for r in rows if (lb := r.lookback_s) is not None]


def _roll_up(
    ev: Evaluator,
    service: str,
    gates: tuple[SloGate, ...],
    override: Override | None,
    now_s: float | None,
) -> ServiceGate:
    decision = worst([g.decision for g in gates])
    reasons = tuple(r for g in gates for r in g.reasons)
    escalate = tuple(dict.fromkeys(r for g in gates for r in g.escalate))
    if override is not None and (now_s is None or not override.in_force(now_s)):
        override = None
    if override is not None:
        head = f"{override.describe(now_s)}; without it: {decision}"
        reasons, decision = (head, *reasons), "pass"
    return ServiceGate(
        service=service,
        decision=decision,
        reasons=reasons,
        slos=gates,
        override=override,
        escalate=escalate,
        evaluated_at=ev.evaluated_at_s,
    )


def service_gate(
    ev: Evaluator, service: str, override: Override | None = None, now_s: float | None = None
) -> ServiceGate | None:
    """The gate of `service` at the evaluator's last evaluation; None when no SLO has
    that service. `override` counts when in force at `now_s` (the caller's wall clock)."""
    columns = _columns(ev).get(service)
    if columns is None:
        return None
    return _gates(ev, {service: columns}, lambda _: override, now_s)[0]


def all_gates(
    ev: Evaluator,
    override_of: Callable[[str], Override | None] | None = None,
    now_s: float | None = None,
) -> list[ServiceGate]:
    """The gate of every service (`services` order), the arrays read once for all."""
    return _gates(ev, _columns(ev), override_of or (lambda _: None), now_s)


def _gates(
    ev: Evaluator,
    columns: Mapping[str, list[int]],
    override_of: Callable[[str], Override | None],
    now_s: float | None,
) -> list[ServiceGate]:
    flat = [c for cols in columns.values() for c in cols]
    facts = dict(zip(flat, slo_facts(ev, flat), strict=True))
    out: list[ServiceGate] = []
    for service, cols in columns.items():
        gates = tuple(decide_slo(ev.config.budget_policy_of(ev.slos[c]), facts[c]) for c in cols)
        out.append(_roll_up(ev, service, gates, override_of(service), now_s))
    return out
