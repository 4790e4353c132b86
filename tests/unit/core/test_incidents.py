"""The incident lifecycle (engine.core.incidents) against a naive model: grouping by
service, joining, the quiet period, closing, a new incident after a close,
acknowledgements, and a restart from the open incidents; plus examples of the rules."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.changes import Change
from engine.core.config import CompositeMember, Correction, Slo
from engine.core.incidents import (
    MAX_TIMELINE,
    Incident,
    IncidentBook,
    IncidentUpdate,
    acknowledged,
    incident_id,
    merge_stored,
)
from engine.core.transitions import ChangeNote, Transition

T0 = 1_700_000_000.0
QUIET_S = 900.0

SLOS = [
    Slo(name="a1", service="a", sli="availability", objective=99.0),  # type: ignore[arg-type]
    Slo(name="a2", service="a", sli="availability", objective=99.0),  # type: ignore[arg-type]
    Slo(name="b1", service="b", sli="availability", objective=99.0),  # type: ignore[arg-type]
    Slo(name="ab", composite=[CompositeMember(slo="a1"), CompositeMember(slo="b1")], objective=99),
]
SERVICE = {"a1": "a", "a2": "a", "b1": "b", "ab": None}


def tr(
    slo: str,
    severity: str,
    state: str,
    at: float,
    *,
    group: str | None = None,
    changes: tuple[ChangeNote, ...] = (),
) -> Transition:
    return Transition(
        slo=slo,
        severity=severity,  # type: ignore[arg-type]
        state=state,  # type: ignore[arg-type]
        at=at,
        long_window_s=3600,
        short_window_s=300,
        burn_rate_long=15.0,
        burn_rate_short=20.0,
        factor=14.4,
        error_budget_remaining_ratio=0.9,
        group=group,
        changes=changes,
    )


def latest(updates: list[IncidentUpdate]) -> dict[str, Incident]:
    out: dict[str, Incident] = {}
    for u in updates:
        out[u.incident.id] = u.incident
    return out


# -- the naive model ---------------------------------------------------------------


@dataclass
class ModelIncident:
    service: str
    opened_at: float
    alerts: dict[tuple[str, str], float | None] = field(default_factory=dict)
    """(slo, severity) -> resolved time, None while firing."""
    closed_at: float | None = None
    ack: tuple[float, str] | None = None


class Model:
    """Per service: the open incident, if any; every incident ever opened."""

    def __init__(self) -> None:
        self.open: dict[str, ModelIncident] = {}
        self.all: list[ModelIncident] = []

    def close_due(self, service: str, t: float) -> None:
        inc = self.open.get(service)
        if inc is None or any(r is None for r in inc.alerts.values()):
            return
        last = max(r for r in inc.alerts.values() if r is not None)
        if t >= last + QUIET_S:
            inc.closed_at = last + QUIET_S
            del self.open[service]

    def transition(self, slo: str, severity: str, state: str, t: float) -> None:
        service = SERVICE[slo]
        if service is None:
            return
        self.close_due(service, t)
        inc = self.open.get(service)
        if inc is None and state == "firing" and severity == "page":
            inc = self.open[service] = ModelIncident(service=service, opened_at=t)
            self.all.append(inc)
        if inc is None:
            return
        if state == "firing":
            inc.alerts[(slo, severity)] = None
        elif (slo, severity) in inc.alerts and inc.alerts[(slo, severity)] is None:
            inc.alerts[(slo, severity)] = t

    def ack(self, service: str, t: float, by: str) -> None:
        self.close_due(service, t)
        inc = self.open.get(service)
        if inc is not None and inc.ack is None:
            inc.ack = (t, by)

    def advance(self, t: float) -> None:
        for service in list(self.open):
            self.close_due(service, t)


# -- the property ------------------------------------------------------------------

ALERTS = [(slo, sev) for slo in SERVICE for sev in ("page", "ticket")]

step = st.tuples(
    st.integers(0, 150).map(lambda k: k * 10.0),  # seconds since the previous step
    st.one_of(
        st.tuples(st.just("toggle"), st.sampled_from(ALERTS)),
        st.tuples(st.just("ack"), st.sampled_from(["a", "b"])),
        st.tuples(st.just("advance"), st.none()),
    ),
)


def run(
    steps: list[tuple[float, tuple[str, object]]], restart_at: int | None
) -> tuple[IncidentBook, dict[str, Incident], Model, float]:
    book = IncidentBook(SLOS, QUIET_S)
    model = Model()
    firing: set[tuple[str, str]] = set()
    updates: list[IncidentUpdate] = []
    t = T0
    for i, (dt, (action, arg)) in enumerate(steps):
        if i == restart_at:
            kept = book.open_incidents()
            book = IncidentBook(SLOS, QUIET_S)
            book.restore(kept)
        t += dt
        if action == "toggle":
            slo, sev = arg  # type: ignore[misc]
            state = "resolved" if (slo, sev) in firing else "firing"
            firing ^= {(slo, sev)}
            updates += book.transition(tr(slo, sev, state, t), onset_at_s=t - 120)
            model.transition(slo, sev, state, t)
        elif action == "ack":
            model_open = model.open.get(str(arg))
            by = f"user{i}"
            if model_open is not None:
                updates += book.acknowledge(incident_id(str(arg), model_open.opened_at), by, t)
            model.ack(str(arg), t, by)
        else:
            updates += book.advance(t)
            model.advance(t)
    t += 2 * QUIET_S
    updates += book.advance(t)
    model.advance(t)
    return book, latest(updates), model, t


@settings(max_examples=300, deadline=None)
@given(st.lists(step, max_size=60), st.none() | st.integers(0, 60))
def test_the_lifecycle_matches_a_naive_model(
    steps: list[tuple[float, tuple[str, object]]], restart_at: int | None
) -> None:
    book, got, model, end = run(steps, restart_at)
    expected = {incident_id(m.service, m.opened_at): m for m in model.all}
    assert set(got) == set(expected)
    for iid, m in expected.items():
        inc = got[iid]
        assert (inc.service, inc.opened_at, inc.closed_at) == (m.service, m.opened_at, m.closed_at)
        assert inc.state == ("open" if m.closed_at is None else "closed")
        assert {(a.slo, a.severity): a.resolved_at for a in inc.alerts} == m.alerts
        assert (inc.acknowledged_at, inc.acknowledged_by) == (m.ack or (None, None))
        resolved = list(m.alerts.values())
        want = None if None in resolved else max(r for r in resolved if r is not None)
        assert inc.resolved_at == want
        assert inc.slos == tuple(dict.fromkeys(slo for slo, _ in m.alerts))
        assert inc.onset_at == inc.opened_at - 120  # the earliest given onset, capped
        times = [e.at for e in inc.timeline]
        assert times == sorted(times)
        assert inc.timeline[0].kind == "opened"
        assert (inc.timeline[-1].kind == "closed") == (inc.state == "closed")
    # One open incident per service at most, and the book holds exactly the open ones.
    assert {i.id for i in book.open_incidents()} == {
        iid for iid, m in expected.items() if m.closed_at is None
    }
    assert all(not m.alerts or None in m.alerts.values() for m in model.open.values())
    assert end > T0


@settings(max_examples=100, deadline=None)
@given(st.lists(step, max_size=40), st.integers(0, 40))
def test_a_restart_from_the_open_incidents_changes_nothing(
    steps: list[tuple[float, tuple[str, object]]], restart_at: int
) -> None:
    _, straight, _, _ = run(steps, None)
    _, restarted, _, _ = run(steps, restart_at)
    assert restarted == straight


# -- the rules, by example ---------------------------------------------------------


def test_a_page_opens_other_alerts_join_and_it_closes_after_the_quiet_period() -> None:
    book = IncidentBook(SLOS, QUIET_S)
    assert book.transition(tr("a1", "ticket", "firing", T0)) == []  # a ticket opens nothing
    (u,) = book.transition(tr("a1", "page", "firing", T0 + 10), onset_at_s=T0 - 300)
    assert u.kind == "opened"
    assert u.incident.id == incident_id("a", T0 + 10)
    assert u.incident.time_to_detect_s == 310
    (u,) = book.transition(tr("a2", "ticket", "firing", T0 + 20))
    assert u.kind == "updated"
    assert u.incident.slos == ("a1", "a2")
    assert book.transition(tr("b1", "ticket", "firing", T0 + 20)) == []  # another service
    # The ticket that fired before the incident is not one of its alerts.
    assert book.transition(tr("a1", "ticket", "resolved", T0 + 25)) == []
    book.transition(tr("a1", "page", "resolved", T0 + 30))
    (u,) = book.transition(tr("a2", "ticket", "resolved", T0 + 40))
    assert u.incident.resolved_at == T0 + 40
    assert u.incident.time_to_resolve_s == 30
    assert book.advance(T0 + 40 + QUIET_S - 1) == []
    (u,) = book.advance(T0 + 10_000)
    assert u.kind == "closed"
    assert u.incident.closed_at == T0 + 40 + QUIET_S  # when it closed, not when told
    assert [e.kind for e in u.incident.timeline] == [
        "opened",
        "alert_fired",
        "alert_fired",
        "alert_resolved",
        "alert_resolved",
        "closed",
    ]


def test_a_page_in_the_quiet_period_joins_and_one_after_it_opens_a_new_incident() -> None:
    book = IncidentBook(SLOS, QUIET_S)
    book.transition(tr("a1", "page", "firing", T0))
    book.transition(tr("a1", "page", "resolved", T0 + 60))
    (u,) = book.transition(tr("a1", "page", "firing", T0 + 60 + QUIET_S - 10))
    assert u.kind == "updated"
    assert u.incident.alerts[0].fired_count == 2
    book.transition(tr("a1", "page", "resolved", T0 + 2000))
    closed, opened = book.transition(tr("a1", "page", "firing", T0 + 2000 + QUIET_S))
    assert (closed.kind, opened.kind) == ("closed", "opened")
    assert closed.incident.closed_at == opened.incident.opened_at
    assert opened.incident.id != closed.incident.id


def test_composite_slos_open_no_incident() -> None:
    book = IncidentBook(SLOS, QUIET_S)
    assert book.transition(tr("ab", "page", "firing", T0)) == []
    assert book.open_incidents() == []


def test_acknowledgement_is_idempotent_and_first_one_stands() -> None:
    book = IncidentBook(SLOS, QUIET_S)
    (u,) = book.transition(tr("b1", "page", "firing", T0))
    iid = u.incident.id
    (u,) = book.acknowledge(iid, "alice", T0 + 120)
    assert (u.incident.acknowledged_by, u.incident.time_to_acknowledge_s) == ("alice", 120)
    (again,) = book.acknowledge(iid, "bob", T0 + 180)
    assert again.incident == u.incident
    assert book.acknowledge("no-such-id", "bob", T0) == []
    assert acknowledged(u.incident, "carol", T0 + 999) is u.incident


def test_changes_and_corrections_go_on_the_timeline_once() -> None:
    book = IncidentBook(SLOS, QUIET_S)
    note = ChangeNote(id=7, kind="deploy", at=T0 - 100, version="v2")
    (u,) = book.transition(tr("a1", "page", "firing", T0, changes=(note,)))
    (u,) = book.transition(tr("a2", "page", "firing", T0 + 10, changes=(note,)))
    kinds = [e.kind for e in u.incident.timeline]
    assert kinds.count("change") == 1
    assert u.incident.timeline[0].kind == "change"  # in time order: before the opening
    change = Change(
        id=8,
        service="a",
        kind="flag",
        at_s=T0 + 20,
        source="api",
        received_at_s=T0 + 20,
        window_s=3600,
    )
    (u,) = book.change(change, T0 + 20)
    assert book.change(change, T0 + 21) == []
    assert book.change(msgspec.structs.replace(change, id=9, service="b"), T0 + 21) == []
    corr = Correction(name="maint", start=T0, duration="1h", services=["a", "b"], reason="db move")
    (u,) = book.correction(corr, T0 + 30)  # b has no open incident
    assert book.correction(corr, T0 + 31) == []
    assert [e.kind for e in u.incident.timeline].count("correction") == 1
    assert u.incident.timeline[-1].data["name"] == "maint"


def test_the_timeline_is_bounded_and_closing_is_always_recorded() -> None:
    book = IncidentBook(SLOS, 0.0)
    book.transition(tr("a1", "page", "firing", T0))
    t = T0
    for _ in range(MAX_TIMELINE):
        t += 10
        book.transition(tr("a2", "ticket", "firing", t))
        t += 10
        book.transition(tr("a2", "ticket", "resolved", t))
    (u,) = book.transition(tr("a1", "page", "resolved", t + 10))
    assert len(u.incident.timeline) == MAX_TIMELINE
    # opened, the page fired, 2 entries a round, the page resolved: all past the cap dropped
    assert u.incident.timeline_dropped == 2 + 2 * MAX_TIMELINE + 1 - MAX_TIMELINE
    (closed,) = book.advance(t + 10)
    assert closed.incident.timeline[-1].kind == "closed"


def test_a_group_is_an_alert_of_its_own() -> None:
    book = IncidentBook(SLOS, QUIET_S)
    book.transition(tr("a1", "page", "firing", T0, group="region=eu"))
    (u,) = book.transition(tr("a1", "page", "firing", T0 + 10, group="region=us"))
    assert [a.group for a in u.incident.alerts] == ["region=eu", "region=us"]
    (u,) = book.transition(tr("a1", "page", "resolved", T0 + 20, group="region=eu"))
    assert u.incident.resolved_at is None  # us still fires


def test_merge_keeps_closed_incidents_closed_and_acknowledgements() -> None:
    book = IncidentBook(SLOS, QUIET_S)
    (opened,) = book.transition(tr("a1", "page", "firing", T0))
    (resolved,) = book.transition(tr("a1", "page", "resolved", T0 + 5))
    (closed,) = book.advance(T0 + 5 + QUIET_S)
    assert merge_stored(closed.incident, resolved.incident) == closed.incident
    acked = acknowledged(opened.incident, "alice", T0 + 1)
    merged = merge_stored(acked, resolved.incident)
    assert (merged.acknowledged_by, merged.acknowledged_at) == ("alice", T0 + 1)
    assert merged.alerts == resolved.incident.alerts
    assert merge_stored(opened.incident, resolved.incident) == resolved.incident


def test_incident_ids_are_stable_and_tell_services_and_pages_apart() -> None:
    assert incident_id("a", T0) == incident_id("a", T0)
    assert incident_id("a", T0).startswith(f"{int(T0)}-")
    assert len({incident_id("a", T0), incident_id("b", T0), incident_id("a", T0 + 10)}) == 3
