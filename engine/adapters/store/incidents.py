"""Where incidents (engine.core.incidents) are kept: the `IncidentStore` protocol, its
error, and `incident_store`, which picks the store the config names.

Two stores keep the same contract (tests/integration/test_incident_store.py runs one
suite against both):

- `SqliteIncidentStore` (incidents_sqlite): one file at `incidents.path`, stdlib
  sqlite3 in WAL mode, for one engine;
- `PostgresIncidentStore` (incidents_postgres): `incidents.dsn`, for several engines
  sharing one store; needs the `incidents-pg` extra (psycopg 3).

Each incident is one row: its id, service, state and times as columns for the
queries, and the whole `Incident` as JSON. Writing an incident over a stored one
goes through `merge_stored` in one transaction, so a closed incident stays closed
and an acknowledgement made by another instance is not lost.

The schema is versioned and migrated forward at `start`; a store written by a newer
engine, or one that is damaged or is not an incident store, is an
IncidentStoreError naming it, and is never recreated or changed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol

import msgspec

from engine.core.config_io import Incidents
from engine.core.incidents import Incident, acknowledged, merge_stored
from engine.errors import BurnrateError

__all__ = [
    "DEFAULT_LIST_LIMIT",
    "MAX_LIST_LIMIT",
    "Change",
    "IncidentStore",
    "IncidentStoreError",
    "Writes",
    "acknowledging",
    "decode_incident",
    "encode_incident",
    "incident_store",
    "upserting",
]

DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 1000

StateFilter = Literal["open", "closed"] | None


class IncidentStoreError(BurnrateError):
    """The incident store cannot be used: unreachable, damaged, of a newer schema, or
    not an incident store. The message names it (file path, or host and database)."""


class IncidentStore(Protocol):
    """The operations the engine and the API need; all async (the SQLite store does
    its quick sync calls on a thread of its own)."""

    where: str
    """The store for people: the file, or the DSN without credentials."""

    async def start(self) -> None:
        """Open (creating a new store) and migrate the schema; IncidentStoreError."""

    async def close(self) -> None: ...

    async def upsert(self, incident: Incident) -> Incident:
        """Write `incident` (merged over the stored one: `merge_stored`); returns what
        is stored now."""

    async def get(self, incident_id: str) -> Incident | None: ...

    async def list_incidents(
        self,
        *,
        state: StateFilter = None,
        service: str | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
    ) -> list[Incident]:
        """Newest first (by opened_at, then id), at most `limit` (1..MAX_LIST_LIMIT)."""

    async def acknowledge(self, incident_id: str, *, by: str, at_s: float) -> Incident | None:
        """Acknowledge a stored incident (idempotent: the first one stands); None when
        there is none with that id."""

    async def open_incidents(self) -> list[Incident]:
        """Every open incident, oldest first: what `IncidentBook.restore` takes at start."""


_DECODER = msgspec.json.Decoder(Incident)


def encode_incident(incident: Incident) -> str:
    return msgspec.json.encode(incident).decode()


def decode_incident(body: str | bytes, where: str, incident_id: str) -> Incident:
    try:
        return _DECODER.decode(body)
    except msgspec.DecodeError as exc:
        raise IncidentStoreError(
            f"incident store {where}: incident {incident_id!r} cannot be read: {exc}"
        ) from None


Change = Callable[[Incident | None], Incident | None]
"""What a write makes of the stored incident (None: there is none): the incident to
store, or None to store nothing. Each store applies it in one transaction (`_update`)."""


def upserting(incoming: Incident) -> Change:
    """`incoming` merged over the stored version (`merge_stored`)."""
    return lambda stored: incoming if stored is None else merge_stored(stored, incoming)


def acknowledging(by: str, at_s: float) -> Change:
    """The stored incident acknowledged (`acknowledged`); nothing when there is none."""
    return lambda stored: None if stored is None else acknowledged(stored, by, at_s)


class Writes:
    """`upsert` and `acknowledge` of a store, from its `_update`: read the stored
    incident, apply a `Change`, write the result if it differs, in one transaction."""

    async def _update(self, incident_id: str, change: Change) -> Incident | None:
        raise NotImplementedError

    async def upsert(self, incident: Incident) -> Incident:
        out = await self._update(incident.id, upserting(incident))
        assert out is not None
        return out

    async def acknowledge(self, incident_id: str, *, by: str, at_s: float) -> Incident | None:
        return await self._update(incident_id, acknowledging(by, at_s))


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise ValueError(f"limit must be 1..{MAX_LIST_LIMIT}, got {limit}")
    return limit


def incident_store(settings: Incidents) -> IncidentStore:
    """The store `settings` names (not started); the PostgreSQL password is read here
    (ConfigError naming the field when its source cannot be read)."""
    path = settings.sqlite_path
    if path is not None:
        from engine.adapters.store.incidents_sqlite import SqliteIncidentStore

        return SqliteIncidentStore(path)
    from engine.adapters.secrets import read_secret
    from engine.adapters.store.incidents_postgres import PostgresIncidentStore

    assert settings.dsn is not None
    password = None
    if settings.password_env is not None:
        password = read_secret("$.incidents.password_env", env=settings.password_env)
    elif settings.password_file is not None:
        password = read_secret("$.incidents.password_file", file=settings.password_file)
    return PostgresIncidentStore(settings.dsn, password=password)
