"""`/v1/changes`: record a change (deploy, config push, flag flip), list them with the
error budget each consumed.

`POST /v1/changes` takes `{"service", "kind", "version"?, "at"? (epoch seconds),
"description"?, "url"?}` (engine.core.changes.parse_change checks it): a bad body is
400 `{"error": "<every problem, `; `-joined>", "errors": ["$.kind: ...", ...]}`, a
good one 201 with its view (200 with the one kept when the same change was sent
before). `at` defaults to the engine's event time (its watermark; the wall clock
before the first event) and may be at most `evaluation.future_limit` after the later
of that and the wall clock.

`GET /v1/changes[?service=S][&limit=N]` answers `{"changes": [view, ...]}`, newest
first (by `at`), at most `limit` (default 100, at most 1000); a service no SLO has is
404. A view:

    {"id", "service", "kind", "version", "at", "description", "url", "source" ("api" or
     "kafka"), "received_at" (wall clock), "attribution_window_s", "complete" (the
     window has passed: the numbers are final), "evaluated_at" (event time the numbers
     run to; null before any),
     "slos": [{"slo", "group"?, "events", "bad_events",
               "error_budget_consumed_ratio": float|null}, ...]}

Both need the bearer token when one is configured (the server's auth middleware). Each
accepted POST is logged at INFO with every field and the client's address (event
`change_added`) and recorded in the audit log (`change.recorded`); `on_change` is
called after it so the runtime can save the state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import msgspec
from aiohttp import web

from engine.adapters.http.audit import actor_of
from engine.adapters.http.bodies import (
    JSON_TYPE,
    BodyError,
    invalid,
    read_bounded,
    service_not_found,
)
from engine.adapters.store.audit import AuditSink, NullAudit
from engine.core.changes import Change, ChangeLog, take_change
from engine.core.evaluator import Evaluator
from engine.core.governance import services
from engine.errors import ConfigError

__all__ = ["DEFAULT_LIMIT", "MAX_BODY_BYTES", "MAX_LIMIT", "ChangeView", "ChangesApi"]

log = logging.getLogger("burnrate.adapters.http.changes")

MAX_BODY_BYTES = 16 * 1024
"""A change is at most a few KiB (its strings are bounded); a larger body is refused
unread (413)."""
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class SloShareView(msgspec.Struct, kw_only=True, omit_defaults=True):
    slo: str
    events: int
    bad_events: int
    error_budget_consumed_ratio: float | None
    group: str | None = None


class ChangeView(msgspec.Struct, kw_only=True):
    id: int
    service: str
    kind: str
    version: str | None
    at: float
    description: str | None
    url: str | None
    source: str
    received_at: float
    attribution_window_s: float
    complete: bool
    evaluated_at: float | None
    slos: list[SloShareView]


class ChangeList(msgspec.Struct, kw_only=True):
    changes: list[ChangeView]


_encoder = msgspec.json.Encoder()


def change_view(c: Change) -> ChangeView:
    return ChangeView(
        id=c.id,
        service=c.service,
        kind=c.kind,
        version=c.version,
        at=c.at_s,
        description=c.description,
        url=c.url,
        source=c.source,
        received_at=c.received_at_s,
        attribution_window_s=c.window_s,
        complete=c.complete,
        evaluated_at=c.evaluated_at_s,
        slos=[
            SloShareView(
                slo=a.slo,
                group=a.group,
                events=a.events,
                bad_events=a.bad_events,
                error_budget_consumed_ratio=a.error_budget_consumed_ratio,
            )
            for a in c.attribution
        ],
    )


class ChangesApi:
    """The change routes over one evaluator and one change log."""

    def __init__(
        self,
        evaluator: Evaluator,
        changes: ChangeLog | None = None,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.evaluator = evaluator
        settings = evaluator.config.changes
        self.changes = (
            ChangeLog(settings.attribution_window_s, settings.max_kept)
            if changes is None
            else changes
        )
        self.clock = clock
        self.on_change = on_change
        self.audit: AuditSink = NullAudit()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/changes", self._list)
        app.router.add_post("/v1/changes", self._add)

    async def _list(self, request: web.Request) -> web.Response:
        service = request.query.get("service")
        if service is not None and service not in services(self.evaluator):
            return service_not_found(service)
        text = request.query.get("limit", str(DEFAULT_LIMIT))
        if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_LIMIT):
            return invalid(400, [f"limit: must be a whole number from 1 to {MAX_LIMIT}"])
        self.changes.update(self.evaluator)
        views = [change_view(c) for c in self.changes.changes(service, int(text))]
        body = _encoder.encode(ChangeList(changes=views))
        return web.Response(body=body, content_type=JSON_TYPE)

    async def _add(self, request: web.Request) -> web.Response:
        try:
            data = await read_bounded(request, MAX_BODY_BYTES)
        except BodyError as exc:
            return invalid(exc.status, exc.errors)
        answer, _ = self.add(data, request)
        return answer

    def add(self, data: bytes, request: web.Request) -> tuple[web.Response, bool]:
        """Take the change in the body `data`: the answer, and whether it is new."""
        try:
            change, added = take_change(
                self.evaluator, self.changes, data, source="api", wall_s=self.clock()
            )
        except ConfigError as exc:
            return invalid(400, exc.errors), False
        view = change_view(change)
        if added:
            log_change(change, request.remote)
            record_change(self.audit, actor_of(request), change, request.remote)
            if self.on_change is not None:
                self.on_change()
        body = _encoder.encode(view)
        status = 201 if added else 200
        return web.Response(status=status, body=body, content_type=JSON_TYPE), added


def record_change(audit: AuditSink, actor: str, change: Change, remote: str | None) -> None:
    """The `change.recorded` audit entry of a change taken in (API or topic)."""
    details = {k: v for k, v in msgspec.structs.asdict(change).items() if k != "attribution"}
    details["remote"] = remote
    audit.record(actor, "change.recorded", change.service, details)


def log_change(change: Change, remote: str | None) -> None:
    """The audit line of a change taken in (event `change_added`)."""
    log.info(
        "change of %s: %s%s at %.0f (%s)",
        change.service,
        change.kind,
        "" if change.version is None else f" {change.version}",
        change.at_s,
        change.source,
        extra={
            "data": {
                "event": "change_added",
                "remote": remote,
                **{k: v for k, v in msgspec.structs.asdict(change).items() if k != "attribution"},
            }
        },
    )
