"""The ingest role (`burnrate run --role ingest`): source records in, count deltas out.

Theory of operation
-------------------
The worker consumes `kafka.topics` in group `kafka.group_id` with the single process's
source (engine.adapters.kafka.source: the same decoding, rejections, dead letters,
per-partition event time and watermark cap) into an evaluator of the same config, so
every event is accepted or rejected exactly as `burnrate run` would (future limit
against the wall clock, lateness against the watermark). Corrections are left to the
evaluate workers, which own the SLOs. The evaluator tells of every (event, SLO) pair it
counts (`on_counted`), and a `DeltaAggregator` sums them per (SLO column, second).

Every `kafka.scale.flush_interval` (wall clock), between two applied fetches
(`KafkaSource.settled`): event time advances with the wall clock as in `burnrate run`
(only as far as the source has consumed), the aggregator is drained, and the applied
offsets are read. Those deltas (one record per SLO, keyed by its partition key), a
heartbeat to every counts partition no delta goes to, and the offsets go out as one
Kafka transaction (engine.adapters.kafka.counts, which also says how predecessors are
fenced). The next fetches are applied while it commits.

Crash-only: a transaction that fails (fenced, the brokers gone past the timeouts, a
batch interrupted mid-apply) ends the worker with an error. The counts it holds are in
no committed transaction and its source offsets did not move, so a restart, reading
from the committed offsets with a fresh state, counts those records exactly once.
Rebalances: before partitions are revoked, the worker flushes (all it holds, whatever
partition it came from) and waits until the group coordinator shows the committed
offsets, so the next owner starts where these counts end; offsets are never committed
outside a transaction.

The record's watermark is the evaluator's (capped by the partition furthest behind, as
in `burnrate run`), and the wall clock when every partition is caught up: then all that
was produced up to now has been consumed. Before anything was consumed and while the
partitions are behind without events, no heartbeat is written.

A config reload (engine.runtime.ingest_reload) is a flush that changes the config on
its way (`reconfigure`): between the same two fetches, what was counted under the old
config is drained as the old SLOs' deltas under their old partition keys, and the
evaluator of the new config (`engine.core.reload`: the event-time clock and the
stream-wide counts carry over, so the watermark never goes back) takes the next fetch.
Those deltas go out in a transaction of their own before any flush of the new config,
so every event is counted once, under the SLOs of the config that classified it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from engine.adapters.http.auth import BearerAuth
from engine.adapters.http.ingest_metrics import IngestHttp, IngestProgress
from engine.adapters.http.listen import parse_listen
from engine.adapters.http.tokens import ApiToken
from engine.adapters.kafka.counts import CountsProducer, ensure_counts_topic
from engine.adapters.kafka.offsets import OffsetTracker
from engine.adapters.kafka.settings import kafka_client_kwargs
from engine.adapters.kafka.source import KafkaSource
from engine.core.config import Config
from engine.core.deltas import partition_keys
from engine.core.deltas_aggregate import DeltaAggregator, SloDelta
from engine.core.durations import parse_duration_s
from engine.core.evaluator import Evaluator
from engine.core.reload import Reloaded, reload
from engine.errors import BurnrateError
from engine.runtime.audit import config_digest
from engine.runtime.ingest_reload import IngestReloader

__all__ = ["IngestFailed", "IngestWorker", "default_worker_id"]

log = logging.getLogger("burnrate.runtime.ingest")

VISIBLE_TIMEOUT_S = 5.0
"""How long a revoke waits for the coordinator to show the offsets it committed."""


class IngestFailed(BurnrateError):
    """The worker cannot go on from its in-memory position (see the module docstring)."""


def default_worker_id(listen: str) -> str:
    """The host name and the HTTP port: stable across restarts of one deployment slot,
    different for two workers on one host."""
    _, port = parse_listen(listen)
    return f"{socket.gethostname()}-{port}"


def counting_config(config: Config) -> Config:
    """The config an ingest worker counts with: corrections are the evaluate side's, so
    every (event, SLO) pair reaches the counts."""
    return msgspec.structs.replace(config, corrections=[])


@dataclass(frozen=True, slots=True)
class _Batch:
    """What one transaction carries, read between two fetches."""

    keyed: list[tuple[str, SloDelta]]
    watermark_s: float | None
    offsets: dict[TopicPartition, int]
    consumer: Any


class _TransactionalOffsets(OffsetTracker):
    """Offsets committed only inside the counts transactions: the source's own commits
    (on revoke, at shutdown) do nothing, and every revoke asks for a flush first."""

    async def commit(
        self,
        partitions: Iterable[TopicPartition] | None,
        *,
        reason: str,
        timeout_s: float = 5.0,
    ) -> bool:
        return True

    def unsaved(self, tps: Iterable[TopicPartition]) -> bool:
        return True  # flush and wait for the offsets to show, whatever was applied


class IngestWorker:
    """One ingest worker of `config`. With `config_path` (the file `config` was read from,
    `config_source` its bytes, `config_overrides` what was applied to it), `reloader`
    reloads it (engine.runtime.ingest_reload) and HTTP serves `POST /-/reload`."""

    def __init__(
        self,
        config: Config,
        *,
        listen: str | None = None,
        worker_id: str | None = None,
        clock: Callable[[], float] = time.time,
        config_path: str | None = None,
        config_source: bytes | None = None,
        config_overrides: Callable[[Config], Config] | None = None,
    ) -> None:
        self.config = config
        self.listen = listen or config.http.listen
        self.worker_id = worker_id or default_worker_id(self.listen)
        self.clock = clock
        scale = config.kafka.scale
        self.flush_interval_s = parse_duration_s(scale.flush_interval)
        self.evaluator = Evaluator(counting_config(config))
        self._count_with(self.evaluator)
        self.source = KafkaSource(config, self.evaluator, clock=clock)
        self.offsets = _TransactionalOffsets()
        self.source.offsets = self.offsets  # before start: the listener takes it from there
        self.offsets.before_revoke = self._before_revoke
        self.kwargs: dict[str, Any] = {}
        self.producer: CountsProducer | None = None
        self.http = IngestHttp(self.listen, config.http, self.progress, clock)
        self.accepting = False
        """True from the end of the start until the stop: a reload is refused outside
        (nothing to flush the old counts to)."""
        self.reloader: IngestReloader | None = None
        if config_path is not None:
            self.reloader = IngestReloader(
                self,
                config_path,
                config_overrides or (lambda c: c),
                config_digest(config, config_source),
            )
            self.http.on_reload = self.reloader.reload
            self.http.collector.config = self.reloader.metrics
        self._committed: dict[TopicPartition, int] = {}
        self._flush_lock = asyncio.Lock()
        self._watermark_sent: float | None = None
        self._failed: BaseException | None = None

    def _count_with(self, ev: Evaluator) -> None:
        """Count with `ev`: a fresh aggregator of its columns, and its SLOs' keys."""
        self.evaluator = ev
        self.aggregator = DeltaAggregator(
            ev.column_slo,
            [s.name for s in ev.config_slos],
            [bool(s.group_by) for s in ev.config_slos],
            ev.group_of,
        )
        ev.on_counted = self.aggregator.add
        self.keys = partition_keys(ev.config)

    @property
    def transactional_id(self) -> str:
        return f"{self.config.kafka.scale.transactional_id_prefix}-{self.worker_id}"

    def progress(self) -> IngestProgress:
        p = self.producer
        return IngestProgress(
            status=self.source.status() if self.offsets.consumer is not None else None,
            rejected=dict(self.evaluator.rejected_counts()),
            deltas_produced=p.deltas_produced if p else 0,
            heartbeats_produced=p.heartbeats_produced if p else 0,
            transactions_committed=p.transactions_committed if p else 0,
            transactions_aborted=p.transactions_aborted if p else 0,
            watermark_s=self._watermark_sent,
        )

    async def start(self, transactional: bool = True) -> None:
        """Check or create the counts topic, fence predecessors (the producer first: see
        engine.adapters.kafka.counts), then join the group and serve HTTP. Raises
        CountsTopicError, TransactionsUnsupported, ConfigError, KafkaError, OSError."""
        scale = self.config.kafka.scale
        self.kwargs = kafka_client_kwargs(self.config.kafka)
        created = await ensure_counts_topic(
            self.kwargs, scale.counts_topic, scale.counts_partitions
        )
        if created:
            log.info(
                "created the counts topic %s with %d partitions",
                scale.counts_topic,
                scale.counts_partitions,
            )
        producer = CountsProducer(
            self.kwargs,
            topic=scale.counts_topic,
            partitions=scale.counts_partitions,
            transactional_id=self.transactional_id,
            group_id=self.config.kafka.group_id,
            transactional=transactional,
        )
        await producer.start()
        self.producer = producer
        await self.http.start()
        await self.source.start()
        self.accepting = True
        log.info(
            "ingest worker %s started (transactional id %s)",
            self.worker_id,
            self.transactional_id,
            extra={"data": {"event": "ingest_started", "worker_id": self.worker_id}},
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Consume and flush until `stop`; a last flush, then close. Raises IngestFailed
        (or the producer's error) when a flush fails."""
        consume = asyncio.create_task(self.source.run(stop), name="ingest-consume")
        flusher = asyncio.create_task(self._flush_loop(stop), name="ingest-flush")
        try:
            done, _ = await asyncio.wait({consume, flusher}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # a failed flush ends the worker
            stop.set()
            self.accepting = False
            await asyncio.gather(consume, flusher)
            if self._failed is not None:
                raise self._failed
            await self.flush()
        finally:
            stop.set()
            self.accepting = False
            for task in (consume, flusher):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(consume, flusher, return_exceptions=True)
            await self.close()

    async def close(self) -> None:
        await self.source.close()
        if self.producer is not None:
            await self.producer.stop()
        await self.http.stop()

    async def _flush_loop(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not stop.is_set():
            next_at += self.flush_interval_s
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(next_at - loop.time(), 0.0)):
                    await stop.wait()
            if stop.is_set():
                return
            await self.flush()
            if loop.time() > next_at + self.flush_interval_s:  # fell behind: no catching up
                next_at = loop.time()

    async def flush(self) -> None:
        """One transaction of what was counted since the last (see the module docstring)."""
        self._raise_failed()
        if self.producer is None:
            return
        async with self._flush_lock:
            t0 = time.perf_counter()
            async with self.source.settled() as applied:
                batch = self._collect(applied)
            await self._send(batch, t0)

    async def reconfigure(self, config: Config) -> Reloaded | None:
        """Count with `config` from the next fetch on (see the module docstring): what
        the old config counted goes out first, in a transaction of its own, under the
        old SLOs and keys. None, changing nothing, when the worker is not running (before
        its start, once its stop began). Raises ValueError when the state does not fit
        the new config (the old one stays; its counts are sent all the same), and
        IngestFailed when the transaction fails (the worker ends), ConfigError when its
        tokens cannot be read (nothing changed)."""
        self._raise_failed()
        tokens = BearerAuth.from_config(config.http).tokens
        async with self._flush_lock:
            if not self.accepting or self.producer is None:
                return None
            t0 = time.perf_counter()
            async with self.source.settled() as applied:
                batch = self._collect(applied)  # advances the old clock: carried below
                result: Reloaded | None = None
                refused: ValueError | None = None
                try:
                    result = reload(self.evaluator, counting_config(config))
                except ValueError as exc:
                    refused = exc
                else:
                    self._use(config, result.evaluator, tokens)
            await self._send(batch, t0)
        if refused is not None:
            raise refused
        return result

    def _use(self, config: Config, ev: Evaluator, tokens: tuple[ApiToken, ...]) -> None:
        """Point every reader of the evaluator and the config at the new ones (all
        synchronous, between two fetches: nothing here can fail half way)."""
        self.config = config
        self._count_with(ev)
        self.source.config = config
        self.source.evaluator = ev
        self.source.ingestor.evaluator = ev
        self.http.auth.tokens = tokens

    def _raise_failed(self) -> None:
        if self._failed is not None:
            raise IngestFailed(f"an earlier flush failed: {self._failed}")

    def _collect(self, applied: Mapping[tuple[str, int], int] | None) -> _Batch:
        """Between two fetches: move event time on, drain the counts and read the
        offsets they cover. Raises IngestFailed when a fetch was cut mid-apply."""
        if applied is None:
            self._failed = IngestFailed("a batch was interrupted while it was counted")
            raise self._failed
        now = self.clock()
        ev = self.evaluator
        cap = self.source.event_time_cap()
        ev.advance(now - ev.lateness_s, watermark_cap_s=cap)
        deltas = self.aggregator.drain()
        watermark = ev.watermark_s
        if cap is None:  # caught up: all produced until now is consumed
            watermark = max(watermark, now)
        consumer = self.offsets.consumer
        owned = set(consumer.assignment()) if consumer is not None else set()
        offsets = {
            tp: off
            for (t, p), off in applied.items()
            if (tp := TopicPartition(t, p)) in owned and self._committed.get(tp) != off
        }
        return _Batch(
            [(self.keys[d.slo], d) for d in deltas],
            watermark if math.isfinite(watermark) else None,
            offsets,
            consumer,
        )

    async def _send(self, batch: _Batch, t0: float) -> None:
        """Commit `batch` as one transaction (nothing when it says nothing new)."""
        producer = self.producer
        assert producer is not None
        wm, offsets = batch.watermark_s, batch.offsets
        if not batch.keyed and not offsets and (wm is None or wm == self._watermark_sent):
            return
        try:
            await producer.flush(batch.keyed, wm, offsets)
            if not producer.transactional and offsets and batch.consumer is not None:
                await batch.consumer.commit(dict(offsets))
        except (KafkaError, TimeoutError, OSError) as exc:
            self._failed = IngestFailed(f"the counts transaction failed: {exc!r}")
            raise self._failed from None
        self._committed.update(offsets)
        if wm is not None:
            self._watermark_sent = wm
        self.http.flush_duration.observe(time.perf_counter() - t0)

    async def _before_revoke(self, revoked: list[TopicPartition]) -> None:
        """Flush all that was counted, then wait until the coordinator shows the offsets
        of `revoked` (the next owner reads them as soon as the rebalance ends)."""
        try:
            await self.flush()
        except BaseException as exc:
            # The counts of the revoked partitions are lost with this worker: do not let
            # the rebalance go on as if they were committed. The run loop ends the worker.
            log.error("the flush before a revoke failed: %s", exc)
            raise
        consumer = self.offsets.consumer
        if consumer is None:
            return
        wanted = {tp: off for tp, off in self._committed.items() if tp in set(revoked)}
        await self._wait_visible(consumer, wanted)
        for tp in revoked:
            self._committed.pop(tp, None)

    async def _wait_visible(self, consumer: Any, wanted: Mapping[TopicPartition, int]) -> None:
        deadline = time.monotonic() + VISIBLE_TIMEOUT_S
        pending = dict(wanted)
        while pending and time.monotonic() < deadline:
            for tp, off in list(pending.items()):
                with contextlib.suppress(KafkaError, TimeoutError):
                    async with asyncio.timeout(1.0):
                        if await consumer.committed(tp) == off:
                            del pending[tp]
            if pending:
                await asyncio.sleep(0.02)
        if pending:
            log.warning(
                "the committed offsets of %s did not show within %.0fs of the revoke",
                ", ".join(f"{tp.topic}[{tp.partition}]" for tp in pending),
                VISIBLE_TIMEOUT_S,
            )
