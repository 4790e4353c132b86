"""The webhook sink: Alertmanager v4 bodies, signed per Standard Webhooks, one per transition.

Each transition becomes one message with one `webhook-id` and one body, both fixed
before the first attempt and re-used on every retry, so receivers can drop duplicates
by id. The id is derived from the transition (`pending.message_id_for`), so a message
sent again after a restart carries the same id too. Only `webhook-timestamp` and the
signature are renewed per attempt: they say when the attempt was signed, and a
receiver's 5-minute tolerance must not reject a message that waited out a long outage.
Unsigned messages carry the id and timestamp too. Secrets are read once, when the
sinks are built. A resolve is only sent for an alert whose firing this receiver took
(see `pending`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from engine.adapters.alerts.http_sink import (
    DEFAULT_QUEUE_SIZE,
    Clock,
    Job,
    RetryPolicy,
    log,
)
from engine.adapters.alerts.payloads import webhook_body
from engine.adapters.alerts.pending import message_id_for
from engine.adapters.alerts.receivers import load_secrets
from engine.adapters.alerts.signing import signature_headers
from engine.adapters.alerts.transition_sink import TransitionSink
from engine.core.config import Escalations, Slo

__all__ = ["BODY_RECEIVER", "WebhookSink", "load_secrets"]

BODY_RECEIVER = "burnrate"
"""The `receiver` field of every webhook body (Alertmanager puts its receiver name there)."""


class WebhookSink(TransitionSink):
    """POSTs each transition to one URL, signed when secrets are given, retried until taken."""

    kind = "webhook"

    def __init__(
        self,
        url: str,
        slos: Mapping[str, Slo],
        *,
        external_url: str,
        clock: Clock,
        secrets: Sequence[bytes] = (),
        timeout_s: float = 15.0,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        retry: RetryPolicy | None = None,
        rng: random.Random | None = None,
        receiver: str | None = None,
        name: str | None = None,
        escalations: Escalations = "named",
    ) -> None:
        super().__init__(
            url,
            slos,
            clock=clock,
            timeout_s=timeout_s,
            queue_size=queue_size,
            retry=retry or RetryPolicy(),
            rng=rng,
            receiver=receiver,
            name=name,
            escalations=escalations,
        )
        self.external_url = external_url
        self._secrets = tuple(secrets)

    @property
    def signed(self) -> bool:
        return bool(self._secrets)

    async def _send(self, job: Job) -> bool:
        fired = job.fired
        try:
            body = webhook_body(
                [(job.tr, job.slo)],
                receiver=BODY_RECEIVER,
                external_url=self.external_url,
                fired=lambda _tr: fired,
            )
        except ValueError:
            self._counts["failed"] += 1
            log.exception("%s: cannot build the body of %s; dropped", self, job.describe())
            return False
        msg_id = message_id_for(job.tr)

        def build() -> tuple[bytes, dict[str, str]]:
            timestamp = int(self.clock())
            if self._secrets:
                return body, signature_headers(self._secrets, msg_id, timestamp, body)
            return body, {"webhook-id": msg_id, "webhook-timestamp": str(timestamp)}

        return await self.post_until_done(build, f"{job.describe()} ({msg_id})")
