"""The PagerDuty sink: alert events to one PagerDuty service through the Events API v2.

A firing transition is sent as a `trigger`, a resolved one as a `resolve` with the same
`dedup_key` (see `pagerduty_events`), one event per transition, in order, the body
fixed before the first attempt. PagerDuty answers 202 when it took the event; 400 means
the event is invalid and would be again, so it is logged at ERROR with PagerDuty's
reasons, counted `failed` and not retried; 429, 5xx, timeouts and network errors are
retried with the backoff and Retry-After handling all HTTP sinks share (`http_sink`).
PagerDuty asks for retries on 429 "after some time", so the backoff's cap matters here.

The routing key is read once when the sinks are built and goes nowhere but the request
body: not in logs, metric labels or the state file (the sink's `identity` there is a
digest of the URL and the key, so two services behind the same URL keep their
undelivered events apart). Only the severities the receiver takes are sent to it (and
the escalations that name it, whatever their severity: `routing`); a resolve goes only
to a receiver that took the alert's trigger (`transition_sink`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping

from engine.adapters.alerts.http_sink import DEFAULT_QUEUE_SIZE, Clock, Job, RetryPolicy, log
from engine.adapters.alerts.pagerduty_events import dedup_key, pagerduty_event
from engine.adapters.alerts.pending import sink_identity
from engine.adapters.alerts.transition_sink import TransitionSink
from engine.core.config import PAGERDUTY_EVENTS_URL, Escalations, PagerDutySeverity, Severity, Slo
from engine.core.evaluator import Transition

__all__ = ["PagerDutySink"]


class PagerDutySink(TransitionSink):
    """Sends each transition of the severities it takes to PagerDuty, retried until taken."""

    kind = "pagerduty"

    def __init__(
        self,
        slos: Mapping[str, Slo],
        *,
        routing_key: str,
        external_url: str,
        clock: Clock,
        url: str = PAGERDUTY_EVENTS_URL,
        severities: Iterable[Severity] = ("page", "ticket"),
        severity_map: PagerDutySeverity | None = None,
        timeout_s: float = 10.0,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        retry: RetryPolicy | None = None,
        rng: random.Random | None = None,
        name: str | None = None,
        escalations: Escalations = "named",
    ) -> None:
        if not routing_key:
            raise ValueError("routing_key must not be empty")
        super().__init__(
            url,
            slos,
            clock=clock,
            timeout_s=timeout_s,
            queue_size=queue_size,
            retry=retry or RetryPolicy(),
            rng=rng,
            receiver=name,
            name=name,
            escalations=escalations,
        )
        self.external_url = external_url
        self.severities = frozenset(severities)
        self.severity_map = severity_map or PagerDutySeverity()
        self._routing_key = routing_key

    @property
    def identity(self) -> str:
        return sink_identity(self.kind, f"{self.url}\0{self._routing_key}")

    def accepts(self, tr: Transition) -> bool:
        if tr.kind == "escalation":  # named for it (or it takes all): its severities aside
            return super().accepts(tr)
        return tr.severity in self.severities

    async def _send(self, job: Job) -> bool:
        try:
            body = pagerduty_event(
                job.tr,
                job.slo,
                routing_key=self._routing_key,
                severity=self.severity_map,
                external_url=self.external_url,
            )
        except ValueError:
            self._counts["failed"] += 1
            log.exception("%s: cannot build the event of %s; dropped", self, job.describe())
            return False
        action = "trigger" if job.tr.state == "firing" else "resolve"
        what = f"{job.describe()} ({action} {dedup_key(job.tr)})"
        return await self.post_until_done(lambda: (body, {}), what)
