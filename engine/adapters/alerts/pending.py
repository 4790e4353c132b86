"""What an HTTP sink has not delivered yet, as plain values that outlive the process.

A page that fires while its receiver is down must reach the receiver once it is back,
also when the engine was restarted in between. So each HTTP sink can hand out its
*delivery state* (`SinkState`): the transitions it took but did not deliver (in order,
with the firing each one belongs to) and the alerts whose firing its receiver took
and whose resolve it did not take yet. The runtime stores that state in the state file
with the evaluator's (`engine.runtime.delivery`), and gives it back to the sink with the
same `identity` after a restart (`restore`), before any new transition.

Identity of a notification is kept across a restart: a transition re-sent after a
restart has the same Alertmanager labels and `startsAt` (they come from the stored
firing transition), and a webhook message has the same `webhook-id`, derived from
the transition (`message_id_for`), so receivers that drop repeated ids drop it.

The order rule, for every sink: a receiver never hears `resolved` first. A sink that
never had an alert's firing taken by its receiver (refused, dropped from a full queue,
or fired and resolved before this sink existed) drops that alert's resolve, with a
warning, instead of sending it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import msgspec

from engine.adapters.alerts.signing import message_id_from
from engine.core.evaluator import Transition

__all__ = ["KeepsDeliveries", "QueuedJob", "SinkState", "message_id_for", "sink_identity"]


class QueuedJob(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A transition a sink took and did not deliver, and the firing of its alert."""

    tr: Transition
    fired: Transition | None = None


class SinkState(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What one sink still owes its receiver, and what the receiver already knows."""

    queued: list[QueuedJob] = msgspec.field(default_factory=list)
    """Taken and not delivered, oldest first (the one being sent included)."""
    announced: list[Transition] = msgspec.field(default_factory=list)
    """The firing transitions of alerts the receiver was told about and not told
    resolved; a resolve is only sent for these."""


@runtime_checkable
class KeepsDeliveries(Protocol):
    """A sink whose undelivered transitions can be stored and restored."""

    @property
    def identity(self) -> str:
        """Stable across restarts for the same receiver; no credentials in it."""
        ...

    def delivery_state(self) -> SinkState:
        """What is undelivered and announced now (also after close)."""
        ...

    def restore(
        self,
        state: SinkState | None,
        waiting: Sequence[Transition],
        firing: Sequence[Transition],
    ) -> int:
        """Continue from `state` (None: nothing known of this receiver), then take
        `waiting` (transitions it was never handed), then announce each alert of
        `firing` (those firing now) the receiver has not been told about. Returns how
        many transitions it now holds to deliver. Call once, before new transitions."""
        ...


def message_id_for(tr: Transition) -> str:
    """The `webhook-id` of the message about `tr`: the same for the same transition
    (alert, state and tick), whether sent now or after a restart. A grouped SLO's group
    is part of it (two groups firing at one tick are two messages); an ungrouped SLO's
    ids are as they were before groups. A budget alert's or escalation's id has its key
    where a burn-rate alert's has its severity, so the two are never confused."""
    slo = tr.slo if tr.group is None else f"{tr.slo}\0group\0{tr.group}"
    seed = f"burnrate-transition\0{slo}\0{tr.alert_id}\0{tr.state}\0{tr.at!r}"
    return message_id_from(hashlib.sha256(seed.encode()).digest())


def sink_identity(kind: str, url: str) -> str:
    """`kind:` and a digest of the URL: stable, and no credential a URL may carry."""
    return f"{kind}:{hashlib.sha256(url.encode()).hexdigest()[:20]}"
