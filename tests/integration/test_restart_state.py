"""State snapshots across restarts of the service, against a real broker: a restart keeps
its counts, counts nothing twice, a snapshot of another config is ignored, and the
group's committed offsets never pass what a written snapshot holds (also on revoke)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from engine.adapters.store.state import FileStateStore
from engine.core import snapshot
from engine.core.config import Config, parse_config
from engine.runtime.checkpoint import COMMIT_INTERVAL_S
from engine.runtime.service import Runtime
from tests.integration.test_run import Running
from tests.integration.test_source import (
    PARTITIONS,
    counts,
    expected,
    produce,
    records_for,
    wait_until,
)

N, M = 600, 400


def state_config(
    bootstrap: str,
    topic: str,
    group: str,
    path: Path,
    *,
    slos: str | None = None,
    interval: str = "1s",
) -> Config:
    slos = slos or (
        "  - {name: checkout-availability, service: checkout, sli: availability, objective: 99}\n"
        "  - {name: checkout-latency, service: checkout, sli: latency, threshold_ms: 300,"
        " objective: 99}\n"
    )
    return parse_config(
        "slos:\n"
        f"{slos}"
        "kafka:\n"
        f"  bootstrap_servers: {bootstrap}\n"
        f"  topics: [{topic}]\n"
        f"  group_id: {group}\n"
        "http:\n"
        "  listen: 127.0.0.1:0\n"
        "state:\n"
        f"  path: {path}\n"
        f"  interval: {interval}\n"
    )


async def run_until(cfg: Config, total: int) -> Runtime:
    """Run a fresh Runtime until its first SLO has counted `total` events, wait for a few
    more fetches that must bring nothing, then stop it (which writes the snapshot)."""
    rt = Runtime(cfg, listen="127.0.0.1:0", sinks=[])
    running = Running(rt)
    try:
        await running.listening()
        await wait_until(
            lambda: int(rt.evaluator.counts().events_total[0]) >= total, f"{total} events"
        )
        t0 = time.time()
        await wait_until(
            lambda: (rt.source.status().last_fetch_at or 0) > t0 + 1.0, "more fetch answers"
        )
    finally:
        await running.shutdown()
    return rt


async def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int | None]:
    """The group's committed offset per partition (None: nothing committed), read by a
    client that does not join the group."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)}
    finally:
        await consumer.stop()


def window_total_1h(rt: Runtime) -> int:
    """Events in the 1h window once event time has passed every event counted."""
    ev = rt.evaluator
    ev.advance(time.time() + 30)
    return int(ev.windows.sums(3600)[0, 0])


@pytest.mark.asyncio
async def test_a_restart_keeps_its_counts_and_counts_nothing_twice(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    path = tmp_path / "state" / "burnrate.state"
    cfg = state_config(kafka_bootstrap, unique_topic, f"g-{uuid.uuid4().hex[:10]}", path)
    await produce(
        kafka_bootstrap, unique_topic, records_for(range(N), "json", batch=1, now=time.time())
    )
    first = await run_until(cfg, N)
    assert counts(first.evaluator) == expected(range(N))
    assert first.restored is False
    assert first.state_saves >= 1
    saved = FileStateStore(path).load()
    assert saved is not None
    assert sum(saved[1].values()) == N  # offsets of every partition, matching the counts

    await produce(
        kafka_bootstrap,
        unique_topic,
        records_for(range(N, N + M), "json", batch=1, now=time.time()),
    )
    second = await run_until(cfg, N + M)
    assert second.restored is True
    assert counts(second.evaluator) == expected(range(N + M))  # N + M, not M, not more
    assert int(second.evaluator.counts().events_total[0]) == N + M
    assert window_total_1h(second) == N + M
    saved = FileStateStore(path).load()
    assert saved is not None
    assert sum(saved[1].values()) == N + M


@pytest.mark.asyncio
async def test_the_snapshot_offsets_win_over_the_groups_committed_offsets(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    """An older snapshot than the group's commits (say, a restored backup): the records
    after the snapshot are read again, so the counts match the log exactly."""
    path = tmp_path / "burnrate.state"
    cfg = state_config(kafka_bootstrap, unique_topic, f"g-{uuid.uuid4().hex[:10]}", path)
    await produce(
        kafka_bootstrap, unique_topic, records_for(range(N), "json", batch=1, now=time.time())
    )
    await run_until(cfg, N)
    shutil.copy(path, tmp_path / "backup")
    await produce(
        kafka_bootstrap,
        unique_topic,
        records_for(range(N, N + M), "json", batch=1, now=time.time()),
    )
    await run_until(cfg, N + M)  # commits N + M to the group
    shutil.copy(tmp_path / "backup", path)
    third = await run_until(cfg, N + M)
    assert third.restored is True
    assert counts(third.evaluator) == expected(range(N + M))


@pytest.mark.asyncio
async def test_a_snapshot_of_another_slo_list_is_ignored_with_a_warning(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "burnrate.state"
    group = f"g-{uuid.uuid4().hex[:10]}"
    cfg = state_config(kafka_bootstrap, unique_topic, group, path)
    await produce(
        kafka_bootstrap, unique_topic, records_for(range(N), "json", batch=1, now=time.time())
    )
    await run_until(cfg, N)

    other = state_config(
        kafka_bootstrap,
        unique_topic,
        group,
        path,
        slos="  - {name: checkout-all, service: checkout, sli: availability, objective: 99.5}\n",
    )
    await produce(
        kafka_bootstrap,
        unique_topic,
        records_for(range(N, N + M), "json", batch=1, now=time.time()),
    )
    caplog.set_level(logging.INFO, logger="burnrate")
    rt = await run_until(other, M)
    assert rt.restored is False
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "ignoring the state snapshot" in r.getMessage()
    ]
    assert len(warnings) == 1
    assert "checkout-availability" in warnings[0]
    assert "checkout-all" in warnings[0]
    # started empty from the group's committed offsets: only the M new events
    assert int(rt.evaluator.counts().events_total[0]) == M
    # and the new snapshot is of the new config
    reloaded = Runtime(other, listen="127.0.0.1:0", sinks=[])
    saved = FileStateStore(path).load()
    assert saved is not None
    snapshot.load(reloaded.evaluator, saved[0])
    assert int(reloaded.evaluator.counts().events_total[0]) == M


@pytest.mark.asyncio
@pytest.mark.parametrize("store", ["writable", "unwritable"])
async def test_a_revoke_commits_only_what_a_written_snapshot_holds(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path, store: str
) -> None:
    """Member a counts N events alone, with no snapshot yet (a long interval); member b
    joins, so a's partitions are revoked. The revoke writes a snapshot first and commits
    exactly its offsets, so b starts where a's counts end: together they count every
    event once. When a cannot write its state, nothing is committed at all."""
    group = f"g-{uuid.uuid4().hex[:10]}"
    if store == "unwritable":
        (tmp_path / "not-a-dir").write_text("")
        path_a = tmp_path / "not-a-dir" / "a.state"  # every save fails
    else:
        path_a = tmp_path / "a.state"
    cfg_a = state_config(kafka_bootstrap, unique_topic, group, path_a, interval="5m")
    cfg_b = state_config(kafka_bootstrap, unique_topic, group, tmp_path / "b.state", interval="5m")
    a = Runtime(cfg_a, listen="127.0.0.1:0", sinks=[])
    ra = Running(a)
    try:
        await ra.listening()
        await wait_until(lambda: len(a.source.status().assigned) == PARTITIONS, "a owns all")
        await produce(
            kafka_bootstrap, unique_topic, records_for(range(N), "json", batch=1, now=time.time())
        )
        await wait_until(lambda: counts(a.evaluator)[0] >= N, f"{N} events at a")
        await asyncio.sleep(COMMIT_INTERVAL_S + 1.0)  # the periodic commit had its turn
        assert await committed_offsets(kafka_bootstrap, group, unique_topic) == dict.fromkeys(
            range(PARTITIONS)
        )
        assert a.state_saves == 0

        b = Runtime(cfg_b, listen="127.0.0.1:0", sinks=[])
        rb = Running(b)
        try:
            await wait_until(
                lambda: (
                    bool(a.source.status().assigned)
                    and bool(b.source.status().assigned)
                    and len(a.source.status().assigned) + len(b.source.status().assigned)
                    == PARTITIONS
                ),
                "both members with partitions",
            )
            committed = await committed_offsets(kafka_bootstrap, group, unique_topic)
            if store == "unwritable":
                assert a.state_saves == 0
                assert committed == dict.fromkeys(range(PARTITIONS))
                return
            saved = FileStateStore(path_a).load()
            assert saved is not None  # written on the revoke
            in_file = {p: off for (_t, p), off in saved[1].items()}
            assert sum(in_file.values()) == N
            assert committed == in_file  # exactly the snapshot's offsets, none beyond

            await produce(
                kafka_bootstrap,
                unique_topic,
                records_for(range(N, N + M), "json", batch=1, now=time.time()),
            )
            await wait_until(
                lambda: counts(a.evaluator)[0] + counts(b.evaluator)[0] >= N + M,
                f"{N + M} events at a and b",
            )
            t0 = time.time()
            await wait_until(
                lambda: (
                    min(a.source.status().last_fetch_at or 0, b.source.status().last_fetch_at or 0)
                    > t0 + 1.0
                ),
                "more fetch answers at both",
            )
            total = tuple(
                x + y for x, y in zip(counts(a.evaluator), counts(b.evaluator), strict=True)
            )
        finally:
            await rb.shutdown()
    finally:
        await ra.shutdown()
    assert total == expected(range(N + M))  # nothing missed at b, nothing counted by both
