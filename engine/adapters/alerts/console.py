"""The console sink: one readable line per transition, colored on a terminal.

A line reads (wrapped here after the budget):

    FIRING   page   checkout-availability  burn 1h=25.3x 5m=41.0x (>= 14.4x)  budget left 87.2%
      at 2023-11-14T22:13:20Z

Color follows the stream: on when it is a terminal, off when `NO_COLOR` is set.
"""

from __future__ import annotations

import os
import sys
from typing import Final, TextIO

from engine.adapters.alerts.payloads import rfc3339
from engine.adapters.alerts.routing import takes
from engine.core.budget_alerts import ALERTNAMES
from engine.core.config import Escalations
from engine.core.durations import format_duration
from engine.core.evaluator import Transition

__all__ = ["ConsoleSink", "format_transition"]

_RESET: Final = "\033[0m"
_COLORS: Final = {
    ("firing", "page"): "\033[1;31m",
    ("firing", "ticket"): "\033[1;33m",
    ("resolved", "page"): "\033[32m",
    ("resolved", "ticket"): "\033[32m",
}


def _rate(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}x"


def format_transition(tr: Transition, *, color: bool = False) -> str:
    """The console line of a transition (see the module docstring)."""
    state = f"{tr.state.upper():<8}"
    if color:
        state = f"{_COLORS.get((tr.state, tr.severity), '')}{state}{_RESET}"
    if tr.kind != "burn":
        return _budget_line(tr, state)
    rates = (
        f"burn {format_duration(tr.long_window_s)}={_rate(tr.burn_rate_long)} "
        f"{format_duration(tr.short_window_s)}={_rate(tr.burn_rate_short)}"
    )
    threshold = f">= {tr.factor:g}x" if tr.state == "firing" else f"threshold {tr.factor:g}x"
    left = tr.error_budget_remaining_ratio
    budget = "n/a" if left is None else f"{left * 100:.1f}%"
    return (
        f"{state} {tr.severity:<6} {_name(tr)}  {rates} ({threshold})  budget left {budget}  "
        f"at {rfc3339(tr.at)}"
    )


def _budget_line(tr: Transition, state: str) -> str:
    """A budget alert's or escalation's line: its alertname, the budget left, the time to
    exhaustion, and an escalation's row, decision, reason and receivers."""
    left = tr.error_budget_remaining_ratio
    budget = "n/a" if left is None else f"{left * 100:.1f}%"
    line = f"{state} {tr.severity:<6} {_name(tr)}  {ALERTNAMES[tr.kind]}  budget left {budget}"
    tte = tr.time_to_exhaustion_s
    if tr.kind == "budget_exhaustion_projected" and tte is not None:
        line += f"  exhausted in {format_duration(round(tte))}"
    if tr.kind == "escalation":
        line += f"  {tr.policy_row} {tr.decision}: {tr.reason} -> {', '.join(tr.receivers)}"
    return f"{line}  at {rfc3339(tr.at)}"


def _name(tr: Transition) -> str:
    """`slo`, or `slo{group}` for a grouped SLO's transition."""
    return tr.slo if tr.group is None else f"{tr.slo}{{{tr.group}}}"


class ConsoleSink:
    """Prints each transition to `stream` (stdout by default) as it is delivered."""

    receiver = "console"

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        color: bool | None = None,
        name: str | None = None,
        escalations: Escalations = "named",
    ) -> None:
        self.stream = stream
        self.name = name
        """The configured receiver's `name`, if it has one."""
        self.escalations: Escalations = escalations
        self.color = color
        """True/False forces color on/off; None decides per stream (tty and no NO_COLOR)."""

    def __repr__(self) -> str:
        return "ConsoleSink()"

    async def start(self) -> None:
        return None

    async def deliver(self, tr: Transition) -> None:
        if not takes(tr, self.name, self.escalations):
            return
        stream = self.stream or sys.stdout
        print(format_transition(tr, color=self._color(stream)), file=stream, flush=True)

    async def close(self, timeout_s: float = 0.0) -> None:
        return None

    def stats(self) -> dict[tuple[str, str], int]:
        return {}

    def _color(self, stream: TextIO) -> bool:
        if self.color is not None:
            return self.color
        if os.environ.get("NO_COLOR"):
            return False
        isatty = getattr(stream, "isatty", None)
        return bool(isatty is not None and isatty())
