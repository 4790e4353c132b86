"""The evaluate workers' changelog topic: each counts partition's state, and its owner.

Changelog partition p belongs to counts partition p (the topic has as many partitions,
`ensure_changelog`), and holds two keys, compacted to their newest record:

- `state`: the partition's snapshot (engine.runtime.partition_engine), which carries the
  counts-topic offset it covers: snapshot and offset are one record, so whatever moment
  a worker dies at, the next owner restores a snapshot and reads the counts on from
  exactly where that snapshot stops.
- `owner`: the URL of the worker that owns the partition now (written on assignment),
  so any worker can say where an SLO it does not own lives.

`read_latest` reads a changelog partition to its end offset and returns the newest value
of each key: the records before the end were all written (acknowledged) before the
rebalance that hands the partition over, so the newest is the last owner's last word.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

__all__ = [
    "OWNER_KEY",
    "STATE_KEY",
    "ChangelogReader",
    "ChangelogWriter",
    "ensure_topics",
]

log = logging.getLogger("burnrate.adapters.kafka.changelog")

STATE_KEY: Final = b"state"
OWNER_KEY: Final = b"owner"
READ_POLL_MS: Final = 200
TOPIC_WAITS: Final = 50
TOPIC_WAIT_S: Final = 0.2
MAX_REPLICATION: Final = 3
"""Replicas of a topic made here: this many, or every broker when there are fewer (the
broker's default factor cannot be asked for by this client)."""
MAX_SNAPSHOT_BYTES: Final = 64 << 20
"""The largest snapshot record the writer sends (and the reader fetches); the changelog
topic is created with `max.message.bytes` to match."""


async def ensure_topics(
    client: dict[str, Any], counts_topic: str, counts_partitions: int, changelog_topic: str
) -> int:
    """Create the counts topic (`counts_partitions` partitions) when missing, then the
    changelog (compacted, as many partitions as the counts topic has), and return the
    counts topic's partition count, which may differ from the config's when someone
    made it before. KafkaError when the broker refuses."""
    admin = AIOKafkaAdminClient(**client)
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
        replicas = max(1, min(MAX_REPLICATION, len(cluster.get("brokers", []))))
        await _create(admin, NewTopic(counts_topic, counts_partitions, replicas))
        partitions = await _partitions(admin, counts_topic)
        await _create(
            admin,
            NewTopic(
                changelog_topic,
                partitions,
                replicas,
                topic_configs={
                    "cleanup.policy": "compact",
                    "max.message.bytes": str(MAX_SNAPSHOT_BYTES),
                },
            ),
        )
        have = await _partitions(admin, changelog_topic)
        if have != partitions:
            log.warning(
                "changelog topic %s has %d partitions, the counts topic %s %d: partitions "
                "past the changelog's keep no state",
                changelog_topic,
                have,
                counts_topic,
                partitions,
            )
        return partitions
    finally:
        await admin.close()


async def _partitions(admin: AIOKafkaAdminClient, topic: str) -> int:
    """The partition count of `topic`, waiting a little for one just created."""
    for _ in range(TOPIC_WAITS):
        meta = await admin.describe_topics([topic])
        if meta and not meta[0]["error_code"] and meta[0]["partitions"]:
            return len(meta[0]["partitions"])
        await asyncio.sleep(TOPIC_WAIT_S)
    raise KafkaError(f"topic {topic} has no partitions")


async def _create(admin: AIOKafkaAdminClient, topic: NewTopic) -> None:
    try:
        response = await admin.create_topics([topic])
    except TopicAlreadyExistsError:
        return
    for error in response.topic_errors:
        code = error[1]
        if code not in (0, TopicAlreadyExistsError.errno):
            raise KafkaError(f"cannot create topic {topic.name}: error {code} {error[2:]}")


class ChangelogWriter:
    """Writes state and owner records (acks from all in-sync replicas, idempotent)."""

    def __init__(self, client: dict[str, Any], topic: str) -> None:
        self.topic = topic
        self._producer = AIOKafkaProducer(
            **client,
            acks="all",
            enable_idempotence=True,
            max_request_size=MAX_SNAPSHOT_BYTES,
            compression_type="gzip",
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def write(self, partition: int, key: bytes, value: bytes) -> None:
        """Send and wait for the acknowledgement (KafkaError when it does not come)."""
        await self._producer.send_and_wait(self.topic, value, key=key, partition=partition)


class ChangelogReader:
    """Reads changelog partitions to their end, outside any consumer group."""

    def __init__(self, client: dict[str, Any], topic: str) -> None:
        self.topic = topic
        self._consumer = AIOKafkaConsumer(
            **client,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_bytes=MAX_SNAPSHOT_BYTES,
            max_partition_fetch_bytes=MAX_SNAPSHOT_BYTES,
        )
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def read_latest(self, partitions: Iterable[int]) -> dict[int, dict[bytes, bytes]]:
        """Per partition, the newest value of each key up to the end offset now."""
        tps = [TopicPartition(self.topic, p) for p in partitions]
        out: dict[int, dict[bytes, bytes]] = {tp.partition: {} for tp in tps}
        if not tps:
            return out
        async with self._lock:
            consumer = self._consumer
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            todo = {tp for tp in tps if ends[tp] > 0}
            for tp in todo:
                consumer.seek(tp, 0)
            while todo:
                batches = await consumer.getmany(*todo, timeout_ms=READ_POLL_MS)
                for tp, records in batches.items():
                    for rec in records:
                        if rec.offset < ends[tp] and rec.key is not None and rec.value is not None:
                            out[tp.partition][rec.key] = rec.value
                for tp in list(todo):
                    if await consumer.position(tp) >= ends[tp]:
                        todo.discard(tp)
            consumer.assign([])
        return out
