"""HTTP of an ingest worker (`burnrate run --role ingest`): `/metrics`, `/healthz`,
`/readyz` and `POST /-/reload`.

An ingest worker has no SLO state to show (the evaluate workers own it): its metrics
are its own progress, read at scrape time from the source, the worker's evaluator (the
rejections, counted exactly as `burnrate run` counts them) and the counts producer.
Names follow engine.adapters.http.metrics: the families a single process has keep their
names (`burnrate_records_consumed`, `burnrate_records_rejected{reason}`,
`burnrate_consumer_lag{topic,partition}`, `burnrate_event_time_lag_seconds`), so one
dashboard reads both; what only this role does is under `burnrate_ingest_`:

- `burnrate_ingest_deltas_produced_total`: count-delta records written (one per SLO per
  flush that counted it), `burnrate_ingest_heartbeats_produced_total` the heartbeats;
- `burnrate_ingest_transactions_total{outcome}`: `committed` or `aborted`;
- `burnrate_ingest_flush_duration_seconds`: wall time of a flush (drain, produce, commit);
- `burnrate_ingest_watermark_seconds`: the event-time watermark the last flush carried;
- `burnrate_config_info{sha256}` and `burnrate_config_reloads_total{result}`, as the
  single process exports them, once a reloader is set (`config`).

`/readyz` is the single process's (engine.adapters.http.server.readiness): partitions
assigned and a fetch answered recently. HTTPS with `http.tls` and the bearer tokens of
`http.tokens` as for `burnrate run`: the metrics name services and SLOs, so with tokens
configured `/metrics` needs one with the `read` scope, `POST /-/reload` one with the
`admin` scope (engine.adapters.http.scopes); the probes stay open. A reload may change
the tokens (`auth.tokens`, read per request); turning them on or off needs a restart
(the reload refuses it).

`POST /-/reload` answers as the single process's server does: 200 with what the reload
did (engine.runtime.reload.ReloadOutcome), 400 with the `$.path` errors of a file it
refused (the running config stays), 404 when there is no config file to reload.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from engine.adapters.http.auth import BearerAuth
from engine.adapters.http.listen import parse_listen
from engine.adapters.http.metrics import CONTENT_TYPE, config_families, consumer_lag_family
from engine.adapters.http.server import ReloadAnswer, readiness, reload_response
from engine.adapters.http.tls import server_ssl_context
from engine.adapters.kafka.status import SourceStatus
from engine.core.config_io import Http

__all__ = ["IngestHttp", "IngestProgress"]


@dataclass(frozen=True, slots=True)
class IngestProgress:
    """What an ingest worker reports at one moment."""

    status: SourceStatus | None
    rejected: dict[str, int]
    deltas_produced: int
    heartbeats_produced: int
    transactions_committed: int
    transactions_aborted: int
    watermark_s: float | None


class _IngestCollector(Collector):
    def __init__(self, progress: Callable[[], IngestProgress], clock: Callable[[], float]) -> None:
        self._progress = progress
        self._clock = clock
        self.config: Callable[[], tuple[str, Mapping[str, int]]] | None = None
        """(SHA-256 of the config running, reloads by result), once a reloader is set."""

    def collect(self) -> Iterable[Metric]:
        if self.config is not None:
            yield from config_families(*self.config())
        p = self._progress()
        status = p.status
        yield CounterMetricFamily(
            "burnrate_records_consumed",
            "Kafka records consumed and applied",
            status.records_consumed if status else 0,
        )
        rejected = CounterMetricFamily(
            "burnrate_records_rejected", "Records or events rejected, by reason", labels=["reason"]
        )
        for reason, n in sorted(p.rejected.items()):
            rejected.add_metric([reason], n)
        yield rejected
        yield consumer_lag_family(status)
        event_lag = GaugeMetricFamily(
            "burnrate_event_time_lag_seconds", "Wall clock minus the event-time watermark"
        )
        watermark = GaugeMetricFamily(
            "burnrate_ingest_watermark_seconds",
            "Event-time watermark carried by the last flush (epoch seconds)",
        )
        if p.watermark_s is not None and math.isfinite(p.watermark_s):
            event_lag.add_metric([], max(self._clock() - p.watermark_s, 0.0))
            watermark.add_metric([], p.watermark_s)
        yield event_lag
        yield watermark
        yield CounterMetricFamily(
            "burnrate_ingest_deltas_produced",
            "Count-delta records written to the counts topic",
            p.deltas_produced,
        )
        yield CounterMetricFamily(
            "burnrate_ingest_heartbeats_produced",
            "Heartbeat records written to counts partitions no delta went to",
            p.heartbeats_produced,
        )
        txn = CounterMetricFamily(
            "burnrate_ingest_transactions",
            "Counts transactions (deltas with their source offsets), by outcome",
            labels=["outcome"],
        )
        txn.add_metric(["committed"], p.transactions_committed)
        txn.add_metric(["aborted"], p.transactions_aborted)
        yield txn


class IngestHttp:
    """The worker's aiohttp server on `listen` (`port` is the bound one)."""

    def __init__(
        self,
        listen: str,
        http: Http,
        progress: Callable[[], IngestProgress],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host, self._port = parse_listen(listen)
        self.tls = None if http.tls is None else server_ssl_context(http.tls)
        self.progress = progress
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = _IngestCollector(progress, clock)
        self.registry.register(self.collector)
        self.flush_duration = Histogram(
            "burnrate_ingest_flush_duration_seconds",
            "Wall time of one flush: drain, produce and commit the transaction",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.auth = auth = BearerAuth.from_config(http)
        self.on_reload: Callable[[str], Awaitable[ReloadAnswer]] | None = None
        """Reloads the config for `POST /-/reload`, given who asked; None: 404."""
        app = web.Application(middlewares=[auth.middleware()] if auth.enabled else [])
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_post("/-/reload", self._reload)
        self._runner = web.AppRunner(app, access_log=None)
        self._site: web.TCPSite | None = None

    @property
    def port(self) -> int:
        return self._port

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._port, ssl_context=self.tls)
        await site.start()
        self._site = site
        server: Any = site._server  # the bound port when listening on port 0
        sockets = getattr(server, "sockets", None)
        if sockets:
            self._port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "role": "ingest"})

    async def _readyz(self, request: web.Request) -> web.Response:
        status = self.progress().status
        r = readiness(status)
        body: dict[str, object] = {"ready": r.ready, "reason": r.reason, "role": "ingest"}
        if status is not None:
            body["partitions"] = [f"{t}:{p}" for t, p in status.assigned]
            body["last_fetch_age_s"] = status.last_fetch_age_s
        return web.Response(
            body=msgspec.json.encode(body),
            status=200 if r.ready else 503,
            content_type="application/json",
        )

    async def _reload(self, request: web.Request) -> web.Response:
        return await reload_response(self.on_reload, request)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE}
        )
