"""The incident store contract, one suite run against both stores: SQLite (a real file)
and PostgreSQL (a real server: tests/integration/postgres_server.py). Then what only
one of them has: SQLite's damaged, foreign and future files; PostgreSQL's connection
errors and shared schema."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import msgspec
import psycopg
import pytest
import pytest_asyncio

from engine.adapters.store.incidents import IncidentStore, IncidentStoreError, incident_store
from engine.adapters.store.incidents_postgres import SCHEMA_VERSION as PG_VERSION
from engine.adapters.store.incidents_postgres import PostgresIncidentStore
from engine.adapters.store.incidents_sqlite import SCHEMA_VERSION as SQLITE_VERSION
from engine.adapters.store.incidents_sqlite import SqliteIncidentStore
from engine.core.config import Incidents, Slo
from engine.core.incidents import Incident, IncidentBook, IncidentUpdate
from engine.core.transitions import ChangeNote
from tests.integration.postgres_server import fresh_database, postgres_server
from tests.unit.core.test_incidents import tr

T0 = 1_700_000_000.0
QUIET_S = 900.0
SLOS = [
    Slo(name="api-avail", service="api", sli="availability", objective=99.9),  # type: ignore[arg-type]
    Slo(name="api-lat", service="api", sli="latency", threshold_ms=300, objective=99),  # type: ignore[arg-type]
    Slo(name="db-avail", service="db", sli="availability", objective=99.9),  # type: ignore[arg-type]
]

MakeStore = Callable[[], IncidentStore]


def last_of(updates: list[IncidentUpdate]) -> Incident:
    return updates[-1].incident


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    with postgres_server() as dsn:
        yield dsn


@pytest.fixture(params=["sqlite", "postgres"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeStore]:
    """Makes stores (not started) over one and the same storage, so a second one is
    another instance, or the same one after a restart."""
    if request.param == "sqlite":
        path = str(tmp_path / "incidents.db")
        yield lambda: SqliteIncidentStore(path)
        return
    server = request.getfixturevalue("postgres")
    with fresh_database(server) as dsn:
        yield lambda: PostgresIncidentStore(dsn)


@pytest_asyncio.fixture
async def store(make_store: MakeStore) -> AsyncIterator[IncidentStore]:
    s = make_store()
    await s.start()
    try:
        yield s
    finally:
        await s.close()


def a_closed_and_an_open_incident() -> tuple[Incident, Incident]:
    book = IncidentBook(SLOS, QUIET_S)
    note = ChangeNote(id=3, kind="deploy", at=T0 - 60, version="v7")
    book.transition(tr("api-avail", "page", "firing", T0, changes=(note,)), onset_at_s=T0 - 240)
    book.transition(tr("api-lat", "ticket", "firing", T0 + 30))
    book.acknowledge(book.open_incidents()[0].id, "alice", T0 + 90)
    book.transition(tr("api-avail", "page", "resolved", T0 + 600))
    book.transition(tr("api-lat", "ticket", "resolved", T0 + 660))
    closed = last_of(book.advance(T0 + 660 + QUIET_S))
    opened = last_of(book.transition(tr("db-avail", "page", "firing", T0 + 5000)))
    return closed, opened


# -- the contract ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_incident_comes_back_as_written(store: IncidentStore) -> None:
    closed, opened = a_closed_and_an_open_incident()
    assert await store.upsert(closed) == closed
    assert await store.upsert(opened) == opened
    assert await store.get(closed.id) == closed
    assert await store.get(opened.id) == opened
    assert await store.get("no-such-incident") is None
    got = await store.get(closed.id)
    assert got is not None
    assert (got.time_to_detect_s, got.time_to_acknowledge_s, got.time_to_resolve_s) == (
        240,
        90,
        660,
    )
    assert [e.kind for e in got.timeline][:3] == ["change", "opened", "alert_fired"]


@pytest.mark.asyncio
async def test_list_is_newest_first_with_filters_and_a_limit(store: IncidentStore) -> None:
    book = IncidentBook(SLOS, 0.0)
    written: list[Incident] = []
    for k in range(6):
        slo = "api-avail" if k % 2 else "db-avail"
        at = T0 + 100 * k
        written.append(last_of(book.transition(tr(slo, "page", "firing", at))))
        if k < 4:
            book.transition(tr(slo, "page", "resolved", at + 10))
            written.append(last_of(book.advance(at + 10)))
    for inc in written:
        await store.upsert(inc)
    final = {i.id: i for i in written}
    newest = sorted(final.values(), key=lambda i: i.opened_at, reverse=True)
    assert await store.list_incidents() == newest
    assert await store.list_incidents(limit=2) == newest[:2]
    assert await store.list_incidents(state="open") == [i for i in newest if i.state == "open"]
    assert await store.list_incidents(state="closed", service="api") == [
        i for i in newest if i.state == "closed" and i.service == "api"
    ]
    assert await store.list_incidents(service="nobody") == []
    assert await store.open_incidents() == sorted(
        (i for i in final.values() if i.state == "open"), key=lambda i: i.opened_at
    )
    with pytest.raises(ValueError, match="limit"):
        await store.list_incidents(limit=0)


@pytest.mark.asyncio
async def test_acknowledge_is_idempotent_and_outlives_later_writes(
    store: IncidentStore, make_store: MakeStore
) -> None:
    book = IncidentBook(SLOS, QUIET_S)
    opened = last_of(book.transition(tr("db-avail", "page", "firing", T0)))
    await store.upsert(opened)
    assert await store.acknowledge("no-such-incident", by="bob", at_s=T0) is None
    # Another instance sharing the store takes the acknowledgement...
    other = make_store()
    await other.start()
    try:
        acked = await other.acknowledge(opened.id, by="bob", at_s=T0 + 45)
    finally:
        await other.close()
    assert acked is not None
    assert (acked.acknowledged_by, acked.acknowledged_at) == ("bob", T0 + 45)
    again = await store.acknowledge(opened.id, by="carol", at_s=T0 + 99)
    assert again == acked
    # ...and the instance holding the incident, which never heard of it, writes on.
    newer = last_of(book.transition(tr("db-avail", "page", "resolved", T0 + 300)))
    assert newer.acknowledged_at is None
    stored = await store.upsert(newer)
    assert (stored.acknowledged_by, stored.resolved_at) == ("bob", T0 + 300)
    assert await store.get(opened.id) == stored
    assert [e.kind for e in stored.timeline].count("acknowledged") == 1


@pytest.mark.asyncio
async def test_a_closed_incident_stays_closed(store: IncidentStore) -> None:
    book = IncidentBook(SLOS, 60.0)
    opened = last_of(book.transition(tr("api-avail", "page", "firing", T0)))
    book.transition(tr("api-avail", "page", "resolved", T0 + 10))
    closed = last_of(book.advance(T0 + 70))
    await store.upsert(closed)
    assert await store.upsert(opened) == closed  # an old open version written late
    assert await store.get(closed.id) == closed
    assert await store.open_incidents() == []


@pytest.mark.asyncio
async def test_the_store_survives_a_restart_and_the_book_goes_on(make_store: MakeStore) -> None:
    book = IncidentBook(SLOS, QUIET_S)
    first = make_store()
    await first.start()
    for u in [
        *book.transition(tr("api-avail", "page", "firing", T0)),
        *book.transition(tr("db-avail", "page", "firing", T0 + 10)),
        *book.transition(tr("db-avail", "page", "resolved", T0 + 20)),
        *book.advance(T0 + 20 + QUIET_S),
    ]:
        await first.upsert(u.incident)
    await first.close()

    second = make_store()
    await second.start()  # the schema is there: nothing to migrate, nothing lost
    try:
        restored = IncidentBook(SLOS, QUIET_S)
        restored.restore(await second.open_incidents())
        assert restored.open_incidents() == book.open_incidents()
        (u,) = restored.transition(tr("api-avail", "page", "resolved", T0 + 2000))
        assert u.incident.id == book.open_incidents()[0].id
        await second.upsert(u.incident)
        assert len(await second.list_incidents()) == 2
        assert [i.state for i in await second.list_incidents()] == ["closed", "open"]
    finally:
        await second.close()


# -- SQLite ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_sqlite_uses_wal_and_records_its_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "incidents.db"
    store = SqliteIncidentStore(str(path))
    await store.start()
    await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SQLITE_VERSION


async def write_all(store: IncidentStore, incidents: list[Incident]) -> None:
    """Start `store`, write `incidents`, close it."""
    await store.start()
    try:
        for inc in incidents:
            await store.upsert(inc)
    finally:
        await store.close()


async def refused(store: IncidentStore, *needles: str) -> str:
    with pytest.raises(IncidentStoreError) as exc:
        await store.start()
    await store.close()
    message = str(exc.value)
    for needle in needles:
        assert needle in message
    return message


def notes_instead(data: bytes) -> bytes:
    return b"not a database at all, but someone's notes\n" * 100


def page_two_overwritten(data: bytes) -> bytes:
    return data[:4096] + b"\xff" * 200 + data[4096 + 200 :]  # page 2's b-tree header


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("damage", "said"),
    [
        pytest.param(notes_instead, "not a SQLite database", id="not a database"),
        pytest.param(page_two_overwritten, "damaged", id="a damaged page"),
    ],
)
async def test_a_damaged_sqlite_file_is_refused_and_left_as_it_is(
    tmp_path: Path, damage: Callable[[bytes], bytes], said: str
) -> None:
    path = tmp_path / "incidents.db"
    pages = [tr("api-avail", "page", "firing", T0 + k) for k in range(50)]
    incidents = [last_of(IncidentBook(SLOS, QUIET_S).transition(page)) for page in pages]
    await write_all(SqliteIncidentStore(str(path)), incidents)
    path.write_bytes(damage(path.read_bytes()))
    damaged = path.read_bytes()
    await refused(SqliteIncidentStore(str(path)), str(path), said)
    assert path.read_bytes() == damaged


@pytest.mark.asyncio
async def test_a_sqlite_file_of_a_newer_version_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "incidents.db"
    await write_all(SqliteIncidentStore(str(path)), list(a_closed_and_an_open_incident()))
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version={SQLITE_VERSION + 1}")
    await refused(SqliteIncidentStore(str(path)), str(path), "newer burnrate")
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM incidents").fetchone()[0] == 2


@pytest.mark.asyncio
async def test_another_sqlite_database_is_not_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    await refused(SqliteIncidentStore(str(path)), str(path), "other tables")
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 0


@pytest.mark.asyncio
async def test_a_sqlite_file_in_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "incidents.db"
    await refused(SqliteIncidentStore(str(path)), str(path), "cannot open")


@pytest.mark.asyncio
async def test_a_bad_row_is_an_error_naming_the_store_and_the_incident(tmp_path: Path) -> None:
    path = tmp_path / "incidents.db"
    store = SqliteIncidentStore(str(path))
    await store.start()
    try:
        with sqlite3.connect(path) as db:
            db.execute(
                "INSERT INTO incidents VALUES ('x-1', 'api', 'open', 1.0, NULL, '{\"id\": 3}')"
            )
        with pytest.raises(IncidentStoreError, match=r"incidents\.db: incident 'x-1'"):
            await store.get("x-1")
    finally:
        await store.close()


# -- PostgreSQL --------------------------------------------------------------------


@pytest.mark.asyncio
async def test_postgres_of_a_newer_version_is_refused_and_kept(postgres: str) -> None:
    with fresh_database(postgres) as dsn:
        await write_all(PostgresIncidentStore(dsn), list(a_closed_and_an_open_incident()))
        with psycopg.connect(dsn, autocommit=True) as db:
            db.execute("UPDATE burnrate_schema SET version = %s", (PG_VERSION + 1,))
        await refused(PostgresIncidentStore(dsn), "newer burnrate", "postgresql://127.0.0.1")
        with psycopg.connect(dsn) as db:
            assert db.execute("SELECT count(*) FROM burnrate_incidents").fetchone() == (2,)


@pytest.mark.asyncio
async def test_an_unreachable_postgres_is_a_clear_error_without_the_password(
    tmp_path: Path,
) -> None:
    from tests.integration.prometheus_server import free_port

    port = free_port()  # nothing listens there
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    settings = Incidents(
        dsn=f"postgresql://burnrate@127.0.0.1:{port}/slo", password_file=str(secret)
    )
    store = incident_store(settings)
    message = await refused(store, f"postgresql://127.0.0.1:{port}/slo", "cannot connect")
    assert "hunter2" not in message


@pytest.mark.asyncio
async def test_the_config_names_the_store_and_the_password_file(
    postgres: str, tmp_path: Path
) -> None:
    with fresh_database(postgres) as dsn:
        url = "postgresql://burnrate@{host}:{port}/{dbname}".format(
            **psycopg.conninfo.conninfo_to_dict(dsn)
        )
        secret = tmp_path / "pw"
        secret.write_text("not-needed-by-trust-auth\n")
        store = incident_store(Incidents(dsn=url, password_file=str(secret)))
        assert isinstance(store, PostgresIncidentStore)
        await store.start()
        try:
            _, opened = a_closed_and_an_open_incident()
            await store.upsert(opened)
            assert await store.open_incidents() == [opened]
        finally:
            await store.close()
    sqlite = incident_store(Incidents(path=str(tmp_path / "i.db")))
    assert isinstance(sqlite, SqliteIncidentStore)
    assert msgspec.json.decode(msgspec.json.encode(Incidents())) == {
        "quiet_period": "15m",
        "path": None,
        "dsn": None,
        "password_env": None,
        "password_file": None,
    }


@pytest.mark.asyncio
async def test_postgres_replaces_a_connection_the_server_dropped(postgres: str) -> None:
    with fresh_database(postgres) as dsn:
        store = PostgresIncidentStore(dsn)
        await store.start()
        try:
            closed, opened = a_closed_and_an_open_incident()
            await store.upsert(closed)
            dbname = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
            with psycopg.connect(postgres, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (dbname,),
                )
            assert await store.upsert(opened) == opened
            assert await store.list_incidents() == [opened, closed]
        finally:
            await store.close()
