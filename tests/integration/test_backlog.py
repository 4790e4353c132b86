"""A backlog is counted whole: event time passes only what has been consumed.

Against a real broker. Records are produced with explicit past `ts` while no engine
runs, so minutes of downtime take no time: an engine that starts on such a backlog
must count every event, none `too_late`, whatever the allowed lateness, because
lateness is relative to each partition's own stream, not to the wall clock nor to a
partition that is further ahead.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from engine.adapters.kafka.embedded_broker import create_topic
from engine.adapters.kafka.source import KafkaSource
from engine.core.config import Config, parse_config
from engine.core.evaluator import Evaluator
from engine.runtime.service import Runtime
from tests.integration.test_run import Running, samples
from tests.integration.test_source import DEADLINE_S, wait_until

LATENESS_S = 5.0
DOWNTIME_S = 30.0
"""Longer than the allowed lateness: the whole point."""
SMALL_FETCH_BYTES = 16 * 1024
"""Per-partition fetch size for these tests: a backlog comes in many fetches."""


def backlog_config(
    bootstrap: str, topic: str, *, group: str | None = None, state: Path | None = None
) -> Config:
    state_section = f"state:\n  path: {state}\n  interval: 1s\n" if state is not None else ""
    return parse_config(
        "slos:\n"
        "  - {name: checkout-availability, service: checkout, sli: availability, objective: 99}\n"
        "kafka:\n"
        f"  bootstrap_servers: {bootstrap}\n"
        f"  topics: [{topic}]\n"
        f"  group_id: {group or 'g-' + uuid.uuid4().hex[:10]}\n"
        "http:\n"
        "  listen: 127.0.0.1:0\n"
        f"evaluation: {{allowed_lateness: {LATENESS_S:g}s}}\n"
        f"{state_section}"
    )


def stamped(i: int, ts: float) -> bytes:
    """One event at `ts`; every 10th failed."""
    return msgspec.json.encode(
        {"service": "checkout", "status": 500 if i % 10 == 0 else 200, "ts": ts}
    )


def spread(n: int, start: float, end: float) -> list[float]:
    """`n` times evenly from `start` to `end`."""
    return [start + (end - start) * k / max(n - 1, 1) for k in range(n)]


async def produce_to(bootstrap: str, topic: str, records: Sequence[tuple[int, bytes]]) -> None:
    """Send (partition, value) records, in order per partition."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=v, partition=p) for p, v in records]
        async with asyncio.timeout(DEADLINE_S):
            await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def produce_in_two(
    bootstrap: str, topic: str, first: tuple[int, list[float]], then: tuple[int, list[float]]
) -> None:
    """Events at the times `first[1]` to partition `first[0]`, then events at the times
    `then[1]` (numbered on from the first ones) to partition `then[0]`."""
    (p, times), (q, more) = first, then
    await produce_to(
        bootstrap,
        topic,
        [(p, stamped(i, ts)) for i, ts in enumerate(times)]
        + [(q, stamped(i, ts)) for i, ts in enumerate(more, start=len(times))],
    )


def outcome(ev: Evaluator) -> dict[str, object]:
    """What was counted and rejected, in one value so a failure shows all of it."""
    counts = ev.counts()
    return {
        "events": int(counts.events_total[0]),
        "bad": int(counts.bad_events_total[0]),
        "rejected": counts.rejected,
    }


def small_fetches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("engine.adapters.kafka.source.MAX_PARTITION_FETCH_BYTES", SMALL_FETCH_BYTES)


async def one_partition_far_behind(
    bootstrap: str, monkeypatch: pytest.MonkeyPatch, prefix: str
) -> tuple[Config, list[float], list[float]]:
    """Small fetches and a new topic of two partitions: 0 holds 40 s of backlog, 1 a few
    events of now. The config that reads it, the times in partition 0 and in 1."""
    small_fetches(monkeypatch)
    topic = f"{prefix}-{uuid.uuid4().hex[:10]}"
    await create_topic(bootstrap, topic, 2)
    now = time.time()
    behind = spread(3000, now - 40, now - 1)
    ahead = spread(30, now - 1, now)
    await produce_in_two(bootstrap, topic, (0, behind), (1, ahead))
    return backlog_config(bootstrap, topic), behind, ahead


@pytest.mark.asyncio
async def test_a_backlog_left_by_downtime_is_counted_whole_after_a_restart(
    kafka_bootstrap: str,
    unique_topic: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The engine ran until `DOWNTIME_S` ago (its clock set back by that much), saved
    its state and stopped; the producers went on. Started again, it reads events that
    span six times the allowed lateness, from where its state left off."""
    small_fetches(monkeypatch)
    cfg = backlog_config(kafka_bootstrap, unique_topic, state=tmp_path / "burnrate.state")
    stopped_at = time.time() - DOWNTIME_S
    n_before, n_backlog = 300, 3000
    before = spread(n_before, stopped_at - 10, stopped_at)
    await produce_to(
        kafka_bootstrap,
        unique_topic,
        [(i % 3, stamped(i, ts)) for i, ts in enumerate(before)],
    )

    first = Runtime(cfg, listen="127.0.0.1:0", sinks=[], clock=lambda: time.time() - DOWNTIME_S)
    running = Running(first)
    try:
        await running.listening()
        await wait_until(lambda: first.source.records_consumed >= n_before, "the first records")
        # caught up and idle: event time follows (its) wall clock, as it does in service
        await wait_until(
            lambda: first.evaluator.watermark_s >= stopped_at - LATENESS_S - 1,
            "event time to follow the clock",
        )
    finally:
        await running.shutdown()
    assert first.state_saves >= 1

    backlog = spread(n_backlog, stopped_at, time.time())
    await produce_to(
        kafka_bootstrap,
        unique_topic,
        [(i % 3, stamped(i, ts)) for i, ts in enumerate(backlog, start=n_before)],
    )
    # Its clock stands still just after the backlog's newest event, so the wall clock
    # minus the lateness stays behind that event: only reading it can take event time
    # there (checked below), not the clock's own advance.
    frozen = backlog[-1] + 1.0
    second = Runtime(cfg, listen="127.0.0.1:0", sinks=[], clock=lambda: frozen)
    second.source.max_poll_records = 100
    running = Running(second)
    try:
        await running.listening()
        await wait_until(
            lambda: second.source.records_consumed >= n_backlog, "the backlog to be consumed"
        )
        await wait_until(second.source.caught_up, "the source to be caught up")
        # caught up and idle: event time reaches the newest event read, not only the
        # wall clock minus the lateness, so the short windows hold the backlog's end
        await wait_until(
            lambda: second.evaluator.watermark_s == backlog[-1],
            "event time to reach the newest event",
        )
    finally:
        await running.shutdown()
    assert second.restored is True
    n = n_before + n_backlog
    assert outcome(second.evaluator) == {
        "events": n,
        "bad": len(range(0, n, 10)),
        "rejected": {},
    }


@pytest.mark.asyncio
async def test_a_partition_far_behind_another_loses_nothing(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Partition 0 holds 40 s of backlog, partition 1 a few events of now: read in
    small fetches, partition 1 is soon caught up while 0 is far behind, and event time
    must wait for 0, not follow 1 (nor the wall clock)."""
    cfg, behind, ahead = await one_partition_far_behind(kafka_bootstrap, monkeypatch, "it-behind")
    rt = Runtime(cfg, listen="127.0.0.1:0", sinks=[])
    rt.source.max_poll_records = 100
    running = Running(rt)
    try:
        await running.listening()
        await wait_until(
            lambda: rt.source.records_consumed >= len(behind) + len(ahead), "every record"
        )
        await wait_until(rt.source.caught_up, "the source to be caught up")
    finally:
        await running.shutdown()
    n = len(behind) + len(ahead)
    assert outcome(rt.evaluator) == {"events": n, "bad": len(range(0, n, 10)), "rejected": {}}


@pytest.mark.asyncio
async def test_the_source_alone_holds_event_time_at_the_partition_behind(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same at the level of the source (no evaluation loop): the events of the
    caught-up partition do not make the other one's events late, the event-time cap is
    never past partition 0's newest event, and it is lifted (None) once both are
    caught up."""
    cfg, behind, ahead = await one_partition_far_behind(
        kafka_bootstrap, monkeypatch, "it-behind-src"
    )
    ev = Evaluator(cfg)
    source = KafkaSource(cfg, ev, max_poll_records=100)
    caps: list[float | None] = []
    n = len(behind) + len(ahead)
    await source.start()
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(stop))
    try:
        end = time.monotonic() + DEADLINE_S
        while source.records_consumed < n or not source.caught_up():
            caps.append(source.event_time_cap())
            assert ev.watermark_s <= max(behind)
            if task.done():
                await task  # raises what ended it
            if time.monotonic() > end:
                pytest.fail(f"not caught up: {source.status()}")
            await asyncio.sleep(0.01)
        assert source.event_time_cap() is None
    finally:
        stop.set()
        async with asyncio.timeout(15):
            await task
        await source.close()
    assert outcome(ev) == {"events": n, "bad": len(range(0, n, 10)), "rejected": {}}
    # while partition 0 was behind, the cap was at most its newest event
    assert all(c is None or c <= max(behind) for c in caps)


@pytest.mark.asyncio
async def test_lag_is_known_right_after_a_restart_with_no_new_records(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    """A member restarted on committed offsets, with nothing new to read: the lag of
    every partition is 0 as soon as the broker has answered, not missing until new
    records come, and since it is caught up event time follows the clock again."""
    group = f"g-{uuid.uuid4().hex[:10]}"
    cfg = backlog_config(kafka_bootstrap, unique_topic, group=group)
    now = time.time()
    await produce_to(
        kafka_bootstrap,
        unique_topic,
        [(i % 3, stamped(i, ts)) for i, ts in enumerate(spread(90, now - 3, now))],
    )
    first = Runtime(cfg, listen="127.0.0.1:0", sinks=[])
    running = Running(first)
    try:
        await running.listening()
        await wait_until(lambda: first.source.records_consumed >= 90, "every record")
    finally:
        await running.shutdown()

    second = Runtime(cfg, listen="127.0.0.1:0", sinks=[])
    running = Running(second)
    zero = {(unique_topic, p): 0 for p in range(3)}
    try:
        await running.listening()
        await wait_until(lambda: second.source.status().lag == zero, "a lag of 0 everywhere")
        assert second.source.caught_up()
        assert second.source.event_time_cap() is None
        second.metrics.invalidate()
        text = second.metrics.render().decode()
        data = samples(text)
        for p in range(3):
            key = (
                "burnrate_consumer_lag",
                frozenset({("topic", unique_topic), ("partition", str(p))}),
            )
            assert data[key] == 0
        started = time.time()
        await wait_until(
            lambda: second.evaluator.watermark_s >= started - LATENESS_S,
            "event time to follow the clock",
        )
    finally:
        await running.shutdown()
    assert second.source.records_consumed == 0


@pytest.mark.asyncio
async def test_a_partition_another_member_still_holds_at_start_loses_nothing(
    kafka_bootstrap: str,
) -> None:
    """At start, another member of the group (here a live consumer that reads nothing,
    as a member killed just before the start is until its session ends) holds one of
    the two partitions; its records are older than the other's by more than the
    allowed lateness. When it leaves and the partition comes here, none of them may be
    late: event time waited for it (`PARTIAL_ASSIGNMENT_HOLD_S`)."""
    topic = f"it-ghost-{uuid.uuid4().hex[:10]}"
    await create_topic(kafka_bootstrap, topic, 2)
    group = f"g-{uuid.uuid4().hex[:10]}"
    ghost = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await ghost.start()
    ghost_running = True
    rt = Runtime(
        backlog_config(kafka_bootstrap, topic, group=group), listen="127.0.0.1:0", sinks=[]
    )
    running = Running(rt)
    try:
        async with asyncio.timeout(DEADLINE_S):
            while len(ghost.assignment()) != 2:  # the ghost owns both before the engine
                await ghost.getmany(timeout_ms=100)
        await running.listening()

        def split() -> bool:
            mine = rt.source.status().assigned
            return len(mine) == 1 and len(ghost.assignment()) == 1

        async with asyncio.timeout(DEADLINE_S):  # the ghost keeps polling: it stays a member
            while not split():
                await ghost.getmany(timeout_ms=0)
                await asyncio.sleep(0.05)
        [(_, here)] = rt.source.status().assigned
        [held] = [tp.partition for tp in ghost.assignment()]
        now = time.time()
        old = spread(200, now - 30, now - 20)
        new = spread(200, now - 1, now)
        await produce_in_two(kafka_bootstrap, topic, (here, new), (held, old))
        await wait_until(lambda: rt.source.records_consumed >= len(new), "the engine's records")
        await asyncio.sleep(2 * LATENESS_S)  # idle: the wall clock would move event time
        await ghost.stop()
        ghost_running = False
        await wait_until(
            lambda: rt.source.records_consumed >= len(new) + len(old), "the ghost's records"
        )
        await wait_until(rt.source.caught_up, "the source to be caught up")
    finally:
        if ghost_running:
            await ghost.stop()
        await running.shutdown()
    n = len(old) + len(new)
    assert outcome(rt.evaluator) == {"events": n, "bad": len(range(0, n, 10)), "rejected": {}}
