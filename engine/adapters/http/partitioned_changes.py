"""Changes in the evaluate role: each service's changes are kept by the worker that owns
it (docs/scaling.md, "HTTP in the evaluate role").

A service's SLOs live in one counts partition (engine.core.deltas), so the worker owning
it holds everything a change is attributed against, and the alerts a change's
attribution window names. Each partition keeps a change log of its services
(`Partitions.changes_of`), moved with it in its changelog snapshot; its ids are
numbered apart from every other partition's, so an id names one change across workers.

- `POST /v1/changes`: on the owner of the body's service, answered as one process
  answers it (`ChangesApi`; the body and errors are the contract's), the change written
  to the changelog before the answer (`Partitions.keep`; 503 when it cannot be). On
  another worker: 307 to the owner, which the client follows with its body; 404 with
  `"owner": null` while the owner is not known. A body whose service is missing or no
  SLO has gets the single process's 400.
- `GET /v1/changes?service=S`: the owner answers, the others redirect (307).
  Without `service`: the changes of the services this worker owns, newest first.
- `burnrate_changes_total{service,kind}`: the changes taken by this worker since it
  started, of the services it owns now.

The changes topic (`changes.topic`) is read by the single process only: in this role,
post changes over HTTP.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

import msgspec
from aiohttp import web

from engine.adapters.http.api import json_error
from engine.adapters.http.bodies import (
    JSON_TYPE,
    BodyError,
    invalid,
    read_bounded,
    service_not_found,
)
from engine.adapters.http.changes import (
    DEFAULT_LIMIT,
    MAX_BODY_BYTES,
    MAX_LIMIT,
    ChangeList,
    ChangesApi,
    change_view,
)
from engine.adapters.http.partitions import Partitions, ServiceSlos, elsewhere
from engine.core.changes import ChangeLog, parse_change
from engine.core.evaluator import Evaluator
from engine.errors import ConfigError

__all__ = ["PartitionedChanges"]


class _Service(msgspec.Struct):
    service: str


_encoder: Final = msgspec.json.Encoder()
_service_decoder: Final = msgspec.json.Decoder(_Service)


class PartitionedChanges:
    """The change routes of an evaluate worker over `partitions` (see the module doc)."""

    def __init__(
        self,
        partitions: Partitions,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.partitions = partitions
        self.clock = clock
        self.on_change = on_change
        self._apis: dict[int, tuple[Evaluator, ChangesApi]] = {}
        self.slo_of = ServiceSlos(partitions)
        """The first SLO of a service (its partition is the service's)."""

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/changes", self._list)
        app.router.add_post("/v1/changes", self._add)

    def api_of(self, slo: str) -> ChangesApi | None:
        """The change routes over `slo`'s partition; None when not owned here."""
        ev = self.partitions.evaluator_of(slo)
        log = self.partitions.changes_of(slo)
        if ev is None or log is None:
            return None
        alive = {id(e) for e in self.partitions.engines().values()}
        for k in [k for k in self._apis if k not in alive]:
            del self._apis[k]
        held = self._apis.get(id(ev))
        if held is None or held[0] is not ev:
            held = self._apis[id(ev)] = (ev, ChangesApi(ev, log, self.clock))
        api = held[1]
        api.changes = log  # a restore loads the log before the engine is owned
        api.on_change = self.on_change
        return api

    def counts(self) -> dict[tuple[str, str], int]:
        """Changes taken by (service, kind), over the owned partitions (for /metrics)."""
        out: dict[tuple[str, str], int] = {}
        for _, log in self._logs():
            for key, n in log.counts().items():
                out[key] = out.get(key, 0) + n
        return out

    def _logs(self) -> list[tuple[Evaluator, ChangeLog]]:
        """Each owned partition's evaluator and change log (of those with services)."""
        out = []
        for ev in self.partitions.engines().values():
            slo = next((s.name for s in ev.config_slos if s.service is not None), None)
            log = None if slo is None else self.partitions.changes_of(slo)
            if log is not None:
                out.append((ev, log))
        return out

    def _elsewhere(self, request: web.Request, service: str, slo: str) -> web.Response:
        return elsewhere(
            request,
            self.partitions.owner_of(slo),
            "another worker keeps this service's changes",
            service=service,
        )

    async def _add(self, request: web.Request) -> web.Response:
        try:
            data = await read_bounded(request, MAX_BODY_BYTES)
        except BodyError as exc:
            return invalid(exc.status, exc.errors)
        try:
            service = _service_decoder.decode(data).service
        except msgspec.DecodeError:
            service = None
        slo = None if service is None else self.slo_of(service)
        if service is None or slo is None:
            return self._refused(data)
        api = self.api_of(slo)
        if api is None:
            return self._elsewhere(request, service, slo)
        answer, added = api.add(data, request)
        if added and not await self.partitions.keep(slo):
            return json_error(
                503,
                "the change is taken on this worker but could not be written to the "
                "changelog yet; it is lost if this worker stops before its next snapshot "
                "(send it again: the same change is kept once)",
            )
        return answer

    def _refused(self, data: bytes) -> web.Response:
        """The single process's 400 for a body without a known service."""
        services = list(dict.fromkeys(s.service for s in self.partitions.config.slos if s.service))
        now = self.clock()
        try:
            parse_change(data, services, wall_s=now, event_time_s=now, future_s=0.0)
        except ConfigError as exc:
            return invalid(400, exc.errors)
        return invalid(400, ["$.service: no SLO has this service"])  # not reached

    async def _list(self, request: web.Request) -> web.Response:
        service = request.query.get("service")
        if service is not None:
            slo = self.slo_of(service)
            if slo is None:
                return service_not_found(service)
            api = self.api_of(slo)
            if api is None:
                return self._elsewhere(request, service, slo)
            return await api._list(request)
        text = request.query.get("limit", str(DEFAULT_LIMIT))
        if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_LIMIT):
            return invalid(400, [f"limit: must be a whole number from 1 to {MAX_LIMIT}"])
        found = []
        for ev, log in self._logs():
            log.update(ev)
            found += log.changes()
        found.sort(key=lambda c: (c.at_s, c.id), reverse=True)
        body = _encoder.encode(ChangeList(changes=[change_view(c) for c in found[: int(text)]]))
        return web.Response(body=body, content_type=JSON_TYPE)
