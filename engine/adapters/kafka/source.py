"""The Kafka source: a consumer-group member that feeds record batches to the evaluator.

Theory of operation
-------------------
`KafkaSource.run()` loops on `getmany` in large batches. Each batch is decoded per
wire format (one msgspec call for the whole batch when every record is good), turned
into columns with the record timestamps as the `ts` fallback, sorted by event time (so
that records from partitions a little behind the others are not judged late against
events of the same batch) and ingested into the evaluator with the wall clock as `now`.
Decode rejections are counted on the evaluator and, when a dead-letter topic is set,
the raw records go there with headers naming where they came from and why.

Delivery is at least once. After a batch is applied (and its dead letters handed to
the broker), the next offset of every partition in it is remembered; those offsets are
committed by a background task every few seconds, from the rebalance listener before
partitions are revoked, and on shutdown. Nothing on the hot path waits for a commit,
and no commit failure escapes: it is logged and the offsets are committed next time
(or re-read after a rebalance, which costs duplicates, never losses).

Progress is what readiness is judged on (a consumer can sit in a group with no error
and fetch nothing, see the aiokafka issues in ANCHORS.md): the wall time of the last
fetch response, the assigned partitions and the per-partition lag. A partition whose
log now ends before our position (a broker that lost its data without answering
OFFSET_OUT_OF_RANGE) is read again from the earliest offset instead of fetching
nothing forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import operator
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from engine.adapters.kafka.settings import kafka_client_kwargs
from engine.adapters.kafka.status import SourceStatus
from engine.core.config import Config
from engine.core.decode import RecordDecoder, WireFormat
from engine.core.evaluator import Evaluator, Transition

__all__ = ["KafkaSource"]

log = logging.getLogger(__name__)

# Throughput over latency: the engine evaluates on a 1 s wall-clock cadence anyway, so
# letting the broker gather up to 100 ms of data per fetch costs nothing in detection
# time and cuts the number of round trips; per-partition and per-fetch byte limits are
# raised so a partition that is catching up comes back in a few large responses rather
# than many 1 MiB ones (the aiokafka default), and many records per poll amortise the
# per-batch decode and numpy work over as many records as possible.
FETCH_MAX_WAIT_MS = 100
MAX_PARTITION_FETCH_BYTES = 8 * 1024 * 1024
FETCH_MAX_BYTES = 64 * 1024 * 1024
MAX_POLL_RECORDS = 50_000
POLL_TIMEOUT_MS = 250
"""How long one `getmany` may block: bounds how late a stop request is seen."""

COMMIT_INTERVAL_S = 5.0
COMMIT_TIMEOUT_S = 5.0
DLQ_SEND_TIMEOUT_S = 30.0
LATE_WARNING_INTERVAL_S = 30.0
LAG_REFRESH_S = 1.0

TransitionsCallback = Callable[[list[Transition]], None]

_VALUE = operator.attrgetter("value")
_TIMESTAMP = operator.attrgetter("timestamp")


def _record_times_s(records: Sequence[Any]) -> npt.NDArray[np.float64]:
    """Kafka record timestamps in seconds (NaN where the broker gave none); only built
    when some event lacks its own `ts`."""
    ms = np.fromiter(map(_TIMESTAMP, records), dtype=np.float64, count=len(records))
    return np.where(ms >= 0, ms / 1000.0, np.nan)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commits applied offsets before partitions go; never waits for the consume loop."""

    def __init__(self, source: KafkaSource, consumer: Any) -> None:
        self._source = source
        self._consumer = consumer  # the source only gets it once start() returns

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        revoked = list(revoked)
        if revoked:
            await self._source.commit(revoked, reason="revoke")
        self._source._keep_positions(revoked)
        self._source._forget(revoked)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        assigned = list(assigned)
        self._source._seek_to_state(self._consumer, assigned)
        tps = sorted((tp.topic, tp.partition) for tp in assigned)
        log.info(
            "partitions assigned: %s",
            ", ".join(f"{t}[{p}]" for t, p in tps) or "none",
            extra={"data": {"event": "assigned", "partitions": [f"{t}:{p}" for t, p in tps]}},
        )


class KafkaSource:
    """Consumes `config.kafka.topics` in group `config.kafka.group_id` into `evaluator`."""

    def __init__(
        self,
        config: Config,
        evaluator: Evaluator,
        on_transitions: TransitionsCallback | None = None,
        *,
        clock: Callable[[], float] = time.time,
        max_poll_records: int = MAX_POLL_RECORDS,
        commit_interval_s: float = COMMIT_INTERVAL_S,
    ) -> None:
        self.config = config
        self.kafka = config.kafka
        self.evaluator = evaluator
        self.on_transitions = on_transitions
        self.clock = clock
        self.max_poll_records = max_poll_records
        self.commit_interval_s = commit_interval_s
        self._decoders: dict[WireFormat, RecordDecoder] = {}
        self._consumer: Any = None
        self._producer: Any = None
        self._applied: dict[TopicPartition, int] = {}
        """Next offset after the last applied record, per partition."""
        self._committed: dict[TopicPartition, int] = {}
        self._state_offsets: dict[TopicPartition, int] | None = None
        """With a state store: the offsets the evaluator's restored state covers, for
        partitions not (re)assigned since; None without one (today's behaviour)."""
        self.apply_lock = asyncio.Lock()
        """Held while a batch is applied: between its ingest and its `_applied` update
        the evaluator is ahead of the offsets, so a state snapshot must not be taken."""
        self.consistent = True
        """False when a batch was ingested but its offsets not recorded (cancelled)."""
        self._lag: dict[tuple[str, int], int] = {}
        self._lag_at = 0.0
        self._last_fetch_wall: float | None = None
        self._commit_task: asyncio.Task[None] | None = None
        self._running = False
        self.records_consumed = 0
        self.batch_sizes: list[int] = []
        """Records per non-empty fetch since last drained (by the metrics histogram)."""
        self.dead_lettered = 0
        self.dead_letter_failures = 0
        self.commit_failures = 0
        self._late_seen = 0
        self._late_warned_at = -float("inf")
        self._rejects_logged: Counter[str] = Counter()

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and join the group. Raises KafkaError when the brokers cannot be reached."""
        kwargs = kafka_client_kwargs(self.kafka)
        consumer = AIOKafkaConsumer(
            group_id=self.kafka.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES,
            fetch_max_bytes=FETCH_MAX_BYTES,
            max_poll_records=self.max_poll_records,
            client_id="burnrate",
            **kwargs,
        )
        consumer.subscribe(topics=list(self.kafka.topics), listener=_Listener(self, consumer))
        if self.kafka.dead_letter_topic:
            producer = AIOKafkaProducer(client_id="burnrate-dlq", acks="all", **kwargs)
            await producer.start()
            self._producer = producer
        try:
            await consumer.start()
        except BaseException:  # KafkaError, or cancelled by a stop during startup
            await self._stop_clients(consumer, 2.0)
            raise
        self._consumer = consumer
        self._running = True

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; what was fetched is applied before returning."""
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError("KafkaSource.start() first")
        self._commit_task = asyncio.create_task(self._commit_loop(stop), name="kafka-commit")
        error_logged_at = -float("inf")
        try:
            while not stop.is_set():
                try:
                    data = await consumer.getmany(
                        timeout_ms=POLL_TIMEOUT_MS, max_records=self.max_poll_records
                    )
                except KafkaError as exc:
                    now = time.monotonic()
                    if now - error_logged_at > LATE_WARNING_INTERVAL_S:
                        log.warning("fetch failed: %r; retrying", exc)
                        error_logged_at = now
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):
                            await stop.wait()
                    continue
                if self._note_fetch():
                    await self._rewind_beyond_end()
                if data:
                    await self._apply(data)
        finally:
            self._running = False
            if self._commit_task is not None:
                self._commit_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._commit_task

    async def close(self, timeout_s: float = 8.0) -> None:
        """Commit what was applied and leave the group, within `timeout_s` whatever happens."""
        deadline = time.monotonic() + timeout_s
        if self._consumer is not None and self._applied:
            await self.commit(None, reason="shutdown", timeout_s=min(3.0, timeout_s / 2))
        consumer, self._consumer = self._consumer, None
        await self._stop_clients(consumer, max(deadline - time.monotonic(), 0.5))

    async def _stop_clients(self, consumer: Any, timeout_s: float) -> None:
        producer, self._producer = self._producer, None
        share = timeout_s / 2 if producer is not None and consumer is not None else timeout_s
        for client, what in ((consumer, "consumer"), (producer, "dead-letter producer")):
            if client is None:
                continue
            try:
                async with asyncio.timeout(share):
                    await client.stop()
            except TimeoutError:
                log.warning("kafka %s did not stop within %.1fs; abandoning it", what, share)
            except KafkaError as exc:
                log.warning("kafka %s stopped with an error: %r", what, exc)
            except asyncio.CancelledError:
                # aiokafka 0.14's Fetcher.close() re-raises the CancelledError of a fetch
                # task it cancels while that task sleeps in its retry backoff (brokers
                # down). Only swallow it when nobody is cancelling us, and close the
                # network client that stop() did not reach.
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                log.warning("kafka %s stop was interrupted (brokers unreachable)", what)
                inner = getattr(client, "_client", None)
                if inner is not None:
                    with contextlib.suppress(TimeoutError, KafkaError, OSError):
                        async with asyncio.timeout(1.0):
                            await inner.close()

    # -- batches ---------------------------------------------------------------------

    def _decoder(self, fmt: WireFormat) -> RecordDecoder:
        dec = self._decoders.get(fmt)
        if dec is None:
            dec = self._decoders[fmt] = RecordDecoder(fmt)
        return dec

    async def _apply(self, data: Mapping[TopicPartition, Sequence[Any]]) -> None:
        """Apply one fetch: decode per format, ingest, dead-letter, remember offsets."""
        async with self.apply_lock:
            self.consistent = False
            await self._apply_locked(data)
            self.consistent = True

    async def _apply_locked(self, data: Mapping[TopicPartition, Sequence[Any]]) -> None:
        by_format: dict[WireFormat, list[Any]] = {}
        n = 0
        for tp, records in data.items():
            if records:
                fmt: WireFormat = self.kafka.formats.get(tp.topic, self.kafka.format)
                by_format.setdefault(fmt, []).extend(records)
                n += len(records)
        now = self.clock()
        ev = self.evaluator
        transitions: list[Transition] = []
        dead: list[tuple[Any, str, str]] = []
        for fmt, records in by_format.items():
            batch = self._decoder(fmt).decode_batch(list(map(_VALUE, records)))
            for idx, reason, detail in batch.rejected:
                ev.rejected[reason] += 1
                dead.append((records[idx], reason, detail))
            if not batch.events:
                continue
            cols = ev.classifier.columns(
                batch.events, batch.record_index, functools.partial(_record_times_s, records)
            )
            order = np.argsort(cols.ts_s, kind="stable")
            transitions += ev.ingest(cols.take(order), now_s=now)
        self.records_consumed += n
        self.batch_sizes.append(n)
        if dead:
            self._log_rejects(dead)
            if self._producer is not None:
                await self._dead_letter(dead)
        for tp, records in data.items():
            if records:
                self._applied[tp] = records[-1].offset + 1
        self._warn_late()
        if transitions and self.on_transitions is not None:
            self.on_transitions(transitions)

    async def _dead_letter(self, dead: list[tuple[Any, str, str]]) -> None:
        topic = self.kafka.dead_letter_topic
        assert topic is not None
        assert self._producer is not None
        futures = []
        try:
            for record, reason, _detail in dead:
                headers = [
                    ("source_topic", record.topic.encode()),
                    ("source_partition", str(record.partition).encode()),
                    ("source_offset", str(record.offset).encode()),
                    ("reason", reason.encode()),
                ]
                futures.append(
                    await self._producer.send(
                        topic,
                        value=record.value if record.value is not None else b"",
                        key=record.key,
                        headers=headers,
                        timestamp_ms=record.timestamp if record.timestamp >= 0 else None,
                    )
                )
            async with asyncio.timeout(DLQ_SEND_TIMEOUT_S):
                await asyncio.gather(*futures)
            self.dead_lettered += len(dead)
        except (KafkaError, TimeoutError) as exc:
            # Counted as rejected either way; losing the raw copy must not stop the stream.
            self.dead_letter_failures += len(dead)
            log.error("dead-letter delivery to %s failed for %d records: %r", topic, len(dead), exc)

    def _log_rejects(self, dead: list[tuple[Any, str, str]]) -> None:
        # One line the first time a reason is seen, then one per 1000 (never per record).
        for record, reason, detail in dead:
            seen = self._rejects_logged[reason]
            self._rejects_logged[reason] += 1
            if seen % 1000 == 0:
                log.warning(
                    "rejected record %s[%d]@%d: %s (%s); %d so far for this reason",
                    record.topic,
                    record.partition,
                    record.offset,
                    reason,
                    detail[:200],
                    seen + 1,
                )

    def _warn_late(self) -> None:
        late = self.evaluator.rejected["too_late"]
        if late == self._late_seen:
            return
        now = time.monotonic()
        if now - self._late_warned_at >= LATE_WARNING_INTERVAL_S:
            log.warning(
                "%d events arrived later than the allowed lateness (%gs) and were not counted",
                late - self._late_seen,
                self.evaluator.lateness_s,
                extra={"data": {"event": "late_events", "count": late - self._late_seen}},
            )
            self._late_seen = late
            self._late_warned_at = now

    # -- offsets ---------------------------------------------------------------------

    def use_state_offsets(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Read from `offsets` (those of a restored evaluator snapshot) instead of the
        group's committed ones: they match the restored counts, so records counted
        before the snapshot are not counted again and none after it are skipped. Also
        keeps, across revocations, the position up to which this evaluator counted."""
        self._state_offsets = {TopicPartition(t, p): off for (t, p), off in offsets.items()}

    def state_offsets(self) -> dict[tuple[str, int], int]:
        """Per partition, the offset up to which the evaluator has counted records: the
        applied ones, and the restored ones of partitions not consumed since."""
        merged = dict(self._state_offsets or {})
        merged.update(self._applied)
        return {(tp.topic, tp.partition): off for tp, off in merged.items()}

    def _seek_to_state(self, consumer: Any, assigned: Iterable[TopicPartition]) -> None:
        """On assignment, before any fetch: position partitions the state covers."""
        if not self._state_offsets:
            return
        for tp in assigned:
            off = self._state_offsets.get(tp)
            if off is None:
                continue
            consumer.seek(tp, off)
            self._applied[tp] = off
            log.info(
                "%s[%d]: resuming at offset %d from the state snapshot",
                tp.topic,
                tp.partition,
                off,
                extra={"data": {"event": "seek_state", "partition": f"{tp.topic}:{tp.partition}"}},
            )

    def _keep_positions(self, tps: Iterable[TopicPartition]) -> None:
        """Revoked partitions: the evaluator still holds what was counted from them."""
        if self._state_offsets is None:
            return
        for tp in tps:
            if tp in self._applied:
                self._state_offsets[tp] = self._applied[tp]

    def _forget(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            self._applied.pop(tp, None)
            self._committed.pop(tp, None)
            self._lag.pop((tp.topic, tp.partition), None)

    async def commit(
        self,
        partitions: Iterable[TopicPartition] | None,
        *,
        reason: str,
        timeout_s: float = COMMIT_TIMEOUT_S,
    ) -> bool:
        """Commit applied offsets (of `partitions`, or all) not committed yet; never raises."""
        consumer = self._consumer
        if consumer is None:
            return False
        wanted = (
            self._applied
            if partitions is None
            else {tp: self._applied[tp] for tp in partitions if tp in self._applied}
        )
        offsets = {tp: off for tp, off in wanted.items() if self._committed.get(tp) != off}
        if not offsets:
            return True
        try:
            async with asyncio.timeout(timeout_s):
                await consumer.commit(offsets)
        except (KafkaError, TimeoutError) as exc:
            self.commit_failures += 1
            log.warning("offset commit (%s) failed: %r; will retry", reason, exc)
            return False
        self._committed.update(offsets)
        log.debug("committed %d partitions (%s)", len(offsets), reason)
        return True

    async def _commit_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.commit_interval_s):
                    await stop.wait()
            if stop.is_set():
                return  # the final commit belongs to close()
            await self.commit(None, reason="periodic")

    # -- progress --------------------------------------------------------------------

    def _note_fetch(self) -> bool:
        """Record when the broker last answered a fetch and refresh the lag (at most 1/s).

        True when the lag was refreshed.
        """
        consumer = self._consumer
        assigned = consumer.assignment()
        newest: int | None = None
        for tp in assigned:
            ts = consumer.last_poll_timestamp(tp)
            if ts is not None and (newest is None or ts > newest):
                newest = ts
        if newest is not None:
            self._last_fetch_wall = newest / 1000.0
        mono = time.monotonic()
        if mono - self._lag_at < LAG_REFRESH_S:
            return False
        self._lag_at = mono
        lag: dict[tuple[str, int], int] = {}
        for tp in assigned:
            hw = consumer.highwater(tp)
            pos = self._applied.get(tp)
            if pos is None:
                pos = self._committed.get(tp)
            if hw is not None and pos is not None:
                lag[(tp.topic, tp.partition)] = max(hw - pos, 0)
            elif hw is not None and hw == 0:
                lag[(tp.topic, tp.partition)] = 0
        self._lag = lag
        return True

    async def _rewind_beyond_end(self) -> None:
        """Read again from the earliest offset any partition whose log ends before us.

        Kafka answers a fetch past the end of the log with OFFSET_OUT_OF_RANGE and
        aiokafka then resets the position. A broker that lost its log and answers such
        fetches with no records and no error instead (Tansu restarted on memory storage,
        which also accepts the stale offsets our revoke commit hands it) would leave the
        consumer fetching nothing forever while every fetch succeeds: stuck, yet ready.
        """
        consumer = self._consumer
        for tp in list(consumer.assignment()):  # awaits below: a snapshot
            hw = consumer.highwater(tp)
            if hw is None:
                continue
            try:
                async with asyncio.timeout(0.05):  # immediate unless a reset is pending
                    position = await consumer.position(tp)
            except (TimeoutError, KafkaError):
                continue
            if position <= hw:
                continue
            log.warning(
                "%s[%d]: the log ends at offset %d, before our position %d (the broker "
                "lost data or the topic was re-created); reading it from the earliest offset",
                tp.topic,
                tp.partition,
                hw,
                position,
                extra={"data": {"event": "rewind", "partition": f"{tp.topic}:{tp.partition}"}},
            )
            self._forget([tp])
            if self._state_offsets is not None:
                self._state_offsets.pop(tp, None)
            with contextlib.suppress(TimeoutError, KafkaError):
                async with asyncio.timeout(COMMIT_TIMEOUT_S):
                    await consumer.seek_to_beginning(tp)

    def status(self) -> SourceStatus:
        consumer = self._consumer
        assigned: tuple[tuple[str, int], ...] = ()
        if consumer is not None:
            assigned = tuple(sorted((tp.topic, tp.partition) for tp in consumer.assignment()))
        age = None if self._last_fetch_wall is None else max(time.time() - self._last_fetch_wall, 0)
        return SourceStatus(
            assigned=assigned,
            last_fetch_age_s=age,
            last_fetch_at=self._last_fetch_wall,
            lag=dict(self._lag),
            records_consumed=self.records_consumed,
            running=self._running,
        )

    def applied_offsets(self) -> dict[tuple[str, int], int]:
        return {(tp.topic, tp.partition): off for tp, off in self._applied.items()}
