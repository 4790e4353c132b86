"""Incidents in the evaluate role: each owned partition's incident book, over one store
the workers share.

A service's SLOs live in one counts partition (engine.core.deltas), so the worker that
owns it sees every alert an incident of that service groups. Each partition engine has
an `IncidentRecorder` (engine.runtime.incidents) over its evaluator, fed the
partition's transitions and event time as one process feeds its one recorder. The
store is the workers' meeting point: `incidents.dsn` (PostgreSQL) is required in this
role (`check_shared_store`), since a file belongs to one process and an incident open
when its partition moves must be found by the next owner.

- On assignment, a partition's recorder takes back the open incidents of its services
  from the store; on revocation it writes what is pending before the partition goes
  (the next owner reads the store after the rebalance). A worker killed with updates
  pending loses them, as one process does; the next owner rebuilds the incident from
  the alerts it replays from the partition's snapshot on.
- `/v1/incidents` and `/v1/incidents/{id}` are answered by any worker: the store's rows
  with the pending versions of this worker's recorders laid over them.
- `POST /v1/incidents/{id}/acknowledge` and `GET /v1/incidents/{id}/postmortem` are
  answered by the owner of the incident's service (its book holds the open incident,
  its rings the counts a postmortem reads); another worker redirects there (307). An
  incident whose service no worker is known to own now is acknowledged in the store
  (a store keeps such an acknowledgement when the owner writes its next version), and
  its postmortem is 503 until the owner is known.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Final

from engine.adapters.http.metrics import EngineMetrics
from engine.adapters.store.incidents import (
    DEFAULT_LIST_LIMIT,
    IncidentStore,
    IncidentStoreError,
    StateFilter,
    check_limit,
    incident_store,
)
from engine.core.config import Config
from engine.core.incidents import Incident
from engine.core.postmortem import PostmortemIncident
from engine.errors import ConfigError
from engine.runtime.incidents import IncidentRecorder, overlay

if TYPE_CHECKING:
    from engine.runtime.partition_engine import PartitionEngine

__all__ = ["SHARED_STORE_NEEDED", "WorkerIncidents", "check_shared_store"]

log = logging.getLogger("burnrate.runtime.evaluate_incidents")

SHARED_STORE_NEEDED: Final = (
    "$.incidents.path: an evaluate worker keeps incidents in a store every worker shares, "
    "so that an incident open when its service's partition moves is found by the next "
    "owner; a file is one process's. Set incidents.dsn to a PostgreSQL database (or run "
    "--role all)"
)


def check_shared_store(config: Config) -> None:
    """ConfigError when `incidents:` names a file (SQLite) for the evaluate role."""
    if config.incidents is not None and config.incidents.sqlite_path is not None:
        raise ConfigError([SHARED_STORE_NEEDED])


class _Borrowed:
    """The worker's store as one partition's recorder sees it: opened and closed by the
    worker, and its open incidents only those of the partition's services."""

    def __init__(self, store: IncidentStore, services: Iterable[str]) -> None:
        self.store = store
        self.where = store.where
        self.services = frozenset(services)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def upsert(self, incident: Incident) -> Incident:
        return await self.store.upsert(incident)

    async def get(self, incident_id: str) -> Incident | None:
        return await self.store.get(incident_id)

    async def list_incidents(
        self, *, state: StateFilter = None, service: str | None = None, limit: int = 100
    ) -> list[Incident]:
        return await self.store.list_incidents(state=state, service=service, limit=limit)

    async def acknowledge(self, incident_id: str, *, by: str, at_s: float) -> Incident | None:
        return await self.store.acknowledge(incident_id, by=by, at_s=at_s)

    async def open_incidents(self) -> list[Incident]:
        return [i for i in await self.store.open_incidents() if i.service in self.services]


class WorkerIncidents:
    """The incidents of one evaluate worker (module docstring): the shared store, a
    recorder per owned partition, and the API's reads over both."""

    def __init__(
        self,
        config: Config,
        engines: Callable[[], Mapping[int, PartitionEngine]],
        owner_of: Callable[[str], str | None],
        slo_of: Callable[[str], str | None],
        url: Callable[[], str],
        metrics: EngineMetrics,
        store: IncidentStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        assert config.incidents is not None
        self.quiet_period_s = config.incidents.quiet_period_s
        self.store = incident_store(config.incidents) if store is None else store
        self.engines = engines
        self.owner_of = owner_of
        """The base URL of the worker owning an SLO (this worker's own when here)."""
        self.slo_of = slo_of
        """The first SLO of a service in the config running (its partition is the
        service's; engine.adapters.http.partitions.ServiceSlos follows a reload)."""
        self.url = url
        self.clock = clock
        self._time_to_detect = metrics.track_incidents(self.open_counts)

    async def start(self) -> None:
        """Open the store (IncidentStoreError: the worker exits 2 before serving)."""
        await self.store.start()

    async def close(self) -> None:
        await self.store.close()

    def recorder(self, engine: PartitionEngine) -> IncidentRecorder:
        """A recorder for `engine`'s partition (not started: `start` takes back the open
        incidents of its services)."""
        services = {s.service for s in engine.evaluator.config_slos if s.service}
        recorder = IncidentRecorder(
            engine.evaluator,
            engine.changes,  # a change taken over HTTP goes to the open incident
            _Borrowed(self.store, services),
            self.quiet_period_s,
            self.clock,
        )

        def opened(inc: Incident) -> None:
            if inc.time_to_detect_s is not None:
                self._time_to_detect.observe(inc.time_to_detect_s)

        recorder.on_opened = opened
        return recorder  # alert state moves with the partition: `alert_state_kept`

    def _recorders(self) -> list[IncidentRecorder]:
        return [e.incidents for e in self.engines().values() if e.incidents is not None]

    def open_counts(self) -> dict[str, int]:
        """Open incidents per service of the owned partitions (0 or 1 each)."""
        out: dict[str, int] = {}
        for recorder in self._recorders():
            out.update(recorder.open_counts())
        return out

    def _recorder_of(self, service: str) -> IncidentRecorder | None:
        """The recorder of the owned partition that holds `service` (None: not here)."""
        for engine in self.engines().values():
            if engine.incidents is not None and service in engine.incidents.services:
                return engine.incidents
        return None

    # -- the API (engine.adapters.http.incidents.IncidentSource) ------------------------

    async def get(self, incident_id: str) -> Incident | None:
        for recorder in self._recorders():
            pending = recorder.pending.get(incident_id)
            if pending is not None:
                return pending
        return await self.store.get(incident_id)

    async def list_incidents(
        self,
        *,
        state: StateFilter = None,
        service: str | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
    ) -> list[Incident]:
        check_limit(limit)
        stored = await self.store.list_incidents(state=state, service=service, limit=limit)
        pending = [i for r in self._recorders() for i in list(r.pending.values())]
        return overlay(stored, pending, state=state, service=service, limit=limit)

    async def route_to(self, incident_id: str) -> str | None:
        """The base URL of the worker that answers this incident's acknowledgement and
        postmortem, when it is another one; None: answer here (owned here, owner not
        known, or no such incident)."""
        inc = await self.get(incident_id)
        if inc is None or self._recorder_of(inc.service) is not None:
            return None
        slo = self.slo_of(inc.service)
        owner = None if slo is None else self.owner_of(slo)
        return None if owner is None or owner == self.url() else owner

    async def acknowledge(self, incident_id: str, by: str) -> Incident | None:
        inc = await self.get(incident_id)
        if inc is None:
            return None
        recorder = self._recorder_of(inc.service)
        if recorder is not None:
            return await recorder.acknowledge(incident_id, by)
        # not owned here and its owner not known (or gone from the config): the store
        # keeps the acknowledgement over the owner's next version (merge_stored)
        return await self.store.acknowledge(incident_id, by=by, at_s=self.clock())

    async def postmortem(self, incident_id: str) -> PostmortemIncident | None:
        inc = await self.get(incident_id)
        if inc is None:
            return None
        recorder = self._recorder_of(inc.service)
        if recorder is None:
            raise IncidentStoreError(
                f"incident {incident_id}: no worker is known to own service "
                f"{inc.service!r} now, and its postmortem reads that worker's windows; "
                "retry once its partition is assigned"
            )
        return await recorder.postmortem(incident_id)
