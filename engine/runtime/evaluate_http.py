"""The HTTP of an evaluate worker: its partition engines as `Partitions`, its consumer
as the source status, served by the single process's `HttpServer`.

`WorkerPartitions` reads the worker afresh at every call (engine.adapters.http.partitions
asks on each request), so a rebalance between two requests shows in the second. It
keeps a `History` per owned partition, sampled after each batch the partition applies,
as the single process samples its one evaluator after each tick: the charts of
`/v1/slos/{name}/history` and the web UI start when the partition came to this worker
(a history is not part of the changelog snapshot).

The metrics are `PartitionedMetrics` plus `burnrate_evaluate_partition_offset{partition}`,
the next counts offset each owned partition applies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from engine.adapters.http.partitioned_metrics import PartitionedMetrics
from engine.adapters.http.partitions import ServiceSlos
from engine.adapters.http.server import HttpServer
from engine.core.changes import ChangeLog
from engine.core.config import Config
from engine.core.evaluator import Evaluator
from engine.core.history import History
from engine.core.overrides import Overrides
from engine.runtime.evaluate_incidents import WorkerIncidents

if TYPE_CHECKING:
    from engine.runtime.evaluate_role import EvaluateWorker

__all__ = ["WorkerPartitions", "evaluate_http"]


class WorkerPartitions:
    """`engine.adapters.http.partitions.Partitions` over an evaluate worker's engines."""

    def __init__(self, worker: EvaluateWorker) -> None:
        self.worker = worker
        self._histories: dict[int, tuple[Evaluator, History]] = {}

    @property
    def config(self) -> Config:
        return self.worker.config

    def engines(self) -> Mapping[int, Evaluator]:
        return {p: e.evaluator for p, e in self.worker.owned.items()}

    def evaluator_of(self, slo: str) -> Evaluator | None:
        return self.worker.evaluator_of(slo)

    def partition_of(self, slo: str) -> int:
        return self.worker.partition_of(slo)

    def history_of(self, slo: str) -> History | None:
        ev = self.worker.evaluator_of(slo)
        if ev is None:
            return None
        held = self._histories.get(self.worker.partition_of(slo))
        return held[1] if held is not None and held[0] is ev else None

    def owner_of(self, slo: str) -> str | None:
        """The other worker's URL; None when this worker owns `slo` (unlike the
        worker's own `owner_of`, which names itself)."""
        if self.worker.evaluator_of(slo) is not None:
            return None
        return self.worker.owner_of(slo)

    def overrides_of(self, slo: str) -> Overrides | None:
        engine = self.worker.engine_of(slo)
        return None if engine is None else engine.overrides

    def changes_of(self, slo: str) -> ChangeLog | None:
        engine = self.worker.engine_of(slo)
        return None if engine is None else engine.changes

    async def keep(self, slo: str) -> bool:
        return await self.worker.keep(slo)

    def observe(self, partition: int) -> None:
        """Sample the partition's evaluator into its history (a new one when the
        partition's evaluator is not the one it was made for), and forget the
        histories of partitions no longer owned."""
        engine = self.worker.owned.get(partition)
        if engine is None:
            return
        ev = engine.evaluator
        held = self._histories.get(partition)
        if held is None or held[0] is not ev:
            held = self._histories[partition] = (ev, History(ev))
        held[1].observe(ev)
        for p in [p for p in self._histories if p not in self.worker.owned]:
            del self._histories[p]


class _OffsetCollector(Collector):
    def __init__(self, worker: EvaluateWorker) -> None:
        self.worker = worker

    def collect(self) -> Iterable[Metric]:
        offsets = GaugeMetricFamily(
            "burnrate_evaluate_partition_offset",
            "The next counts-topic offset each owned partition applies",
            labels=["partition"],
        )
        for p, o in sorted(self.worker.offsets().items()):
            offsets.add_metric([str(p)], o)
        yield offsets


def evaluate_http(
    worker: EvaluateWorker, listen: str
) -> tuple[HttpServer, PartitionedMetrics, WorkerPartitions, WorkerIncidents | None]:
    """The worker's server (not started), its metrics, its `Partitions` and, with
    `incidents:`, its incidents (the store not opened yet). ConfigError when `http`
    configures TLS or tokens that cannot be used, or the store's password cannot be
    read."""
    partitions = WorkerPartitions(worker)
    metrics = PartitionedMetrics(partitions, worker.status)
    metrics.collector.deliveries = worker.delivery_stats
    metrics.registry.register(_OffsetCollector(worker))
    incidents = None
    if worker.config.incidents is not None:
        incidents = WorkerIncidents(
            worker.config,
            lambda: worker.owned,
            worker.owner_of,
            ServiceSlos(partitions),
            lambda: worker.url,
            metrics,
        )
    server = HttpServer(listen, metrics, worker.status, partitions=partitions, incidents=incidents)
    if incidents is not None:
        server.incidents.route_to = incidents.route_to
    return server, metrics, partitions, incidents
