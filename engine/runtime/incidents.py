"""Incidents in `burnrate run`: the lifecycle (engine.core.incidents) fed from the
running engine, and its store written off the consume path.

The book is fed synchronously, where the inputs happen, and never waits on the store:

- every batch of alert transitions (`transitions`, from the runtime's transition
  callback), a firing one with its onset estimated from the evaluator's rings
  (engine.core.onset) while they still hold the buckets before it;
- changes taken in (`changes_taken`, after the API or the changes topic adds one: the
  change log's ids only grow, so the new ones are those above the last id seen);
- corrections added at run time (`tick` notices the evaluator's list grow);
- event time moving on (`tick`: `advance(evaluated_at)`, which closes incidents whose
  quiet period has passed).

Each update's incident goes into `pending` (by id: a newer version replaces an older
one not yet written, as each carries the whole incident) and the writer task upserts
them one by one. An incident stays in `pending` until the version written is still
the newest, so nothing changed meanwhile is lost. A store error is logged and the
writer tries again with a backoff (0.5 s doubling to 30 s); the engine goes on. On
shutdown `close` writes what is pending within its time budget and logs what it could
not (those incidents are lost to the store; the open ones are rebuilt by the next page).

Start: `start` opens the store (a damaged file or a newer schema is an
IncidentStoreError: `burnrate run` exits 2 before serving) and `restore`s the book
from the store's open incidents, so a restart goes on with them. Their alerts resolve
when the evaluator says so, which it can only for alerts it knows are firing: with a
`state:` file it does; without one an alert firing at shutdown is forgotten, and an
incident holding one closes only once that alert fires and resolves again (logged at
start as a warning).

Reads for the API (`get`, `list_incidents`, `postmortem`) are the store's rows with the pending
versions laid over them, so an answer never lags the book. `acknowledge` acknowledges
an open incident in the book and writes it before answering, and any other in the
store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Final

from engine.adapters.http.metrics import EngineMetrics
from engine.adapters.store.audit import AuditSink, NullAudit
from engine.adapters.store.incidents import (
    DEFAULT_LIST_LIMIT,
    IncidentStore,
    IncidentStoreError,
    StateFilter,
    check_limit,
    incident_store,
)
from engine.core.changes import ChangeLog
from engine.core.config import Config
from engine.core.evaluator import Evaluator
from engine.core.incidents import Incident, IncidentBook, IncidentUpdate, acknowledged
from engine.core.onset import onset_of_transition
from engine.core.postmortem import PostmortemIncident, postmortem_of
from engine.core.transitions import Transition

__all__ = ["RETRY_MAX_S", "RETRY_MIN_S", "IncidentRecorder", "incident_recorder", "overlay"]

log = logging.getLogger("burnrate.runtime.incidents")

RETRY_MIN_S: Final = 0.5
RETRY_MAX_S: Final = 30.0


class IncidentRecorder:
    """The incident book of one engine and the writes of its updates (module docstring)."""

    def __init__(
        self,
        evaluator: Evaluator,
        changes: ChangeLog,
        store: IncidentStore,
        quiet_period_s: float,
        clock: Callable[[], float],
        *,
        on_opened: Callable[[Incident], None] | None = None,
    ) -> None:
        self.evaluator = evaluator
        self.changes = changes
        self.store = store
        self.clock = clock
        self.on_opened = on_opened
        """Called with each incident as it opens (the time-to-detect histogram)."""
        self.audit: AuditSink = NullAudit()
        """Each incident opened or closed is an `incident.opened`/`incident.closed` entry."""
        self.alert_state_kept = True
        """Whether the evaluator's alert state survives a restart (a `state:` file); without
        it, an alert firing at shutdown never resolves in the next process."""
        self.book = IncidentBook(evaluator.config_slos, quiet_period_s)
        self.services = sorted({s.service for s in evaluator.config_slos if s.service})
        self._service_of = {s.name: s.service for s in evaluator.config_slos}
        self.pending: dict[str, Incident] = {}
        self.write_errors = 0
        self._change_id = 0
        self._corrections = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        """Set while nothing is pending (see `written`)."""
        self._idle.set()
        self._closing = False
        self._store_lock = asyncio.Lock()
        """Held by each write and by each read with its overlay, so a read never sees a
        version that left `pending` while the store still answered the one before."""
        self._writer: asyncio.Task[None] | None = None

    def use(self, evaluator: Evaluator) -> None:
        """Follow `evaluator` from now on (a config reload: engine.runtime.reload); its
        alerts that ended were told to `transitions` before."""
        self.evaluator = evaluator
        self.book.use_slos(evaluator.config_slos)
        self.services = sorted({s.service for s in evaluator.config_slos if s.service})
        self._service_of = {s.name: s.service for s in evaluator.config_slos}

    # -- start and stop ----------------------------------------------------------------

    async def start(self) -> None:
        """Open the store and take back its open incidents; IncidentStoreError."""
        await self.store.start()
        try:
            opened = await self.store.open_incidents()
        except BaseException:
            await self.store.close()
            raise
        self.book.restore(opened)
        self.mark_seen()
        firing = [i.id for i in self.book.open_incidents() if i.resolved_at is None]
        if firing and not self.alert_state_kept:
            log.warning(
                "open incidents %s have alerts that were firing, and without a state file "
                "this engine does not know them: each closes only once its alerts fire and "
                "resolve again (configure state: to keep alert state across restarts)",
                ", ".join(firing),
                extra={"data": {"event": "incidents_alert_state_lost", "ids": firing}},
            )
        self._writer = asyncio.create_task(self._write_loop(), name="incidents")
        log.info(
            "incidents kept in %s; %d open",
            self.store.where,
            len(self.book.open_incidents()),
            extra={"data": {"event": "incidents_started", "open": len(opened)}},
        )

    def mark_seen(self) -> None:
        """The changes and corrections there are now are not new: called again once
        the state file has brought back those of before a restart."""
        self._change_id = max((c.id for c in self.changes.changes()), default=0)
        self._corrections = len(self.evaluator.runtime_corrections)

    async def close(self, timeout_s: float) -> None:
        """Write what is pending (within `timeout_s`), then close the store."""
        self._closing = True
        self._wake.set()
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                async with asyncio.timeout(timeout_s):
                    await asyncio.shield(writer)
            except TimeoutError:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
        if self.pending:
            log.error(
                "incident store %s: %d incident updates not written at shutdown: %s",
                self.store.where,
                len(self.pending),
                ", ".join(self.pending),
                extra={"data": {"event": "incidents_unwritten", "ids": list(self.pending)}},
            )
        await self.store.close()

    # -- inputs (synchronous: never wait on the store) ----------------------------------

    def transitions(self, transitions: list[Transition]) -> None:
        ups: list[IncidentUpdate] = []
        for tr in transitions:
            ups += self.book.transition(tr, onset_at_s=self._onset(tr))
        self._take(ups)

    def _onset(self, tr: Transition) -> float | None:
        """The onset of a firing alert that opens or joins an incident (read from the
        rings now, while they hold the buckets before it); None for any other."""
        if tr.state != "firing":
            return None
        service = self._service_of.get(tr.slo)
        joins = service is not None and any(
            i.service == service for i in self.book.open_incidents()
        )
        if tr.severity != "page" and not joins:
            return None
        return onset_of_transition(self.evaluator, tr)

    def changes_taken(self) -> None:
        """Changes were added to the change log: the new ones go to open incidents."""
        new = [c for c in self.changes.changes() if c.id > self._change_id]
        if not new:
            return
        self._change_id = max(c.id for c in new)
        at = self._event_time()
        ups: list[IncidentUpdate] = []
        for c in sorted(new, key=lambda c: c.id):
            ups += self.book.change(c, at)
        self._take(ups)

    def tick(self) -> None:
        """After an evaluation: corrections added since, then close what went quiet."""
        at = self.evaluator.evaluated_at_s
        if at is None:
            return
        ups: list[IncidentUpdate] = []
        corrections = self.evaluator.runtime_corrections
        for c in corrections[self._corrections :]:
            ups += self.book.correction(c, at)
        self._corrections = len(corrections)
        ups += self.book.advance(at)
        self._take(ups)

    def _event_time(self) -> float:
        at = self.evaluator.evaluated_at_s
        return self.clock() if at is None else at

    def _take(self, ups: list[IncidentUpdate]) -> None:
        for u in ups:
            inc = u.incident
            self.pending[inc.id] = inc
            if u.kind in ("opened", "closed"):
                self.audit.record(
                    "burnrate",
                    f"incident.{u.kind}",
                    inc.id,
                    {
                        "service": inc.service,
                        "opened_at": inc.opened_at,
                        "onset_at": inc.onset_at,
                        "closed_at": inc.closed_at,
                        "slos": list(inc.slos),
                    },
                )
                log.info(
                    "incident %s of %s %s",
                    inc.id,
                    inc.service,
                    u.kind,
                    extra={
                        "data": {
                            "event": f"incident_{u.kind}",
                            "id": inc.id,
                            "service": inc.service,
                            "opened_at": inc.opened_at,
                            "onset_at": inc.onset_at,
                            "closed_at": inc.closed_at,
                        }
                    },
                )
            if u.kind == "opened" and self.on_opened is not None:
                self.on_opened(inc)
        if ups:
            self._queued()

    def _queued(self) -> None:
        self._idle.clear()
        self._wake.set()

    # -- the writer --------------------------------------------------------------------

    async def _write_loop(self) -> None:
        delay = RETRY_MIN_S
        while True:
            if not self.pending:
                self._idle.set()
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if await self._write_pending(delay):
                delay = RETRY_MIN_S
                continue
            if self._closing:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            delay = min(delay * 2, RETRY_MAX_S)

    async def _write_pending(self, retry_s: float) -> bool:
        """Write every pending incident; False (logged) when a write failed."""
        try:
            for incident_id, inc in list(self.pending.items()):
                async with self._store_lock:
                    await self.store.upsert(inc)
                    if self.pending.get(incident_id) is inc:
                        del self.pending[incident_id]
            return True
        except IncidentStoreError as exc:
            problem = str(exc)
        except Exception as exc:  # the writer's supervisor: a bug must not stop the writes
            log.exception("incident store %s: unexpected error", self.store.where)
            problem = repr(exc)
        self.write_errors += 1
        log.warning(
            "%s; %d incident updates pending, retrying in %.1fs",
            problem,
            len(self.pending),
            retry_s,
            extra={"data": {"event": "incident_write_failed", "pending": len(self.pending)}},
        )
        return False

    async def written(self, timeout_s: float) -> bool:
        """Wait until every update taken so far is in the store (at most `timeout_s`);
        whether it is."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        return not self.pending

    # -- the API -----------------------------------------------------------------------

    def open_counts(self) -> dict[str, int]:
        """Open incidents per configured service (0 or 1 each)."""
        open_ = {i.service for i in self.book.open_incidents()}
        return {s: int(s in open_) for s in self.services}

    async def get(self, incident_id: str) -> Incident | None:
        async with self._store_lock:
            pending = self.pending.get(incident_id)
            return pending if pending is not None else await self.store.get(incident_id)

    async def list_incidents(
        self,
        *,
        state: StateFilter = None,
        service: str | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
    ) -> list[Incident]:
        """The store's answer with the pending versions laid over it, newest first."""
        check_limit(limit)
        async with self._store_lock:
            stored = await self.store.list_incidents(state=state, service=service, limit=limit)
            pending = list(self.pending.values())
        return overlay(stored, pending, state=state, service=service, limit=limit)

    async def postmortem(self, incident_id: str) -> PostmortemIncident | None:
        """The postmortem of `incident_id` from the evaluator's rings as they are now
        (engine.core.postmortem; an open incident's impact runs to the last evaluated
        tick); None: there is no incident with that id."""
        inc = await self.get(incident_id)
        if inc is None:
            return None
        ev = self.evaluator
        end = ev.evaluated_at_s
        return postmortem_of(inc, ev, ev.bucket_sums, inc.opened_at if end is None else end)

    async def acknowledge(self, incident_id: str, by: str) -> Incident | None:
        """Acknowledge `incident_id` by `by` now (event time); idempotent. None: there is
        no incident with that id. The acknowledgement is in the store when this returns
        (IncidentStoreError when it cannot be written: the book keeps it and the writer
        tries again), so an answer of 200 survives a crash right after it."""
        at = self._event_time()
        self._take(self.book.acknowledge(incident_id, by, at))
        async with self._store_lock:
            pending = self.pending.get(incident_id)
            if pending is None:
                return await self.store.acknowledge(incident_id, by=by, at_s=at)
            self.pending[incident_id] = inc = acknowledged(pending, by, at)
            self._queued()
            stored = await self.store.upsert(inc)
            if self.pending.get(incident_id) is inc:  # no newer version meanwhile
                del self.pending[incident_id]
            return stored


def overlay(
    stored: list[Incident],
    pending: Iterable[Incident],
    *,
    state: StateFilter,
    service: str | None,
    limit: int,
) -> list[Incident]:
    """A store's answer to a list with the `pending` versions laid over it (those the
    filters select), newest first, at most `limit`."""
    by_id = {i.id: i for i in stored}
    for inc in pending:
        by_id.pop(inc.id, None)
        if (state is None or inc.state == state) and service in (None, inc.service):
            by_id[inc.id] = inc
    out = sorted(by_id.values(), key=lambda i: (i.opened_at, i.id), reverse=True)
    return out[:limit]


def incident_recorder(
    config: Config,
    evaluator: Evaluator,
    changes: ChangeLog,
    metrics: EngineMetrics,
    clock: Callable[[], float],
) -> IncidentRecorder | None:
    """The recorder `config.incidents` asks for (None without one), its series exported
    in `metrics`; not started. ConfigError when the store's password cannot be read."""
    if config.incidents is None:
        return None
    recorder = IncidentRecorder(
        evaluator,
        changes,
        incident_store(config.incidents),
        config.incidents.quiet_period_s,
        clock,
    )
    time_to_detect = metrics.track_incidents(recorder.open_counts)

    def opened(inc: Incident) -> None:
        if inc.time_to_detect_s is not None:
            time_to_detect.observe(inc.time_to_detect_s)

    recorder.on_opened = opened
    recorder.alert_state_kept = config.state is not None
    return recorder
