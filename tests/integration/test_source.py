"""KafkaSource against a real broker: exact counts, poison records, dead letters, resume."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from engine.adapters.kafka.embedded_broker import create_topic
from engine.adapters.kafka.source import KafkaSource
from engine.core.config import Config, parse_config
from engine.core.evaluator import Evaluator

DEADLINE_S = 60.0
PARTITIONS = 3


def make_config(
    bootstrap: str,
    topic: str,
    *,
    fmt: str = "json",
    group: str | None = None,
    dead_letter_topic: str | None = None,
    session_timeout: str | None = None,
) -> Config:
    dlq = f"  dead_letter_topic: {dead_letter_topic}\n" if dead_letter_topic else ""
    if session_timeout is not None:
        dlq += f"  session_timeout: {session_timeout}\n"
    text = (
        "slos:\n"
        "  - {name: checkout-availability, service: checkout, sli: availability, objective: 99}\n"
        "  - {name: checkout-latency, service: checkout, sli: latency, threshold_ms: 300,"
        " objective: 99}\n"
        "kafka:\n"
        f"  bootstrap_servers: {bootstrap}\n"
        f"  topics: [{topic}]\n"
        f"  group_id: {group or 'g-' + uuid.uuid4().hex[:10]}\n"
        f"  format: {fmt}\n"
        f"{dlq}"
        "http:\n"
        "  listen: 127.0.0.1:0\n"
    )
    return parse_config(text)


def event(i: int, now: float) -> dict[str, object]:
    """Every 10th event failed, every 7th slow; most carry ts, some leave it to the record."""
    ev: dict[str, object] = {
        "service": "checkout",
        "operation": "POST /orders",
        "status": 500 if i % 10 == 0 else 200,
        "latency_ms": 900.0 if i % 7 == 0 else 20.0,
    }
    if i % 5:
        ev["ts"] = now - 5.0 + (i % 100) * 0.01
    return ev


def expected(indices: range | list[int]) -> tuple[int, int, int, int]:
    """(availability total, bad, latency total, bad) for the events with these indices."""
    idx = list(indices)
    avail_bad = sum(1 for i in idx if i % 10 == 0)
    lat_bad = sum(1 for i in idx if i % 7 == 0 or i % 10 == 0)
    return len(idx), avail_bad, len(idx), lat_bad


def encode(value: object, fmt: str) -> bytes:
    return msgspec.msgpack.encode(value) if fmt == "msgpack" else msgspec.json.encode(value)


async def produce(
    bootstrap: str, topic: str, values: list[bytes], *, partitions: int = PARTITIONS
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value=v, partition=i % partitions)
            for i, v in enumerate(values)
        ]
        async with asyncio.timeout(DEADLINE_S):
            await asyncio.gather(*futures)
    finally:
        await producer.stop()


def records_for(indices: range, fmt: str, *, batch: int, now: float) -> list[bytes]:
    """Encode events `indices` as single-event records (batch=1) or arrays of `batch`."""
    idx = list(indices)
    if batch == 1:
        return [encode(event(i, now), fmt) for i in idx]
    return [
        encode([event(i, now) for i in idx[k : k + batch]], fmt) for k in range(0, len(idx), batch)
    ]


async def wait_until(cond: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> None:
    end = time.monotonic() + deadline_s
    while not cond():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def running(
    source: KafkaSource,
) -> tuple[asyncio.Event, asyncio.Task[None], Callable[[], Awaitable[None]]]:
    await source.start()
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(stop))

    async def shutdown() -> None:
        stop.set()
        async with asyncio.timeout(15):
            await task
        await source.close()

    return stop, task, shutdown


async def no_more_records(source: KafkaSource) -> None:
    """A few more fetch answers from the broker bring nothing new."""
    seen, t0 = source.records_consumed, time.time()
    await wait_until(lambda: (source.status().last_fetch_at or 0) > t0 + 0.5, "more fetches")
    assert source.records_consumed == seen


async def read_dead_letters(bootstrap: str, topic: str, n: int) -> list[Any]:
    """The first `n` records of dead-letter topic `topic` (aiokafka ConsumerRecords, with
    the source headers), read from the start by a client outside any group."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    got: list[Any] = []
    try:
        async with asyncio.timeout(DEADLINE_S):
            while len(got) < n:
                for recs in (await consumer.getmany(timeout_ms=200)).values():
                    got.extend(recs)
    finally:
        await consumer.stop()
    return got


def counts(ev: Evaluator) -> tuple[int, int, int, int]:
    return (
        int(ev.counts().events_total[0]),
        int(ev.counts().bad_events_total[0]),
        int(ev.counts().events_total[1]),
        int(ev.counts().bad_events_total[1]),
    )


@pytest.mark.asyncio
@pytest.mark.parametrize("fmt", ["json", "msgpack"])
@pytest.mark.parametrize("batch", [1, 50])
async def test_counts_equal_what_was_produced(
    kafka_bootstrap: str, unique_topic: str, fmt: str, batch: int
) -> None:
    now = time.time()
    n = 3000
    await produce(kafka_bootstrap, unique_topic, records_for(range(n), fmt, batch=batch, now=now))
    cfg = make_config(kafka_bootstrap, unique_topic, fmt=fmt)
    ev = Evaluator(cfg)
    source = KafkaSource(cfg, ev)
    _, _, shutdown = await running(source)
    try:
        await wait_until(lambda: counts(ev)[0] >= n, f"{n} events")
        # a further fetch round must not add anything
        await no_more_records(source)
    finally:
        await shutdown()
    assert counts(ev) == expected(range(n))
    assert source.records_consumed == len(records_for(range(n), fmt, batch=batch, now=now))
    assert sum(ev.rejected_counts().values()) == 0
    assert ev.counts().unmatched_events == 0


@pytest.mark.asyncio
async def test_a_short_group_session_joins_and_counts_the_same(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    """`kafka.session_timeout: 6s` (the least Apache Kafka accepts; the demo's): the
    consumer joins with it, heartbeats every 2 s, and counts every event."""
    now = time.time()
    n = 500
    await produce(kafka_bootstrap, unique_topic, records_for(range(n), "json", batch=1, now=now))
    cfg = make_config(kafka_bootstrap, unique_topic, session_timeout="6s")
    ev = Evaluator(cfg)
    source = KafkaSource(cfg, ev)
    _, _, shutdown = await running(source)
    try:
        await wait_until(lambda: counts(ev)[0] >= n, f"{n} events")
        await no_more_records(source)
    finally:
        await shutdown()
    assert counts(ev) == expected(range(n))
    assert source.records_consumed == n


@pytest.mark.asyncio
async def test_poison_records_are_counted_and_dead_lettered(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    dlq = f"{unique_topic}-dlq"
    await create_topic(kafka_bootstrap, dlq, 1)
    now = time.time()
    poison = {
        3: (b"{not json", "malformed"),
        10: (b'{"service": 12}', "wrong_type"),
        17: (b'{"status": 200}', "missing_service"),
        24: (b'{"service": "checkout", "latency_ms": -1}', "bad_value"),
        31: (b"", "malformed"),
    }
    values: list[bytes] = []
    good: list[int] = []
    for i in range(40):
        if i in poison:
            values.append(poison[i][0])
        else:
            values.append(encode(event(i, now), "json"))
            good.append(i)
    # one partition, so offsets are the indices above
    await produce(kafka_bootstrap, unique_topic, values, partitions=1)
    cfg = make_config(kafka_bootstrap, unique_topic, dead_letter_topic=dlq)
    ev = Evaluator(cfg)
    source = KafkaSource(cfg, ev)
    _, _, shutdown = await running(source)
    try:
        await wait_until(lambda: source.records_consumed >= len(values), "all records")
    finally:
        await shutdown()
    assert counts(ev) == expected(good)
    assert ev.rejected_counts() == {
        "malformed": 2,
        "wrong_type": 1,
        "missing_service": 1,
        "bad_value": 1,
    }
    assert source.dead_lettered == len(poison)

    by_offset = {}
    for rec in await read_dead_letters(kafka_bootstrap, dlq, len(poison)):
        headers = {k: v.decode() for k, v in rec.headers}
        assert headers["source_topic"] == unique_topic
        assert headers["source_partition"] == "0"
        by_offset[int(headers["source_offset"])] = (rec.value, headers["reason"])
    assert by_offset == poison


@pytest.mark.asyncio
async def test_restart_resumes_from_committed_offsets(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    now = time.time()
    group = f"g-{uuid.uuid4().hex[:10]}"
    cfg = make_config(kafka_bootstrap, unique_topic, group=group)
    await produce(kafka_bootstrap, unique_topic, records_for(range(600), "json", batch=1, now=now))

    first = Evaluator(cfg)
    source = KafkaSource(cfg, first)
    _, _, shutdown = await running(source)
    try:
        await wait_until(lambda: counts(first)[0] >= 600, "the first 600 events")
    finally:
        await shutdown()
    assert counts(first) == expected(range(600))

    await produce(
        kafka_bootstrap, unique_topic, records_for(range(600, 1000), "json", batch=1, now=now)
    )
    second = Evaluator(cfg)
    source = KafkaSource(cfg, second)
    _, _, shutdown = await running(source)
    try:
        await wait_until(lambda: counts(second)[0] >= 400, "the next 400 events")
        await no_more_records(source)
    finally:
        await shutdown()
    # committed on shutdown: the restarted member reads only what came after
    assert counts(second) == expected(range(600, 1000))
