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

A `GateBook` answers many questions off one evaluator: each service's SLOs are found
once; `read` takes the arrays of an evaluation and checks every row for every SLO at
once (`budget_alerts.row_holds`); an answer then writes reasons for the holding rows
only. It gives what `decide_slo` over every row gives (tested), at the cost of the
rows that hold.

A break-glass override (engine.core.overrides) in force makes the decision `pass`; the
reasons then start with the override and go on with those it sets aside. Whether it is
in force is decided by the caller's clock (`now_s`), never read here.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import msgspec
import numpy as np
import numpy.typing as npt

from engine.core import budget
from engine.core.budget_alerts import row_holds, row_reason
from engine.core.budget_policy import DECISIONS, BudgetPolicyRow, Decision
from engine.core.config import Severity
from engine.core.evaluator import Evaluator
from engine.core.overrides import Override

__all__ = [
    "EXHAUSTION_WINDOW_S",
    "GateBook",
    "Reading",
    "ServiceGate",
    "SloFacts",
    "SloGate",
    "all_gates",
    "decide_slo",
    "exhaustion_window_s",
    "service_gate",
    "services",
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


class SloGate(msgspec.Struct, frozen=True, kw_only=True):
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


def decide_slo(rows: Sequence[BudgetPolicyRow], f: SloFacts) -> SloGate:
    """Apply every row to `f`: the worst decision of the rows that hold, their reasons
    (`slo: why -> decision`) and receivers."""
    return _decide(f.slo, f.group, rows, f.remaining_ratio, f.burn_rates.get, f.period_s, f.firing)


def _decide(
    slo: str,
    group: str | None,
    rows: Sequence[BudgetPolicyRow],
    remaining: float | None,
    burn_over: Callable[[int], float | None],
    period_s: float,
    firing: tuple[Severity, ...],
) -> SloGate:
    if not rows:
        return SloGate(
            slo=slo,
            group=group,
            decision="pass",
            error_budget_remaining_ratio=remaining,
            alerts_firing=firing,
            reasons=(),
            escalate=(),
        )
    label = slo if group is None else f"{slo}{{{group}}}"
    decisions: list[Decision] = []
    reasons: list[str] = []
    escalate: dict[str, None] = {}
    for row in rows:
        lookback = row.lookback_s
        burn = None if lookback is None else burn_over(lookback)
        why = row_reason(row, remaining, burn, period_s, firing)
        if why is None:
            continue
        decisions.append(row.decision)
        reasons.append(f"{label}: {why} -> {row.decision}")
        escalate.update(dict.fromkeys(row.escalate))
    return SloGate(
        slo=slo,
        group=group,
        decision=worst(decisions),
        error_budget_remaining_ratio=remaining,
        alerts_firing=firing,
        reasons=tuple(reasons),
        escalate=tuple(escalate),
    )


_SERVICES: weakref.WeakKeyDictionary[Evaluator, tuple[str, ...]] = weakref.WeakKeyDictionary()
"""Each evaluator's services, found once: its config never changes, and the changes
API asks on every request (a scan of 10,000 SLOs each time otherwise)."""


def services(ev: Evaluator) -> list[str]:
    """Every service some plain SLO of the config has, in config order."""
    found = _SERVICES.get(ev)
    if found is None:
        found = _SERVICES[ev] = tuple(_plan(ev))
    return list(found)


def exhaustion_window_s(ev: Evaluator) -> int:
    """The burn-rate window time to exhaustion is reported at (API, /metrics): 1h, or the
    shortest policy long window when 1h is not kept."""
    return budget.exhaustion_window_s(ev.windows_s, (row.long_s for row in ev.rows))


_Part = tuple[int, int | None]
"""A plain SLO of a service in its evaluator: (its column, None), or for a grouped one
(its first column, its index in the config)."""


def _plan(ev: Evaluator) -> dict[str, list[_Part]]:
    """Each service's plain SLOs in config order (a composite SLO has no service)."""
    out: dict[str, list[_Part]] = {}
    for j, slo in enumerate(ev.config_slos):
        if slo.service is not None and slo.composite is None:
            base = int(ev.column_base[j])
            out.setdefault(slo.service, []).append((base, j if slo.group_by else None))
    return out


@dataclass(frozen=True, slots=True)
class _Policy:
    """One list of budget policy rows and the columns judged with it."""

    rows: tuple[BudgetPolicyRow, ...]
    columns: npt.NDArray[np.intp]


@dataclass(frozen=True, slots=True)
class Reading:
    """The evaluator's arrays the budget policy looks at, read at one evaluation, and
    where each policy row holds: what any number of answers can share until the next
    evaluation (`GateBook.read`)."""

    remaining: list[float]
    burn: dict[int, list[float]]
    firing: list[list[bool]]
    """Per severity (`Evaluator.severities` order), per column: whether its alert fires."""
    holds: list[list[list[bool]]]
    """Per policy (`GateBook` order), per row, per column of that policy: whether the
    row holds (`budget_alerts.row_holds`, tested against the reasons' function)."""
    evaluated_at_s: float | None


class GateBook:
    """The gates of one evaluator's services. What depends on the config alone (which
    SLOs each service has, which rows judge each) is found once, here; `read` takes the
    arrays of the last evaluation and finds, for every column at once, which rows hold;
    `gate` and `all` answer from a reading, writing reasons for the holding rows only,
    so a caller that keeps a reading per evaluation pays for the arrays once however
    often it asks."""

    def __init__(self, ev: Evaluator) -> None:
        self.ev = ev
        self._plan = _plan(ev)
        self._lookbacks = sorted(ev.config.lookbacks_s())
        by_rows: dict[int, tuple[list[BudgetPolicyRow], list[int]]] = {}
        for c, slo in enumerate(ev.slos):
            rows = ev.config.budget_policy_of(slo)
            by_rows.setdefault(id(rows), (rows, []))[1].append(c)
        self._policies = [
            _Policy(tuple(rows), np.array(cols, dtype=np.intp)) for rows, cols in by_rows.values()
        ]
        self._period_s = ev.period_s.tolist()
        self._where = [(0, 0)] * len(ev.slos)
        """Each column's policy and its place among that policy's columns."""
        for p, policy in enumerate(self._policies):
            for k, c in enumerate(policy.columns.tolist()):
                self._where[c] = (p, k)

    def services(self) -> list[str]:
        """Every service some plain SLO has, in config order."""
        return list(self._plan)

    def __contains__(self, service: object) -> bool:
        return service in self._plan

    def read(self) -> Reading:
        ev = self.ev
        burn = ev.burn_rates()
        remaining = ev.budget_remaining()
        firing = ev.alerts().firing
        holds: list[list[list[bool]]] = []
        for policy in self._policies:
            cols = policy.columns
            rem, period = remaining[cols], ev.period_s[cols]
            fires = {s: firing[cols, j] for j, s in enumerate(ev.severities)}
            holds.append(
                [
                    row_holds(
                        row,
                        rem,
                        None if (lb := row.lookback_s) is None else burn[ev.window_index(lb), cols],
                        period,
                        fires,
                    ).tolist()
                    for row in policy.rows
                ]
            )
        return Reading(
            remaining=remaining.tolist(),
            burn={lb: burn[ev.window_index(lb)].tolist() for lb in self._lookbacks},
            firing=firing.T.tolist(),
            holds=holds,
            evaluated_at_s=ev.evaluated_at_s,
        )

    def columns(self, service: str) -> list[int] | None:
        """The columns in use of `service`'s SLOs (a grouped SLO's groups and its
        overflow column); None when no SLO has that service."""
        parts = self._plan.get(service)
        if parts is None:
            return None
        groups = self.ev.classifier.groups
        out: list[int] = []
        for base, j in parts:
            if j is None:
                out.append(base)
            else:
                out.extend(range(base, base + len(groups[j])))
                out.append(base + self.ev.config_slos[j].group_limit)
        return out

    def facts(self, reading: Reading, column: int) -> SloFacts:
        """The facts of the SLO (group) of `column` in `reading`."""
        ev = self.ev
        slo = ev.slos[column]
        rows = ev.config.budget_policy_of(slo)
        return SloFacts(
            slo=slo.name,
            group=ev.group_of(column),
            remaining_ratio=_num(reading.remaining[column]),
            burn_rates={
                lb: _num(reading.burn[lb][column]) for r in rows if (lb := r.lookback_s) is not None
            },
            period_s=slo.period_s,
            firing=self._firing(reading, column),
        )

    def _firing(self, reading: Reading, column: int) -> tuple[Severity, ...]:
        sev = self.ev.severities
        return tuple(s for s, f in zip(sev, reading.firing, strict=True) if f[column])

    def slo_gate(self, reading: Reading, column: int) -> SloGate:
        """The gate of the SLO (group) of `column` in `reading`: `decide_slo` over the
        rows that hold there (the same answer as over all of them, written faster)."""
        p, k = self._where[column]
        held = [r for r, h in zip(self._policies[p].rows, reading.holds[p], strict=True) if h[k]]
        ev = self.ev
        burn = reading.burn
        return _decide(
            ev.names[column],
            ev.group_of(column),
            held,
            _num(reading.remaining[column]),
            lambda lookback: _num(burn[lookback][column]),
            self._period_s[column],
            self._firing(reading, column),
        )

    def gate(
        self,
        service: str,
        reading: Reading,
        override: Override | None = None,
        now_s: float | None = None,
    ) -> ServiceGate | None:
        """The gate of `service` in `reading`; None when no SLO has that service.
        `override` counts when in force at `now_s` (the caller's wall clock)."""
        columns = self.columns(service)
        if columns is None:
            return None
        gates = tuple(self.slo_gate(reading, c) for c in columns)
        return _roll_up(reading, service, gates, override, now_s)

    def all(
        self,
        reading: Reading,
        override_of: Callable[[str], Override | None] | None = None,
        now_s: float | None = None,
    ) -> list[ServiceGate]:
        """The gate of every service (`services` order)."""
        of = override_of or (lambda _: None)
        out = [self.gate(s, reading, of(s), now_s) for s in self._plan]
        return [g for g in out if g is not None]


def _num(x: float) -> float | None:
    return None if math.isnan(x) else x


def _roll_up(
    reading: Reading,
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
        evaluated_at=reading.evaluated_at_s,
    )


def service_gate(
    ev: Evaluator, service: str, override: Override | None = None, now_s: float | None = None
) -> ServiceGate | None:
    """The gate of `service` at the evaluator's last evaluation; None when no SLO has
    that service. `override` counts when in force at `now_s` (the caller's wall clock).
    One answer: a caller that asks often keeps a `GateBook` and a reading instead."""
    book = GateBook(ev)
    return book.gate(service, book.read(), override, now_s) if service in book else None


def all_gates(
    ev: Evaluator,
    override_of: Callable[[str], Override | None] | None = None,
    now_s: float | None = None,
) -> list[ServiceGate]:
    """The gate of every service (`services` order), the arrays read once for all."""
    book = GateBook(ev)
    return book.all(book.read(), override_of, now_s)
