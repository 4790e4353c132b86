"""What the webhook and PagerDuty sinks share: one request per transition, in order, and
a resolve only for an alert whose firing the receiver took.

Both receivers hear about each transition on its own (the Alertmanager sink, which
keeps a whole set of alerts up, is the other kind), so the worker loop and the record
of what the receiver was told (`announced`, kept across restarts, see `pending`) live
here once; a subclass says how one transition is sent (`_send`).
"""

from __future__ import annotations

from typing import Any

from engine.adapters.alerts.http_sink import HttpSink, Job, log
from engine.core.evaluator import AlertKey, Transition

__all__ = ["TransitionSink"]


class TransitionSink(HttpSink):
    """An HttpSink that sends each transition by itself, oldest first."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._announced: dict[AlertKey, Transition] = {}
        """Alerts whose firing the receiver took, not yet told resolved."""

    async def _run(self) -> None:
        while True:
            job = await self._queue.get()
            self._current = [job]
            key = job.tr.alert_key
            if job.tr.state == "resolved" and key not in self._announced:
                log.warning(
                    "%s: %s not sent: the receiver never took this alert's firing",
                    self,
                    job.describe(),
                )
            elif await self._send(job):
                if job.tr.state == "firing":
                    self._announced[key] = job.tr
                else:
                    self._announced.pop(key, None)
            self._current = []
            self._queue.task_done()

    async def _send(self, job: Job) -> bool:
        """Deliver one transition, retrying until the receiver takes it (True) or refuses
        it for good (False)."""
        raise NotImplementedError

    def _announced_state(self) -> list[Transition]:
        return list(self._announced.values())

    def _restore_announced(self, announced: list[Transition]) -> None:
        for tr in announced:
            self._announced[tr.alert_key] = tr
            self._fired[tr.alert_key] = tr
