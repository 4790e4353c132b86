"""The service behind `burnrate run`: its tasks under asyncio and their bounded shutdown.

Four tasks share one event loop and one evaluator, so no locks: *consume* (the Kafka
source applies fetched batches), *evaluate* (every second of wall time, moves event
time to `now - allowed_lateness` so idle services still drain and resolve, without
making a lagging partition's events too late, then refreshes the metrics body),
*deliver* (hands alert transitions to the sinks, off the consume path) and the HTTP
server.

Shutdown (SIGTERM/SIGINT): stop fetching, apply what was fetched, commit, hand over
pending transitions, leave the group, stop HTTP. Every await on that path is bounded,
so the process exits within `SHUTDOWN_TIMEOUT_S` even with every broker down.
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
from engine.adapters.alerts.sinks import Sink, build_sinks, collect_stats
from engine.adapters.http.metrics import EngineMetrics
from engine.adapters.http.server import HttpServer
from engine.adapters.kafka.source import KafkaSource
from engine.adapters.kafka.status import SourceStatus
from engine.adapters.store.state import FileStateStore, StateStore
from engine.core.config import Config
from engine.core.evaluator import Evaluator, Transition
from engine.core.snapshot import SnapshotError
from engine.errors import ConfigError

__all__ = ["Runtime"]

log = logging.getLogger("burnrate.runtime")

EVALUATE_INTERVAL_S: Final = 1.0
SHUTDOWN_TIMEOUT_S: Final = 10.0
START_RETRY_MAX_S: Final = 10.0


# -- the service ---------------------------------------------------------------------


class Runtime:
    """One engine instance: evaluator, Kafka source, metrics, HTTP server, sinks."""

    def __init__(
        self,
        config: Config,
        *,
        listen: str | None = None,
        sinks: Sequence[Sink] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.clock = clock
        self.evaluator = Evaluator(config)
        self.source = KafkaSource(config, self.evaluator, self._on_transitions, clock=clock)
        self.metrics = EngineMetrics(self.evaluator, self.status, clock)
        self.metrics.before_render = self._drain_batch_sizes
        self.http = HttpServer(listen or config.http.listen, self.metrics, self.status)
        external_url = f"http://{listen or config.http.listen}"
        self.sinks: list[Sink] = list(
            build_sinks(config, external_url, clock=clock) if sinks is None else sinks
        )
        self.metrics.collector.deliveries = self.delivery_stats
        self.transitions: list[Transition] = []
        """Every transition so far (the tests and the demo read it)."""
        self._queue: asyncio.Queue[Transition] = asyncio.Queue()
        self.started = asyncio.Event()
        """Set once HTTP listens and the consumer has joined its group."""
        self.state_store: StateStore | None = (
            FileStateStore(config.state.path) if config.state is not None else None
        )
        self.state_saves = 0
        self.restored = False
        """True when the evaluator started from a state snapshot."""

    def status(self) -> SourceStatus | None:
        return self.source.status()

    def _on_transitions(self, transitions: list[Transition]) -> None:
        for tr in transitions:
            self.transitions.append(tr)
            log.info(
                "alert %s",
                format_transition(tr),
                extra={"data": {"event": "alert", **msgspec.structs.asdict(tr)}},
            )
            self._queue.put_nowait(tr)

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, then shut down within SHUTDOWN_TIMEOUT_S."""
        await self.http.start()
        for sink in self.sinks:
            await sink.start()
        log.info(
            "listening on %s",
            self.http.url,
            extra={"data": {"event": "listening", "url": self.http.url}},
        )
        self._load_state()
        evaluate = asyncio.create_task(self._evaluate_loop(stop), name="evaluate")
        deliver = asyncio.create_task(self._deliver_loop(), name="deliver")
        consume: asyncio.Task[None] | None = None
        save: asyncio.Task[None] | None = None
        if self.state_store is not None:
            save = asyncio.create_task(self._state_loop(stop), name="state")
        try:
            if await self._start_source(stop):
                self.started.set()
                consume = asyncio.create_task(self.source.run(stop), name="consume")
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
            if save is not None:
                save.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await save
            await self._shutdown(consume, evaluate, deliver)

    async def _start_source(self, stop: asyncio.Event) -> bool:
        """Join the group, retrying with backoff while the brokers are unreachable."""
        delay = 0.5
        while not stop.is_set():
            start = asyncio.create_task(self.source.start())
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({start, stopped}, return_when=asyncio.FIRST_COMPLETED)
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

    # -- state ---------------------------------------------------------------------

    def _load_state(self) -> None:
        """Continue from the state file when there is one that fits this config."""
        store = self.state_store
        if store is None:
            return
        self.source.use_state_offsets({})  # track positions from now on, even if empty
        try:
            loaded = store.load()
            if loaded is None:
                log.info("no state snapshot yet; starting with empty windows")
                return
            blob, offsets = loaded
            self.evaluator.restore(blob)
        except SnapshotError as exc:
            log.warning(
                "ignoring the state snapshot: %s; starting with empty windows from the "
                "group's committed offsets",
                exc,
                extra={"data": {"event": "state_ignored", "reason": str(exc)}},
            )
            return
        self.source.use_state_offsets(offsets)
        self.restored = True
        log.info(
            "restored state snapshot: %d events over %d SLOs, %d partition offsets",
            int(self.evaluator.events_total.sum()),
            len(self.evaluator.slos),
            len(offsets),
            extra={"data": {"event": "state_restored", "partitions": len(offsets)}},
        )

    async def save_state(self, reason: str) -> bool:
        """Write the evaluator snapshot and the offsets it covers (taken in one event-loop
        step, never mid-batch), then commit the offsets to Kafka too. Never raises."""
        store = self.state_store
        if store is None:
            return False
        async with self.source.apply_lock:
            if not self.source.consistent:
                log.warning("state not saved (%s): a batch was interrupted mid-apply", reason)
                return False
            blob = self.evaluator.snapshot()
            offsets = self.source.state_offsets()
        try:
            await asyncio.to_thread(store.save, blob, offsets)
        except OSError as exc:
            log.warning("cannot write the state snapshot (%s): %s", reason, exc)
            return False
        self.state_saves += 1
        log.debug("state saved (%s): %d bytes, %d partitions", reason, len(blob), len(offsets))
        await self.source.commit(None, reason=f"state {reason}")
        return True

    async def _state_loop(self, stop: asyncio.Event) -> None:
        assert self.config.state is not None
        interval_s = self.config.state.interval_s
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):
                    await stop.wait()
            if stop.is_set():
                return  # the last snapshot belongs to the shutdown
            await self.save_state("periodic")

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
        """One evaluation at wall time: drain idle time, refresh the metrics."""
        t0 = time.perf_counter()
        transitions = self.evaluator.advance(self.clock() - self.evaluator.lateness_s)
        self.metrics.evaluation_duration.observe(time.perf_counter() - t0)
        self._drain_batch_sizes()
        self.metrics.invalidate()
        if transitions:
            self._on_transitions(transitions)

    def _drain_batch_sizes(self) -> None:
        sizes, self.source.batch_sizes = self.source.batch_sizes, []
        self.metrics.observe_batches(sizes)

    async def _deliver_loop(self) -> None:
        while True:
            tr = await self._queue.get()
            await self._deliver(tr)
            self._queue.task_done()

    async def _deliver(self, tr: Transition) -> None:
        for sink in self.sinks:
            try:
                await sink.deliver(tr)
            except Exception:  # the supervisor: one sink's failure must not stop the others
                log.exception("sink %s failed to deliver %s/%s", sink, tr.slo, tr.severity)

    def delivery_stats(self) -> dict[tuple[str, str], int]:
        """Webhook/Alertmanager delivery outcomes keyed (receiver, outcome)."""
        return collect_stats(self.sinks)

    async def _shutdown(
        self,
        consume: asyncio.Task[None] | None,
        evaluate: asyncio.Task[None],
        deliver: asyncio.Task[None],
    ) -> None:
        deadline = time.monotonic() + SHUTDOWN_TIMEOUT_S - 1.0

        def left(cap: float) -> float:
            return max(min(cap, deadline - time.monotonic()), 0.1)

        log.info("shutting down", extra={"data": {"event": "shutdown"}})
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
        if self.state_store is not None:
            try:
                async with asyncio.timeout(left(2.0)):
                    await self.save_state("shutdown")
            except TimeoutError:
                log.warning("state snapshot not written before exit (timed out)")
        await self.source.close(timeout_s=left(5.0))
        self.tick()  # transitions of the last applied batch, last metrics
        try:
            async with asyncio.timeout(left(2.0)):
                await self._queue.join()
        except TimeoutError:
            log.warning("%d alert transitions not delivered before exit", self._queue.qsize())
        deliver.cancel()
        for sink in self.sinks:
            await sink.close(left(2.0))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(left(1.0)):
                await self.http.stop()
        for task in (consume, evaluate, deliver):
            if task is not None and not task.done():
                task.cancel()
        log.info("stopped", extra={"data": {"event": "stopped"}})
