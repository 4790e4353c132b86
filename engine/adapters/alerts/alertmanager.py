"""The Alertmanager sink: the API v2 client behaviour Prometheus has, for one Alertmanager.

Alertmanager is state-based: it keeps the alerts it was sent, each until its `endsAt`.
So a firing alert is re-sent every `resend_interval` with `endsAt` = now + 4 x the
interval (as Prometheus does): if Burnrate stops, its alerts expire by themselves
rather than fire forever, and one or two lost re-sends change nothing. A resolved alert
is sent once (retried until taken) with `endsAt` = its resolve time, capped at now so
Alertmanager resolves it at once. Every POST carries all alerts still firing, so a
new or resolved alert also refreshes the others. Alertmanager clusters de-duplicate
between peers, so give one sink per peer (`urls:` in the config): each is independent.

After a restart (see `pending`) the alerts it was keeping up are sent again at once
with the same labels and `startsAt`, so Alertmanager keeps them instead of letting
them expire; a resolve of an alert whose firing this sink never took is not sent.
"""

from __future__ import annotations

import asyncio
import functools
import math
import random
from collections.abc import Mapping

from engine.adapters.alerts.http_sink import (
    DEFAULT_QUEUE_SIZE,
    Clock,
    HttpSink,
    Job,
    RetryPolicy,
    log,
    redact_url,
)
from engine.adapters.alerts.payloads import alertmanager_alerts
from engine.core.config import Escalations, Slo
from engine.core.evaluator import AlertKey, Transition

__all__ = ["HORIZON_RESENDS", "AlertmanagerSink"]

HORIZON_RESENDS = 4
"""A firing alert's `endsAt` lies this many resend intervals ahead."""


class AlertmanagerSink(HttpSink):
    """Keeps one Alertmanager's view of Burnrate's alerts current via `POST /api/v2/alerts`."""

    kind = "alertmanager"

    def __init__(
        self,
        base_url: str,
        slos: Mapping[str, Slo],
        *,
        external_url: str,
        clock: Clock,
        resend_interval_s: float = 60.0,
        timeout_s: float = 10.0,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        retry: RetryPolicy | None = None,
        rng: random.Random | None = None,
        receiver: str | None = None,
        name: str | None = None,
        escalations: Escalations = "named",
    ) -> None:
        if not resend_interval_s > 0:
            raise ValueError(f"resend_interval_s must be > 0, got {resend_interval_s}")
        super().__init__(
            base_url.rstrip("/") + "/api/v2/alerts",
            slos,
            clock=clock,
            timeout_s=timeout_s,
            queue_size=queue_size,
            retry=retry or RetryPolicy(),
            rng=rng,
            receiver=receiver or redact_url(base_url),
            name=name,
            escalations=escalations,
        )
        self.external_url = external_url
        self.resend_interval_s = resend_interval_s
        self.horizon_s = HORIZON_RESENDS * resend_interval_s
        self._active: dict[AlertKey, Job] = {}

    @property
    def firing(self) -> list[Transition]:
        """The firing transitions this sink keeps re-sending."""
        return [job.tr for job in self._active.values()]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_resend_at = math.inf
        while True:
            wait_s = max(0.0, next_resend_at - loop.time()) if self._active else None
            jobs = await self._next_jobs(wait_s)
            self._current = jobs
            resolved: list[Job] = []
            for job in jobs:
                key = job.tr.alert_key
                if job.tr.state == "firing":
                    self._active[key] = job
                elif job.fired is None and key not in self._active:
                    log.warning(
                        "%s: %s not sent: this sink never took the alert's firing",
                        self,
                        job.describe(),
                    )
                else:
                    self._active.pop(key, None)
                    resolved.append(job)
            # Resolved first: when one POST resolves an alert and fires it again with the
            # same labels, Alertmanager applies them in order and keeps it firing.
            items = [*resolved, *self._active.values()]
            if items:
                what = f"{len(items) - len(resolved)} firing and {len(resolved)} resolved alerts"
                await self.post_until_done(functools.partial(self._request, items), what)
            next_resend_at = loop.time() + self.resend_interval_s
            self._current = []
            for _ in jobs:
                self._queue.task_done()

    async def _next_jobs(self, wait_s: float | None) -> list[Job]:
        """Everything queued once something is; nothing if `wait_s` passes first."""
        try:
            async with asyncio.timeout(wait_s):
                first = await self._queue.get()
        except TimeoutError:
            return []
        jobs = [first]
        while not self._queue.empty():
            jobs.append(self._queue.get_nowait())
        return jobs

    def _request(self, items: list[Job]) -> tuple[bytes, dict[str, str]]:
        fired = {id(job.tr): job.fired for job in items}
        body = alertmanager_alerts(
            [(job.tr, job.slo) for job in items],
            external_url=self.external_url,
            now_s=self.clock(),
            horizon_s=self.horizon_s,
            fired=lambda tr: fired.get(id(tr)),
        )
        return body, {}

    def _announced_state(self) -> list[Transition]:
        return [job.tr for job in self._active.values()]

    def _restore_announced(self, announced: list[Transition]) -> None:
        for tr in announced:  # re-sent at once: Alertmanager expires what is not
            self.enqueue(tr)

    def _on_close(self) -> None:
        if self._active:
            log.info(
                "%s: %d alerts left firing; Alertmanager expires them within %gs unless "
                "a restarted engine re-sends them",
                self,
                len(self._active),
                self.horizon_s,
            )
