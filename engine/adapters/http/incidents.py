"""`/v1/incidents`: the incidents of the engine's store, and their acknowledgement.

`GET /v1/incidents[?state=open|closed][&service=S][&limit=N]` answers
`{"incidents": [view, ...]}`, newest first (by `opened_at`), at most `limit` (default
100, at most 1000). `service` is any service name, not only a configured one: a store
keeps the incidents of services a config no longer has. A bad parameter is 400
`{"error": ..., "errors": ["state: must be open or closed, got 'x'"]}`, naming it.

`GET /v1/incidents/{id}` answers the view; an id no incident has is 404
`{"error": "no incident has that id", "id": ...}`.

`GET /v1/incidents/{id}/postmortem` answers the incident's postmortem (the JSON form of
one incident of `burnrate postmortem`, engine.core.postmortem) computed now from the
engine's window rings: counts at the resolution of the finest ring that still reaches
back to the onset (`resolution_s` of each SLO), so the older the incident, the coarser;
404 as for the view.

`POST /v1/incidents/{id}/acknowledge`, with no body or `{"by": str}` (who: 1 to 200
characters; default the client's address), acknowledges it and answers 200 with the
view. Idempotent: the first acknowledgement stands, a repeat answers the incident as
it is. Logged at INFO with the client's address (event `incident_acknowledged`) and
recorded in the audit log (`incident.acknowledged`, each accepted request).

A view is the incident (engine.core.incident_values: `id`, `service`, `state`,
`opened_at`, `closed_at`, `onset_at`, `acknowledged_at`, `acknowledged_by`,
`resolved_at`, `alerts` [{`slo`, `group`, `severity`, `kind`, `alert_id`,
`fired_at`, `resolved_at`, `fired_count`}], `slos`, `timeline` [{`at`, `kind`,
`text`, `data`}], `timeline_dropped`), every field present, plus
`time_to_detect_s`, `time_to_acknowledge_s` and `time_to_resolve_s` (null when not
known yet). Times are epoch seconds of event time.

An evaluate worker (`--role evaluate`) answers the acknowledgement and postmortem of an
incident whose service another worker owns with 307 to the same path there
(`route_to`; engine.runtime.evaluate_incidents).

Without an `incidents:` section the routes answer 404 `{"error": "incidents are not
configured: ..."}`, so a client can tell that from an unknown id. A store that fails
answers 503 `{"error": "incident store ...: ..."}`. Like every route, they need the
bearer token when one is configured.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

import msgspec
from aiohttp import web

from engine.adapters.http.audit import actor_of
from engine.adapters.http.bodies import JSON_TYPE, BodyError, invalid, read_bounded
from engine.adapters.store.audit import AuditSink, NullAudit
from engine.adapters.store.incidents import (
    DEFAULT_LIST_LIMIT,
    MAX_LIST_LIMIT,
    IncidentStoreError,
    StateFilter,
)
from engine.core.incidents import Incident
from engine.core.postmortem import PostmortemIncident

__all__ = ["MAX_BY_CHARS", "NOT_CONFIGURED", "IncidentSource", "IncidentsApi", "incident_view"]

log = logging.getLogger("burnrate.adapters.http.incidents")

MAX_BODY_BYTES: Final = 4 * 1024
MAX_BY_CHARS: Final = 200
MAX_SERVICE_CHARS: Final = 256
NOT_CONFIGURED: Final = (
    "incidents are not configured: the config has no incidents: section (add "
    "`incidents: {}` to keep them)"
)


class IncidentSource(Protocol):
    """What the routes read and change (engine.runtime.incidents.IncidentRecorder)."""

    async def get(self, incident_id: str) -> Incident | None: ...

    async def list_incidents(
        self, *, state: StateFilter = None, service: str | None = None, limit: int = ...
    ) -> list[Incident]: ...

    async def acknowledge(self, incident_id: str, by: str) -> Incident | None: ...

    async def postmortem(self, incident_id: str) -> PostmortemIncident | None: ...


class _Ack(msgspec.Struct, forbid_unknown_fields=True):
    by: str | None = None


_encoder = msgspec.json.Encoder()
_ack_decoder = msgspec.json.Decoder(_Ack)


def incident_view(inc: Incident) -> dict[str, Any]:
    """The incident as builtins, with its detection and response times. Every field of
    its alerts and timeline entries is there (the stored form leaves out defaults)."""
    view: dict[str, Any] = msgspec.to_builtins(inc)
    view["alerts"] = [
        {
            "slo": a.slo,
            "group": a.group,
            "severity": a.severity,
            "kind": a.kind,
            "alert_id": a.alert_id,
            "fired_at": a.fired_at,
            "resolved_at": a.resolved_at,
            "fired_count": a.fired_count,
        }
        for a in inc.alerts
    ]
    view["timeline"] = [
        {"at": e.at, "kind": e.kind, "text": e.text, "data": e.data} for e in inc.timeline
    ]
    view["time_to_detect_s"] = inc.time_to_detect_s
    view["time_to_acknowledge_s"] = inc.time_to_acknowledge_s
    view["time_to_resolve_s"] = inc.time_to_resolve_s
    return view


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=_encoder.encode(body), content_type=JSON_TYPE)


def _not_found(incident_id: str) -> web.Response:
    return _json({"error": "no incident has that id", "id": incident_id}, 404)


def _store_failed(exc: IncidentStoreError) -> web.Response:
    return _json({"error": str(exc)}, 503)


class IncidentsApi:
    """The incident routes over `source` (None: incidents are not configured)."""

    def __init__(self, source: IncidentSource | None) -> None:
        self.source = source
        self.audit: AuditSink = NullAudit()
        self.route_to: Callable[[str], Awaitable[str | None]] | None = None
        """Given an incident id, the base URL of the process that answers its
        acknowledgement and postmortem when it is another one (an evaluate worker: the
        owner of the incident's service); None (or no hook): answered here."""

    def add_routes(self, app: web.Application) -> None:
        if self.source is None:
            app.router.add_route("*", "/v1/incidents", self._not_configured)
            app.router.add_route("*", "/v1/incidents/{tail:.*}", self._not_configured)
            return
        app.router.add_get("/v1/incidents", self._list)
        app.router.add_get("/v1/incidents/{id}", self._get)
        app.router.add_get("/v1/incidents/{id}/postmortem", self._postmortem)
        app.router.add_post("/v1/incidents/{id}/acknowledge", self._acknowledge)

    async def _not_configured(self, request: web.Request) -> web.Response:
        return _json({"error": NOT_CONFIGURED}, 404)

    async def _list(self, request: web.Request) -> web.Response:
        assert self.source is not None
        q = request.query
        errors = [f"{k}: unknown parameter" for k in q if k not in ("state", "service", "limit")]
        text_state = q.get("state")
        state: StateFilter = "open" if text_state == "open" else None
        if text_state == "closed":
            state = "closed"
        elif text_state is not None and state is None:
            errors.append(f"state: must be open or closed, got {text_state[:40]!r}")
        service = q.get("service")
        if service is not None and not 1 <= len(service) <= MAX_SERVICE_CHARS:
            errors.append(f"service: must be 1 to {MAX_SERVICE_CHARS} characters")
        text = q.get("limit", str(DEFAULT_LIST_LIMIT))
        if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_LIST_LIMIT):
            errors.append(f"limit: must be a whole number from 1 to {MAX_LIST_LIMIT}")
        if errors:
            return invalid(400, errors)
        try:
            found = await self.source.list_incidents(state=state, service=service, limit=int(text))
        except IncidentStoreError as exc:
            return _store_failed(exc)
        return _json({"incidents": [incident_view(i) for i in found]})

    async def _get(self, request: web.Request) -> web.Response:
        assert self.source is not None
        incident_id = request.match_info["id"]
        try:
            inc = await self.source.get(incident_id)
        except IncidentStoreError as exc:
            return _store_failed(exc)
        return _not_found(incident_id) if inc is None else _json(incident_view(inc))

    async def _elsewhere(self, request: web.Request, incident_id: str) -> web.Response | None:
        """307 to the process `route_to` names for this incident, if any."""
        if self.route_to is None:
            return None
        owner = await self.route_to(incident_id)
        if owner is None:
            return None
        location = owner.rstrip("/") + request.raw_path
        body = {
            "error": "another worker owns this incident's service",
            "id": incident_id,
            "owner": location,
        }
        return web.Response(
            status=307,
            body=_encoder.encode(body),
            content_type=JSON_TYPE,
            headers={"Location": location},
        )

    async def _postmortem(self, request: web.Request) -> web.Response:
        assert self.source is not None
        incident_id = request.match_info["id"]
        try:
            moved = await self._elsewhere(request, incident_id)
            if moved is not None:
                return moved
            pm = await self.source.postmortem(incident_id)
        except IncidentStoreError as exc:
            return _store_failed(exc)
        return _not_found(incident_id) if pm is None else _json(pm)

    async def _acknowledge(self, request: web.Request) -> web.Response:
        assert self.source is not None
        incident_id = request.match_info["id"]
        try:
            data = await read_bounded(request, MAX_BODY_BYTES)
        except BodyError as exc:
            return invalid(exc.status, exc.errors)
        by = request.remote or "unknown"
        if data.strip():
            try:
                given = _ack_decoder.decode(data).by
            except msgspec.DecodeError as exc:
                return invalid(400, [f"$: {exc}" if "$" not in str(exc) else str(exc)])
            if given is not None:
                if not 1 <= len(given) <= MAX_BY_CHARS:
                    return invalid(400, [f"$.by: must be 1 to {MAX_BY_CHARS} characters"])
                by = given
        try:
            moved = await self._elsewhere(request, incident_id)
            if moved is not None:
                return moved
            inc = await self.source.acknowledge(incident_id, by)
        except IncidentStoreError as exc:
            return _store_failed(exc)
        if inc is None:
            return _not_found(incident_id)
        self.audit.record(
            actor_of(request),
            "incident.acknowledged",
            inc.id,
            {
                "service": inc.service,
                "by": by,
                "acknowledged_by": inc.acknowledged_by,
                "acknowledged_at": inc.acknowledged_at,
                "remote": request.remote,
            },
        )
        log.info(
            "incident %s of %s acknowledged by %s",
            inc.id,
            inc.service,
            inc.acknowledged_by,
            extra={
                "data": {
                    "event": "incident_acknowledged",
                    "remote": request.remote,
                    "id": inc.id,
                    "service": inc.service,
                    "by": by,
                    "acknowledged_by": inc.acknowledged_by,
                    "acknowledged_at": inc.acknowledged_at,
                }
            },
        )
        return _json(incident_view(inc))
