"""The PostgreSQL incident store, for several engines sharing one store
(engine.adapters.store.incidents). psycopg 3, async; install the `incidents-pg` extra.

The schema version is the one row of table `burnrate_schema`; `MIGRATIONS[v - 1]`
takes the database from version v - 1 to v. Every `start` takes a transaction-level
advisory lock (`SCHEMA_LOCK`) before it reads the version, so engines starting
together migrate once, one after the other. A version newer than `SCHEMA_VERSION` is
an IncidentStoreError, and the database is left as it is.

The password is never in the DSN (the config check refuses that): it comes from
`password_env` or `password_file` through engine.adapters.secrets, and is handed to
the driver apart. One connection, used by one operation at a time, replaced when it
breaks (a server restart, a dropped network).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict

from engine.adapters.store.incidents import (
    DEFAULT_LIST_LIMIT,
    Change,
    IncidentStoreError,
    StateFilter,
    Writes,
    check_limit,
    decode_incident,
    encode_incident,
)
from engine.core.incidents import Incident

__all__ = ["MIGRATIONS", "SCHEMA_LOCK", "SCHEMA_VERSION", "PostgresIncidentStore"]

T = TypeVar("T")
Conn = psycopg.AsyncConnection[tuple[object, ...]]

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE burnrate_incidents (
            id TEXT PRIMARY KEY,
            service TEXT NOT NULL,
            state TEXT NOT NULL,
            opened_at DOUBLE PRECISION NOT NULL,
            closed_at DOUBLE PRECISION,
            body TEXT NOT NULL
        )""",
        "CREATE INDEX burnrate_incidents_by_state ON burnrate_incidents (state, opened_at)",
        "CREATE INDEX burnrate_incidents_by_service ON burnrate_incidents (service, opened_at)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
SCHEMA_LOCK = 0x62726E72  # "brnr": the advisory lock of schema migrations
CONNECT_TIMEOUT_S = 10


def _where(dsn: str) -> str:
    """The DSN for people: host, port and database, never credentials."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "postgresql (unparsable DSN)"
    host = parts.get("host", "localhost")
    port = parts.get("port", "5432")
    return f"postgresql://{host}:{port}/{parts.get('dbname', '')}"


class PostgresIncidentStore(Writes):
    def __init__(self, dsn: str, *, password: str | None = None) -> None:
        self._dsn = dsn
        self._password = password
        self.where = _where(dsn)
        self._conn: Conn | None = None
        self._started = False
        self._lock = asyncio.Lock()

    def _error(self, what: str) -> IncidentStoreError:
        return IncidentStoreError(f"incident store {self.where}: {what}")

    async def _connect(self) -> Conn:
        try:
            # A None password is left out of the connection string (the DSN's user may
            # need none: peer or trust authentication).
            return await psycopg.AsyncConnection.connect(
                self._dsn,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_S,
                password=self._password,
            )
        except psycopg.Error as exc:
            raise self._error(f"cannot connect: {exc}") from None

    async def start(self) -> None:
        conn = await self._connect()
        try:
            await self._migrate(conn)
        except psycopg.Error as exc:
            await conn.close()
            raise self._error(f"cannot prepare the schema: {exc}") from None
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        self._started = True

    async def _migrate(self, conn: Conn) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            await conn.execute("CREATE TABLE IF NOT EXISTS burnrate_schema (version INTEGER)")
            row = await (await conn.execute("SELECT max(version) FROM burnrate_schema")).fetchone()
            version = int(row[0]) if row is not None and row[0] is not None else 0  # type: ignore[call-overload]
            if version > SCHEMA_VERSION:
                raise self._error(
                    f"schema version {version} was written by a newer burnrate (this one "
                    f"knows up to {SCHEMA_VERSION}); it is left as it is"
                )
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[v - 1]:
                    await conn.execute(statement)
            if version < SCHEMA_VERSION:
                await conn.execute("DELETE FROM burnrate_schema")
                await conn.execute(
                    "INSERT INTO burnrate_schema (version) VALUES (%s)", (SCHEMA_VERSION,)
                )

    async def close(self) -> None:
        self._started = False
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def _use(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run `fn` on the connection, one operation at a time. A connection the server
        or the network broke is replaced and `fn` run once more: every operation is
        idempotent (a write merges, an acknowledgement keeps the first)."""
        if not self._started:
            raise RuntimeError("the incident store is not started")
        async with self._lock:
            for attempt in (1, 2):
                if self._conn is None:
                    self._conn = await self._connect()
                conn = self._conn
                try:
                    return await fn(conn)
                except psycopg.OperationalError as exc:
                    if not conn.broken or attempt == 2:
                        raise self._error(str(exc)) from None
                    self._conn = None
                    await conn.close()
                except psycopg.Error as exc:
                    raise self._error(str(exc)) from None
        raise AssertionError("unreachable")

    async def _stored(self, conn: Conn, incident_id: str, *, lock: bool) -> Incident | None:
        sql = "SELECT body FROM burnrate_incidents WHERE id = %s"
        cur = await conn.execute(sql + (" FOR UPDATE" if lock else ""), (incident_id,))
        row = await cur.fetchone()
        return None if row is None else decode_incident(str(row[0]), self.where, incident_id)

    async def _write(self, conn: Conn, inc: Incident) -> None:
        await conn.execute(
            "INSERT INTO burnrate_incidents (id, service, state, opened_at, closed_at, body) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
            "service = excluded.service, state = excluded.state, "
            "opened_at = excluded.opened_at, closed_at = excluded.closed_at, body = excluded.body",
            (inc.id, inc.service, inc.state, inc.opened_at, inc.closed_at, encode_incident(inc)),
        )

    async def _update(self, incident_id: str, change: Change) -> Incident | None:
        async def update(conn: Conn) -> Incident | None:
            async with conn.transaction():
                # A row lock does not cover an id not yet stored: two first writes of one
                # id race to the INSERT, and ON CONFLICT makes the later one an update.
                stored = await self._stored(conn, incident_id, lock=True)
                out = change(stored)
                if out is not None and out != stored:
                    await self._write(conn, out)
                return out

        return await self._use(update)

    async def get(self, incident_id: str) -> Incident | None:
        return await self._use(lambda conn: self._stored(conn, incident_id, lock=False))

    async def list_incidents(
        self,
        *,
        state: StateFilter = None,
        service: str | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
    ) -> list[Incident]:
        check_limit(limit)
        sql = (
            "SELECT id, body FROM burnrate_incidents WHERE (%(state)s::text IS NULL OR "
            "state = %(state)s) AND (%(service)s::text IS NULL OR service = %(service)s) "
            "ORDER BY opened_at DESC, id DESC LIMIT %(limit)s"
        )
        args = {"state": state, "service": service, "limit": limit}
        return await self._use(lambda conn: self._rows(conn, sql, args))

    async def open_incidents(self) -> list[Incident]:
        sql = (
            "SELECT id, body FROM burnrate_incidents WHERE state = %(state)s ORDER BY opened_at, id"
        )
        return await self._use(lambda conn: self._rows(conn, sql, {"state": "open"}))

    async def _rows(self, conn: Conn, sql: str, args: Mapping[str, object]) -> list[Incident]:
        cur = await conn.execute(sql, args)
        return [decode_incident(str(body), self.where, str(i)) for i, body in await cur.fetchall()]
