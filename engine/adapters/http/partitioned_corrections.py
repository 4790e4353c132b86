"""Corrections in the evaluate role: a correction added at run time lives with the
partition of the SLOs it covers (docs/scaling.md, "HTTP in the evaluate role").

A correction added with `POST /v1/corrections` is applied by the evaluator of the SLOs
it covers and kept in that evaluator's state, so in the partition's changelog snapshot:
it moves with the partition and survives a kill (the snapshot is written before the
answer, `Partitions.keep`; 503 when it cannot be).

- `POST /v1/corrections`: the body is checked as one process checks it (400 with the
  same errors). When every SLO it covers lives in one partition (a correction of one
  service always does), the worker owning that partition answers as one process does
  (201); another worker answers 307 there, which the client follows with its body, or
  404 with `"owner": null` while the owner is not known. A correction covering SLOs of
  several partitions is 409, naming them: post one correction per service.
- `GET /v1/corrections`: the config's corrections, then those added at run time to the
  partitions this worker owns, in the single process's shape.
"""

from __future__ import annotations

from typing import Final

import msgspec
from aiohttp import web

from engine.adapters.http.api import json_error
from engine.adapters.http.bodies import JSON_TYPE, BodyError, invalid, read_bounded
from engine.adapters.http.corrections import (
    MAX_BODY_BYTES,
    CorrectionList,
    CorrectionsApi,
    correction_view,
)
from engine.adapters.http.partitions import Partitions, elsewhere
from engine.core.corrections import parse_correction
from engine.core.evaluator import Evaluator
from engine.errors import ConfigError

__all__ = ["PartitionedCorrections"]


_encoder: Final = msgspec.json.Encoder()


class PartitionedCorrections:
    """The correction routes of an evaluate worker over `partitions` (module doc)."""

    def __init__(self, partitions: Partitions) -> None:
        self.partitions = partitions
        self._apis: dict[int, tuple[Evaluator, CorrectionsApi]] = {}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/corrections", self._list)
        app.router.add_post("/v1/corrections", self._add)

    def _api(self, ev: Evaluator) -> CorrectionsApi:
        alive = {id(e) for e in self.partitions.engines().values()}
        for k in [k for k in self._apis if k not in alive]:
            del self._apis[k]
        held = self._apis.get(id(ev))
        if held is None or held[0] is not ev:
            held = self._apis[id(ev)] = (ev, CorrectionsApi(ev))
        return held[1]

    async def _add(self, request: web.Request) -> web.Response:
        try:
            data = await read_bounded(request, MAX_BODY_BYTES)
        except BodyError as exc:
            return invalid(exc.status, exc.errors)
        slos = self.partitions.config.slos
        try:
            correction = parse_correction(data, slos)
        except ConfigError as exc:
            return invalid(400, exc.errors)
        names = [slos[i].name for i in correction.targets(slos)]
        homes = sorted({self.partitions.partition_of(n) for n in names})
        if len(homes) > 1:
            services = sorted({s.service or s.name for s in slos if s.name in set(names)})
            return json_error(
                409,
                f"the correction covers SLOs of {len(homes)} counts partitions "
                f"({', '.join(map(str, homes))}; services {', '.join(services)}), kept by "
                "their owners apart: post one correction per service",
            )
        ev = self.partitions.evaluator_of(names[0])
        if ev is None:
            return self._elsewhere(request, names)
        answer = self._api(ev).add(correction, request)
        if not await self.partitions.keep(names[0]):
            return json_error(
                503,
                "the correction applies on this worker but could not be written to the "
                "changelog yet; it is lost if this worker stops before its next snapshot",
            )
        return answer

    def _elsewhere(self, request: web.Request, names: list[str]) -> web.Response:
        return elsewhere(
            request,
            self.partitions.owner_of(names[0]),
            "another worker evaluates these SLOs",
            slos=names,
        )

    async def _list(self, request: web.Request) -> web.Response:
        engines = self.partitions.engines()
        config = self.partitions.config
        views = []
        views += [correction_view(c, config.slos, "config") for c in config.corrections]
        for p in sorted(engines):
            api = self._api(engines[p])
            views += [api.view(c, "api") for c in engines[p].runtime_corrections]
        body = _encoder.encode(CorrectionList(corrections=views))
        return web.Response(body=body, content_type=JSON_TYPE)
