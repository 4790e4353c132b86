"""An evaluator fed in event time so that every number the API shows is known exactly
(shared by the pure view tests and the HTTP tests)."""

from __future__ import annotations

from engine.core.config import Config
from engine.core.decode import Event
from engine.core.evaluator import Evaluator, Transition

T0 = 1_700_000_000.0
"""The last evaluation time: every window is (T0 - W, T0]."""
PERIOD_30D_S = 30 * 86400

CONFIG = """\
slos:
  - name: checkout-availability
    service: checkout
    operation: "POST /orders"
    sli: availability
    objective: 99
    description: Orders are accepted
    runbook_url: https://runbooks.example/checkout
    labels: {team: payments, tier: "1"}
  - name: checkout-latency
    service: checkout
    sli: latency
    threshold_ms: 300
    objective: 99.5
  - name: search-availability
    service: search
    sli: availability
    objective: 99.9
    period: 7d
  - name: idle-availability
    service: idle
    sli: availability
    objective: 99
http:
  listen: 127.0.0.1:0
"""


def events() -> list[Event]:
    """checkout: 1000 requests over (T0-200, T0-100], 5 failed, 10 slow; search: 200
    requests over (T0-60, T0-40], all failed; nothing for idle."""
    out = [
        Event(
            service="checkout",
            operation="POST /orders",
            ts=T0 - 200 + i * 0.1,
            status=500 if i % 200 == 0 else 200,
            latency_ms=500.0 if i % 100 == 0 else 20.0,
        )
        for i in range(1000)
    ]
    out += [Event(service="search", ts=T0 - 60 + i * 0.1, status=503) for i in range(200)]
    return out


def fed_evaluator(config: Config) -> tuple[Evaluator, list[Transition]]:
    ev = Evaluator(config)
    batch = events()
    transitions = ev.ingest(ev.classifier.columns(batch))
    transitions += ev.advance(T0 + 1)
    assert ev.evaluated_at_s == T0
    return ev, transitions
