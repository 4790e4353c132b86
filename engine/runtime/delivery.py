"""Delivery: alert transitions from the evaluator to every sink, off the consume path.

Transitions are queued as they happen and handed to each sink in order by one task;
a sink only queues them in turn (its own worker retries), so a slow or failing
receiver never holds up the evaluator or the other sinks. At shutdown the queue gets
a bounded time to drain; what is left is counted and logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from engine.adapters.alerts.sinks import Sink, collect_stats
from engine.core.evaluator import Transition

__all__ = ["Delivery"]

log = logging.getLogger("burnrate.runtime.delivery")


class Delivery:
    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)
        self._queue: asyncio.Queue[Transition] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def put(self, tr: Transition) -> None:
        self._queue.put_nowait(tr)

    def pending(self) -> int:
        return self._queue.qsize()

    async def start(self) -> None:
        for sink in self.sinks:
            await sink.start()
        self._task = asyncio.create_task(self._run(), name="deliver")

    async def _run(self) -> None:
        while True:
            tr = await self._queue.get()
            for sink in self.sinks:
                try:
                    await sink.deliver(tr)
                except Exception:  # the supervisor: one sink's failure must not stop the others
                    log.exception("sink %s failed to deliver %s/%s", sink, tr.slo, tr.severity)
            self._queue.task_done()

    async def drain(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for every queued transition to reach the sinks."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._queue.join()
        except TimeoutError:
            log.warning("%d alert transitions not delivered before exit", self._queue.qsize())

    async def close(self, timeout_s: float) -> None:
        """Stop handing over and close the sinks (each logs what it leaves behind)."""
        if self._task is not None:
            self._task.cancel()
        for sink in self.sinks:
            await sink.close(timeout_s)

    def stats(self) -> dict[tuple[str, str], int]:
        """Webhook/Alertmanager delivery outcomes keyed (receiver, outcome)."""
        return collect_stats(self.sinks)
