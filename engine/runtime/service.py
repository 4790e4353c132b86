"""The service behind `burnrate run`: its tasks under asyncio and their bounded shutdown.

Tasks share one event loop and one evaluator, so no locks: *consume* (the Kafka
source applies fetched batches), *evaluate* (every second of wall time, moves event
time to `now - allowed_lateness` so idle services still drain and resolve, but only
as far as the source has consumed: with every partition caught up that is the wall
clock's, otherwise no further than the newest event of the partition furthest behind
(`KafkaSource.event_time_cap`), so a backlog is never judged late against the wall
clock; then it refreshes the metrics body),
*deliver* (`delivery`: hands alert transitions to the sinks, off the consume path),
*checkpoint* (`checkpoint`: state snapshots and offset commits, in that order),
*changes* (with `kafka.changes_topic`: engine.adapters.kafka.changes), *incidents*
(with `incidents:`: engine.runtime.incidents, which takes the transitions, changes and
ticks and writes the incidents to their store) and the HTTP server. With `audit:` the
audit log (engine.runtime.audit) is opened first and closed last.

Start-up: the state snapshot is restored first, then the consumer joins its group in a
task of its own while the incident store, the HTTP server and the sinks start (a broker
may hold a first JoinGroup for seconds); consuming begins once both are done.
`/readyz` is unchanged: ready once partitions are assigned and fetched.

Shutdown (SIGTERM/SIGINT): stop fetching, apply what was fetched, evaluate once more,
give the sinks a bounded time to deliver, then save the state (with what the sinks
could not deliver, so it is sent after a restart), commit the offsets it holds, leave
the group, stop HTTP. Every await on that path is bounded, so the process exits within
`SHUTDOWN_TIMEOUT_S` even with every broker and every receiver down.

Other code follows the alerts with `subscribe(callback)` (the demo does). The only
history kept is the web UI's downsampled one (engine.core.history), sampled each tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Final

import msgspec

from engine.adapters.alerts.console import format_transition
from engine.adapters.alerts.sinks import Sink, build_sinks
from engine.adapters.http.audit import auth_denied_hook
from engine.adapters.http.metrics import EngineMetrics
from engine.adapters.http.server import HttpServer
from engine.adapters.kafka.changes import ChangeConsumer
from engine.adapters.kafka.source import KafkaSource
from engine.adapters.kafka.status import SourceStatus
from engine.adapters.store.audit import audit_sink
from engine.adapters.store.state import FileStateStore
from engine.core.changes import ChangeLog
from engine.core.config import Config
from engine.core.evaluator import Evaluator, Transition
from engine.core.history import DEFAULT_TIERS, History, Tier
from engine.core.overrides import Overrides
from engine.errors import ConfigError
from engine.runtime.audit import RuntimeAudit, config_digest
from engine.runtime.checkpoint import Checkpoint
from engine.runtime.delivery import Delivery, firing_alerts
from engine.runtime.incidents import IncidentRecorder, incident_recorder
from engine.runtime.reload import SIGNAL_ACTOR, ConfigReloader, ReloadOutcome

__all__ = ["Runtime"]

log = logging.getLogger("burnrate.runtime.service")

EVALUATE_INTERVAL_S: Final = 1.0
SHUTDOWN_TIMEOUT_S: Final = 10.0
START_RETRY_MAX_S: Final = 10.0

TransitionsListener = Callable[[Sequence[Transition]], None]


class Runtime:
    """One engine instance: evaluator, Kafka source, metrics, HTTP server, sinks."""

    def __init__(
        self,
        config: Config,
        *,
        listen: str | None = None,
        sinks: Sequence[Sink] | None = None,
        clock: Callable[[], float] = time.time,
        config_path: str | None = None,
        config_source: bytes | None = None,
        history_tiers: tuple[Tier, ...] = DEFAULT_TIERS,
        config_overrides: Callable[[Config], Config] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.config_path = config_path
        self.config_sha256 = config_digest(config, config_source)
        """Of the config file's bytes (`config_source`), else of the decoded config."""
        self.evaluator = Evaluator(config)
        self.source = KafkaSource(config, self.evaluator, self._on_transitions, clock=clock)
        self.metrics = EngineMetrics(self.evaluator, self.status, clock)
        self.metrics.before_render = self._drain_batch_sizes
        self.source.on_applied = self.metrics.counted  # the first events show before a tick
        self.overrides = Overrides()
        """Gate overrides, set through the API and kept in the state file."""
        self.changes = ChangeLog(config.changes.attribution_window_s, config.changes.max_kept)
        """Changes (deploys...), from the API and the changes topic, kept in the state file."""
        self._service_of = {s.name: s.service for s in config.slos}
        self.incidents: IncidentRecorder | None = incident_recorder(
            config, self.evaluator, self.changes, self.metrics, clock
        )
        """The incident lifecycle and its store, with `incidents:`."""
        sink = audit_sink(config, clock)  # ConfigError: its key cannot be read
        self.on_auth_denied = auth_denied_hook(sink)
        """For the auth middleware: records each request it denies (`auth.denied`);
        made before the HTTP server so the server can be given it."""
        self.http = HttpServer(
            listen or config.http.listen,
            self.metrics,
            self.status,
            overrides=self.overrides,
            changes=self.changes,
            incidents=self.incidents,
            history=History(self.evaluator, history_tiers),
        )
        self.http.auth.on_denied = self.on_auth_denied
        self.http.gates.on_change = self._overrides_changed
        self.http.changes.on_change = self._changes_changed
        self.audit = RuntimeAudit(sink, self.http.gates, self.overrides, clock)
        """The audit log (with `audit:`); `audit.log` is the sink every part records to."""
        self.http.gates.before_override = self.audit.decisions
        self._saves: set[asyncio.Task[bool]] = set()
        self._reloads: set[asyncio.Future[ReloadOutcome | None]] = set()
        scheme = "http" if config.http.tls is None else "https"
        external_url = f"{scheme}://{listen or config.http.listen}"
        self.delivery = Delivery(
            build_sinks(config, external_url, clock=clock) if sinks is None else sinks
        )
        self.metrics.collector.deliveries = self.delivery.stats
        self.checkpoint = Checkpoint(
            self.evaluator,
            self.source,
            FileStateStore(config.state.path) if config.state is not None else None,
            state_interval_s=config.state.interval_s if config.state is not None else 0.0,
            deliveries=self.delivery,
            overrides=self.overrides,
            changes=self.changes,
            clock=clock,
        )
        self.change_consumer = (
            ChangeConsumer(config, self.evaluator, self.changes, on_change=self._change_read)
            if config.kafka.changes_topic
            else None
        )
        """Reads `kafka.changes_topic` when one is configured."""
        if self.audit.enabled:
            self._wire_audit()
        self.reloader = (
            ConfigReloader(self, config_path, config_overrides or (lambda c: c))
            if config_path is not None
            else None
        )
        """Reloads the config file (SIGHUP, `POST /-/reload`): engine.runtime.reload."""
        if self.reloader is not None:
            self.http.on_reload = self.reloader.reload
            self.metrics.collector.config = self.reloader.metrics
        self._listeners: list[TransitionsListener] = []
        self.started = asyncio.Event()
        """Set once HTTP listens and the consumer has joined its group."""

    def _wire_audit(self) -> None:
        sink = self.audit.log
        for api in (self.http.gates, self.http.changes, self.http.corrections, self.http.incidents):
            api.audit = sink
        if self.change_consumer is not None:
            self.change_consumer.audit = sink
        if self.incidents is not None:
            self.incidents.audit = sink
        self.metrics.collector.audit = self.audit.metrics

    @property
    def restored(self) -> bool:
        """True when the evaluator started from a state snapshot."""
        return self.checkpoint.restored

    @property
    def state_saves(self) -> int:
        return self.checkpoint.saves

    def status(self) -> SourceStatus | None:
        return self.source.status()

    async def reload(self, actor: str = SIGNAL_ACTOR) -> ReloadOutcome | None:
        """Reload the config file (engine.runtime.reload); None without one."""
        return None if self.reloader is None else await self.reloader.reload(actor)

    def reload_soon(self) -> None:
        """Reload as `signal` in a task of its own (for the SIGHUP handler); it logs
        what it did."""
        task = asyncio.ensure_future(self.reload(SIGNAL_ACTOR))
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    def subscribe(self, listener: TransitionsListener) -> None:
        """Call `listener` with every batch of alert transitions, as they happen."""
        self._listeners.append(listener)

    def _overrides_changed(self) -> None:
        """An override was set or ended: the gate series change now, and the state file
        keeps it at once rather than at the next periodic save."""
        self._save_soon("override")
        self.audit.decisions()

    def _changes_changed(self) -> None:
        """A change came in: kept in the state file at once, like an override."""
        if self.incidents is not None:
            self.incidents.changes_taken()
        self._save_soon("change")

    async def _change_read(self) -> None:
        """Changes came from the topic: saved before the consumer commits their offsets."""
        if self.incidents is not None:
            self.incidents.changes_taken()
        self.metrics.invalidate()
        if self.config.state is not None:
            await self.checkpoint.save("change")

    def _save_soon(self, reason: str) -> None:
        self.metrics.invalidate()
        if self.config.state is not None and self.started.is_set():
            task = asyncio.ensure_future(self.checkpoint.save(reason))
            self._saves.add(task)
            task.add_done_callback(self._saves.discard)

    def _on_transitions(self, transitions: list[Transition]) -> None:
        if len(self.changes):
            # alerts in a change's attribution window name it, with what it burnt so far
            self.changes.update(self.evaluator)
            transitions = [
                self.changes.annotate(tr, self._service_of.get(tr.slo)) for tr in transitions
            ]
        for tr in transitions:
            log.info(
                "alert %s",
                format_transition(tr),
                extra={"data": {"event": "alert", **msgspec.structs.asdict(tr)}},
            )
            self.delivery.put(tr)
        self.audit.transitions(transitions)
        self.audit.decisions()
        if self.incidents is not None:
            self.incidents.transitions(transitions)
        for listener in self._listeners:
            listener(transitions)

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, then shut down within SHUTDOWN_TIMEOUT_S.
        IncidentStoreError before serving when the incident store cannot be used,
        AuditLogError when the audit log cannot."""
        self.audit.start(self.config, self.config_path, self.config_sha256)
        # The state first (the group's assignment seeks to its offsets), then the join
        # runs while the HTTP server and the rest start: a broker may hold a first
        # JoinGroup for seconds (Tansu: half the session timeout).
        self.checkpoint.restore()
        joining = asyncio.create_task(self._start_source(stop), name="join")
        try:
            try:
                if self.incidents is not None:
                    await self.incidents.start()
                try:
                    await self.http.start()
                except BaseException:
                    if self.incidents is not None:
                        await self.incidents.close(1.0)
                    raise
            except BaseException:
                self.audit.close()
                raise
        except BaseException:
            await self._abandon_join(joining)
            raise
        await self.delivery.start()
        log.info(
            "listening on %s",
            self.http.url,
            extra={"data": {"event": "listening", "url": self.http.url}},
        )
        self.http.warn_if_open()
        self.http.history.rebase(self.evaluator)  # the restored counts are not this run's
        if self.incidents is not None:  # restored changes and corrections are not news
            self.incidents.mark_seen()
        if self.checkpoint.restored:  # before any new transition: what was owed comes first
            await self.delivery.restore(
                self.checkpoint.restored_deliveries, firing_alerts(self.evaluator)
            )
        if self.reloader is not None:  # from here on: the restored state is in place
            self.reloader.accepting = True
        evaluate = asyncio.create_task(self._evaluate_loop(stop), name="evaluate")
        consume: asyncio.Task[None] | None = None
        checkpoint: asyncio.Task[None] | None = None
        changes: asyncio.Task[None] | None = None
        try:
            if await joining:
                self.started.set()
                checkpoint = asyncio.create_task(self.checkpoint.run(stop), name="checkpoint")
                consume = asyncio.create_task(self.source.run(stop), name="consume")
                if self.change_consumer is not None:
                    changes = asyncio.create_task(self.change_consumer.run(stop), name="changes")
                stopped = asyncio.create_task(stop.wait())
                done, _ = await asyncio.wait(
                    {consume, stopped}, return_when=asyncio.FIRST_COMPLETED
                )
                stopped.cancel()
                if consume in done and not stop.is_set():
                    consume.result()  # re-raises what ended it
                    log.error("consumer ended unexpectedly; shutting down")
        finally:
            stop.set()
            if checkpoint is not None:
                checkpoint.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await checkpoint
            if not joining.done():  # the shutdown began while it was joining
                await self._abandon_join(joining)
            await self._shutdown(consume, evaluate, changes)

    async def _abandon_join(self, joining: asyncio.Task[bool]) -> None:
        """The start failed or is cancelled while the consumer joins (or has joined):
        stop the join (its own cleanup is bounded) and leave the group, bounded."""
        joining.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError, Exception):
            async with asyncio.timeout(3.0):
                await joining
        await self.source.close(timeout_s=2.0)

    async def _start_source(self, stop: asyncio.Event) -> bool:
        """Join the group, retrying with backoff while the brokers are unreachable."""
        delay = 0.5
        while not stop.is_set():
            start = asyncio.create_task(self.source.start())
            # Abandoned (the start failed elsewhere, e.g. the HTTP port is taken, and
            # this join was cancelled): its failure is no one's to report.
            start.add_done_callback(_retrieve)
            stopped = asyncio.create_task(stop.wait())
            try:
                await asyncio.wait({start, stopped}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                start.cancel()
                stopped.cancel()
                raise
            stopped.cancel()
            if not start.done():
                start.cancel()
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    async with asyncio.timeout(2.0):
                        await start
                return False
            exc = start.exception()
            if exc is None:
                log.info("consumer started", extra={"data": {"event": "consumer_started"}})
                return True
            if isinstance(exc, ConfigError):
                raise exc
            log.warning("cannot reach Kafka (%r); retrying in %.1fs", exc, delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stop.wait()
            delay = min(delay * 2, START_RETRY_MAX_S)
        return False

    async def _evaluate_loop(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not stop.is_set():
            next_at += EVALUATE_INTERVAL_S
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(next_at - loop.time(), 0.0)):
                    await stop.wait()
            self.tick()
            if loop.time() > next_at + EVALUATE_INTERVAL_S:  # fell behind: do not catch up
                next_at = loop.time()

    def tick(self) -> None:
        """One evaluation at wall time: drain idle time (as far as the source has
        consumed), refresh the metrics."""
        t0 = time.perf_counter()
        transitions = self.evaluator.advance(
            self.clock() - self.evaluator.lateness_s,
            watermark_cap_s=self.source.event_time_cap(),
        )
        self.metrics.evaluation_duration.observe(time.perf_counter() - t0)
        self.http.history.observe(self.evaluator)
        self.changes.update(self.evaluator)
        self._drain_batch_sizes()
        self.metrics.invalidate()
        if transitions:
            self._on_transitions(transitions)
        if self.incidents is not None:
            self.incidents.tick()
        self.audit.tick()

    def _drain_batch_sizes(self) -> None:
        self.metrics.observe_batches(self.source.drain_batch_sizes())

    async def _shutdown(
        self,
        consume: asyncio.Task[None] | None,
        evaluate: asyncio.Task[None],
        changes: asyncio.Task[None] | None = None,
    ) -> None:
        deadline = time.monotonic() + SHUTDOWN_TIMEOUT_S - 1.0

        def left(cap: float) -> float:
            return max(min(cap, deadline - time.monotonic()), 0.1)

        log.info("shutting down", extra={"data": {"event": "shutdown"}})
        if self.reloader is not None:
            self.reloader.accepting = False
        for task, cap in ((consume, 2.0), (evaluate, 1.0)):
            if task is None:
                continue
            try:
                async with asyncio.timeout(left(cap)):
                    await asyncio.shield(task)
            except TimeoutError:
                task.cancel()
            except Exception:  # the supervisor: shutdown goes on whatever ended the task
                log.exception("task %s failed", task.get_name())
        self.tick()  # transitions of the last applied batch, last metrics
        await self.delivery.drain(left(1.5))
        await self.delivery.close(left(2.0))
        if self.incidents is not None:  # the last tick's updates, then the store closes
            await self.incidents.close(left(2.0))
        if self._saves:  # an override's own save: done before the last one
            await asyncio.wait(set(self._saves), timeout=left(1.0))
        # after the sinks: the snapshot keeps what they could not deliver
        await self.checkpoint.finish(left(2.0))
        await self.source.close(timeout_s=left(5.0))
        if changes is not None:
            # last: its changes are saved as they come, and its start may still be
            # joining the group, which it finishes before leaving
            try:
                async with asyncio.timeout(left(6.0)):
                    await asyncio.shield(changes)
            except TimeoutError:
                changes.cancel()
            except Exception:  # the supervisor: shutdown goes on whatever ended the task
                log.exception("task %s failed", changes.get_name())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(left(1.0)):
                await self.http.stop()
        for task in (consume, evaluate, changes):
            if task is not None and not task.done():
                task.cancel()
        self.audit.close()  # last: every part above may still record
        log.info("stopped", extra={"data": {"event": "stopped"}})


def _retrieve(task: asyncio.Task[None]) -> None:
    """Mark a task's exception as seen, so an abandoned one is not logged as lost."""
    if not task.cancelled():
        task.exception()
