"""Budget alerts and escalations in every payload: their own alertname, labels, ids and
dedup keys (distinct from the burn-rate alert of the same SLO), and who hears them."""

from __future__ import annotations

import io
import json

import pytest

from engine.adapters.alerts.console import ConsoleSink, format_transition
from engine.adapters.alerts.pagerduty_events import dedup_key, pagerduty_event
from engine.adapters.alerts.payloads import (
    alert_annotations,
    alert_labels,
    alertmanager_alerts,
    fingerprint,
    webhook_body,
)
from engine.adapters.alerts.pending import message_id_for
from engine.adapters.alerts.routing import takes
from engine.core.config import PagerDutySeverity
from tests.unit.adapters.alerts.factories import (
    EXTERNAL,
    SLO,
    T0,
    budget_alert,
    escalation,
    firing,
)


def test_budget_alerts_have_their_own_alertname_and_alert_type_and_no_windows() -> None:
    assert alert_labels(budget_alert(), SLO) == {
        "alertname": "ErrorBudgetExhausted",
        "slo": "checkout-availability",
        "service": "checkout",
        "severity": "ticket",
        "alert_type": "budget",
        "team": "payments",
    }
    projected = alert_labels(budget_alert("budget_exhaustion_projected"), SLO)
    assert projected["alertname"] == "ErrorBudgetExhaustionProjected"
    assert alert_labels(escalation(), SLO) == {
        "alertname": "ErrorBudgetEscalation",
        "slo": "checkout-availability",
        "service": "checkout",
        "severity": "page",
        "alert_type": "escalation",
        "policy_row": "$.budget_policy[0]",
        "decision": "fail",
        "team": "payments",
    }


def test_burn_rate_alert_labels_are_unchanged() -> None:
    assert alert_labels(firing(), SLO) == {
        "alertname": "SLOErrorBudgetBurn",
        "slo": "checkout-availability",
        "service": "checkout",
        "severity": "page",
        "long_window": "1h",
        "short_window": "5m",
        "team": "payments",
    }


def test_every_alert_of_one_slo_is_its_own_alert_everywhere() -> None:
    trs = [
        firing(),
        budget_alert(severity="page"),
        budget_alert("budget_exhaustion_projected", severity="page"),
        escalation(),
        escalation(policy_row="$.budget_policy[1]"),
    ]
    assert len({fingerprint(alert_labels(t, SLO)) for t in trs}) == len(trs)
    assert len({message_id_for(t) for t in trs}) == len(trs)
    assert len({dedup_key(t) for t in trs}) == len(trs)
    assert len({t.alert_key for t in trs}) == len(trs)
    # a trigger and its resolve share the key; retries and restarts share the id
    assert dedup_key(escalation()) == dedup_key(escalation(at=T0 + 60, state="resolved"))
    assert message_id_for(budget_alert()) == message_id_for(budget_alert())


def test_annotations_say_what_is_left_and_why() -> None:
    a = alert_annotations(budget_alert("budget_exhaustion_projected"), SLO)
    assert a["summary"] == (
        "SLO checkout-availability (checkout) error budget runs out in about 3d (within 3d)"
    )
    assert a["horizon"] == "3d"
    assert a["time_to_exhaustion_s"] == "259200"
    assert a["runbook_url"] == "https://runbooks.example/checkout"
    e = alert_annotations(escalation(), SLO)
    assert e["summary"] == (
        "SLO checkout-availability (checkout) budget policy $.budget_policy[0] (fail): "
        "error budget remaining -12% is at or below 0%"
    )
    assert (e["decision"], e["receivers"]) == ("fail", "oncall")
    assert "Escalated to oncall." in e["description"]
    ex = alert_annotations(budget_alert(state="resolved"), SLO)
    assert ex["summary"] == "SLO checkout-availability (checkout) has error budget again"


def test_bodies_carry_budget_alerts_as_alertmanager_alerts() -> None:
    body = json.loads(
        webhook_body([(escalation(), SLO)], receiver="burnrate", external_url=EXTERNAL)
    )
    assert body["groupLabels"] == {
        "alertname": "ErrorBudgetEscalation",
        "slo": "checkout-availability",
        "severity": "page",
    }
    [alert] = json.loads(
        alertmanager_alerts(
            [(budget_alert(state="resolved", at=T0 + 60), SLO)],
            external_url=EXTERNAL,
            now_s=T0 + 120,
            horizon_s=240,
            fired=lambda _tr: budget_alert(),
        )
    )
    assert alert["labels"]["alertname"] == "ErrorBudgetExhausted"
    assert (alert["startsAt"], alert["endsAt"]) == ("2023-11-14T22:13:20Z", "2023-11-14T22:14:20Z")


def test_pagerduty_events_carry_the_escalation() -> None:
    event = json.loads(
        pagerduty_event(
            escalation(),
            SLO,
            routing_key="k" * 32,
            severity=PagerDutySeverity(),
            external_url=EXTERNAL,
        )
    )
    payload = event["payload"]
    assert payload["class"] == "ErrorBudgetEscalation"
    assert payload["severity"] == "critical"
    details = payload["custom_details"]
    assert details["policy_row"] == "$.budget_policy[0]"
    assert details["receivers"] == ["oncall"]
    assert details["alert"] == "ErrorBudgetEscalation"


@pytest.mark.parametrize(
    ("name", "escalations", "hears"),
    [
        ("oncall", "named", True),
        ("chat", "named", False),
        (None, "named", False),
        (None, "all", True),
    ],
)
def test_an_escalation_reaches_only_the_receivers_it_names(
    name: str | None, escalations: str, hears: bool
) -> None:
    assert takes(escalation(), name, escalations) is hears  # type: ignore[arg-type]
    assert takes(budget_alert(), name, escalations)  # budget alerts go to every receiver
    assert takes(firing(), name, escalations)


@pytest.mark.asyncio
async def test_the_console_prints_budget_alerts_and_only_its_escalations() -> None:
    out = io.StringIO()
    named, other = ConsoleSink(out, name="oncall"), ConsoleSink(io.StringIO(), name="chat")
    for sink in (named, other):
        await sink.deliver(escalation())
        await sink.deliver(budget_alert("budget_exhaustion_projected"))
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        "FIRING   page   checkout-availability  ErrorBudgetEscalation  budget left -12.0%  "
        "$.budget_policy[0] fail: error budget remaining -12% is at or below 0% -> oncall  "
        "at 2023-11-14T22:13:20Z"
    )
    assert "ErrorBudgetExhaustionProjected  budget left 20.0%  exhausted in 3d" in lines[1]
    assert len(other.stream.getvalue().splitlines()) == 1  # type: ignore[union-attr]
    assert format_transition(firing()).startswith("FIRING   page   checkout-availability  burn")
