"""Smoke tests of the broker the integration suite runs against (embedded or real).

They pin down what the engine relies on: records produced are all consumed,
manually committed offsets are where a restarted group member resumes, and the
members of one group split the partitions between them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

DEADLINE = 60.0  # seconds for any one wait; generous for a cold JVM broker on 2 cores


def new_group() -> str:
    return f"it-group-{uuid.uuid4().hex[:10]}"


async def produce(bootstrap: str, topic: str, values: Iterable[int]) -> dict[TopicPartition, int]:
    """Produce one record per value (key and value both its decimal text), acks=all.

    Returns the end offset of each partition written to, from the broker's acks.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = []
        for v in values:
            data = str(v).encode()
            futures.append(await producer.send(topic, key=data, value=data))
        acks = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    ends: dict[TopicPartition, int] = {}
    for ack in acks:
        tp = TopicPartition(ack.topic, ack.partition)
        ends[tp] = max(ends.get(tp, 0), ack.offset + 1)
    return ends


@asynccontextmanager
async def group_consumer(
    bootstrap: str, topic: str, group: str, client_id: str
) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # Tansu holds every JoinGroup for half the session timeout, so keep it at
        # Kafka's default floor (group.min.session.timeout.ms = 6 s).
        heartbeat_interval_ms=300,
        session_timeout_ms=6_000,
        max_poll_interval_ms=60_000,
    )
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def wait_until(condition: Callable[[], bool], what: str, within: float = DEADLINE) -> None:
    deadline = time.monotonic() + within
    delay = 0.01
    while not condition():
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {within:g}s waiting for {what}")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)


async def consume_exactly(
    consumer: AIOKafkaConsumer, count: int, within: float = DEADLINE
) -> list[ConsumerRecord[bytes, bytes]]:
    """Exactly `count` records: the consumer's position moves past no others."""
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(within):
            while len(records) < count:
                batches = await consumer.getmany(timeout_ms=200, max_records=count - len(records))
                for batch in batches.values():
                    records.extend(batch)
    except TimeoutError:
        pytest.fail(f"consumed {len(records)} of {count} records in {within:g}s")
    return records


def values_of(records: Iterable[ConsumerRecord[bytes, bytes]]) -> list[int]:
    return [int(r.value) for r in records if r.value is not None]


def next_offsets(records: Iterable[ConsumerRecord[bytes, bytes]]) -> dict[TopicPartition, int]:
    """Per partition, the offset after the last record seen: what a commit stores."""
    offsets: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
    return offsets


@pytest.mark.asyncio
async def test_group_resumes_from_committed_offsets(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    total, first_share = 1000, 600
    ends = await produce(kafka_bootstrap, unique_topic, range(total))
    group = new_group()

    async with group_consumer(kafka_bootstrap, unique_topic, group, "first") as first:
        seen_first = await consume_exactly(first, first_share)
        committed = next_offsets(seen_first)
        await first.commit(committed)
        for tp, offset in committed.items():
            assert await first.committed(tp) == offset

    async with group_consumer(kafka_bootstrap, unique_topic, group, "second") as second:
        partitions = {TopicPartition(unique_topic, p) for p in range(3)}
        await wait_until(lambda: second.assignment() == partitions, "the whole assignment")
        for tp in partitions:
            # Resumes exactly at the commit; partitions never committed start at 0.
            assert await second.position(tp) == committed.get(tp, 0), tp
        seen_second = await consume_exactly(second, total - first_share)
        # Now at the end of every partition. (The acks say where that is: Tansu's
        # ListOffsets(latest), behind consumer.end_offsets(), answers the last
        # batch's base offset + 1 rather than the high watermark.)
        for tp in partitions:
            assert await second.position(tp) == ends.get(tp, 0), tp

    first_values, second_values = values_of(seen_first), values_of(seen_second)
    assert len(set(first_values)) == first_share
    assert len(set(second_values)) == total - first_share  # nothing read twice ...
    assert set(first_values).isdisjoint(second_values)  # ... nor re-read after the resume
    assert set(first_values) | set(second_values) == set(range(total))
    assert sum(ends.values()) == total


@pytest.mark.asyncio
async def test_two_consumers_in_one_group_split_partitions(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    total = 300
    group = new_group()
    all_partitions = {TopicPartition(unique_topic, p) for p in range(3)}

    async with (
        group_consumer(kafka_bootstrap, unique_topic, group, "member-a") as a,
        group_consumer(kafka_bootstrap, unique_topic, group, "member-b") as b,
    ):

        def split() -> bool:
            mine, theirs = a.assignment(), b.assignment()
            both_busy = bool(mine) and bool(theirs)
            return both_busy and mine.isdisjoint(theirs) and mine | theirs == all_partitions

        await wait_until(split, "the group to split the partitions between both members")
        a_parts, b_parts = set(a.assignment()), set(b.assignment())

        await produce(kafka_bootstrap, unique_topic, range(total))
        got: dict[str, list[ConsumerRecord[bytes, bytes]]] = {"a": [], "b": []}

        async def drain(name: str, consumer: AIOKafkaConsumer) -> None:
            while len(got["a"]) + len(got["b"]) < total:
                batches = await consumer.getmany(timeout_ms=100)
                for batch in batches.values():
                    got[name].extend(batch)

        try:
            async with asyncio.timeout(DEADLINE):
                await asyncio.gather(drain("a", a), drain("b", b))
        except TimeoutError:
            pytest.fail(f"consumed {len(got['a']) + len(got['b'])} of {total} records")

        assert a.assignment() == a_parts
        assert b.assignment() == b_parts

    assert got["a"], "member a got no records"
    assert got["b"], "member b got no records"
    assert {TopicPartition(r.topic, r.partition) for r in got["a"]} <= a_parts
    assert {TopicPartition(r.topic, r.partition) for r in got["b"]} <= b_parts
    values = values_of(got["a"]) + values_of(got["b"])
    assert sorted(values) == list(range(total))
