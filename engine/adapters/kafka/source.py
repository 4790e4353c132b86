"""The Kafka source: a consumer-group member that feeds fetched records to the core.

Theory of operation
-------------------
`KafkaSource.run()` loops on `getmany` in large batches. Each fetch is grouped by wire
format and handed to the core's ingest pipeline (`engine.core.ingest`) with the wall
clock as `now` and the Kafka record timestamps as the `ts` fallback. Rejected records
are logged (throttled) and, when a dead-letter topic is set, copied there
(`dead_letters`). Then the next offset of every partition in the fetch is recorded as
applied (`offsets`); when and in what order offsets are committed is decided by the
runtime's checkpoint, which reads a consistent (state, offsets) pair through
`settled()`.

Progress is what readiness is judged on (a consumer can sit in a group with no error
and fetch nothing): the wall time of the last fetch response, the assigned partitions
and the per-partition lag. A partition whose log now ends before our position (a
broker that lost its data without answering OFFSET_OUT_OF_RANGE) is read again from
the earliest offset instead of fetching nothing forever.

Lag is highwater - position. The highwater comes with every fetch response; the
position is the next offset after the last applied record, else the one the consumer
started from (the state's, the group's committed one or the reset, asked of the
consumer once, so an idle partition has a lag of 0 as soon as the broker has answered,
not only once new records come). It is refreshed for the partitions of each fetch as
it is applied, for partitions whose lag is not known yet at every turn of the loop, and
for all once a second.

Event time passes only what has been consumed. A partition is *caught up* when its lag
is known and 0; one whose lag is not known yet (just assigned, after a restart or a
rebalance) is *behind*. Per partition the source keeps the newest event time consumed
from it (as the core's ingest reports it per stream, `stream_times_s`), and
`event_time_cap()` is the minimum of those over the partitions behind: None when all
are caught up, -inf while the assignment is not known or a partition behind has not
brought an event yet. Each fetch is ingested with the cap as it stood before the fetch
(`watermark_cap_s`), and the runtime moves event time with the wall clock (idle
partitions) only while the cap is None (`caught_up()`). So a backlog, after downtime or
in one partition far behind the others, is read in its own event time: none of it is
judged late against the wall clock or against a partition that is ahead, and no tick
is evaluated before it is in. Partitions caught up do not hold event time back.

Partitions that are not assigned here cannot hold event time back, with one exception:
a member killed just before this start keeps its partitions until its session ends,
so the first assignment may leave out partitions whose records are older than what
the assigned ones bring. For up to PARTIAL_ASSIGNMENT_HOLD_S after that first
assignment, while a partition of the topics (or of the restored state) is assigned to
no one here, event time stays at the watermark of that moment; past it, the rest are
taken to belong to another live instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import operator
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from engine.adapters.kafka.access import check_access
from engine.adapters.kafka.dead_letters import DeadLetters
from engine.adapters.kafka.offsets import COMMIT_TIMEOUT_S, OffsetTracker, RebalanceListener
from engine.adapters.kafka.settings import group_kwargs, kafka_client_kwargs
from engine.adapters.kafka.status import SourceStatus
from engine.core.config import Config
from engine.core.decode import WireFormat
from engine.core.durations import parse_duration_s
from engine.core.evaluator import Evaluator, Transition
from engine.core.ingest import Ingestor, Rejection

__all__ = ["KafkaSource", "stop_client"]

log = logging.getLogger("burnrate.adapters.kafka.source")

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

LATE_WARNING_INTERVAL_S = 30.0
LAG_REFRESH_S = 1.0
PARTIAL_ASSIGNMENT_HOLD_S = 30.0
"""How long event time waits, after the first assignment since start, for partitions of
the topics (or of the state) that went to no one here: a member killed before this
start keeps its partitions until its session times out (`kafka.session_timeout`, 10 s
by default) and the group rebalances. Past this, they are taken to belong to another
live instance. A session timeout over 20 s less than this waits 20 s past it."""
POSITION_TIMEOUT_S = 0.05
"""How long the loop waits for the consumer's position in a partition (immediate once
the broker has answered a fetch of it, which is when it is asked)."""

TransitionsCallback = Callable[[list[Transition]], None]

_VALUE = operator.attrgetter("value")
_TIMESTAMP = operator.attrgetter("timestamp")


def _record_times_s(records: Sequence[Any]) -> npt.NDArray[np.float64]:
    """Kafka record timestamps in seconds (NaN where the broker gave none); only built
    when some event lacks its own `ts`."""
    ms = np.fromiter(map(_TIMESTAMP, records), dtype=np.float64, count=len(records))
    return np.where(ms >= 0, ms / 1000.0, np.nan)


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
    ) -> None:
        self.config = config
        self.kafka = config.kafka
        self.evaluator = evaluator
        self.on_transitions = on_transitions
        self.on_applied: Callable[[], None] | None = None
        """Called after each applied batch (the runtime marks the metrics body old)."""
        self.clock = clock
        self.max_poll_records = max_poll_records
        self.ingestor = Ingestor(evaluator)
        self.offsets = OffsetTracker()
        self._consumer: Any = None
        self._dead_letters: DeadLetters | None = None
        self._apply_lock = asyncio.Lock()
        self._consistent = True
        """False when a batch was ingested but its offsets not recorded (cancelled)."""
        self._lag: dict[tuple[str, int], int] = {}
        self._lag_at = 0.0
        self._stream_ts: dict[tuple[str, int], float] = {}
        """Per assigned partition, the newest event time consumed from it."""
        self._assignment_known = False
        """False until the group assigns partitions, and again during a rebalance."""
        self._expected: set[tuple[str, int]] | None = None
        """The partitions of the topics and of the restored state, at the first assignment."""
        self._hold: tuple[float, float] | None = None
        """(until, event time): while some expected partition is assigned to no one here,
        event time stays at the watermark of the first assignment, until then."""
        self._last_fetch_wall: float | None = None
        self._running = False
        self.records_consumed = 0
        self._batch_sizes: list[int] = []
        self._late_seen = 0
        self._late_warned_at = -float("inf")
        self._rejects_logged: Counter[str] = Counter()

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and join the group. Raises KafkaError when the brokers cannot be
        reached, ConfigError when the client settings (TLS, SASL secrets) are unusable or
        a broker refuses them (an untrusted certificate, a wrong password)."""
        kwargs = kafka_client_kwargs(self.kafka)
        await check_access(kwargs, self.kafka.security)
        # late events a restored state counted before this start were reported then
        self._late_seen = self.evaluator.rejected_counts().get("too_late", 0)
        consumer = AIOKafkaConsumer(
            group_id=self.kafka.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES,
            fetch_max_bytes=FETCH_MAX_BYTES,
            max_poll_records=self.max_poll_records,
            client_id="burnrate",
            **group_kwargs(self.kafka),
            **kwargs,
        )
        consumer.subscribe(
            topics=list(self.kafka.topics),
            listener=RebalanceListener(
                self.offsets,
                consumer,
                self._forget_lag,
                on_rebalance=self._on_rebalance,
                on_assigned=functools.partial(self._on_assigned, consumer),
            ),
        )
        if self.kafka.dead_letter_topic:
            dead_letters = DeadLetters(self.kafka.dead_letter_topic, kwargs)
            await dead_letters.start()
            self._dead_letters = dead_letters
        try:
            await consumer.start()
        except BaseException:  # KafkaError, or cancelled by a stop during startup
            await self._stop_clients(consumer, 2.0)
            raise
        self._consumer = consumer
        self.offsets.consumer = consumer
        self._running = True

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; what was fetched is applied before returning."""
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError("KafkaSource.start() first")
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
                refresh = self._note_fetch()
                if data:
                    await self._apply(data)
                await self._refresh_lag(every=refresh)
                if refresh:
                    await self._rewind_beyond_end()
        finally:
            self._running = False

    async def commit(
        self,
        partitions: Iterable[TopicPartition] | None = None,
        *,
        reason: str,
        timeout_s: float = COMMIT_TIMEOUT_S,
    ) -> bool:
        """Commit the offsets (of `partitions`, or all owned) not committed yet: the
        applied ones, or with a state store only those of the last written snapshot
        (see `offsets`). Never raises."""
        if self._consumer is None:
            return False
        return await self.offsets.commit(partitions, reason=reason, timeout_s=timeout_s)

    async def close(self, timeout_s: float = 8.0) -> None:
        """Commit (what was applied; with a state store, what the last snapshot holds)
        and leave the group, within `timeout_s` whatever happens."""
        deadline = time.monotonic() + timeout_s
        if self._consumer is not None and self.offsets.has_applied():
            await self.commit(None, reason="shutdown", timeout_s=min(3.0, timeout_s / 2))
        consumer, self._consumer = self._consumer, None
        self.offsets.consumer = None
        await self._stop_clients(consumer, max(deadline - time.monotonic(), 0.5))

    async def _stop_clients(self, consumer: Any, timeout_s: float) -> None:
        producer = None
        if self._dead_letters is not None:  # kept: its counts outlive the producer
            producer, self._dead_letters.producer = self._dead_letters.producer, None
        share = timeout_s / 2 if producer is not None and consumer is not None else timeout_s
        for client, what in ((consumer, "consumer"), (producer, "dead-letter producer")):
            if client is not None:
                await stop_client(client, what, share)

    # -- batches ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def settled(self) -> AsyncIterator[dict[tuple[str, int], int] | None]:
        """Between batches: the offsets up to which the evaluator has counted, with no
        batch applied until the block ends (so a snapshot taken inside matches them).
        None when a batch was interrupted mid-apply: the evaluator is then ahead of the
        offsets and no consistent pair exists."""
        async with self._apply_lock:
            yield self.offsets.state_offsets() if self._consistent else None

    async def _apply(self, data: Mapping[TopicPartition, Sequence[Any]]) -> None:
        """Apply one fetch: ingest per format, dead-letter, record offsets."""
        async with self._apply_lock:
            self._consistent = False
            await self._apply_locked(data)
            self._consistent = True

    async def _apply_locked(self, data: Mapping[TopicPartition, Sequence[Any]]) -> None:
        by_format: dict[WireFormat, list[Any]] = {}
        streams: dict[WireFormat, list[tuple[TopicPartition, int]]] = {}
        n = 0
        for tp, records in data.items():
            if records:
                fmt: WireFormat = self.kafka.formats.get(tp.topic, self.kafka.format)
                batch = by_format.setdefault(fmt, [])
                streams.setdefault(fmt, []).append((tp, len(batch)))
                batch.extend(records)
                n += len(records)
        now = self.clock()
        cap = self.event_time_cap()
        transitions: list[Transition] = []
        dead: list[tuple[Any, Rejection]] = []
        for fmt, records in by_format.items():
            parts = streams[fmt]
            result = self.ingestor.records(
                list(map(_VALUE, records)),
                fmt,
                now_s=now,
                record_times=functools.partial(_record_times_s, records),
                watermark_cap_s=cap,
                stream_starts=[start for _, start in parts],
            )
            transitions += result.transitions
            dead += [(records[r.record], r) for r in result.rejections]
            if result.stream_times_s is not None:
                for (tp, _), t in zip(parts, result.stream_times_s.tolist(), strict=True):
                    key = (tp.topic, tp.partition)
                    if not math.isnan(t) and t > self._stream_ts.get(key, -math.inf):
                        self._stream_ts[key] = t
        self.records_consumed += n
        self._batch_sizes.append(n)
        if dead:
            self._log_rejects(dead)
            if self._dead_letters is not None:
                await self._dead_letters.send([(rec, r.reason) for rec, r in dead])
        for tp, records in data.items():
            if records:
                self.offsets.applied(tp, records[-1].offset + 1)
        self._note_lag(data)
        self._warn_late()
        if self.on_applied is not None:
            self.on_applied()
        if transitions and self.on_transitions is not None:
            self.on_transitions(transitions)

    def drain_batch_sizes(self) -> list[int]:
        """Records per non-empty fetch since the last call (for the metrics histogram)."""
        sizes, self._batch_sizes = self._batch_sizes, []
        return sizes

    @property
    def dead_lettered(self) -> int:
        return 0 if self._dead_letters is None else self._dead_letters.sent

    def _log_rejects(self, dead: list[tuple[Any, Rejection]]) -> None:
        # One line the first time a reason is seen, then one per 1000 (never per record).
        for record, r in dead:
            seen = self._rejects_logged[r.reason]
            self._rejects_logged[r.reason] += 1
            if seen % 1000 == 0:
                log.warning(
                    "rejected record %s[%d]@%d: %s (%s); %d so far for this reason",
                    record.topic,
                    record.partition,
                    record.offset,
                    r.reason,
                    r.detail[:200],
                    seen + 1,
                )

    def _warn_late(self) -> None:
        late = self.evaluator.rejected_counts().get("too_late", 0)
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

    # -- progress --------------------------------------------------------------------

    def _forget_lag(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            self._lag.pop((tp.topic, tp.partition), None)
            self._stream_ts.pop((tp.topic, tp.partition), None)

    def _on_rebalance(self) -> None:
        self._assignment_known = False

    def _on_assigned(self, consumer: Any, assigned: list[TopicPartition]) -> None:
        self._assignment_known = True
        if self._expected is not None:
            return
        # The first assignment since start: a partition it leaves out may still be held
        # by a member killed before this start, and come here once its session ends; its
        # records are older than what the partitions assigned now bring.
        topics = set(self.kafka.topics)
        expected = {tp for tp in self.offsets.state_offsets() if tp[0] in topics}
        for topic in self.kafka.topics:
            expected |= {(topic, p) for p in consumer.partitions_for_topic(topic) or ()}
        self._expected = expected
        if expected - {(tp.topic, tp.partition) for tp in assigned}:
            session_s = parse_duration_s(self.kafka.session_timeout)
            self._hold = (
                time.monotonic() + max(PARTIAL_ASSIGNMENT_HOLD_S, session_s + 20.0),
                self.evaluator.watermark_s,
            )

    def event_time_cap(self) -> float | None:
        """How far event time may go: the newest event time consumed from the partition
        furthest behind, over the assigned partitions that are not caught up (lag not
        known, or above 0). None when every one is caught up; -inf when the assignment
        is not known (not started, stopped, rebalancing) or a partition behind has not
        brought an event yet. For a while after the first assignment since start, a
        partition of the topics or the state that it left out holds event time at the
        watermark of that moment (`PARTIAL_ASSIGNMENT_HOLD_S`)."""
        consumer = self._consumer
        if consumer is None or not self._assignment_known:
            return -math.inf
        cap: float | None = None
        assigned = consumer.assignment()
        for tp in assigned:
            key = (tp.topic, tp.partition)
            if self._lag.get(key) == 0:
                continue
            t = self._stream_ts.get(key, -math.inf)
            cap = t if cap is None else min(cap, t)
        if self._hold is not None:
            until, held_at = self._hold
            missing = (self._expected or set()) - {(tp.topic, tp.partition) for tp in assigned}
            if missing and time.monotonic() < until:
                cap = held_at if cap is None else min(cap, held_at)
            else:
                self._hold = None  # all came, or the rest belong to another instance
        return cap

    def caught_up(self) -> bool:
        """True when the lag of every assigned partition is known and 0: then, and only
        then, event time may follow the wall clock."""
        return self.event_time_cap() is None

    def _note_fetch(self) -> bool:
        """Record when the broker last answered a fetch; True once a second, when the
        lag of every partition is due for a refresh."""
        consumer = self._consumer
        newest: int | None = None
        for tp in consumer.assignment():
            ts = consumer.last_poll_timestamp(tp)
            if ts is not None and (newest is None or ts > newest):
                newest = ts
        if newest is not None:
            self._last_fetch_wall = newest / 1000.0
        mono = time.monotonic()
        if mono - self._lag_at < LAG_REFRESH_S:
            return False
        self._lag_at = mono
        return True

    def _note_lag(self, tps: Iterable[TopicPartition]) -> None:
        """The lag of partitions whose records were just applied."""
        consumer = self._consumer
        assigned = consumer.assignment()
        for tp in tps:
            if tp not in assigned:  # revoked while the batch was applied
                continue
            hw = consumer.highwater(tp)
            pos = self.offsets.position(tp)
            if hw is not None and pos is not None:
                self._lag[(tp.topic, tp.partition)] = max(hw - pos, 0)

    async def _refresh_lag(self, *, every: bool) -> None:
        """The lag of every assigned partition (`every`), or of those whose lag is not
        known yet, as far as the broker's highwater is known. A partition nothing was
        applied from is positioned where the consumer says it stands."""
        consumer = self._consumer
        assigned = list(consumer.assignment())  # awaits below: a snapshot
        if not every:
            assigned = [tp for tp in assigned if (tp.topic, tp.partition) not in self._lag]
            if not assigned:
                return
        fresh: dict[tuple[str, int], int] = {}
        for tp in assigned:
            if tp not in consumer.assignment():  # revoked meanwhile
                continue
            hw = consumer.highwater(tp)
            if hw is None:
                continue
            pos = self.offsets.position(tp)
            if pos is None and hw > 0:
                try:
                    async with asyncio.timeout(POSITION_TIMEOUT_S):
                        pos = await consumer.position(tp)
                except (TimeoutError, KafkaError):
                    continue
                if tp not in consumer.assignment() or self.offsets.position(tp) is not None:
                    continue
                self.offsets.started_at(tp, pos)
            fresh[(tp.topic, tp.partition)] = max(hw - (pos or 0), 0)
        now_assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        fresh = {k: v for k, v in fresh.items() if k in now_assigned}
        if every:
            self._lag = fresh
        else:
            self._lag.update(fresh)

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
            self.offsets.forget([tp], state_too=True)
            self._forget_lag([tp])
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
            spans_ignored=self.ingestor.spans_ignored,
        )


async def stop_client(client: Any, what: str, timeout_s: float) -> None:
    """Stop an aiokafka client within `timeout_s`, whatever happens (logged, never
    raised, unless the calling task itself is being cancelled)."""
    try:
        async with asyncio.timeout(timeout_s):
            await client.stop()
    except TimeoutError:
        log.warning("kafka %s did not stop within %.1fs; abandoning it", what, timeout_s)
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
