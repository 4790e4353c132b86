"""The runtime's incident recorder on a real SQLite store: updates written off the
caller's path, written after a store error once the store is back, flushed at close,
read back at start (the book goes on from them), changes and corrections taken in as
they come, and a damaged or newer store refused at start (before `run` listens; exit
2), left as it is."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from engine.adapters.http.metrics import EngineMetrics
from engine.adapters.store import incidents_sqlite
from engine.adapters.store.incidents import IncidentStoreError
from engine.adapters.store.incidents_sqlite import SqliteIncidentStore
from engine.cli import main
from engine.core.changes import ChangeLog, ChangeRequest
from engine.core.config import parse_config
from engine.core.corrections import parse_correction
from engine.core.evaluator import Evaluator
from engine.core.incidents import Incident
from engine.runtime.incidents import IncidentRecorder, incident_recorder
from engine.runtime.service import Runtime
from tests.unit.core.test_incidents import tr

T0 = 1_700_000_000.0


def make(db: Path) -> tuple[IncidentRecorder, Evaluator, ChangeLog]:
    ev = Evaluator(
        parse_config(
            "slos:\n"
            "  - {name: a1, service: a, sli: availability, objective: 99}\n"
            f"incidents: {{path: '{db}', quiet_period: 5m}}\n"
        )
    )
    ev.advance(T0 - 100)
    changes = ChangeLog(3600, 100)
    rec = incident_recorder(ev.config, ev, changes, EngineMetrics(ev, lambda: None), lambda: T0)
    assert rec is not None
    return rec, ev, changes


@asynccontextmanager
async def started(db: Path) -> AsyncIterator[tuple[IncidentRecorder, Evaluator, ChangeLog]]:
    rec, ev, changes = make(db)
    await rec.start()
    try:
        yield rec, ev, changes
    finally:
        await rec.close(5.0)


async def stored(db: Path) -> list[Incident]:
    store = SqliteIncidentStore(str(db))
    await store.start()
    try:
        return await store.list_incidents()
    finally:
        await store.close()


@pytest.mark.asyncio
async def test_updates_are_written_and_a_restart_goes_on_with_the_open_incident(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "i.db"
    async with started(db) as (rec, _, _):
        rec.transitions([tr("a1", "page", "firing", T0)])
        assert rec.pending  # taken at once, written by the writer task
        assert await rec.written(5.0)
        [inc] = await rec.store.list_incidents()
        assert inc.state == "open"
    with caplog.at_level(logging.WARNING, "burnrate.runtime.incidents"):
        async with started(db) as (rec, ev, _):
            assert [i.id for i in rec.book.open_incidents()] == [inc.id]
    # no state file in this config: the firing alert is unknown to the new evaluator
    assert f"open incidents {inc.id} have alerts that were firing" in caplog.text
    async with started(db) as (rec, ev, _):
        rec.transitions([tr("a1", "page", "resolved", T0 + 50)])
        ev.advance(T0 + 50 + 300 + 0.5)
        rec.tick()
    [closed] = await stored(db)
    assert (closed.id, closed.state, closed.closed_at) == (inc.id, "closed", T0 + 350)


@pytest.mark.asyncio
async def test_close_writes_what_is_pending(tmp_path: Path) -> None:
    db = tmp_path / "i.db"
    async with started(db) as (rec, _, _):
        rec.transitions([tr("a1", "page", "firing", T0)])
    assert [i.state for i in await stored(db)] == ["open"]


@pytest.mark.asyncio
async def test_a_store_error_is_logged_and_the_write_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(incidents_sqlite, "BUSY_TIMEOUT_MS", 50)  # fail fast while locked
    db = tmp_path / "i.db"
    async with started(db) as (rec, _, _):
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # another process holds the file
        try:
            with caplog.at_level(logging.WARNING, "burnrate.runtime.incidents"):
                rec.transitions([tr("a1", "page", "firing", T0)])
                assert not await rec.written(1.5)
            assert rec.write_errors >= 1
            assert "database is locked" in caplog.text
            assert len(rec.pending) == 1  # kept for the next try
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert await rec.written(5.0)
        assert [i.state for i in await rec.store.list_incidents()] == ["open"]


@pytest.mark.asyncio
async def test_an_acknowledgement_is_in_the_store_when_it_is_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Acknowledged while its opening is still pending: both are written before
    `acknowledge` returns (a crash right after the answer loses neither); a store
    that cannot take it is an error the API answers 503, and the book keeps it."""
    monkeypatch.setattr(incidents_sqlite, "BUSY_TIMEOUT_MS", 50)
    db = tmp_path / "i.db"
    async with started(db) as (rec, _, _):
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            rec.transitions([tr("a1", "page", "firing", T0)])
            [inc] = rec.book.open_incidents()
            with pytest.raises(IncidentStoreError):
                await rec.acknowledge(inc.id, "alice")
            assert rec.pending[inc.id].acknowledged_by == "alice"  # written later
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        got = await rec.acknowledge(inc.id, "bob")  # idempotent: alice's stands
        assert got is not None
        assert got.acknowledged_by == "alice"
        [kept] = await stored(db)  # read by another connection, as after a crash
        assert (kept.id, kept.acknowledged_by) == (inc.id, "alice")


@pytest.mark.asyncio
async def test_changes_and_run_time_corrections_join_the_open_incident(tmp_path: Path) -> None:
    async with started(tmp_path / "i.db") as (rec, ev, changes):
        rec.transitions([tr("a1", "page", "firing", T0)])
        ev.advance(T0 + 10.5)
        changes.add(
            ChangeRequest(service="a", kind="deploy", version="2"),
            source="api",
            at_s=T0 + 5,
            received_at_s=T0,
        )
        rec.changes_taken()
        rec.changes_taken()  # nothing new: nothing twice
        body = {"name": "fix", "start": T0, "end": T0 + 60, "slos": ["a1"], "reason": "test"}
        ev.add_correction(parse_correction(json.dumps(body).encode(), ev.config_slos))
        rec.tick()
        rec.tick()
        [inc] = rec.book.open_incidents()
        kinds = [e.kind for e in inc.timeline]
        assert kinds == ["opened", "alert_fired", "change", "correction"]
        assert await rec.written(5.0)
        [kept] = await rec.store.list_incidents()
        assert kept == inc


@pytest.mark.asyncio
async def test_a_damaged_store_is_refused_at_start_and_left_as_it_is(tmp_path: Path) -> None:
    db = tmp_path / "i.db"
    db.write_bytes(b"not a database at all, " * 100)
    before = db.read_bytes()
    rec, _, _ = make(db)
    with pytest.raises(IncidentStoreError, match="not a SQLite database"):
        await rec.start()
    assert db.read_bytes() == before


@pytest.mark.asyncio
async def test_run_stops_before_listening_on_a_store_it_cannot_use(tmp_path: Path) -> None:
    db = tmp_path / "i.db"
    future = sqlite3.connect(db)
    future.execute("PRAGMA user_version = 99")
    future.close()
    cfg = parse_config(
        "slos:\n  - {name: a1, service: a, sli: availability, objective: 99}\n"
        "kafka: {bootstrap_servers: '127.0.0.1:9', topics: [t]}\n"
        f"incidents: {{path: '{db}'}}\n"
    )
    rt = Runtime(cfg, listen="127.0.0.1:0", sinks=[])
    with pytest.raises(IncidentStoreError, match="written by a newer burnrate"):
        await rt.run(asyncio.Event())
    assert rt.http.port == 0  # never listened


def test_run_refuses_a_damaged_store_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "i.db"
    db.write_bytes(b"not a database at all, " * 100)
    config = tmp_path / "c.yaml"
    config.write_text(
        "slos:\n  - {name: a1, service: a, sli: availability, objective: 99}\n"
        "kafka: {bootstrap_servers: '127.0.0.1:9', topics: [t]}\n"
        f"incidents: {{path: '{db}'}}\n"
    )
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"$.incidents.path: incident store {db}: not a SQLite database" in err
    assert db.read_bytes() == b"not a database at all, " * 100
