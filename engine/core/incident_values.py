"""The values of engine.core.incidents: `Incident` (with its `IncidentAlert`s and
`TimelineEntry`s), `IncidentUpdate`, and the functions on them that stores use too
(`incident_id`, `acknowledged`, `merge_stored`). Frozen msgspec Structs; times are
epoch seconds of event time.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import msgspec

from engine.core.config_types import Severity
from engine.core.transitions import AlertKey, TransitionKind

__all__ = [
    "MAX_ALERTS",
    "MAX_TIMELINE",
    "EntryKind",
    "Incident",
    "IncidentAlert",
    "IncidentState",
    "IncidentUpdate",
    "Scalar",
    "TimelineEntry",
    "UpdateKind",
    "acknowledged",
    "incident_id",
    "merge_stored",
    "with_entry",
]

MAX_TIMELINE = 1000
MAX_ALERTS = 500

IncidentState = Literal["open", "closed"]
EntryKind = Literal[
    "opened", "alert_fired", "alert_resolved", "change", "correction", "acknowledged", "closed"
]
UpdateKind = Literal["opened", "updated", "closed"]
Scalar = str | int | float | bool | None


class TimelineEntry(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    at: float
    kind: EntryKind
    text: str
    data: dict[str, Scalar] = {}


class IncidentAlert(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One alert of an incident (by `AlertKey`): when it first fired in the incident,
    when it last resolved (None while it fires) and how often it fired."""

    slo: str
    group: str | None = None
    severity: Severity
    kind: TransitionKind = "burn"
    alert_id: str
    fired_at: float
    resolved_at: float | None = None
    fired_count: int = 1

    @property
    def key(self) -> AlertKey:
        return (self.slo, self.group, self.alert_id)

    @property
    def firing(self) -> bool:
        return self.resolved_at is None


class Incident(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    service: str
    state: IncidentState
    opened_at: float
    """The opening page's fired time."""
    closed_at: float | None = None
    onset_at: float | None = None
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    resolved_at: float | None = None
    """When the last of its alerts resolved; None while any fires."""
    alerts: tuple[IncidentAlert, ...] = ()
    slos: tuple[str, ...] = ()
    timeline: tuple[TimelineEntry, ...] = ()
    timeline_dropped: int = 0

    @property
    def time_to_detect_s(self) -> float | None:
        return None if self.onset_at is None else self.opened_at - self.onset_at

    @property
    def time_to_acknowledge_s(self) -> float | None:
        return None if self.acknowledged_at is None else self.acknowledged_at - self.opened_at

    @property
    def time_to_resolve_s(self) -> float | None:
        return None if self.resolved_at is None else self.resolved_at - self.opened_at

    def closes_at(self, quiet_period_s: float) -> float | None:
        """When it closes if nothing fires again (None: an alert still fires, or closed)."""
        if self.state == "closed" or self.resolved_at is None:
            return None
        return self.resolved_at + quiet_period_s


class IncidentUpdate(msgspec.Struct, frozen=True, kw_only=True):
    kind: UpdateKind
    incident: Incident


def incident_id(service: str, opened_at_s: float) -> str:
    """`<opened_at, whole seconds>-<12 hex digits of a hash of service and opened_at>`:
    sorts by opening time, and is the same wherever the same page is seen."""
    digest = hashlib.sha256(f"{service}\n{float(opened_at_s)!r}".encode()).hexdigest()
    return f"{int(opened_at_s)}-{digest[:12]}"


def with_entry(inc: Incident, entry: TimelineEntry, *, force: bool = False) -> Incident:
    """`inc` with `entry` in time order (after entries of the same time)."""
    if len(inc.timeline) >= MAX_TIMELINE and not force:
        return msgspec.structs.replace(inc, timeline_dropped=inc.timeline_dropped + 1)
    i = len(inc.timeline)
    while i and inc.timeline[i - 1].at > entry.at:
        i -= 1
    timeline = (*inc.timeline[:i], entry, *inc.timeline[i:])
    return msgspec.structs.replace(inc, timeline=timeline)


def acknowledged(inc: Incident, by: str, at_s: float) -> Incident:
    """`inc` acknowledged by `by` at `at_s`; the first acknowledgement stands, so this
    is `inc` itself when it already has one."""
    if inc.acknowledged_at is not None:
        return inc
    inc = msgspec.structs.replace(inc, acknowledged_at=at_s, acknowledged_by=by)
    entry = TimelineEntry(at=at_s, kind="acknowledged", text=f"acknowledged by {by}", data={})
    return with_entry(inc, entry, force=True)


def merge_stored(stored: Incident, incoming: Incident) -> Incident:
    """What a store keeps when `incoming` is written over `stored` (same id): a closed
    incident stays closed (an older open version written late is dropped), and an
    acknowledgement made through the store (by another instance) is kept."""
    if stored.state == "closed" and incoming.state == "open":
        return stored
    if stored.acknowledged_at is not None and stored.acknowledged_by is not None:
        return acknowledged(incoming, stored.acknowledged_by, stored.acknowledged_at)
    return incoming
