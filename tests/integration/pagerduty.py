"""A local stand-in for the PagerDuty Events API v2 (`POST /v2/enqueue`), strict about the
documented request contract, for the PagerDuty sink's tests.

    async with serve(PagerDuty(), path="/v2/enqueue") as pd:
        ...  # point the sink at pd.url; pd.script still overrides answers (429, 500)

Each request that is not answered from the script is checked as the API documents it
(developer.pagerduty.com, "Send an Alert Event"): a JSON object; `routing_key` a string
of 32 characters; `event_action` one of trigger, acknowledge, resolve; `dedup_key` a
string of at most 255 characters, required to acknowledge or resolve; for a trigger a
`payload` with `summary` (1 to 1024 characters), `source` and `severity` (critical,
error, warning, info), and optional `timestamp` (ISO 8601), `component`, `group`,
`class` (strings) and `custom_details` (an object); optional `client`, `client_url`,
`links` ({href, text?}) and `images` ({src, href?, alt?}). Fields the API does not
know are refused too, so a misspelt field fails the test instead of being ignored.
A valid event gets 202 `{"status": "success", "message": "Event processed",
"dedup_key": ...}` and changes `alerts`; an invalid one 400 `{"status": "invalid
event", "message": "Event object is invalid", "errors": [...]}`.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from aiohttp import web

from tests.integration.http_receiver import Received, Receiver

__all__ = ["PagerDuty"]

SEVERITIES = frozenset({"critical", "error", "warning", "info"})
ACTIONS = frozenset({"trigger", "acknowledge", "resolve"})
TOP_LEVEL = frozenset(
    {
        "routing_key",
        "event_action",
        "dedup_key",
        "payload",
        "client",
        "client_url",
        "links",
        "images",
    }
)
PAYLOAD = frozenset(
    {"summary", "source", "severity", "timestamp", "component", "group", "class", "custom_details"}
)


class PagerDuty(Receiver):
    """Records every event; `alerts` holds the open alert per (routing key, dedup key)
    with the trigger that opened it, `resolved` the keys resolved, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.alerts: dict[tuple[str, str], dict[str, Any]] = {}
        self.resolved: list[tuple[str, str]] = []
        self.accepted: list[dict[str, Any]] = []
        """The valid events, in order of arrival."""

    def answer(self, received: Received) -> web.Response:
        try:
            event = json.loads(received.body)
        except ValueError:
            return _invalid(["Request body is not valid JSON"])
        errors = event_errors(event, received.headers.get("Content-Type", ""))
        if errors:
            return _invalid(errors)
        key = event.get("dedup_key") or uuid.uuid4().hex
        alert = (event["routing_key"], key)
        if event["event_action"] == "trigger":
            self.alerts.setdefault(alert, event)
        elif event["event_action"] == "resolve" and self.alerts.pop(alert, None) is not None:
            self.resolved.append(alert)
        self.accepted.append(event)
        body = {"status": "success", "message": "Event processed", "dedup_key": key}
        return web.json_response(body, status=202)


def event_errors(event: Any, content_type: str) -> list[str]:
    """What is wrong with `event` per the documented contract (empty: nothing)."""
    if not content_type.startswith("application/json"):
        return [f"Content-Type must be application/json, got {content_type!r}"]
    if not isinstance(event, dict):
        return ["Event object must be a JSON object"]
    errors = [f"Unknown field '{name}'" for name in sorted(set(event) - TOP_LEVEL)]
    routing_key = event.get("routing_key")
    if not isinstance(routing_key, str):
        errors.append("'routing_key' is missing or blank")
    elif len(routing_key) != 32:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = event.get("event_action")
    if action not in ACTIONS:
        errors.append(
            "'event_action' is missing or blank or not one of trigger/acknowledge/resolve"
        )
    dedup_key = event.get("dedup_key")
    if dedup_key is None:
        if action in ("acknowledge", "resolve"):
            errors.append(f"'dedup_key' is required to {action}")
    elif not isinstance(dedup_key, str) or not dedup_key or len(dedup_key) > 255:
        errors.append("'dedup_key' must be a string of 1 to 255 characters")
    for name in ("client", "client_url"):
        if name in event and not isinstance(event[name], str):
            errors.append(f"'{name}' must be a string")
    errors += _list_errors(event, "links", required="href", optional=("text",))
    errors += _list_errors(event, "images", required="src", optional=("href", "alt"))
    if action == "trigger":
        errors += _payload_errors(event.get("payload"))
    return errors


def _payload_errors(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["'payload' is missing or not an object"]
    errors = [f"Unknown field 'payload.{name}'" for name in sorted(set(payload) - PAYLOAD)]
    summary = payload.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        errors.append("'payload.summary' is missing or blank")
    elif len(summary) > 1024:
        errors.append("Length of 'payload.summary' is over 1024 characters")
    source = payload.get("source")
    if not isinstance(source, str) or not source.strip():
        errors.append("'payload.source' is missing or blank")
    if payload.get("severity") not in SEVERITIES:
        errors.append("'payload.severity' must be one of critical, error, warning, info")
    for name in ("component", "group", "class"):
        if name in payload and not isinstance(payload[name], str):
            errors.append(f"'payload.{name}' must be a string")
    if "custom_details" in payload and not isinstance(payload["custom_details"], dict):
        errors.append("'payload.custom_details' must be an object")
    if "timestamp" in payload:
        timestamp = payload["timestamp"]
        try:
            ok = isinstance(timestamp, str) and datetime.fromisoformat(timestamp).tzinfo is not None
        except ValueError:
            ok = False
        if not ok:
            errors.append("'payload.timestamp' must be an ISO 8601 time with an offset")
    return errors


def _list_errors(
    event: dict[str, Any], name: str, *, required: str, optional: tuple[str, ...]
) -> list[str]:
    if name not in event:
        return []
    items = event[name]
    if not isinstance(items, list):
        return [f"'{name}' must be an array"]
    errors: list[str] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get(required), str):
            errors.append(f"'{name}[{i}].{required}' is missing")
            continue
        for key, value in item.items():
            if key not in (required, *optional):
                errors.append(f"Unknown field '{name}[{i}].{key}'")
            elif not isinstance(value, str):
                errors.append(f"'{name}[{i}].{key}' must be a string")
    return errors


def _invalid(errors: list[str]) -> web.Response:
    body = {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
    return web.json_response(body, status=400)
