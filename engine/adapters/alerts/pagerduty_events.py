"""PagerDuty Events API v2 alert events built from evaluator transitions (pure).

A firing transition becomes a `trigger` event, a resolved one a `resolve` event; both
carry the same `dedup_key`, which is what PagerDuty correlates them by. The key is one
per alert, (SLO, group, severity), derived from those alone as the webhook-id is from
the transition (`dedup_key`): the same in every retry, after a restart, and in another
engine instance with the same config. PagerDuty opens a new alert for a `trigger` whose
key belongs to a resolved one, so one key per alert is enough across firings; and
nothing else may go in, or a resolve would miss its trigger.

A trigger holds what a responder needs on the phone (`summary`, at most 1024 characters
as the API allows; the service as `source`, the SLO as `component`, a grouped SLO's
group as `group`) and the rest in `custom_details`: burn rates and windows, the factor,
the budget left, objective and period, labels, the description and the links, which
also go in `links` (the runbook and the SLO's page in this engine), and `changes`
when it fired in the attribution window of changes of its service. A resolve holds the
three fields the API reads for it: `routing_key`, `event_action` and `dedup_key`.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final, Literal

import msgspec

from engine.adapters.alerts.payloads import (
    alert_annotations,
    alert_labels,
    generator_url,
    rfc3339,
)
from engine.core.budget_alerts import ALERTNAMES
from engine.core.config import PagerDutySeverity, PagerDutySeverityName, Slo
from engine.core.durations import format_duration
from engine.core.evaluator import Transition

__all__ = [
    "CLIENT",
    "MAX_SUMMARY_CHARS",
    "PagerDutyEvent",
    "PagerDutyLink",
    "PagerDutyPayload",
    "dedup_key",
    "pagerduty_event",
    "truncate_summary",
]

MAX_SUMMARY_CHARS: Final = 1024
"""The Events API's limit on `payload.summary` (characters)."""
CLIENT: Final = "Burnrate"
"""The `client` of every event: the tool PagerDuty shows as the event's sender."""
_ELLIPSIS = "…"


class PagerDutyLink(msgspec.Struct, frozen=True, kw_only=True):
    href: str
    text: str


class PagerDutyPayload(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """`payload` of a trigger event (PagerDuty Common Event Format)."""

    summary: str
    source: str
    severity: PagerDutySeverityName
    timestamp: str
    component: str | None = None
    group: str | None = None
    class_: str | None = msgspec.field(name="class", default=None)
    custom_details: dict[str, Any] = msgspec.field(default_factory=dict)


class PagerDutyEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One Events API v2 alert event (`POST /v2/enqueue`)."""

    routing_key: str
    event_action: Literal["trigger", "acknowledge", "resolve"]
    dedup_key: str
    payload: PagerDutyPayload | None = None
    client: str | None = None
    client_url: str | None = None
    links: list[PagerDutyLink] = msgspec.field(default_factory=list)


_encoder = msgspec.json.Encoder()


def dedup_key(tr: Transition) -> str:
    """`burnrate-` and 64 hex digits: one per alert (SLO, group if any, severity), so a
    trigger and its resolve, their retries and their re-sends after a restart all share
    it (well under the API's 255 characters, whatever the names). A budget alert's or
    escalation's key has its `alert_id` (`budget_exhausted`, `escalation:$.budget_policy[0]`)
    where a burn-rate alert's has its severity: the same SLO's alerts stay apart."""
    slo = tr.slo if tr.group is None else f"{tr.slo}\0group\0{tr.group}"
    seed = f"burnrate-alert\0{slo}\0{tr.alert_id}"
    return "burnrate-" + hashlib.sha256(seed.encode()).hexdigest()


def truncate_summary(text: str) -> str:
    """`text`, cut to `MAX_SUMMARY_CHARS` with an ellipsis when longer."""
    if len(text) <= MAX_SUMMARY_CHARS:
        return text
    return text[: MAX_SUMMARY_CHARS - len(_ELLIPSIS)] + _ELLIPSIS


def pagerduty_event(
    tr: Transition,
    slo: Slo,
    *,
    routing_key: str,
    severity: PagerDutySeverity,
    external_url: str,
) -> bytes:
    """The JSON body announcing `tr` to PagerDuty: a trigger for a firing transition, a
    resolve for a resolved one (which needs no firing transition: the key is the alert's,
    and a resolve carries no payload)."""
    key = dedup_key(tr)
    if tr.state == "resolved":
        return _encoder.encode(
            PagerDutyEvent(routing_key=routing_key, event_action="resolve", dedup_key=key)
        )
    annotations = alert_annotations(tr, slo)
    slo_url = generator_url(external_url, slo.name, tr.group)
    links = [PagerDutyLink(href=slo_url, text=f"SLO {slo.name} in Burnrate")]
    if slo.runbook_url:
        links.insert(0, PagerDutyLink(href=slo.runbook_url, text="Runbook"))
    payload = PagerDutyPayload(
        summary=truncate_summary(annotations["summary"]),
        source=slo.service if slo.service is not None else slo.name,
        severity=severity.of(tr.severity),
        timestamp=rfc3339(tr.at),
        component=slo.name,
        group=tr.group,
        class_=ALERTNAMES[tr.kind],
        custom_details=_details(tr, slo, annotations, slo_url),
    )
    event = PagerDutyEvent(
        routing_key=routing_key,
        event_action="trigger",
        dedup_key=key,
        payload=payload,
        client=CLIENT,
        client_url=slo_url,
        links=links,
    )
    return _encoder.encode(event)


def _details(tr: Transition, slo: Slo, annotations: dict[str, str], slo_url: str) -> dict[str, Any]:
    details: dict[str, Any] = {
        "slo": slo.name,
        "severity": tr.severity,
        "burn_rate_long": tr.burn_rate_long,
        "burn_rate_short": tr.burn_rate_short,
        "long_window": format_duration(tr.long_window_s),
        "short_window": format_duration(tr.short_window_s),
        "factor": tr.factor,
        "error_budget_remaining_ratio": tr.error_budget_remaining_ratio,
        "objective_percent": slo.objective,
        "period": slo.period_text,
        "labels": alert_labels(tr, slo),
        "description": annotations["description"],
        "slo_url": slo_url,
    }
    if tr.group is not None:
        details["group"] = tr.group
    if tr.kind != "burn":
        details["alert"] = ALERTNAMES[tr.kind]
        details["kind"] = tr.kind
        details["time_to_exhaustion_s"] = tr.time_to_exhaustion_s
        if tr.horizon_s is not None:
            details["horizon"] = format_duration(tr.horizon_s)
    if tr.kind == "escalation":
        details |= {
            "policy_row": tr.policy_row,
            "decision": tr.decision,
            "reason": tr.reason,
            "receivers": list(tr.receivers),
        }
    if slo.service is not None:
        details["service"] = slo.service
    if slo.runbook_url:
        details["runbook_url"] = slo.runbook_url
    if tr.changes:  # changes in whose attribution window the alert fired
        details["changes"] = [msgspec.structs.asdict(n) for n in tr.changes]
    return details
