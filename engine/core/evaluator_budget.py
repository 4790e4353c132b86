"""The evaluator's budget alerts and escalations: their evaluation at every tick, the
transitions they make, and their state (engine.core.budget_alerts has the conditions).

`BudgetAlertsMixin` holds the methods of `Evaluator` (engine.core.evaluator) that deal
with them, moved here to keep that module readable; they read the evaluator's windows,
burn-rate alert state and budget alert state (`_budget`), declared below for the type
checker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

from engine.core import budget, budget_alerts
from engine.core.arrays import F64
from engine.core.budget_alerts import AlertColumn, describe_row, row_holds, row_reason
from engine.core.budget_policy import Decision
from engine.core.config import Severity
from engine.core.evaluator_state import AlertState, BudgetAlertState
from engine.core.transitions import Transition, none_if_nan
from engine.core.windows import WindowSet

__all__ = ["BudgetAlertsMixin"]


class BudgetAlertsMixin:
    """The budget-alert methods of `Evaluator`."""

    if TYPE_CHECKING:
        names: list[str]
        severities: tuple[Severity, ...]
        windows: WindowSet
        period_s: F64
        budget_alert_columns: list[AlertColumn]
        budget_lookback_s: int
        budget_horizon_s: float | None
        _alerts: AlertState
        _budget: BudgetAlertState
        _evaluated_at_s: float | None

        def burn_rates(self) -> F64: ...

        def group_of(self, column: int) -> str | None: ...

    def _evaluate_budget(self, t: float, burn: F64) -> list[Transition]:
        """Budget alerts and escalations at tick `t`, after the burn-rate alerts (whose
        firing `alert_firing` rows read): by column, then in `budget_alert_columns` order."""
        remaining = self._alerts.budget_at_tick_ratio
        firing = {sev: self._alerts.firing[:, j] for j, sev in enumerate(self.severities)}
        st = self._budget
        holds = np.zeros_like(st.firing)
        for a, col in enumerate(self.budget_alert_columns):
            if col.kind == "budget_exhausted":
                h = budget_alerts.exhausted(remaining)
            elif col.kind == "budget_exhaustion_projected":
                assert self.budget_horizon_s is not None
                rate = burn[self.windows.index(self.budget_lookback_s)]
                h = budget_alerts.projected(remaining, rate, self.period_s, self.budget_horizon_s)
            else:
                assert col.row is not None
                lb = col.row.lookback_s
                rates = None if lb is None else burn[self.windows.index(lb)]
                h = row_holds(col.row, remaining, rates, self.period_s, firing)
            holds[:, a] = h & col.mask
        fire, resolve = holds & ~st.firing, st.firing & ~holds
        out = [
            self._budget_transition(int(i), int(a), "firing" if fire[i, a] else "resolved", t, burn)
            for i, a in zip(*np.nonzero(fire | resolve), strict=True)
        ]
        st.firing_since_s[fire] = t
        st.firing_since_s[resolve] = np.nan
        st.firing[...] = holds
        return out

    def _budget_transition(
        self,
        i: int,
        a: int,
        state: Literal["firing", "resolved"],
        t: float,
        burn: F64,
    ) -> Transition:
        col = self.budget_alert_columns[a]
        row = col.row
        remaining = none_if_nan(float(self._alerts.budget_at_tick_ratio[i]))
        period_s = float(self.period_s[i])
        lookback = row.lookback_s if row is not None and row.lookback_s else self.budget_lookback_s
        rate = none_if_nan(float(burn[self.windows.index(lookback), i]))
        horizon = self.budget_horizon_s if row is None else row.horizon_s
        factor = 0.0
        if col.kind == "budget_exhaustion_projected" and remaining is not None and remaining > 0:
            assert horizon is not None
            factor = budget.burn_rate_consuming(remaining, horizon, period_s)
        decision: Decision | None = None
        reason = None
        if row is not None:
            decision = row.decision
            sevs = tuple(s for j, s in enumerate(self.severities) if self._alerts.firing[i, j])
            rb = rate if row.lookback_s else None
            why = row_reason(row, remaining, rb, period_s, sevs) if state == "firing" else None
            reason = why or f"no longer holds: {describe_row(row)}"
        return Transition(
            slo=self.names[i],
            severity=col.severity,
            state=state,
            at=t,
            long_window_s=lookback,
            short_window_s=lookback,
            burn_rate_long=rate,
            burn_rate_short=rate,
            factor=factor,
            error_budget_remaining_ratio=remaining,
            group=self.group_of(i),
            kind=col.kind,
            time_to_exhaustion_s=budget.time_to_exhaustion_s(remaining, rate, period_s),
            horizon_s=horizon,
            policy_row=col.path,
            decision=decision,
            reason=reason,
            receivers=tuple(row.escalate) if row is not None else (),
        )

    def budget_alerts(self) -> BudgetAlertState:
        """The budget alerts and escalations now, as read-only copies."""
        return self._budget.copy()

    def firing_budget_alerts(self) -> list[Transition]:
        """A firing transition for every budget alert and escalation firing now, at the tick
        it fired, with the numbers of the last evaluation (what a restarted engine
        announces to receivers that never heard of it)."""
        st = self._budget
        if self._evaluated_at_s is None or not st.firing.any():
            return []
        burn = self.burn_rates()
        return [
            self._budget_transition(int(i), int(a), "firing", float(st.firing_since_s[i, a]), burn)
            for i, a in zip(*np.nonzero(st.firing), strict=True)
        ]

    def _budget_state_of(self, saved: BudgetAlertState | None) -> tuple[F64, F64]:
        """The budget alerts' (firing, firing_since_s) arrays from `saved`, matched by key:
        an alert the state does not have (a state from before it, a row that gained
        `escalate`) starts not firing; one the config no longer has is dropped. ValueError
        when the arrays do not fit the keys and columns."""
        n, k = self._budget.firing.shape
        firing = np.zeros((n, k), dtype=bool)
        since = np.full((n, k), np.nan)
        if saved is None:
            return firing, since
        shape = (n, len(saved.keys))
        for name, arr, dtype in (
            ("budget firing", saved.firing, np.dtype(bool)),
            ("budget firing_since", saved.firing_since_s, np.dtype(np.float64)),
        ):
            if arr.shape != shape or arr.dtype != dtype:
                raise ValueError(f"{name}: {arr.dtype}{arr.shape}, expected {dtype}{shape}")
        at = {key: j for j, key in enumerate(saved.keys)}
        for a, key in enumerate(self._budget.keys):
            j = at.get(key)
            if j is not None:
                firing[:, a] = saved.firing[:, j]
                since[:, a] = np.where(saved.firing[:, j], saved.firing_since_s[:, j], np.nan)
        for a, col in enumerate(self.budget_alert_columns):
            firing[:, a] &= col.mask
        since[~firing] = np.nan
        return firing, since
