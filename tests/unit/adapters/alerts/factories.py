"""Shared by the alert sink unit tests: one SLO, transitions of it, a clock that stands still."""

from __future__ import annotations

import base64
import secrets
from typing import Any

from engine.core.config import Slo
from engine.core.evaluator import Transition
from engine.core.taxonomy import SliKind

T0 = 1_700_000_000.0
"""2023-11-14T22:13:20Z."""
EXTERNAL = "http://burnrate.test:9464"
SLO = Slo(
    name="checkout-availability",
    service="checkout",
    sli=SliKind.AVAILABILITY,
    objective=99.9,
    labels={"team": "payments"},
    runbook_url="https://runbooks.example/checkout",
)
SLOS = {SLO.name: SLO}


def firing(at: float = T0, **changes: Any) -> Transition:
    """A page firing on the 1h/5m row."""
    fields: dict[str, Any] = {
        "slo": SLO.name,
        "severity": "page",
        "state": "firing",
        "at": at,
        "long_window_s": 3600,
        "short_window_s": 300,
        "burn_rate_long": 25.3,
        "burn_rate_short": 41.0,
        "factor": 14.4,
        "error_budget_remaining_ratio": 0.872,
    }
    fields.update(changes)
    return Transition(**fields)


def resolved(at: float, **changes: Any) -> Transition:
    """Resolved on the 6h/30m row, which held last: not the row that fired."""
    fields: dict[str, Any] = {
        "state": "resolved",
        "long_window_s": 21600,
        "short_window_s": 1800,
        "burn_rate_long": 4.0,
        "burn_rate_short": 0.5,
        "factor": 6.0,
        "error_budget_remaining_ratio": 0.8,
    }
    fields.update(changes)
    return firing(at, **fields)


class FixedClock:
    def __init__(self, now_s: float = T0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def budget_alert(
    kind: str = "budget_exhausted", at: float = T0, state: str = "firing", **changes: Any
) -> Transition:
    """A budget alert of the SLO: exhausted by default (a ticket), at the 1h lookback."""
    fields: dict[str, Any] = {
        "slo": SLO.name,
        "severity": "ticket",
        "state": state,
        "at": at,
        "long_window_s": 3600,
        "short_window_s": 3600,
        "burn_rate_long": 2.0,
        "burn_rate_short": 2.0,
        "factor": 0.0,
        "error_budget_remaining_ratio": -0.12,
        "kind": kind,
        "time_to_exhaustion_s": 0.0,
    }
    if kind == "budget_exhaustion_projected":
        fields |= {
            "error_budget_remaining_ratio": 0.2,
            "time_to_exhaustion_s": 0.2 * 30 * 86400 / 2.0,
            "horizon_s": 3 * 86400.0,
            "factor": 2.0,
        }
    fields.update(changes)
    return Transition(**fields)


def escalation(
    at: float = T0, state: str = "firing", receivers: tuple[str, ...] = ("oncall",), **changes: Any
) -> Transition:
    """The escalation of `$.budget_policy[0]` (spent budget -> fail) to `receivers`."""
    fields: dict[str, Any] = {
        "severity": "page",
        "policy_row": "$.budget_policy[0]",
        "decision": "fail",
        "reason": "error budget remaining -12% is at or below 0%",
        "receivers": receivers,
    }
    fields.update(changes)
    return budget_alert("escalation", at, state, **fields)
