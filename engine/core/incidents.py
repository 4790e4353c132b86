"""Incidents: the lifecycle of a service's trouble, from alert transitions (event time).

Theory of operation
-------------------
`IncidentBook` keeps the open incidents, at most one per service (an SLO's `service`;
composite SLOs have none and open no incident). It takes the evaluator's alert
transitions in event-time order and answers with `IncidentUpdate`s (opened, updated,
closed) carrying the whole `Incident` value, so a store can persist each as it is:

- A firing transition of severity `page` (any kind: burn-rate alert, budget alert,
  escalation) for a service with no open incident opens one. Its id is
  `incident_id(service, fired_at)`: the same in every process that sees the same page,
  so a restart or a second instance sharing the store writes the same incident.
- While it is open, every transition of its service joins it: a firing one adds (or
  fires again) its alert, a resolution resolves it. A resolution of an alert that is
  not in the incident (it fired before the incident opened) is not recorded.
- It closes when all its alerts have stayed resolved for the quiet period: at
  `resolved_at + quiet_period` (`resolved_at`: when its last alert resolved), provided
  no alert fired again before that. Closing is judged in event time on the next
  transition of the service or `advance(t)`, and `closed_at` is that instant whatever
  the call's time, so the result does not depend on how often `advance` is called.
- A closed incident never reopens. A page at or after `closed_at` opens a new
  incident; one before it joins the open one (closing happens only once the quiet
  period has passed, so that is the whole "reopen" rule).

The timeline holds the incident's opening and closing, its alerts' firings and
resolutions, the changes named on its alerts (`Transition.changes`) or taken in while
it is open (`change`), corrections taken in while it is open (`correction`) and the
acknowledgement. It is kept in time order, at most MAX_TIMELINE entries (the rest
counted in `timeline_dropped`), and an incident holds at most MAX_ALERTS alerts, so
a flapping grouped SLO cannot grow one without bound.

Onset, detection and response times: `onset_at` is the earliest onset estimated for
its firing alerts (engine.core.onset, passed in with the transition), never later than
`opened_at`; `time_to_detect_s` = opened_at - onset_at, `time_to_acknowledge_s` =
acknowledged_at - opened_at, `time_to_resolve_s` = resolved_at - opened_at.

The values (`Incident` and its parts) are in engine.core.incident_values, re-exported
here. The book does no I/O and reads no clock; `restore` takes back the open incidents a
store kept, so a restart goes on where it stopped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

from engine.core.changes import Change
from engine.core.config_model import Correction, Slo
from engine.core.incident_values import (
    MAX_ALERTS,
    MAX_TIMELINE,
    EntryKind,
    Incident,
    IncidentAlert,
    IncidentUpdate,
    Scalar,
    TimelineEntry,
    UpdateKind,
    acknowledged,
    incident_id,
    merge_stored,
    with_entry,
)
from engine.core.transitions import ChangeNote, Transition

__all__ = [
    "MAX_ALERTS",
    "MAX_TIMELINE",
    "EntryKind",
    "Incident",
    "IncidentAlert",
    "IncidentBook",
    "IncidentUpdate",
    "TimelineEntry",
    "acknowledged",
    "incident_id",
    "merge_stored",
]


def _alert_text(tr: Transition) -> str:
    what = tr.severity if tr.kind == "burn" else f"{tr.severity} {tr.alert_id}"
    group = f" [{tr.group}]" if tr.group is not None else ""
    return f"{what} {tr.slo}{group} {tr.state}"


def _alert_data(tr: Transition) -> dict[str, Scalar]:
    return {
        "slo": tr.slo,
        "group": tr.group,
        "severity": tr.severity,
        "kind": tr.kind,
        "alert_id": tr.alert_id,
        "burn_rate_long": tr.burn_rate_long,
        "burn_rate_short": tr.burn_rate_short,
        "long_window_s": tr.long_window_s,
        "short_window_s": tr.short_window_s,
        "factor": tr.factor,
    }


def _change_entry(note: ChangeNote) -> TimelineEntry:
    version = f" {note.version}" if note.version else ""
    return TimelineEntry(
        at=note.at,
        kind="change",
        text=f"{note.kind}{version}",
        data={"change_id": note.id, "kind": note.kind, "version": note.version},
    )


def _has_change(inc: Incident, change_id: int) -> bool:
    return any(e.kind == "change" and e.data.get("change_id") == change_id for e in inc.timeline)


class IncidentBook:
    """The open incidents of a config's services (module docstring)."""

    def __init__(self, slos: Sequence[Slo], quiet_period_s: float) -> None:
        self.quiet_period_s = float(quiet_period_s)
        self._slos = list(slos)
        self._service_of = {s.name: s.service for s in slos}
        self._open: dict[str, Incident] = {}

    def use_slos(self, slos: Sequence[Slo]) -> None:
        """Judge transitions and corrections by these SLOs from now on (a config reload);
        open incidents stay open, and close as their alerts resolve."""
        self._slos = list(slos)
        self._service_of = {s.name: s.service for s in slos}

    def open_incidents(self) -> list[Incident]:
        """The open incidents, oldest first."""
        return sorted(self._open.values(), key=lambda i: (i.opened_at, i.id))

    def get(self, incident_id: str) -> Incident | None:
        """The open incident with this id (None: none is open)."""
        return next((i for i in self._open.values() if i.id == incident_id), None)

    def restore(self, incidents: Iterable[Incident]) -> None:
        """Take back open incidents a store kept (closed ones are ignored; of two for
        one service, the newer)."""
        for inc in sorted(incidents, key=lambda i: i.opened_at):
            if inc.state == "open":
                self._open[inc.service] = inc

    # -- event time --------------------------------------------------------------------

    def advance(self, t_s: float) -> list[IncidentUpdate]:
        """Close the incidents whose quiet period has passed by event time `t_s`."""
        out: list[IncidentUpdate] = []
        for service in sorted(self._open):
            out += self._expire(service, t_s)
        return out

    def _expire(self, service: str, t_s: float) -> list[IncidentUpdate]:
        inc = self._open.get(service)
        if inc is None:
            return []
        at = inc.closes_at(self.quiet_period_s)
        if at is None or t_s < at:
            return []
        del self._open[service]
        inc = msgspec.structs.replace(inc, state="closed", closed_at=at)
        entry = TimelineEntry(at=at, kind="closed", text="closed: all alerts resolved", data={})
        return [IncidentUpdate(kind="closed", incident=with_entry(inc, entry, force=True))]

    # -- inputs ------------------------------------------------------------------------

    def transition(
        self, tr: Transition, *, onset_at_s: float | None = None
    ) -> list[IncidentUpdate]:
        """Take an alert transition; `onset_at_s`: the onset estimated for a firing one
        (engine.core.onset.onset_of_transition), if any."""
        service = self._service_of.get(tr.slo)
        if service is None:
            return []
        out = self._expire(service, tr.at)
        inc = self._open.get(service)
        if inc is None:
            if tr.state != "firing" or tr.severity != "page":
                return out
            inc = Incident(
                id=incident_id(service, tr.at), service=service, state="open", opened_at=tr.at
            )
            text = f"opened by {_alert_text(tr)}"
            inc = with_entry(inc, TimelineEntry(at=tr.at, kind="opened", text=text, data={}))
            kind: UpdateKind = "opened"
        else:
            kind = "updated"
        new = self._alert(inc, tr, onset_at_s)
        if new is inc:
            return out
        self._open[service] = new
        return [*out, IncidentUpdate(kind=kind, incident=new)]

    def _alert(self, inc: Incident, tr: Transition, onset_at_s: float | None) -> Incident:
        key = tr.alert_key
        alerts = list(inc.alerts)
        i = next((k for k, a in enumerate(alerts) if a.key == key), None)
        if tr.state == "resolved":
            if i is None or not alerts[i].firing:
                return inc
            alerts[i] = msgspec.structs.replace(alerts[i], resolved_at=tr.at)
        elif i is not None:
            a = alerts[i]
            alerts[i] = msgspec.structs.replace(
                a, resolved_at=None, fired_count=a.fired_count + (0 if a.firing else 1)
            )
        elif len(alerts) >= MAX_ALERTS:
            return inc
        else:
            alerts.append(
                IncidentAlert(
                    slo=tr.slo,
                    group=tr.group,
                    severity=tr.severity,
                    kind=tr.kind,
                    alert_id=tr.alert_id,
                    fired_at=tr.at,
                )
            )
        firing = any(a.firing for a in alerts)
        onset = inc.onset_at
        if tr.state == "firing" and onset_at_s is not None:
            onset = min(onset_at_s, inc.opened_at, *(() if onset is None else (onset,)))
        slos = inc.slos if tr.slo in inc.slos else (*inc.slos, tr.slo)
        new = msgspec.structs.replace(
            inc,
            alerts=tuple(alerts),
            slos=slos,
            onset_at=onset,
            resolved_at=None if firing else max(a.resolved_at or 0.0 for a in alerts),
        )
        kind: EntryKind = "alert_fired" if tr.state == "firing" else "alert_resolved"
        new = with_entry(
            new, TimelineEntry(at=tr.at, kind=kind, text=_alert_text(tr), data=_alert_data(tr))
        )
        for note in tr.changes if tr.state == "firing" else ():
            if not _has_change(new, note.id):
                new = with_entry(new, _change_entry(note))
        return new

    def change(self, ch: Change, at_s: float) -> list[IncidentUpdate]:
        """A change taken in at event time `at_s` (engine.core.changes): on the open
        incident of its service, when its attribution window reaches the incident
        (ch.at_s + window_s >= opened_at)."""
        out = self._expire(ch.service, at_s)
        inc = self._open.get(ch.service)
        if inc is None or ch.at_s + ch.window_s < inc.opened_at or _has_change(inc, ch.id):
            return out
        note = ChangeNote(id=ch.id, kind=ch.kind, at=ch.at_s, version=ch.version)
        new = with_entry(inc, _change_entry(note))
        self._open[ch.service] = new
        return [*out, IncidentUpdate(kind="updated", incident=new)]

    def correction(self, c: Correction, at_s: float) -> list[IncidentUpdate]:
        """A correction taken in at event time `at_s`: on the open incidents of the
        services of the SLOs it applies to."""
        services = {self._slos[i].service for i in c.targets(self._slos)}
        out: list[IncidentUpdate] = []
        for service in sorted(s for s in services if s is not None):
            out += self._expire(service, at_s)
            inc = self._open.get(service)
            if inc is None or any(
                e.kind == "correction" and e.data.get("name") == c.name for e in inc.timeline
            ):
                continue
            entry = TimelineEntry(
                at=at_s,
                kind="correction",
                text=f"correction {c.name}: {c.reason}",
                data={"name": c.name, "start_s": c.start_s, "end_s": c.end_s},
            )
            self._open[service] = new = with_entry(inc, entry)
            out.append(IncidentUpdate(kind="updated", incident=new))
        return out

    def acknowledge(self, incident_id: str, by: str, at_s: float) -> list[IncidentUpdate]:
        """Acknowledge the open incident `incident_id` at event time `at_s`: its update
        (after the closing of any incident whose quiet period passed by `at_s`).
        Idempotent: the first acknowledgement stands (a repeat answers the incident as is). Without
        an update for `incident_id` it is not open (closed, or unknown): acknowledge it
        in its store (`acknowledged`)."""
        inc = self.get(incident_id)
        if inc is None:
            return []
        out = self._expire(inc.service, at_s)
        if out:
            return out
        self._open[inc.service] = new = acknowledged(inc, by, at_s)
        return [IncidentUpdate(kind="updated", incident=new)]
