"""The release gate in the evaluate role: each service's gate is served by the worker
that owns it (docs/scaling.md, "HTTP in the evaluate role").

Every SLO of a service lives in one counts partition (the partition key is the service,
engine.core.deltas), so the worker owning that partition holds everything a gate reads:
the SLOs' windows, alerts and budgets, and the service's overrides, which move with the
partition in its changelog snapshot (engine.runtime.partition_engine).

- `GET /v1/gates/{service}`, `POST` and `DELETE /v1/gates/{service}/override`: on the
  owner, answered as one process answers them (`GatesApi` over the partition's
  evaluator and overrides; the body is the contract's). An override set or ended is
  written to the changelog before the answer (`Partitions.keep`), not at the
  next periodic snapshot, so it outlives a kill of the worker right after it answered
  (503 when it could not be written).
- A service another worker owns: 307 to the same path at the owner, with
  `{"error", "service", "owner"}` (a POST or DELETE is redirected with its method and
  body: 307, not 303); 404 with `"owner": null` while the owner is not known. A service
  no SLO of the config has: the usual 404.
- `burnrate_gate_decision` on /metrics: the gates of the services this worker owns.

An override's expiry is wall time, as in one process: a partition restored elsewhere
keeps the overrides still in force there and then.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web

from engine.adapters.http.api import json_error
from engine.adapters.http.bodies import service_not_found
from engine.adapters.http.gates import GatesApi
from engine.adapters.http.partitions import Partitions, ServiceSlos, elsewhere
from engine.core.evaluator import Evaluator
from engine.core.governance import ServiceGate

__all__ = ["PartitionedGates"]


class PartitionedGates:
    """The gate routes of an evaluate worker over `partitions` (see the module doc)."""

    def __init__(
        self,
        partitions: Partitions,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[], None] | None = None,
        generation: Callable[[], int] | None = None,
    ) -> None:
        self.partitions = partitions
        self.clock = clock
        self.on_change = on_change
        """Called after an override was set or ended (the metrics render afresh)."""
        self.generation = generation
        self._gates: dict[int, tuple[Evaluator, GatesApi]] = {}
        self.slo_of = ServiceSlos(partitions)
        """The first SLO of a service (its partition is the service's)."""

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/gates/{service}", self._get)
        app.router.add_post("/v1/gates/{service}/override", self._set)
        app.router.add_delete("/v1/gates/{service}/override", self._end)

    def gates_of(self, slo: str) -> GatesApi | None:
        """The gates over the evaluator of `slo`'s partition, with its overrides; None
        when this worker does not own it."""
        ev = self.partitions.evaluator_of(slo)
        overrides = self.partitions.overrides_of(slo)
        if ev is None or overrides is None:
            return None
        self._forget_unowned()
        held = self._gates.get(id(ev))
        if held is None or held[0] is not ev:
            gates = GatesApi(ev, overrides, self.clock, generation=self.generation)
            held = self._gates[id(ev)] = (ev, gates)
        gates = held[1]
        gates.overrides = overrides  # a restore replaces them before the engine is owned
        gates.on_change = self.on_change
        return gates

    def _forget_unowned(self) -> None:
        alive = {id(ev) for ev in self.partitions.engines().values()}
        for k in [k for k in self._gates if k not in alive]:
            del self._gates[k]

    def all(self) -> list[ServiceGate]:
        """The gate of every service this worker owns (for /metrics)."""
        out: list[ServiceGate] = []
        for ev in self.partitions.engines().values():
            slos = [s.name for s in ev.config_slos if s.service is not None]
            gates = None if not slos else self.gates_of(slos[0])
            if gates is not None:
                out.extend(gates.all())
        return sorted(out, key=lambda g: g.service)

    def _route(self, request: web.Request) -> tuple[str, GatesApi] | web.Response:
        service = request.match_info["service"]
        slo = self.slo_of(service)
        if slo is None:
            return service_not_found(service)
        gates = self.gates_of(slo)
        if gates is not None:
            return slo, gates
        return elsewhere(
            request,
            self.partitions.owner_of(slo),
            "another worker owns this service's gate",
            service=service,
        )

    async def _get(self, request: web.Request) -> web.Response:
        routed = self._route(request)
        return routed if isinstance(routed, web.Response) else await routed[1]._get(request)

    async def _set(self, request: web.Request) -> web.Response:
        routed = self._route(request)
        if isinstance(routed, web.Response):
            return routed
        return await self._kept(routed[0], await routed[1]._set(request))

    async def _end(self, request: web.Request) -> web.Response:
        routed = self._route(request)
        if isinstance(routed, web.Response):
            return routed
        return await self._kept(routed[0], await routed[1]._end(request))

    async def _kept(self, slo: str, answer: web.Response) -> web.Response:
        """`answer` once the change it made is kept with the partition; 503 when it
        could not be written (the override is in force here, but a kill of this
        worker before its next snapshot would lose it)."""
        if answer.status >= 300 or await self.partitions.keep(slo):
            return answer
        return json_error(
            503,
            "the override is in force on this worker but could not be written to the "
            "changelog yet; it is lost if this worker stops before its next snapshot "
            "(retry to make sure)",
        )
