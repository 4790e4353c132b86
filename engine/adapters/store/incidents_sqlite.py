"""The SQLite incident store: one file, stdlib sqlite3, WAL (engine.adapters.store.incidents).

The schema version is the file's `PRAGMA user_version`; `MIGRATIONS[v - 1]` takes a
file from version v - 1 to v, each in one transaction with the version bump, so a
crash mid-migration leaves the old version. At `start` the file is checked before
anything is written: a file that is not a SQLite database or fails `PRAGMA
quick_check`, one of a newer version than `SCHEMA_VERSION`, or one of version 0 that
already holds tables (some other database) is an IncidentStoreError naming the file,
and the file is left as it is. A missing file is created (its directory must exist).

sqlite3 calls are quick and blocking, so they run on one thread of the store's own
(the connection never changes threads), and the event loop only awaits them.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar
from urllib.parse import quote

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

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SqliteIncidentStore", "check_sqlite_store"]

T = TypeVar("T")

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE incidents (
        id TEXT PRIMARY KEY,
        service TEXT NOT NULL,
        state TEXT NOT NULL,
        opened_at REAL NOT NULL,
        closed_at REAL,
        body TEXT NOT NULL
    );
    CREATE INDEX incidents_by_state ON incidents (state, opened_at);
    CREATE INDEX incidents_by_service ON incidents (service, opened_at);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
BUSY_TIMEOUT_MS = 5000


class SqliteIncidentStore(Writes):
    def __init__(self, path: str) -> None:
        self.path = path
        self.where = path
        self._db: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="incidents-sqlite")

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn)

    def _error(self, what: str) -> IncidentStoreError:
        return _store_error(self.path, what)

    # -- opening -----------------------------------------------------------------------

    async def start(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        existed = os.path.exists(self.path)
        try:
            db = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        except sqlite3.Error as exc:
            raise self._error(f"cannot open: {exc}") from None
        try:
            self._check_and_migrate(db, existed)
        except BaseException:
            db.close()
            raise
        self._db = db

    def _check_and_migrate(self, db: sqlite3.Connection, existed: bool) -> None:
        version = _checked_version(db, self.path, existed)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            for v in range(version + 1, SCHEMA_VERSION + 1):
                db.execute("BEGIN IMMEDIATE")
                try:
                    for statement in MIGRATIONS[v - 1].split(";"):
                        if statement.strip():
                            db.execute(statement)
                    db.execute(f"PRAGMA user_version={v}")
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise self._error(f"cannot prepare the schema: {exc}") from None

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            await self._run(db.close)
        self._thread.shutdown(wait=True)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the incident store is not started")
        return self._db

    # -- reading and writing ------------------------------------------------------------

    def _stored(self, db: sqlite3.Connection, incident_id: str) -> Incident | None:
        row = db.execute("SELECT body FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        return None if row is None else decode_incident(row[0], self.path, incident_id)

    def _write(self, db: sqlite3.Connection, inc: Incident) -> None:
        db.execute(
            "INSERT INTO incidents (id, service, state, opened_at, closed_at, body) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "service = excluded.service, state = excluded.state, "
            "opened_at = excluded.opened_at, closed_at = excluded.closed_at, body = excluded.body",
            (inc.id, inc.service, inc.state, inc.opened_at, inc.closed_at, encode_incident(inc)),
        )

    def _in_transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        db = self._conn()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                out = fn(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._error(str(exc)) from None
        return out

    def _reading(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return fn(self._conn())
        except sqlite3.Error as exc:
            raise self._error(str(exc)) from None

    async def _update(self, incident_id: str, change: Change) -> Incident | None:
        def update(db: sqlite3.Connection) -> Incident | None:
            stored = self._stored(db, incident_id)
            out = change(stored)
            if out is not None and out != stored:
                self._write(db, out)
            return out

        return await self._run(lambda: self._in_transaction(update))

    async def get(self, incident_id: str) -> Incident | None:
        return await self._run(lambda: self._reading(lambda db: self._stored(db, incident_id)))

    async def list_incidents(
        self,
        *,
        state: StateFilter = None,
        service: str | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
    ) -> list[Incident]:
        check_limit(limit)
        sql = "SELECT id, body FROM incidents WHERE (? IS NULL OR state = ?) "
        sql += "AND (? IS NULL OR service = ?) ORDER BY opened_at DESC, id DESC LIMIT ?"
        args = (state, state, service, service, limit)
        return await self._run(lambda: self._reading(lambda db: self._rows(db, sql, args)))

    async def open_incidents(self) -> list[Incident]:
        sql = "SELECT id, body FROM incidents WHERE state = ? ORDER BY opened_at, id"
        return await self._run(lambda: self._reading(lambda db: self._rows(db, sql, ("open",))))

    def _rows(self, db: sqlite3.Connection, sql: str, args: tuple[object, ...]) -> list[Incident]:
        return [decode_incident(body, self.path, i) for i, body in db.execute(sql, args)]


def _store_error(path: str, what: str) -> IncidentStoreError:
    return IncidentStoreError(f"incident store {path}: {what}")


def _checked_version(db: sqlite3.Connection, path: str, existed: bool) -> int:
    """The file's schema version, after the checks of the module docstring."""
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        check = db.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise _store_error(
            path,
            f"not a SQLite database, or damaged ({exc}); it is left as it is: restore it "
            "from a backup or move it away",
        ) from None
    if check != "ok":
        raise _store_error(path, f"damaged (quick_check: {check}); it is left as it is")
    if version > SCHEMA_VERSION:
        raise _store_error(
            path,
            f"schema version {version} was written by a newer burnrate (this one knows "
            f"up to {SCHEMA_VERSION}); it is left as it is",
        )
    if version == 0 and existed:
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables:
            raise _store_error(path, "holds other tables and no incident schema; not touched")
    return version


def check_sqlite_store(path: str) -> None:
    """`start`'s checks of the file at `path`, for `burnrate check`: the file is opened
    read-only and nothing is written; a missing file needs only its directory.
    IncidentStoreError naming the file."""
    if not os.path.exists(path):
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise _store_error(path, f"its directory {directory} does not exist")
        return
    try:
        db = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise _store_error(path, f"cannot open: {exc}") from None
    try:
        _checked_version(db, path, existed=True)
    finally:
        db.close()
