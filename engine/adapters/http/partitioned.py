"""The JSON API of an evaluate worker: the SLOs of the partitions it owns, and where the
others live (docs/scaling.md, "HTTP in the evaluate role").

An evaluate worker (`burnrate run --role evaluate`) owns some partitions of the counts
topic, each with its own evaluator (`Partitions`, engine.adapters.http.partitions).
Each request asks `Partitions` afresh, so a rebalance or a reload between two requests
shows in the second; the views of one evaluator are built by the same code as in one
process (`SloApi`, `HistoryApi`, `SummaryApi`, kept per evaluator while it is owned).

- `/v1/slos/{name}` and `/v1/slos/{name}/history`: answered as one process answers them,
  from the evaluator of the SLO's partition. An SLO of the config that another worker
  owns: 307 to the same path and query at that worker (`Partitions.owner_of`), with
  `{"error", "slo", "owner"}`; when the owner is not known (its partition is being
  moved, or its worker did not say where it listens), 404 with `"owner": null`. A name
  no SLO of the config has: the usual 404 `{"error": "no SLO of that name", "slo"}`.
  A client following the redirect to another host sends its token again (most HTTP
  clients drop `Authorization` on a redirect to another host: curl needs
  `--location-trusted`).
- `/v1/slos` and `/v1/summary` list the owned SLOs in config order, in the shapes of one
  process, plus `"partitions": [{"partition", "evaluated_at", "slos"}, ...]`, the
  partitions owned (`slos`: how many SLOs each holds). The top-level `evaluated_at` is
  the earliest of the partitions' (each SLO's view has its own). A summary's `windows`
  are those of every owned partition, with null burn rates where a partition does not
  keep a window.
- The gate routes: engine.adapters.http.partitioned_gates (a service's SLOs live in
  one partition, so its owner serves its gate and overrides).
- The incident routes: engine.adapters.http.incidents over the worker's incidents
  (engine.runtime.evaluate_incidents).
- The change and correction routes: engine.adapters.http.partitioned_changes and
  engine.adapters.http.partitioned_corrections.
- The web UI (engine.adapters.http.partitioned_ui): the list of the owned SLOs, the
  page of each; an SLO owned elsewhere redirects to its page at the owner.

Auth: the same middleware and scope table as one process (the routes keep the paths,
so `engine.adapters.http.scopes` applies unchanged); a request without the scope is
refused before any redirect, so a redirect never tells an unauthorised client where an
SLO lives.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, Generic, TypeVar

import msgspec
from aiohttp import web

from engine.adapters.http.api import JSON_TYPE, SloApi, SloView, json_error
from engine.adapters.http.history import HistoryApi
from engine.adapters.http.partitions import Partitions, elsewhere, ownership
from engine.adapters.http.summary import SummaryApi
from engine.core.durations import format_duration
from engine.core.evaluator import Evaluator
from engine.core.history import policy_windows_s

__all__ = ["PartitionView", "PartitionedApi", "PartitionedSloList"]


T = TypeVar("T")


class PartitionView(msgspec.Struct, kw_only=True):
    partition: int
    evaluated_at: float | None
    slos: int


class PartitionedSloList(msgspec.Struct, kw_only=True):
    evaluated_at: float | None
    partitions: list[PartitionView]
    slos: list[SloView]


_encoder = msgspec.json.Encoder()


class PerEvaluator(Generic[T]):
    """One helper per evaluator, built on first use and dropped once the evaluator is no
    longer owned, so a cache does not keep a revoked partition's arrays alive."""

    def __init__(self, make: Callable[[Evaluator], T]) -> None:
        self._make = make
        self._made: dict[int, tuple[Evaluator, T]] = {}

    def get(self, ev: Evaluator) -> T:
        made = self._made.get(id(ev))
        if made is None or made[0] is not ev:
            made = self._made[id(ev)] = (ev, self._make(ev))
        return made[1]

    def keep(self, engines: Mapping[int, Evaluator]) -> None:
        """Forget the helpers of evaluators not in `engines`."""
        alive = {id(ev) for ev in engines.values()}
        for k in [k for k in self._made if k not in alive]:
            del self._made[k]


def _earliest(engines: Mapping[int, Evaluator]) -> float | None:
    times = [t for ev in engines.values() if (t := ev.evaluated_at_s) is not None]
    return min(times) if times else None


class PartitionedApi:
    """The `/v1` routes of an evaluate worker over `partitions` (see the module doc)."""

    def __init__(self, partitions: Partitions, generation: Callable[[], int] | None = None) -> None:
        self.partitions = partitions
        self.generation = generation
        """Changes once per evaluation tick (`PartitionedMetrics.generation`); None: the
        list bodies are built per request."""
        self._apis = PerEvaluator(SloApi)
        self._summaries = PerEvaluator(SummaryApi)
        self._histories: dict[tuple[int, int], tuple[Evaluator, HistoryApi]] = {}
        self._bodies: dict[str, tuple[Hashable, bytes]] = {}
        self._names: tuple[object, dict[str, int]] | None = None

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/slos", self._list)
        app.router.add_get("/v1/slos/{name}", self._one)
        app.router.add_get("/v1/slos/{name}/history", self._history)
        app.router.add_get("/v1/summary", self._summary)

    # -- where an SLO lives ------------------------------------------------------------

    def config_position(self) -> dict[str, int]:
        """Each configured SLO's position in the config (a reload may change it)."""
        config = self.partitions.config
        if self._names is None or self._names[0] is not config:
            self._names = (config, {s.name: i for i, s in enumerate(config.slos)})
        return self._names[1]

    def elsewhere(self, request: web.Request, name: str) -> web.Response:
        """The answer about an SLO this worker does not own: 307 to its owner, 404 with
        `owner: null` when the owner is not known, the usual 404 when no SLO of the
        config has that name."""
        if name not in self.config_position():
            return json_error(404, "no SLO of that name", slo=name)
        return elsewhere(
            request, self.partitions.owner_of(name), "another worker evaluates this SLO", slo=name
        )

    def views_of(self, ev: Evaluator) -> SloApi:
        """The single process's views over `ev` (kept while `ev` is owned)."""
        return self._apis.get(ev)

    # -- one SLO ------------------------------------------------------------------------

    async def _one(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.owned()  # drops the views of evaluators no longer owned
        ev = self.partitions.evaluator_of(name)
        if ev is None:
            return self.elsewhere(request, name)
        return await self._apis.get(ev)._one(request)

    async def _history(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.owned()
        ev = self.partitions.evaluator_of(name)
        if ev is None:
            return self.elsewhere(request, name)
        history = self.partitions.history_of(name)
        if history is None:
            return json_error(404, "no history is kept for this SLO's partition", slo=name)
        key = (id(ev), id(history))
        made = self._histories.get(key)
        if made is None or made[0] is not ev or made[1].history is not history:
            made = self._histories[key] = (ev, HistoryApi(self._apis.get(ev), history))
        return await made[1]._get(request)

    # -- lists --------------------------------------------------------------------------

    def owned(self) -> Mapping[int, Evaluator]:
        """The partitions owned now (and the per-evaluator helpers of the others dropped)."""
        engines = self.partitions.engines()
        self._apis.keep(engines)
        self._summaries.keep(engines)
        alive = {id(ev) for ev in engines.values()}
        self._histories = {k: v for k, v in self._histories.items() if k[0] in alive}
        return engines

    def _cached(
        self, route: str, engines: Mapping[int, Evaluator], build: Callable[[], bytes]
    ) -> bytes:
        """The body of `route`, built at most once per evaluation tick and ownership."""
        gen = None if self.generation is None else self.generation()
        key = (gen, ownership(engines), id(self.partitions.config))
        cached = self._bodies.get(route)
        if gen is not None and cached is not None and cached[0] == key:
            return cached[1]
        body = build()
        self._bodies[route] = (key, body)
        return body

    def _partition_views(self, engines: Mapping[int, Evaluator]) -> list[PartitionView]:
        return [
            PartitionView(partition=p, evaluated_at=ev.evaluated_at_s, slos=len(ev.config_slos))
            for p, ev in sorted(engines.items())
        ]

    def list_body(self) -> bytes:
        engines = self.owned()
        return self._cached("slos", engines, lambda: self._build_list(engines))

    def _build_list(self, engines: Mapping[int, Evaluator]) -> bytes:
        position = self.config_position()
        views: list[tuple[int, int, SloView]] = []
        for p, ev in sorted(engines.items()):
            views += [
                (position.get(v.name, len(position)), p, v) for v in self._apis.get(ev).views()
            ]
        views.sort(key=lambda x: (x[0], x[1]))  # stable: a grouped SLO's groups keep order
        return _encoder.encode(
            PartitionedSloList(
                evaluated_at=_earliest(engines),
                partitions=self._partition_views(engines),
                slos=[v for _, _, v in views],
            )
        )

    def summary_body(self) -> bytes:
        engines = self.owned()
        return self._cached(
            "summary",
            engines,
            lambda: _encoder.encode(
                {
                    "evaluated_at": _earliest(engines),
                    "partitions": self._partition_views(engines),
                    **self.summary_columns(engines),
                }
            ),
        )

    def summary_columns(self, engines: Mapping[int, Evaluator]) -> dict[str, Any]:
        """`windows` and `slos` as `SummaryApi` writes them, over every owned partition:
        rows in config order, windows the union of the partitions'."""
        position = self.config_position()
        parts: list[tuple[list[int], dict[str, Any]]] = []
        for _, ev in sorted(engines.items()):
            parts.append((list(policy_windows_s(ev)), self._summaries.get(ev).columns()))
        windows_s = sorted({w for ws, _ in parts for w in ws})
        rows = sorted(
            (position.get(name, len(position)), k, j)
            for k, (_, cols) in enumerate(parts)
            for j, name in enumerate(cols["name"])
        )
        at = {(k, j): r for r, (_, k, j) in enumerate(rows)}
        out: dict[str, Any] = {
            field: [parts[k][1][field][j] for _, k, j in rows]
            for field in (
                "name",
                "group",
                "service",
                "objective",
                "budget_remaining_ratio",
                "time_to_exhaustion_s",
            )
        }
        burn_rates = []
        for w in windows_s:
            index = [ws.index(w) if w in ws else -1 for ws, _ in parts]
            burn_rates.append(
                [
                    parts[k][1]["burn_rates"][index[k]][j] if index[k] >= 0 else None
                    for _, k, j in rows
                ]
            )
        out["burn_rates"] = burn_rates
        firing: dict[str, list[int]] = {}
        for k, (_, cols) in enumerate(parts):
            for alert, positions in cols["firing"].items():
                firing.setdefault(alert, []).extend(at[(k, j)] for j in positions)
        out["firing"] = {alert: sorted(positions) for alert, positions in firing.items()}
        return {"windows": [format_duration(w) for w in windows_s], "slos": out}

    async def _list(self, request: web.Request) -> web.Response:
        return web.Response(body=self.list_body(), content_type=JSON_TYPE)

    async def _summary(self, request: web.Request) -> web.Response:
        return web.Response(body=self.summary_body(), content_type=JSON_TYPE)
