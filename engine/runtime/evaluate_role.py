"""`burnrate run --role evaluate`: a worker of the consumer group on the counts topic.

Ingest workers write count deltas keyed by service to the counts topic in transactions
(engine.core.deltas); evaluate workers share its partitions in one consumer group
(`kafka.scale.evaluate_group_id`, read_committed: an aborted transaction's deltas are
never seen). A worker owns the SLOs of the partitions it is assigned
(engine.adapters.kafka.partitions, the producer's own placement; a service's SLOs share
a partition) and keeps a partition engine for each (engine.runtime.partition_engine):
evaluator, alert delivery, gate overrides, incident book, applied offset. Event time
moves only by the records, never by a clock, so a partition's transitions are a
function of its log.

State lives in the compacted changelog topic (engine.adapters.kafka.changelog), one
record per partition holding the snapshot and the offset it covers: written every
`kafka.scale.snapshot_interval`, when a partition is revoked and at shutdown. On
assignment the worker reads the newest snapshot of that partition, loads it, seeks the
counts partition to its offset (no snapshot: from the start), resends what it had not
delivered, and records itself as the partition's owner. So a partition that moves keeps
its counts and alert state (a firing alert does not fire again; its resolve comes from
the new owner), and after a kill -9 the counts are exact: the next owner reads on from
the offset of the last snapshot, which the snapshot holds the records before. Group
offsets are not used for this (nothing is committed to the group): the snapshot's
offset is the only position.

A partition revoked and given back to the same worker in the next assignment keeps its
engine (nobody else can have read it in between); one given to another worker is
closed after the assignment that says so.

Served over HTTP by the single process's server over the owned partitions
(engine.runtime.evaluate_http, engine.adapters.http.partitioned): `/metrics` with the
series of the owned SLOs only, so the workers' /metrics partition the SLOs, `/v1` for
the owned SLOs and a redirect to the owner for the others (the gates of the owned
services too, engine.adapters.http.partitioned_gates), incidents over a store the
workers share (engine.runtime.evaluate_incidents), `/readyz` once the first
assignment is restored and the broker answers fetches. `status()` is the consumer's
progress in the single process's shape (engine.adapters.kafka.status).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

from engine.adapters.alerts.sinks import Sink, build_sinks
from engine.adapters.kafka.changelog import (
    OWNER_KEY,
    STATE_KEY,
    ChangelogReader,
    ChangelogWriter,
    ensure_topics,
)
from engine.adapters.kafka.partitions import slo_partitions
from engine.adapters.kafka.settings import kafka_client_kwargs
from engine.adapters.kafka.status import SourceStatus
from engine.core.config import Config
from engine.core.durations import parse_duration_s
from engine.core.evaluator import Evaluator
from engine.core.partition_counts import subset_config
from engine.core.reload import Reloaded, ended_alerts, reload
from engine.runtime.evaluate_http import evaluate_http
from engine.runtime.evaluate_incidents import check_shared_store
from engine.runtime.evaluate_reload import EvaluateReloader
from engine.runtime.partition_engine import PartitionEngine

__all__ = ["EvaluateWorker", "run_evaluate"]

log = logging.getLogger("burnrate.runtime.evaluate_role")

POLL_MS: Final = 200
MAX_RECORDS: Final = 10_000
OWNERS_REFRESH_S: Final = 10.0
START_RETRY_MAX_S: Final = 10.0
SHUTDOWN_TIMEOUT_S: Final = 10.0
LAG_REFRESH_S: Final = 1.0
REVOKE_INCIDENTS_S: Final = 2.0
"""How long a revoked partition's incident updates may take to reach the store before
the rebalance goes on (the next owner reads them there)."""

SinksFactory = Callable[[Config, str], Sequence[Sink]]


def _default_sinks(config: Config, external_url: str) -> Sequence[Sink]:
    return build_sinks(config, external_url, clock=time.time)


@dataclass(frozen=True)
class _Changelog:
    """The changelog's clients: state and owner writes, assignment reads, owner reads."""

    writer: ChangelogWriter
    reader: ChangelogReader
    owners: ChangelogReader


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: EvaluateWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.worker.revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.worker.assigned(list(assigned))


class EvaluateWorker:
    """One evaluate worker: its partition engines, the group consumer, the changelog."""

    def __init__(
        self,
        config: Config,
        *,
        listen: str | None = None,
        advertise: str | None = None,
        sinks: SinksFactory = _default_sinks,
    ) -> None:
        self.config = config
        self.scale = config.kafka.scale
        self.topic = self.scale.counts_topic
        self.client = kafka_client_kwargs(config.kafka)  # ConfigError: bad TLS/SASL
        self.http, self.metrics, self.served, self.incidents = evaluate_http(
            self, listen or config.http.listen
        )  # ConfigError: bad TLS or tokens, a store's password that cannot be read
        self._advertise = advertise
        self._sinks = sinks
        self.owned: dict[int, PartitionEngine] = {}
        """The engines of the partitions assigned now, by counts partition."""
        self._parked: dict[int, PartitionEngine] = {}
        """Revoked, snapshot written, kept until the next assignment says where they go."""
        self.partitions = 0
        """Partitions of the counts topic (0 before start)."""
        self.assignment: set[int] = set()
        """The counts partitions of the last assignment (those without SLOs too)."""
        self._where: dict[str, int] = {}
        self.owners: dict[int, str] = {}
        """Partition -> owner URL, as the changelog said when last read."""
        self.url = ""
        self.ready = asyncio.Event()
        """Set once the first assignment is restored."""
        self.snapshots_written = 0
        self.records_consumed = 0
        """Counts records applied; a record the engine of its partition had already applied
        (fetched again) is not counted, one read again after a restore is."""
        self._positions: dict[int, int] = {}
        """Owned partition -> the consumer's position, past transaction markers."""
        self._retired: dict[tuple[str, str], int] = {}
        """Delivery outcomes of the engines closed here (their partitions moved on)."""
        self._closing_engines: set[PartitionEngine] = set()
        self._failed: BaseException | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self.rebalancing = asyncio.Lock()
        """Held while partitions are revoked or assigned, and by a reload."""
        self.stopping = False
        self._consumer: AIOKafkaConsumer | None = None
        self._log: _Changelog | None = None

    @property
    def _changelog(self) -> _Changelog:
        assert self._log is not None, "used before Kafka started"
        return self._log

    # -- what the HTTP layer reads ---------------------------------------------------

    def engines(self) -> list[Evaluator]:
        """The evaluators of the owned partitions, by partition."""
        return [self.owned[p].evaluator for p in sorted(self.owned)]

    def engine_of(self, slo: str) -> PartitionEngine | None:
        """The engine of `slo`'s partition, when this worker owns it."""
        p = self._where.get(slo)
        return None if p is None else self.owned.get(p)

    def evaluator_of(self, slo: str) -> Evaluator | None:
        """The evaluator holding `slo`, when this worker owns it."""
        engine = self.engine_of(slo)
        return None if engine is None else engine.evaluator

    async def keep(self, slo: str) -> bool:
        """An override of `slo`'s service was set or ended, or a change taken, over
        HTTP: the partition's snapshot is written before the route answers, so it
        outlives a kill of this worker. False when it could not be written (the next
        save retries)."""
        engine = self.engine_of(slo)
        if engine is None:
            return False
        engine.edited()
        if engine.incidents is not None:  # a change taken goes to the open incident
            engine.incidents.changes_taken()
        if self._log is None:
            return False  # not started: the first save writes it
        return await self._save(engine, "override")

    def offsets(self) -> dict[int, int]:
        """Per owned partition, the next counts offset its engine applies."""
        return {p: e.offset for p, e in self.owned.items()}

    def partition_of(self, slo: str) -> int:
        """The counts partition of `slo` (-1: no SLO of that name, or before start)."""
        return self._where.get(slo, -1)

    def status(self) -> SourceStatus | None:
        """The consumer's progress: the lag of each owned partition is its highwater
        minus the consumer's position (noted once a second, never behind the applied
        offset); running once the first assignment is restored."""
        consumer = self._consumer
        if consumer is None:
            return None
        newest: int | None = None
        lag: dict[tuple[str, int], int] = {}
        for p, engine in self.owned.items():
            tp = TopicPartition(self.topic, p)
            ts = consumer.last_poll_timestamp(tp)
            if ts is not None and (newest is None or ts > newest):
                newest = ts
            hw = consumer.highwater(tp)
            if hw is not None:
                pos = max(self._positions.get(p, engine.offset), engine.offset)
                lag[(self.topic, p)] = max(hw - pos, 0)
        at = None if newest is None else newest / 1000.0
        return SourceStatus(
            assigned=tuple((self.topic, p) for p in sorted(self.assignment)),
            last_fetch_age_s=None if at is None else max(time.time() - at, 0.0),
            last_fetch_at=at,
            lag=lag,
            records_consumed=self.records_consumed,
            running=self.ready.is_set(),
        )

    def delivery_stats(self) -> dict[tuple[str, str], int]:
        """Delivery outcomes (receiver, outcome) of every engine this worker ran: the
        owned, parked and closing ones, and those closed (so the counters never go
        down when a partition leaves)."""
        total = dict(self._retired)
        for engine in {*self.owned.values(), *self._parked.values(), *self._closing_engines}:
            for key, n in engine.delivery.stats().items():
                total[key] = total.get(key, 0) + n
        return total

    def owner_of(self, slo: str) -> str | None:
        """The URL of the worker owning `slo` (this one's when it is here), as far as
        known; None for an unknown SLO or a partition nobody has claimed yet."""
        p = self._where.get(slo)
        if p is None:
            return None
        if p in self.owned:
            return self.url
        return self.owners.get(p)

    # -- running ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, then snapshot every owned partition and leave.
        IncidentStoreError before serving when the incident store cannot be used."""
        if self.incidents is not None:
            await self.incidents.start()
        try:
            await self._run(stop)
        finally:
            if self.incidents is not None:
                await self.incidents.close()

    async def _run(self, stop: asyncio.Event) -> None:
        await self.http.start()
        self.http.warn_if_open()
        self.url = self._advertised_url()
        log.info(
            "listening on %s", self.url, extra={"data": {"event": "listening", "url": self.url}}
        )
        tasks: list[asyncio.Task[None]] = []
        try:
            if not await self._start_kafka(stop):
                return
            tasks.append(asyncio.create_task(self._refresh_owners(stop), name="owners"))
            await self._consume(stop)
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            await self._shutdown()
        if self._failed is not None:
            raise self._failed

    def _advertised_url(self) -> str:
        if self._advertise:
            return self._advertise
        host = self.http.host
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()
        if ":" in host:
            host = f"[{host}]"
        scheme = "http" if self.http.tls is None else "https"
        return f"{scheme}://{host}:{self.http.port}"

    async def _start_kafka(self, stop: asyncio.Event) -> bool:
        delay = 0.5
        while not stop.is_set():
            try:
                await self._start_kafka_once()
                return True
            except KafkaError as exc:
                log.warning("cannot reach Kafka (%r); retrying in %.1fs", exc, delay)
                await self._close_kafka()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stop.wait()
            delay = min(delay * 2, START_RETRY_MAX_S)
        return False

    async def _start_kafka_once(self) -> None:
        scale = self.scale
        self.partitions = await ensure_topics(
            self.client, scale.counts_topic, scale.counts_partitions, scale.changelog_topic
        )
        self._where = slo_partitions(self.config, self.partitions)
        # new clients for each attempt: a stopped aiokafka client does not start again
        self._log = _Changelog(
            ChangelogWriter(self.client, scale.changelog_topic),
            ChangelogReader(self.client, scale.changelog_topic),
            ChangelogReader(self.client, scale.changelog_topic),
        )
        await self._log.writer.start()
        await self._log.reader.start()
        await self._log.owners.start()
        self._consumer = AIOKafkaConsumer(
            **self.client,
            group_id=scale.evaluate_group_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            client_id=f"burnrate-evaluate-{socket.gethostname()}",
        )
        await self._consumer.start()
        self._consumer.subscribe([self.topic], listener=_Listener(self))
        log.info(
            "evaluate worker joined %s on %s (%d partitions)",
            scale.evaluate_group_id,
            self.topic,
            self.partitions,
            extra={"data": {"event": "consumer_started", "partitions": self.partitions}},
        )

    async def _consume(self, stop: asyncio.Event) -> None:
        consumer = self._consumer
        assert consumer is not None
        loop = asyncio.get_running_loop()
        interval = parse_duration_s(self.scale.snapshot_interval)
        next_save = loop.time() + interval
        next_lag = loop.time()
        while not stop.is_set() and self._failed is None:
            if loop.time() >= next_lag:  # as one process's tick: the health figures move
                await self._note_positions(consumer)
                self.metrics.invalidate()
                next_lag = loop.time() + LAG_REFRESH_S
            batches = await consumer.getmany(timeout_ms=POLL_MS, max_records=MAX_RECORDS)
            # No await from here to the periodic save: no snapshot and no rebalance
            # can see a batch half applied.
            applied = False
            for tp, records in batches.items():
                engine = self.owned.get(tp.partition)
                if engine is None:
                    continue
                self.metrics.fetch_batch_records.observe(len(records))
                self.records_consumed += sum(1 for rec in records if rec.offset >= engine.offset)
                t0 = time.perf_counter()
                engine.apply_batch([(rec.offset, rec.value) for rec in records])
                self.metrics.evaluation_duration.observe(time.perf_counter() - t0)
                self.served.observe(tp.partition)
                applied = True
            if applied:
                self.metrics.invalidate()
            if loop.time() >= next_save:
                await self._save_all("periodic")
                next_save = loop.time() + interval

    async def _note_positions(self, consumer: AIOKafkaConsumer) -> None:
        """The consumer's position of each owned partition, for the lag: it is past the
        commit markers, which the applied offset never passes (each transaction's marker
        takes an offset of its own)."""
        positions: dict[int, int] = {}
        for p in list(self.owned):
            try:
                async with asyncio.timeout(0.05):  # immediate unless a reset is pending
                    positions[p] = await consumer.position(TopicPartition(self.topic, p))
            except (TimeoutError, KafkaError, AssertionError, IllegalStateError):
                continue
        self._positions = positions

    async def _save(self, engine: PartitionEngine, reason: str, *, force: bool = False) -> bool:
        """Write the engine's snapshot, unless nothing changed since the last one."""
        if (
            not force
            and engine.saved_offset == engine.offset
            and engine.saved_edits == engine.edits
            and not engine.delivery.undelivered()
        ):
            return True
        offset, changes = engine.offset, engine.edits
        data = engine.snapshot()
        try:
            await self._changelog.writer.write(engine.partition, STATE_KEY, data)
        except KafkaError as exc:
            log.warning(
                "partition %d: snapshot not written (%s): %r", engine.partition, reason, exc
            )
            return False
        engine.saved_offset = offset
        engine.saved_edits = changes
        self.snapshots_written += 1
        log.debug("partition %d: snapshot at offset %d (%s)", engine.partition, offset, reason)
        return True

    async def _save_all(self, reason: str) -> None:
        for engine in list(self.owned.values()):
            await self._save(engine, reason)

    # -- rebalances ------------------------------------------------------------------

    async def revoked(self, revoked: list[TopicPartition]) -> None:
        """Before a rebalance: snapshot each partition that goes, and park its engine."""
        async with self.rebalancing:
            await self._revoke(revoked)

    async def _revoke(self, revoked: list[TopicPartition]) -> None:
        for tp in revoked:
            engine = self.owned.pop(tp.partition, None)
            if engine is None:
                continue
            await self._save(engine, "revoke")
            if engine.incidents is not None:  # the next owner reads the store
                await engine.incidents.written(REVOKE_INCIDENTS_S)
            self._parked[tp.partition] = engine

    async def assigned(self, assigned: list[TopicPartition]) -> None:
        """After a rebalance: an engine for each partition, restored from its changelog
        (or kept, if it was parked here), and the counts read on from its offset."""
        try:
            async with self.rebalancing:
                await self._assign([tp.partition for tp in assigned if tp.topic == self.topic])
        except Exception as exc:  # the supervisor: a partition we cannot restore stops us
            log.exception("cannot take the assigned partitions; stopping")
            self._failed = exc

    async def _assign(self, partitions: list[int]) -> None:
        consumer = self._consumer
        assert consumer is not None
        mine = set(partitions)
        self.assignment = mine
        for p in [p for p in self._parked if p not in mine]:
            self._close_later(self._parked.pop(p))
        fresh = [p for p in sorted(mine) if p not in self._parked]
        latest = await self._changelog.reader.read_latest(fresh)
        slos: dict[int, list[str]] = {}
        for slo in self.config.slos:
            slos.setdefault(self._where[slo.name], []).append(slo.name)
        idle = [TopicPartition(self.topic, p) for p in sorted(mine) if p not in slos]
        if idle:  # no SLO of this config lives there: nothing to read
            consumer.pause(*idle)
        for p in sorted(mine):
            if p not in slos:
                continue
            engine = self._parked.pop(p, None)
            if engine is None:
                engine = await self._engine(p, slos[p], latest[p].get(STATE_KEY))
            self.owned[p] = engine
            consumer.seek(TopicPartition(self.topic, p), engine.offset)
        for p in sorted(mine):
            self.owners[p] = self.url
            try:
                await self._changelog.writer.write(p, OWNER_KEY, self.url.encode())
            except KafkaError as exc:  # only where others look this partition up
                log.warning("partition %d: owner record not written: %r", p, exc)
        log.info(
            "owning counts partitions %s",
            sorted(mine),
            extra={"data": {"event": "partitions_assigned", "partitions": sorted(mine)}},
        )
        self.ready.set()

    async def _engine(self, p: int, slos: list[str], snapshot: bytes | None) -> PartitionEngine:
        """A started engine for partition `p` over `slos`, restored from `snapshot` when
        it fits (else from the start of the partition)."""
        engine = PartitionEngine(
            p, self.config, slos, self._sinks(self.config, self.url), partitions=self.partitions
        )
        if self.incidents is not None:
            engine.incidents = self.incidents.recorder(engine)
        if snapshot is not None and engine.restore(snapshot):
            log.info(
                "partition %d restored from its changelog at offset %d",
                p,
                engine.offset,
                extra={
                    "data": {"event": "partition_restored", "partition": p, "offset": engine.offset}
                },
            )
        await engine.start()
        return engine

    async def reconfigure(self, config: Config) -> list[Reloaded]:
        """Evaluate `config` from now on (a reload, engine.runtime.evaluate_reload): each
        owned and parked partition's evaluator carries the state of its SLOs that did
        not change (engine.core.reload); a partition left without SLOs ends its alerts
        and is paused; an assigned partition that now holds SLOs is taken up (from its
        changelog snapshot, if one fits). ValueError (nothing changed) when a state
        cannot be carried. Called between two batches, not during a rebalance."""
        where = slo_partitions(config, self.partitions)
        placed: dict[int, list[str]] = {}
        for slo in config.slos:
            placed.setdefault(where[slo.name], []).append(slo.name)
        held = {**self._parked, **self.owned}
        plans = {  # every new evaluator first: a ValueError leaves everything as it was
            p: reload(engine.evaluator, subset_config(config, placed[p]))
            for p, engine in held.items()
            if p in placed
        }
        consumer = self._consumer
        for p, engine in held.items():
            plan = plans.get(p)
            if plan is not None:
                engine.use(plan.evaluator, plan.ended)
                continue
            engine.ended(ended_alerts(engine.evaluator, set(engine.evaluator.names)))
            self.owned.pop(p, None)
            self._parked.pop(p, None)
            self._close_later(engine)
            if consumer is not None and p in self.assignment:
                consumer.pause(TopicPartition(self.topic, p))
        self.config = config
        self._where = where
        taken = [p for p in sorted(self.assignment) if p in placed and p not in self.owned]
        if taken and consumer is not None:
            latest = await self._changelog.reader.read_latest(taken)
            for p in taken:
                engine = await self._engine(p, placed[p], latest[p].get(STATE_KEY))
                self.owned[p] = engine
                tp = TopicPartition(self.topic, p)
                consumer.resume(tp)
                consumer.seek(tp, engine.offset)
        if self._log is not None:  # Kafka started: the next owner restores the new config
            for engine in list(self.owned.values()):
                await self._save(engine, "reload", force=True)
        return list(plans.values())

    def _close_later(self, engine: PartitionEngine) -> None:
        task = asyncio.create_task(engine.close(2.0), name=f"close-{engine.partition}")
        self._closing.add(task)
        self._closing_engines.add(engine)

        def closed(task: asyncio.Task[None]) -> None:
            self._closing.discard(task)
            self._closing_engines.discard(engine)
            for key, n in engine.delivery.stats().items():
                self._retired[key] = self._retired.get(key, 0) + n

        task.add_done_callback(closed)

    async def _refresh_owners(self, stop: asyncio.Event) -> None:
        """Keep `owners` up to date from the changelog's owner records."""
        while not stop.is_set():
            try:
                latest = await self._changelog.owners.read_latest(range(self.partitions))
            except KafkaError as exc:
                log.debug("owners not read: %r", exc)
            else:
                for p, keys in latest.items():
                    url = keys.get(OWNER_KEY)
                    if url is not None and p not in self.owned:
                        self.owners[p] = url.decode(errors="replace")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(OWNERS_REFRESH_S):
                    await stop.wait()

    # -- shutdown --------------------------------------------------------------------

    async def _shutdown(self) -> None:
        """Snapshot every owned partition, close the sinks, leave the group, stop HTTP:
        all within SHUTDOWN_TIMEOUT_S."""
        self.stopping = True
        engines = [*self.owned.values(), *self._parked.values()]
        try:
            async with asyncio.timeout(SHUTDOWN_TIMEOUT_S / 2):
                for engine in engines:
                    await engine.delivery.drain(0.5)
                for engine in self.owned.values():
                    await self._save(engine, "shutdown", force=True)
        except TimeoutError:
            log.warning("not every partition snapshot written before exit")
        self.owned.clear()
        self._parked.clear()
        await asyncio.gather(*(e.delivery.close(1.0) for e in engines))
        await asyncio.gather(*(e.incidents.close(1.0) for e in engines if e.incidents))
        if self._closing:
            await asyncio.wait(set(self._closing), timeout=2.0)
        await self._close_kafka()
        await self.http.stop()
        log.info("stopped", extra={"data": {"event": "stopped"}})

    async def _close_kafka(self) -> None:
        log_parts = (
            () if self._log is None else (self._log.owners, self._log.reader, self._log.writer)
        )
        for part in (self._consumer, *log_parts):
            if part is None:
                continue
            try:
                async with asyncio.timeout(3.0):
                    await part.stop()
            except (TimeoutError, KafkaError) as exc:
                log.warning("closing a Kafka client: %r", exc)
        self._consumer = None
        self._log = None


async def run_evaluate(
    config: Config,
    stop: asyncio.Event,
    *,
    listen: str | None = None,
    config_path: str | None = None,
    config_overrides: Callable[[Config], Config] | None = None,
    **options: Any,
) -> None:
    """The evaluate role until `stop` is set (`burnrate run --role evaluate`), reloading
    its config file on SIGHUP and `POST /-/reload` (engine.runtime.evaluate_reload).
    ConfigError for Kafka settings that cannot be used (TLS files, SASL secrets), or an
    incident store the workers cannot share."""
    check_shared_store(config)
    if config.kafka.changes_topic is not None:
        log.warning(
            "kafka.changes_topic is read by the single process (--role all) only; an "
            "evaluate worker takes changes posted to its /v1/changes",
            extra={"data": {"event": "changes_topic_not_read", "role": "evaluate"}},
        )
    worker = EvaluateWorker(config, listen=listen, **options)
    reloader = None
    if config_path is not None:
        reloader = EvaluateReloader(worker, config_path, config_overrides or (lambda c: c))
        worker.http.on_reload = reloader.reload
        worker.metrics.collector.config = reloader.metrics
    loop = asyncio.get_running_loop()
    if reloader is not None:
        loop.add_signal_handler(signal.SIGHUP, reloader.reload_soon)
    try:
        await worker.run(stop)
    finally:
        if reloader is not None:
            loop.remove_signal_handler(signal.SIGHUP)
