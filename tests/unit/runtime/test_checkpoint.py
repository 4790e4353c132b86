"""Checkpoint: restore at start, save-then-commit while running and at shutdown, with a
real evaluator, a real FileStateStore and a recording source (no broker)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import msgspec
import numpy as np
import pytest
from aiokafka import TopicPartition

from engine.adapters.kafka.offsets import OffsetTracker
from engine.adapters.kafka.source import KafkaSource
from engine.adapters.store.state import TEMP_SUFFIX, FileStateStore
from engine.core import snapshot
from engine.core.changes import ChangeLog, ChangeRequest
from engine.core.config import parse_config
from engine.core.decode import Event
from engine.core.evaluator import Evaluator
from engine.core.overrides import Override, Overrides
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
        self.saved_at_commit: list[dict[tuple[str, int], int]] = []
        self.store = store
        self.gate: asyncio.Event | None = None

    @contextlib.asynccontextmanager
    async def settled(self) -> AsyncIterator[dict[tuple[str, int], int] | None]:
        self.log.append("settled")
        if self.gate is not None:
            await self.gate.wait()
        yield self.offsets.state_offsets() if self.consistent else None

    async def commit(self, partitions: Any, *, reason: str, timeout_s: float = 5.0) -> bool:
        self.log.append(("commit", reason))
        self.commits.append((partitions, reason))
        self.saved_at_commit.append(self.offsets.saved_offsets())
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

    def refuse(blob: bytes, offsets: Any, *parts: bytes) -> None:
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


# -- commits never pass a written snapshot ----------------------------------------------


@pytest.mark.asyncio
async def test_only_the_offsets_of_the_written_file_become_committable(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path / "state.bin")
    source = FakeSource(store)
    cp = checkpoint(fed(), source, store)
    cp.restore()  # no file: nothing is committable until the first save
    assert source.offsets.commits_snapshots
    source.offsets.applied(P0, 10)
    assert source.offsets.saved_offsets() == {}
    assert await cp.save("periodic") is True
    source.offsets.applied(P0, 30)  # counted after the snapshot
    # at the commit, the committable offsets were exactly the file's, not the applied ones
    [(_, file_offsets)] = [loaded for loaded in source.file_at_commit if loaded is not None]
    assert source.saved_at_commit == [file_offsets] == [{("events", 0): 10}]
    assert source.offsets.saved_offsets() == {("events", 0): 10}


@pytest.mark.asyncio
async def test_a_failed_save_makes_nothing_committable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    source = FakeSource()
    cp = checkpoint(fed(), source, FileStateStore(blocker / "state.bin"))
    cp.restore()
    source.offsets.applied(P0, 10)
    assert await cp.save("periodic") is False
    assert source.offsets.saved_offsets() == {}


@pytest.mark.asyncio
async def test_restore_offers_a_snapshot_before_every_revoke(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path / "state.bin")
    source = FakeSource(store)
    cp = checkpoint(fed(), source, store)
    cp.restore()
    assert source.offsets.before_revoke is not None
    source.offsets.applied(P0, 10)
    await source.offsets.before_revoke([P0])
    assert cp.saves == 1
    assert source.commits == [(None, "state revoke")]
    assert source.offsets.saved_offsets() == {("events", 0): 10}


def test_without_a_store_no_snapshot_is_offered_before_a_revoke() -> None:
    source = FakeSource()
    checkpoint(fed(), source, None).restore()
    assert source.offsets.before_revoke is None
    assert not source.offsets.commits_snapshots


@pytest.mark.asyncio
async def test_a_save_whose_caller_stops_waiting_still_writes_the_file(tmp_path: Path) -> None:
    """A revoke or the shutdown stops waiting after its bound: the write goes on (cutting
    it short would let a later save overtake it), and what it wrote becomes committable."""
    store = FileStateStore(tmp_path / "state.bin")
    source = FakeSource(store)
    source.gate = asyncio.Event()
    source.offsets.use_state_offsets({})
    source.offsets.applied(P0, 10)
    cp = checkpoint(fed(), source, store)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(cp.save("revoke"), 0.05)
    source.gate.set()
    for _ in range(500):
        if cp.saves:
            break
        await asyncio.sleep(0.01)
    assert cp.saves == 1
    loaded = store.load()
    assert loaded is not None
    assert loaded[1] == {("events", 0): 10}
    assert source.offsets.saved_offsets() == {("events", 0): 10}
    assert source.commits == []  # the caller that would commit had gone: the next one does


@pytest.mark.asyncio
async def test_saves_run_one_at_a_time_and_the_last_one_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStateStore(tmp_path / "state.bin")
    writing: list[int] = []
    overlaps: list[int] = []
    real_save = store.save

    def slow_save(
        blob: bytes,
        offsets: Any,
        deliveries: bytes = b"",
        overrides: bytes = b"",
        changes: bytes = b"",
    ) -> None:
        if writing:
            overlaps.append(len(writing))
        writing.append(1)
        time.sleep(0.05)
        real_save(blob, offsets, deliveries, overrides, changes)
        writing.pop()

    monkeypatch.setattr(store, "save", slow_save)
    source = FakeSource()
    cp = checkpoint(fed(), source, store)
    source.offsets.applied(P0, 10)
    first = asyncio.create_task(cp.save("one"))
    await asyncio.sleep(0.01)
    source.offsets.applied(P0, 20)
    second = asyncio.create_task(cp.save("two"))
    assert await first is True
    assert await second is True
    assert overlaps == []
    loaded = store.load()
    assert loaded is not None
    assert loaded[1] == {("events", 0): 20}
    assert source.offsets.saved_offsets() == {("events", 0): 20}


# -- the start: temp files, impossible offsets ----------------------------------------


def test_restore_removes_temp_files_left_by_killed_writes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="burnrate")
    store = FileStateStore(tmp_path / "state.bin")
    store.save(snapshot.dump(fed()), {("events", 0): 42})
    orphan = tmp_path / f"{store.temp_prefix}x1y2z3{TEMP_SUFFIX}"
    orphan.write_bytes(b"partial" * 1000)
    cp = checkpoint(evaluator(), FakeSource(), store)
    cp.restore()
    assert cp.restored
    assert not orphan.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.bin"]
    assert any("left by a state write that never finished" in m for m in caplog.messages)


def test_a_file_with_a_negative_offset_is_refused_and_the_engine_starts_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="burnrate")
    store = FileStateStore(tmp_path / "state.bin")
    store.save(snapshot.dump(fed()), {("events", 0): -5, ("events", 1): 7})
    source = FakeSource()
    ev = evaluator()
    cp = checkpoint(ev, source, store)
    cp.restore()
    assert not cp.restored
    assert int(ev.counts().events_total.sum()) == 0
    assert source.offsets.state_offsets() == {}
    assert source.offsets.saved_offsets() == {}
    [warning] = [
        r
        for r in caplog.records
        if r.name == "burnrate.runtime.checkpoint" and r.levelno == logging.WARNING
    ]
    assert warning.getMessage().startswith("ignoring the state snapshot: ")
    assert "offset -5 is out of range" in warning.getMessage()
    assert warning.__dict__["data"]["reason"].endswith(
        "offset -5 is out of range 0..9223372036854775807"
    )


# -- undelivered alerts ride along ----------------------------------------------------


class FakeDeliveries:
    def __init__(self, source: FakeSource) -> None:
        self.source = source
        self.calls: list[list[Any]] = []
        self.kept = 0

    def snapshot(self) -> bytes:
        self.calls.append(list(self.source.log))  # inside the settled step
        return b"undelivered:%d" % len(self.calls)

    def undelivered(self) -> int:
        return self.kept


@pytest.mark.asyncio
async def test_each_save_keeps_the_undelivered_alerts_with_the_snapshot(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path / "state.bin")
    source = FakeSource(store)
    deliveries = FakeDeliveries(source)
    cp = Checkpoint(
        fed(), cast(KafkaSource, source), store, state_interval_s=60, deliveries=deliveries
    )
    assert await cp.save("periodic") is True
    assert deliveries.calls == [["settled"]]  # taken while settled, before the commit
    saved = store.read()
    assert saved is not None
    assert saved.deliveries == b"undelivered:1"

    again = Checkpoint(evaluator(), cast(KafkaSource, FakeSource()), store, state_interval_s=60)
    again.restore()
    assert again.restored
    assert again.restored_deliveries == b"undelivered:1"


@pytest.mark.asyncio
async def test_finish_says_how_many_undelivered_alerts_the_file_keeps(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="burnrate")
    store = FileStateStore(tmp_path / "state.bin")
    source = FakeSource(store)
    deliveries = FakeDeliveries(source)
    deliveries.kept = 2
    cp = Checkpoint(
        fed(), cast(KafkaSource, source), store, state_interval_s=60, deliveries=deliveries
    )
    await cp.finish(5)
    [kept] = [r for r in caplog.records if "undelivered alert transitions kept" in r.getMessage()]
    assert kept.getMessage().startswith("2 undelivered")
    assert kept.__dict__["data"] == {"event": "deliveries_kept", "count": 2}


@pytest.mark.asyncio
async def test_gate_overrides_are_saved_and_restored_without_the_expired(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path / "state.bin")
    now = [1_800_000_000.0]
    overrides = Overrides()
    keep = Override(service="api", reason="hotfix", set_at_s=now[0], expires_at_s=now[0] + 3600)
    gone = Override(service="web", reason="old", set_at_s=now[0], expires_at_s=now[0] + 60)
    overrides.set(keep)
    overrides.set(gone)
    cp = Checkpoint(
        fed(),
        cast(KafkaSource, FakeSource(store)),
        store,
        state_interval_s=60,
        overrides=overrides,
        clock=lambda: now[0],
    )
    assert await cp.save("periodic") is True

    now[0] += 600  # a restart ten minutes later
    restored = Overrides()
    again = Checkpoint(
        evaluator(),
        cast(KafkaSource, FakeSource()),
        store,
        state_interval_s=60,
        overrides=restored,
        clock=lambda: now[0],
    )
    again.restore()
    assert again.restored
    assert restored.all(now[0]) == [keep]


@pytest.mark.asyncio
async def test_changes_are_saved_and_restored_with_their_attribution(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path / "state.bin")
    ev = fed()
    changes = ChangeLog(3600, max_kept=10)
    req = ChangeRequest(service="api", kind="deploy", version="1.2")
    changes.add(req, source="api", at_s=ev.watermark_s - 30, received_at_s=1.0)
    changes.update(ev)
    cp = Checkpoint(
        ev, cast(KafkaSource, FakeSource(store)), store, state_interval_s=60, changes=changes
    )
    assert await cp.save("change") is True
    restored = ChangeLog(3600, max_kept=10)
    again = Checkpoint(
        evaluator(), cast(KafkaSource, FakeSource()), store, state_interval_s=60, changes=restored
    )
    again.restore()
    assert again.restored
    assert restored.changes() == changes.changes()
    assert msgspec.msgpack.decode((tmp_path / "state.bin").read_bytes())["version"] == 4
