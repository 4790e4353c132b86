"""Sinks: where alert transitions go (console, signed webhooks, Alertmanager, PagerDuty).

The runtime builds the sinks once, starts them, hands every transition to each, and
closes them on shutdown:

    sinks = build_sinks(config, external_url, clock=time.time)
    for sink in sinks:
        await sink.start()
    ...
    for sink in sinks:
        await sink.deliver(transition)   # never waits on the network
    ...
    for sink in sinks:
        await sink.close(timeout_s=2.0)  # what is left undelivered is logged

`deliver` only queues: each HTTP sink has a bounded queue and one worker task that
POSTs and retries (see `_http`), so a slow or dead receiver never holds up the
evaluator or the other receivers. `collect_stats(sinks)` gives the delivery counts by
(receiver, outcome) for `burnrate_webhook_deliveries_total`.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from typing import Protocol, TextIO

from engine.adapters.alerts.alertmanager import AlertmanagerSink
from engine.adapters.alerts.console import ConsoleSink, format_transition
from engine.adapters.alerts.http_sink import (
    DEFAULT_QUEUE_SIZE,
    OUTCOMES,
    Clock,
    RetryPolicy,
    check_url,
    redact_url,
    retry_after_s,
)
from engine.adapters.alerts.pagerduty import PagerDutySink
from engine.adapters.alerts.receivers import load_routing_key
from engine.adapters.alerts.webhook import BODY_RECEIVER, WebhookSink, load_secrets
from engine.core.config import (
    AlertmanagerReceiver,
    Config,
    ConsoleReceiver,
    PagerDutyReceiver,
    Slo,
    WebhookReceiver,
)
from engine.core.durations import parse_duration_s
from engine.core.evaluator import Transition
from engine.errors import ConfigError

__all__ = [
    "BODY_RECEIVER",
    "DEFAULT_QUEUE_SIZE",
    "OUTCOMES",
    "AlertmanagerSink",
    "Clock",
    "ConsoleSink",
    "PagerDutySink",
    "RetryPolicy",
    "Sink",
    "WebhookSink",
    "build_sinks",
    "collect_stats",
    "format_transition",
    "load_secrets",
    "redact_url",
    "retry_after_s",
]


class Sink(Protocol):
    """Somewhere alert transitions go. Each sink decides which transitions its receiver
    hears (engine.adapters.alerts.routing: escalations only where named) by its `name`."""

    name: str | None
    """The configured receiver's `name` (what budget policy rows `escalate` to)."""

    async def start(self) -> None:
        """Open connections and start background work; call once in the event loop."""

    async def deliver(self, tr: Transition) -> None:
        """Take one transition. Never blocks the caller: it queues (or prints)."""

    async def close(self, timeout_s: float) -> None:
        """Finish what is queued within `timeout_s`, log what is left, release resources."""

    def stats(self) -> dict[tuple[str, str], int]:
        """Delivery counts keyed (receiver, outcome); empty for sinks that do not count."""
        ...


def build_sinks(
    config: Config,
    external_url: str,
    *,
    clock: Clock,
    queue_size: int = DEFAULT_QUEUE_SIZE,
    retry: RetryPolicy | None = None,
    rng: random.Random | None = None,
    stream: TextIO | None = None,
) -> list[Sink]:
    """One sink per configured receiver URL (console, PagerDuty: one per entry), not yet
    started; each carries its receiver's `name`.

    `external_url` is where people reach this engine (generatorURL, externalURL);
    `clock` is the wall clock (signing timestamps, Alertmanager times, Retry-After
    dates). Raises ConfigError for unusable URLs and unreadable or invalid secrets.
    """
    slos = {slo.name: slo for slo in config.slos}
    sinks: list[Sink] = []
    for i, rcv in enumerate(config.receivers):
        path = f"$.receivers[{i}]"
        if isinstance(rcv, ConsoleReceiver):
            sinks.append(ConsoleSink(stream, name=rcv.name, escalations=rcv.escalations))
            continue
        if isinstance(rcv, PagerDutyReceiver):
            sinks.append(
                _pagerduty_sink(rcv, path, slos, external_url, clock, queue_size, retry, rng)
            )
            continue
        if isinstance(rcv, WebhookReceiver):
            secrets = load_secrets(rcv, path)
            timeout_s = parse_duration_s(rcv.timeout)
            if not timeout_s > 0:
                raise ConfigError([f"{path}.timeout: must be longer than 0s"])
            for url in _urls(rcv, path):
                sinks.append(
                    WebhookSink(
                        url,
                        slos,
                        external_url=external_url,
                        clock=clock,
                        secrets=secrets,
                        timeout_s=timeout_s,
                        queue_size=queue_size,
                        retry=retry,
                        rng=rng,
                        name=rcv.name,
                        escalations=rcv.escalations,
                    )
                )
        elif isinstance(rcv, AlertmanagerReceiver):
            resend_s = parse_duration_s(rcv.resend_interval)
            if not resend_s > 0:
                raise ConfigError([f"{path}.resend_interval: must be longer than 0s"])
            for url in _urls(rcv, path):
                sinks.append(
                    AlertmanagerSink(
                        url,
                        slos,
                        external_url=external_url,
                        clock=clock,
                        resend_interval_s=resend_s,
                        queue_size=queue_size,
                        retry=retry,
                        rng=rng,
                        name=rcv.name,
                        escalations=rcv.escalations,
                    )
                )
    return sinks


def _pagerduty_sink(
    rcv: PagerDutyReceiver,
    path: str,
    slos: dict[str, Slo],
    external_url: str,
    clock: Clock,
    queue_size: int,
    retry: RetryPolicy | None,
    rng: random.Random | None,
) -> PagerDutySink:
    timeout_s = parse_duration_s(rcv.timeout)
    if not timeout_s > 0:
        raise ConfigError([f"{path}.timeout: must be longer than 0s"])
    return PagerDutySink(
        slos,
        routing_key=load_routing_key(rcv, path),
        external_url=external_url,
        clock=clock,
        url=check_url(rcv.url, f"{path}.url"),
        severities=rcv.severities,
        severity_map=rcv.severity_map,
        timeout_s=timeout_s,
        queue_size=queue_size,
        retry=retry,
        rng=rng,
        name=rcv.name,
        escalations=rcv.escalations,
    )


def _urls(rcv: WebhookReceiver | AlertmanagerReceiver, path: str) -> list[str]:
    """`url` and `urls` of a receiver, checked, without repeats, in config order."""
    found: list[str] = []
    if rcv.url is not None:
        found.append(check_url(rcv.url, f"{path}.url"))
    found += [check_url(url, f"{path}.urls[{j}]") for j, url in enumerate(rcv.urls)]
    if not found:
        raise ConfigError([f"{path}: needs url or urls"])
    return list(dict.fromkeys(found))


def collect_stats(sinks: Iterable[Sink]) -> dict[tuple[str, str], int]:
    """Delivery counts of all sinks, keyed (receiver, outcome) and summed where keys meet."""
    total: Counter[tuple[str, str]] = Counter()
    for sink in sinks:
        for key, n in sink.stats().items():
            total[key] += n
    return {key: total[key] for key in sorted(total)}
