"""`/v1/corrections`: list the corrections in force, add one at run time.

`GET /v1/corrections` answers `{"corrections": [view, ...]}`, the config's first, then
those added at run time, oldest first:

    {"name", "start", "end" (RFC 3339, UTC), "start_s", "end_s" (epoch seconds; for a
     weekly correction the first occurrence), "duration_s", "recurrence" (null or
     "weekly"), "slos", "services" (as given, one of them null), "applies_to" (the SLO
     names it covers), "reason", "source" ("config" or "api")}

`POST /v1/corrections` takes a JSON body with the fields of a `corrections:` entry of
the config (`name`, `start`, `end` or `duration`, `recurrence`, `slos` or `services`,
`reason`), checked by the same code (`engine.core.corrections.parse_correction`): a
bad body is 400 `{"error": "<every problem, `; `-joined>", "errors": ["$.end: must be
after start", ...]}`; a good one is 201 with its view. It applies to the events
ingested from then on: events already counted are not taken back out of the windows
and budget (`burnrate replay` with the correction in the config recomputes history
exactly). With a `state:` section it is kept in the state snapshot, so it survives a
restart; without one it lasts until the process ends.

Both need the bearer token when one is configured (the server's auth middleware).
Each accepted POST is logged at INFO with every field and the client's address
(event `correction_added`) and recorded in the audit log (`correction.created`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec
from aiohttp import web

from engine.adapters.http.audit import actor_of
from engine.adapters.http.bodies import (
    BodyError,
    invalid,
    read_bounded,
)
from engine.adapters.store.audit import AuditSink, NullAudit
from engine.core.config import Correction, Slo
from engine.core.corrections import parse_correction
from engine.core.evaluator import Evaluator
from engine.errors import ConfigError

__all__ = ["MAX_BODY_BYTES", "CorrectionView", "CorrectionsApi"]

log = logging.getLogger("burnrate.adapters.http.corrections")

MAX_BODY_BYTES = 64 * 1024
"""A correction is a few hundred bytes; a larger body is refused unread (413)."""


class CorrectionView(msgspec.Struct, kw_only=True):
    name: str
    start: str
    end: str
    start_s: float
    end_s: float
    duration_s: float
    recurrence: str | None
    slos: list[str] | None
    services: list[str] | None
    applies_to: list[str]
    reason: str
    source: str


class CorrectionList(msgspec.Struct, kw_only=True):
    corrections: list[CorrectionView]


_encoder = msgspec.json.Encoder()


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def correction_view(c: Correction, slos: Sequence[Slo], source: str) -> CorrectionView:
    """The view of `c` among the SLOs `slos` (`applies_to`: those it covers)."""
    start, end = c.start_s, c.end_s
    return CorrectionView(
        name=c.name,
        start=_rfc3339(start),
        end=_rfc3339(end),
        start_s=start,
        end_s=end,
        duration_s=end - start,
        recurrence=c.recurrence,
        slos=c.slos,
        services=c.services,
        applies_to=[slos[i].name for i in c.targets(slos)],
        reason=c.reason,
        source=source,
    )


class CorrectionsApi:
    """The routes over one evaluator's corrections."""

    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator
        self.audit: AuditSink = NullAudit()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/corrections", self._list)
        app.router.add_post("/v1/corrections", self._add)

    def view(self, c: Correction, source: str) -> CorrectionView:
        return correction_view(c, self.evaluator.config_slos, source)

    def views(self) -> list[CorrectionView]:
        ev = self.evaluator
        return [self.view(c, "config") for c in ev.config.corrections] + [
            self.view(c, "api") for c in ev.runtime_corrections
        ]

    async def _list(self, request: web.Request) -> web.Response:
        body = _encoder.encode(CorrectionList(corrections=self.views()))
        return web.Response(body=body, content_type="application/json")

    async def _add(self, request: web.Request) -> web.Response:
        try:
            data = await read_bounded(request, MAX_BODY_BYTES)
        except BodyError as exc:
            return invalid(exc.status, exc.errors)
        try:
            correction = parse_correction(data, self.evaluator.config_slos)
        except ConfigError as exc:
            return invalid(400, exc.errors)
        return self.add(correction, request)

    def add(self, correction: Correction, request: web.Request) -> web.Response:
        """Apply the checked `correction` from now on: 201 with its view."""
        self.evaluator.add_correction(correction)
        view = self.view(correction, "api")
        details = msgspec.structs.asdict(view)
        details["remote"] = request.remote
        self.audit.record(actor_of(request), "correction.created", view.name, details)
        log.info(
            "correction %r added: %s to %s for %s (%s)",
            view.name,
            view.start,
            view.end,
            ", ".join(view.applies_to),
            view.reason,
            extra={
                "data": {
                    "event": "correction_added",
                    "remote": request.remote,
                    **msgspec.structs.asdict(view),
                }
            },
        )
        return web.Response(status=201, body=_encoder.encode(view), content_type="application/json")
