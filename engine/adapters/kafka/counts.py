"""The counts topic from the ingest side: its partitions, and transactional writes to it.

`ensure_counts_topic` creates `kafka.scale.counts_topic` with `counts_partitions`
partitions when it is missing (replicated three times, or on every broker of a smaller
cluster), and refuses (`CountsTopicError`) one that exists with
another count: a record's partition is murmur2 of its key modulo the count (the
default partitioner's placement, `engine.adapters.kafka.partitions.partition_of`, which
the evaluate workers use too), so a count that changes under a
running system would move SLOs between the evaluate workers' partitions mid-stream.

`CountsProducer` writes one flush (deltas, heartbeats and the source offsets they came
from) as one Kafka transaction, so a read_committed reader of the counts topic sees a
flush whole or not at all, and the source offsets advance if and only if its deltas
are visible: exactly once from the source records to the counts.

Zombie fencing. The transactional id is `{transactional_id_prefix}-{worker id}`, one per
worker instance, stable across its restarts (`burnrate run --role ingest --worker-id`,
by default the host name and the HTTP port). Starting the producer
(InitProducerId) bumps the id's epoch: the transaction a killed predecessor left open
is aborted, one it had asked to commit is completed first, and any write of the
predecessor from then on is refused (`ProducerFenced`). The worker starts the producer
before it joins the consumer group, so the committed offsets it reads are never those
of a transaction still in flight. The other choice, one transactional id per source
partition (Kafka's fencing before KIP-447), fences even a paused worker that lost its
partitions to another one, but needs a producer and a transaction per partition each
flush; KIP-447 (the consumer group's generation in TxnOffsetCommit) fences that case with
one producer per worker, but aiokafka sends TxnOffsetCommit v0, which carries no
generation. What is left uncovered: a worker paused longer than its session timeout
(its partitions moved) that wakes inside an open transaction and commits it before its
consumer learns of the revocation. `transaction_timeout_ms` bounds that window: the
coordinator aborts a transaction older than it (TRANSACTION_TIMEOUT_MS, below the
session timeout used by the worker's consumer) at its next periodic check (the brokers'
`transaction.abort.timed.out.transaction.cleanup.interval.ms`, 10 s by default, 1 s
advised in docs/scaling.md); with a 1 s check, a pause long enough to lose the
partitions is long enough to lose the transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from engine.adapters.kafka.partitions import partition_of
from engine.core.deltas import encode_delta, encode_heartbeat
from engine.core.deltas_aggregate import SloDelta
from engine.errors import BurnrateError

__all__ = [
    "TRANSACTION_TIMEOUT_MS",
    "CountsProducer",
    "CountsTopicError",
    "TransactionsUnsupported",
    "ensure_counts_topic",
    "partition_of",
]

log = logging.getLogger("burnrate.adapters.kafka.counts")

TRANSACTION_TIMEOUT_MS = 8_000
"""The coordinator aborts a transaction open longer than this (a flush takes tens of
milliseconds); below the consumer's session timeout (10 s), see the module docstring."""
_TOPIC_ALREADY_EXISTS = 36


class CountsTopicError(BurnrateError):
    """The counts topic cannot be used as configured (another partition count)."""


class TransactionsUnsupported(BurnrateError):
    """The brokers refuse transactional producers."""


async def ensure_counts_topic(
    kwargs: Mapping[str, Any], topic: str, partitions: int, *, timeout_s: float = 30.0
) -> bool:
    """Create `topic` with `partitions` partitions unless it exists; True when created.
    Raises CountsTopicError when it exists with another count, KafkaError (or
    TimeoutError) when the brokers cannot be asked."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(request_timeout_ms=int(timeout_s * 1000), **kwargs)
    created = False
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            existing = await _partition_count(admin, topic)
            if existing is None:
                cluster = await admin.describe_cluster()
                replicas = max(1, min(3, len(cluster.get("brokers") or ())))
                response = await admin.create_topics(
                    [NewTopic(topic, num_partitions=partitions, replication_factor=replicas)]
                )
                for topic_error in response.topic_errors:
                    code = topic_error[1]
                    if code not in (0, _TOPIC_ALREADY_EXISTS):
                        message = topic_error[2] if len(topic_error) > 2 else ""
                        raise CountsTopicError(
                            f"cannot create the counts topic {topic!r}: error {code} {message}"
                        )
                    created = code == 0
                for _ in range(int(timeout_s * 10)):  # created: metadata follows shortly
                    existing = await _partition_count(admin, topic)
                    if existing is not None:
                        break
                    await asyncio.sleep(0.1)
            if existing != partitions:
                raise CountsTopicError(
                    f"the counts topic {topic!r} has {existing} partitions, the config says "
                    f"{partitions} (kafka.scale.counts_partitions): an SLO's partition is its "
                    "key's hash modulo the count, so the count cannot change under a running "
                    "system; set counts_partitions to match, or use a new counts_topic"
                )
    finally:
        await admin.close()
    return created


async def _partition_count(admin: Any, topic: str) -> int | None:
    # All topics' metadata: asking for the one topic would let a broker with
    # auto.create.topics.enable create it, with its default partition count.
    response = await admin.describe_topics(None)
    for entry in response:
        if entry.get("topic") != topic:
            continue
        if entry.get("error_code", 0) != 0:
            return None
        parts = entry.get("partitions") or []
        return len(parts) or None
    return None


class CountsProducer:
    """One transactional producer: `flush` writes deltas, heartbeats and offsets as one
    transaction."""

    def __init__(
        self,
        kwargs: Mapping[str, Any],
        *,
        topic: str,
        partitions: int,
        transactional_id: str,
        group_id: str,
        transactional: bool = True,
    ) -> None:
        self.topic = topic
        self.partitions = partitions
        self.transactional_id = transactional_id
        self.group_id = group_id
        self.transactional = transactional
        """False: no transactions (deltas at least once, offsets committed after them by
        the caller); only for measuring what transactions cost (benchmarks)."""
        self._kwargs = dict(kwargs)
        self._producer: Any = None
        self.transactions_committed = 0
        self.transactions_aborted = 0
        self.deltas_produced = 0
        self.heartbeats_produced = 0

    async def start(self, timeout_s: float = 30.0) -> None:
        """Connect; with transactions, fence any predecessor with the same id (see the
        module docstring). Raises TransactionsUnsupported when a broker refuses
        transactional producers, KafkaError/TimeoutError when none answers."""
        extra: dict[str, Any] = {"acks": "all", "enable_idempotence": True}
        if self.transactional:
            extra["transactional_id"] = self.transactional_id
            extra["transaction_timeout_ms"] = TRANSACTION_TIMEOUT_MS
        producer = AIOKafkaProducer(
            client_id="burnrate-ingest", linger_ms=5, **extra, **self._kwargs
        )
        try:
            async with asyncio.timeout(timeout_s):
                await producer.start()
        except KafkaError as exc:
            await _stop_quietly(producer)
            if self.transactional and _refuses_transactions(exc):
                raise TransactionsUnsupported(
                    "the Kafka brokers refused a transactional producer "
                    f"(InitProducerId: {exc!r}); --role ingest writes its counts in "
                    "transactions and needs brokers that support them (Apache Kafka)"
                ) from None
            raise
        except BaseException:
            await _stop_quietly(producer)
            raise
        self._producer = producer

    async def stop(self, timeout_s: float = 5.0) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            async with asyncio.timeout(timeout_s):
                await producer.stop()
        except (KafkaError, TimeoutError) as exc:
            log.warning("the counts producer did not stop cleanly: %r", exc)

    async def flush(
        self,
        deltas: Sequence[tuple[str, SloDelta]],
        watermark_s: float | None,
        offsets: Mapping[TopicPartition, int],
    ) -> None:
        """Write `deltas` (partition key, delta), a heartbeat to every partition no delta
        goes to (when `watermark_s` is known), and commit `offsets` for the group, in one
        transaction. Raises on failure, after aborting what it can: the caller must not
        go on from its in-memory position (records counted since the last commit are
        in no committed transaction)."""
        producer = self._producer
        if producer is None:
            raise RuntimeError("CountsProducer.start() first")
        if self.transactional:
            await producer.begin_transaction()
        try:
            futures = []
            used: set[int] = set()
            wm = 0.0 if watermark_s is None else watermark_s
            for key, d in deltas:
                p = partition_of(key, self.partitions)
                used.add(p)
                value = encode_delta(d.slo, wm, d.seconds, d.total, d.bad, d.groups)
                futures.append(
                    await producer.send(self.topic, value, key=key.encode(), partition=p)
                )
            if watermark_s is not None:
                beat = encode_heartbeat(watermark_s)
                for p in range(self.partitions):
                    if p not in used:
                        futures.append(await producer.send(self.topic, beat, partition=p))
            if self.transactional:
                if offsets:
                    await producer.send_offsets_to_transaction(dict(offsets), self.group_id)
                await producer.commit_transaction()
            else:
                await asyncio.gather(*futures)
        except BaseException:
            if self.transactional:
                await self._abort()
            raise
        if self.transactional:
            self.transactions_committed += 1
        self.deltas_produced += len(deltas)
        self.heartbeats_produced += len(futures) - len(deltas)

    async def _abort(self) -> None:
        self.transactions_aborted += 1
        producer = self._producer
        try:
            async with asyncio.timeout(5.0):
                await producer.abort_transaction()
        except (KafkaError, TimeoutError, asyncio.CancelledError) as exc:
            # Fenced, or the brokers are gone: the coordinator aborts it on its timeout,
            # or the next producer with this id does at its start.
            log.warning("could not abort the counts transaction: %r", exc)
        except Exception as exc:  # noqa: BLE001 - aiokafka raises IllegalStateError too
            log.warning("could not abort the counts transaction: %r", exc)


def _refuses_transactions(exc: KafkaError) -> bool:
    from aiokafka.errors import UnknownError, UnsupportedVersionError

    return isinstance(exc, UnknownError | UnsupportedVersionError)


async def _stop_quietly(producer: Any) -> None:
    try:
        async with asyncio.timeout(2.0):
            await producer.stop()
    except (KafkaError, TimeoutError):
        pass
