"""Which receivers hear about which alert transitions.

- Burn-rate alerts and budget alerts (exhausted, exhaustion projected) go to every
  receiver, as alerts always have; a PagerDuty receiver still takes only the severities
  it lists (`severities`).
- An escalation goes only to the receivers its budget policy row names (`escalate`,
  carried on the transition as `receivers`), and to receivers configured with
  `escalations: all` (e.g. an Alertmanager that routes and inhibits by label itself).
  A receiver named by a row hears the escalation whatever its `severities`: naming it
  is the explicit choice.

So an unnamed receiver never hears an escalation unless it asks for all of them, and
the gate's decision never depends on who is told.
"""

from __future__ import annotations

from engine.core.config import Escalations
from engine.core.evaluator import Transition

__all__ = ["takes"]


def takes(tr: Transition, name: str | None, escalations: Escalations = "named") -> bool:
    """Whether the receiver called `name` (None: unnamed), taking `escalations`, hears
    about `tr` (before any severity filter of its own, which escalations skip)."""
    if tr.kind != "escalation":
        return True
    return escalations == "all" or (name is not None and name in tr.receivers)
