"""Checkpoint: restore at start, save-then-commit while running and at shutdown, with a
real evaluator, a real FileStateStore and a recording source (no broker)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from aiokafka import TopicPartition

from engine.adapters.kafka.offsets import OffsetTracker
from engine.adapters.kafka.source import KafkaSource
from engine.adapters.store.state import FileStateStore
from engine.core import snapshot
from engine.core.config import parse_config
from engine.core.decode import Event
from engine.core.evaluator import Evaluator
from engine.runtime.checkpoint import Checkpoint

T0 = 1_700_000_000.0
CONFIG = """
slos:
  - {name: api-avail, service: api, sli: availability, objective: 99, period: 1h}
  - {name: db-avail, service: db, sli: availability, objective: 95, period: 1h}
policy:
  - {severity: page, long: 5m, short: 1m, burn_rate: 10}
"""
OTHER_CONFIG = CONFIG.replace("objective: 95", "objective: 90")
P0 = TopicPartition("events", 0)
P1 = TopicPartition("events", 1)


def evaluator(config: str = CONFIG) -> Evaluator:
    return Evaluator(parse_config(config))


def fed(config: str = CONFIG) -> Evaluator:
    ev = evaluator(config)
    batch = [Event(service="api", ts=T0 + i, status=500 if i % 4 == 0 else 200) for i in range(40)]
    batch += [Event(service="db", ts=T0 + i, status=200) for i in range(10)]
    ev.ingest(ev.classifier.columns(batch))
    return ev


class FakeSource:
    """What the checkpoint uses of KafkaSource. Every call lands in `log`, in order."""

    def __init__(self, store: FileStateStore | None = None) -> None:
        self.offsets = OffsetTracker()
        self.consistent = True
        self.log: list[Any] = []
        self.commits: list[tuple[Any, str]] = []
        self.file_at_commit: list[Any] = []
        self.store = store
        self.gate: asyncio.Event | None = None

    @contextlib.asynccontextmanager
    async def settled(self) -> AsyncIterator[dict[tuple[str, int], int] | None]:
        self.log.append("settled")
        if self.gate is not None:
            await self.gate.wait()
        yield self.offsets.state_offsets() if self.consistent else None

    async def commit(self, partitions: Any, *, reason: str) -> bool:
        self.log.append(("commit", reason))
        self.commits.append((partitions, reason))
        if self.store is not None:  # what was on disk when the commit went out
            self.file_at_commit.append(self.store.load())
        return True


def checkpoint(
    ev: Evaluator,
    source: FakeSource,
    store: FileStateStore | None,
    *,
    state_interval_s: float = 60.0,
    commit_interval_s: float = 60.0,
) -> Checkpoint:
    return Checkpoint(
        ev,
        cast(KafkaSource, source),
        store,
        state_interval_s=state_interval_s,
        commit_interval_s=commit_interval_s,
    )


# -- restore --------------------------------------------------------------------------


def test_without_a_store_restore_does_nothing() -> None:
    source = FakeSource()
    ev = evaluator()
    cp = checkpoint(ev, source, None)
    cp.restore()
    assert not cp.restored
    # no state offsets in use: revoked positions are not kept
    source.offsets.applied(P0, 5)
    source.offsets.keep_positions([P0])
    source.offsets.forget([P0])
    assert source.offsets.state_offsets() == {}


def test_restore_without_a_file_starts_empty_but_tracks_state_positions(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="burnrate")
    source = FakeSource()
    ev = evaluator()
    cp = checkpoint(ev, source, FileStateStore(tmp_path / "state.bin"))
    cp.restore()
    assert not cp.restored
    assert int(ev.counts().events_total.sum()) == 0
    assert source.offsets.state_offsets() == {}
    # positions are tracked from now on: a revoked partition stays in the state
    source.offsets.applied(P0, 5)
    source.offsets.keep_positions([P0])
    source.offsets.forget([P0])
    assert source.offsets.state_offsets() == {("events", 0): 5}
    assert any("no state snapshot yet" in m for m in caplog.messages)


def test_restore_of_a_fitting_file_restores_counts_and_offsets(tmp_path: Path) -> None:
    before = fed()
    store = FileStateStore(tmp_path / "state.bin")
    offsets = {("events", 0): 42, ("events", 1): 7}
    store.save(snapshot.dump(before), offsets)

    source = FakeSource()
    ev = evaluator()
    cp = checkpoint(ev, source, store)
    cp.restore()
    assert cp.restored
    assert np.array_equal(ev.counts().events_total, before.counts().events_total)
    assert np.array_equal(ev.counts().bad_events_total, before.counts().bad_events_total)
    assert list(ev.counts().events_total) == [40, 10]
    assert ev.watermark_s == before.watermark_s
    assert source.offsets.state_offsets() == offsets

    class Seeks:
        def __init__(self) -> None:
            self.seeks: list[tuple[TopicPartition, int]] = []

        def seek(self, tp: TopicPartition, off: int) -> None:
            self.seeks.append((tp, off))

    consumer = Seeks()
    source.offsets.seek_to_state(consumer, [P0, P1, TopicPartition("events", 2)])
    assert consumer.seeks == [(P0, 42), (P1, 7)]


@pytest.mark.parametrize("kind", ["other config", "corrupt snapshot", "damaged file"])
def test_a_file_that_does_not_fit_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    caplog.set_level(logging.INFO, logger="burnrate")
    path = tmp_path / "state.bin"
    store = FileStateStore(path)
    if kind == "other config":
        store.save(snapshot.dump(fed(OTHER_CONFIG)), {("events", 0): 42})
    elif kind == "corrupt snapshot":
        store.save(b"not a snapshot", {("events", 0): 42})
    else:
        path.write_bytes(b"\x00garbage")

    source = FakeSource()
    ev = evaluator()
    cp = checkpoint(ev, source, store)
    cp.restore()
    assert not cp.restored
    assert int(ev.counts().events_total.sum()) == 0  # the evaluator starts empty
    assert source.offsets.state_offsets() == {}  # not the file's offsets
    ignored = [
        r
        for r in caplog.records
        if r.name == "burnrate.runtime.checkpoint" and r.levelno == logging.WARNING
    ]
    assert len(ignored) == 1
    assert ignored[0].getMessage().startswith("ignoring the state snapshot: ")
    assert ignored[0].__dict__["data"]["event"] == "state_ignored"
    if kind == "other config":
        assert "another config" in ignored[0].getMessage()


# -- save -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_save_writes_the_snapshot_and_offsets_then_commits(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path / "state.bin")
    source = FakeSource(store)
    ev = fed()
    source.offsets.use_state_offsets({("events", 1): 7})
    source.offsets.applied(P0, 10)
    cp = checkpoint(ev, source, store)
    assert await cp.save("test") is True
    assert cp.saves == 1
    assert source.log == ["settled", ("commit", "state test")]
    assert source.commits == [(None, "state test")]
    # the file was complete before the commit went out
    assert len(source.file_at_commit) == 1
    loaded = source.file_at_commit[0]
    assert loaded is not None
    blob, offsets = loaded
    assert offsets == {("events", 0): 10, ("events", 1): 7}
    again = evaluator()
    snapshot.load(again, blob)
    assert np.array_equal(again.counts().events_total, ev.counts().events_total)
    assert store.load() == loaded


@pytest.mark.asyncio
async def test_save_without_a_store_does_nothing() -> None:
    source = FakeSource()
    cp = checkpoint(fed(), source, None)
    assert await cp.save("test") is False
    assert source.log == []
    assert cp.saves == 0


@pytest.mark.asyncio
async def test_save_refuses_when_a_batch_was_interrupted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="burnrate")
    path = tmp_path / "state.bin"
    source = FakeSource()
    source.consistent = False
    cp = checkpoint(fed(), source, FileStateStore(path))
    assert await cp.save("periodic") is False
    assert not path.exists()
    assert source.commits == []
    assert cp.saves == 0
    assert any("state not saved (periodic)" in m for m in caplog.messages)


@pytest.mark.asyncio
async def test_save_survives_a_store_that_cannot_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="burnrate")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    source = FakeSource()
    source.offsets.applied(P0, 10)
    cp = checkpoint(fed(), source, FileStateStore(blocker / "state.bin"))
    assert await cp.save("periodic") is False  # mkdir under a file: an OSError
    assert source.commits == []  # no commit of offsets the state does not hold
    assert cp.saves == 0
    assert any("cannot write the state snapshot (periodic)" in m for m in caplog.messages)


@pytest.mark.asyncio
async def test_a_failed_save_leaves_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStateStore(tmp_path / "state.bin")
    source = FakeSource()
    source.offsets.applied(P0, 10)
    cp = checkpoint(fed(), source, store)
    assert await cp.save("first") is True
    first = store.load()

    def refuse(blob: bytes, offsets: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "save", refuse)
    source.offsets.applied(P0, 20)
    assert await cp.save("second") is False
    assert cp.saves == 1
    assert [reason for _, reason in source.commits] == ["state first"]
    monkeypatch.undo()
    assert store.load() == first


# -- run and finish -------------------------------------------------------------------


async def run_for(cp: Checkpoint, seconds: float) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, stop.set)
    await asyncio.wait_for(cp.run(stop), seconds + 10)


@pytest.mark.asyncio
async def test_run_commits_and_saves_periodically(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path / "state.bin")
    source = FakeSource()
    source.offsets.applied(P0, 10)
    cp = checkpoint(fed(), source, store, state_interval_s=0.05, commit_interval_s=0.05)
    await run_for(cp, 0.4)
    reasons = [reason for _, reason in source.commits]
    assert reasons.count("periodic") >= 1
    assert reasons.count("state periodic") >= 1
    assert cp.saves >= 1
    assert cp.saves == reasons.count("state periodic")
    loaded = store.load()
    assert loaded is not None
    assert loaded[1] == {("events", 0): 10}


@pytest.mark.asyncio
async def test_run_without_a_store_only_commits() -> None:
    source = FakeSource()
    cp = checkpoint(fed(), source, None, state_interval_s=0.01, commit_interval_s=0.05)
    await run_for(cp, 0.3)
    reasons = {reason for _, reason in source.commits}
    assert reasons == {"periodic"}
    assert "settled" not in source.log
    assert cp.saves == 0


@pytest.mark.asyncio
async def test_run_saves_on_its_own_interval(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path / "state.bin")
    source = FakeSource()
    cp = checkpoint(fed(), source, store, state_interval_s=0.05, commit_interval_s=60)
    await run_for(cp, 0.3)
    reasons = {reason for _, reason in source.commits}
    assert cp.saves >= 1
    assert reasons == {"state periodic"}  # the commit interval never came


@pytest.mark.asyncio
async def test_run_returns_at_once_when_stopped(tmp_path: Path) -> None:
    source = FakeSource()
    cp = checkpoint(fed(), source, FileStateStore(tmp_path / "state.bin"))
    stop = asyncio.Event()
    stop.set()
    await asyncio.wait_for(cp.run(stop), 5)
    assert source.log == []
    assert not (tmp_path / "state.bin").exists()


@pytest.mark.asyncio
async def test_run_leaves_the_last_save_to_finish(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path / "state.bin")
    source = FakeSource()
    cp = checkpoint(fed(), source, store, state_interval_s=60, commit_interval_s=60)
    task = asyncio.create_task(cp.run(stop := asyncio.Event()))
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert source.log == []  # stopping neither saves nor commits
    await cp.finish(5)
    assert cp.saves == 1
    assert source.log == ["settled", ("commit", "state shutdown")]
    assert store.load() is not None


@pytest.mark.asyncio
async def test_finish_without_a_store_does_nothing() -> None:
    source = FakeSource()
    cp = checkpoint(fed(), source, None)
    await cp.finish(5)
    assert source.log == []


@pytest.mark.asyncio
async def test_finish_gives_up_after_its_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="burnrate")
    path = tmp_path / "state.bin"
    source = FakeSource()
    source.gate = asyncio.Event()  # a batch that never settles
    cp = checkpoint(fed(), source, FileStateStore(path))
    await asyncio.wait_for(cp.finish(0.05), 5)
    assert cp.saves == 0
    assert not path.exists()
    assert source.commits == []
    assert any("not written before exit" in m for m in caplog.messages)
