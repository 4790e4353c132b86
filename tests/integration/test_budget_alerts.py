"""Budget alerts and escalations over real HTTP: each receiver hears what the config routes
to it (an escalation only where a budget policy row names it), PagerDuty keeps them
apart from the burn-rate alert of the same SLO, and a real Alertmanager inhibits by
their labels as docs/governance.md shows."""

from __future__ import annotations

import contextlib
import json
import random
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from engine.adapters.alerts.alertmanager import AlertmanagerSink
from engine.adapters.alerts.pagerduty import PagerDutySink
from engine.adapters.alerts.pagerduty_events import dedup_key
from engine.adapters.alerts.payloads import alert_labels
from engine.adapters.alerts.sinks import build_sinks
from engine.core.config import Config, parse_config
from engine.core.decode import Event
from engine.core.evaluator import Evaluator, Transition
from engine.runtime.delivery import Delivery
from engine.runtime.service import Runtime
from tests.integration.alertmanager import eventually, running_alertmanager
from tests.integration.http_receiver import FAST, Receiver, serve, started
from tests.integration.pagerduty import PagerDuty
from tests.integration.test_run import Running
from tests.integration.test_source import produce, records_for
from tests.unit.adapters.alerts.factories import EXTERNAL, SLO, SLOS, budget_alert, firing

KEY = "R0UTINGKEY0123456789abcdefABCDEF"
T0 = 1_700_000_000.0

CONFIG = """\
slos:
  - {name: api, service: shop, sli: availability, objective: 90}
evaluation: {tick: 10s}
budget_alerts: {}
receivers:
  - {type: webhook, name: oncall, url: "%(oncall)s"}
  - {type: webhook, name: chat, url: "%(chat)s"}
  - {type: webhook, url: "%(unnamed)s"}
  - {type: webhook, url: "%(everything)s", escalations: all}
  - {type: pagerduty, name: pager, url: "%(pd)s", routing_key_env: BR_TEST_PD_KEY,
     severities: [page]}
budget_policy:
  - {budget_remaining_at_most: 0, decision: warn, escalate: [oncall, pager]}
  - {budget_remaining_below: 0.25, decision: warn}
"""


def spent(cfg: str) -> list[Transition]:
    """Every transition of the config's evaluator after 100 failed requests."""
    ev = Evaluator(parse_config(cfg))
    batch = [Event(service="shop", ts=T0 - 5, status=500) for _ in range(100)]
    return ev.ingest(ev.classifier.columns(batch)) + ev.advance(T0 + 1)


def alertnames(receiver: Receiver) -> set[str]:
    return {a["labels"]["alertname"] for r in receiver.requests for a in r.json()["alerts"]}


@contextlib.asynccontextmanager
async def receivers(n: int) -> AsyncIterator[list[Receiver]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(serve(Receiver())) for _ in range(n)]


@pytest.mark.asyncio
async def test_an_escalation_reaches_only_the_receivers_its_row_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BR_TEST_PD_KEY", KEY)
    async with (
        receivers(4) as (oncall, chat, unnamed, everything),
        serve(PagerDuty(), path="/v2/enqueue") as pd,
    ):
        urls = {"oncall": oncall.url, "chat": chat.url, "unnamed": unnamed.url}
        cfg = CONFIG % {**urls, "everything": everything.url, "pd": pd.url}
        sinks = build_sinks(parse_config(cfg), EXTERNAL, clock=time.time, retry=FAST)
        delivery = Delivery(sinks)
        await delivery.start()
        try:
            transitions = spent(cfg)
            for tr in transitions:
                delivery.put(tr)
            await delivery.drain(10.0)
            burn = {"SLOErrorBudgetBurn", "ErrorBudgetExhausted"}
            for rcv in (oncall, everything):
                await eventually(lambda r=rcv: alertnames(r) >= burn | {"ErrorBudgetEscalation"})
            await eventually(lambda: len(pd.accepted) >= 2, what="the pages and the escalation")
        finally:
            await delivery.close(2.0)
    # the exhausted budget, the pages, and the escalation of row 0 (row 1 names nobody)
    assert [t.kind for t in transitions if t.kind != "burn"] == [
        "budget_exhausted",
        "escalation",
    ]
    for rcv in (chat, unnamed):
        assert alertnames(rcv) == burn, "an escalation that does not name it"
    escalations = [
        a
        for r in oncall.requests
        for a in r.json()["alerts"]
        if a["labels"]["alertname"] == "ErrorBudgetEscalation"
    ]
    [esc] = escalations
    assert esc["labels"]["policy_row"] == "$.budget_policy[0]"
    assert esc["labels"]["alert_type"] == "escalation"
    assert esc["annotations"]["reason"] == "error budget remaining -900% is at or below 0%"
    assert esc["annotations"]["receivers"] == "oncall,pager"
    # PagerDuty takes pages only, but the row names it: the (ticket) escalation comes too,
    # the ticket-severity budget alert does not; each under its own dedup key
    classes = [e["payload"]["class"] for e in pd.accepted if e["event_action"] == "trigger"]
    assert sorted(classes) == ["ErrorBudgetEscalation", "SLOErrorBudgetBurn"]
    [pd_esc] = [e for e in pd.accepted if e["payload"]["class"] == "ErrorBudgetEscalation"]
    assert pd_esc["payload"]["severity"] == "warning"
    assert pd_esc["payload"]["custom_details"]["decision"] == "warn"
    assert len({e["dedup_key"] for e in pd.accepted}) == 2


@pytest.mark.asyncio
async def test_pagerduty_triggers_and_resolves_a_budget_alert_apart_from_the_burn_alert() -> None:
    async with serve(PagerDuty(), path="/v2/enqueue") as pd:
        sink = PagerDutySink(
            SLOS,
            routing_key=KEY,
            external_url=EXTERNAL,
            clock=time.time,
            url=pd.url,
            retry=FAST,
            rng=random.Random(3),
        )
        async with started(sink):
            await sink.deliver(firing(at=T0))
            await sink.deliver(budget_alert(at=T0))
            await eventually(lambda: len(pd.alerts) == 2, what="two open PagerDuty alerts")
            await sink.deliver(budget_alert(at=T0 + 600, state="resolved"))
            await eventually(lambda: len(pd.resolved) == 1, what="the budget alert resolved")
    assert pd.resolved == [(KEY, dedup_key(budget_alert()))]
    assert list(pd.alerts) == [(KEY, dedup_key(firing()))]  # the burn alert stays open


INHIBIT = """\
inhibit_rules:
  - source_matchers: [alertname="ErrorBudgetExhausted"]
    target_matchers: [alertname="SLOErrorBudgetBurn", severity="ticket"]
    equal: [slo, group]
"""


@pytest.mark.asyncio
async def test_alertmanager_inhibits_slow_burn_tickets_while_the_budget_is_exhausted(
    tmp_path: Path,
) -> None:
    async with (
        serve(Receiver()) as receiver,
        running_alertmanager(tmp_path, receiver.url, extra_config=INHIBIT) as am,
    ):
        sink = AlertmanagerSink(
            am.url, SLOS, external_url=EXTERNAL, clock=time.time, resend_interval_s=1.0, retry=FAST
        )
        now = time.time()

        def key(tr: Transition) -> str:
            return json.dumps(alert_labels(tr, SLO), sort_keys=True)

        ticket = firing(at=now - 5, severity="ticket", long_window_s=86400, short_window_s=7200)
        page = firing(at=now - 5)
        exhausted = budget_alert(at=now - 5)
        async with started(sink):
            for tr in (ticket, page, exhausted):
                await sink.deliver(tr)

            async def states() -> dict[str, Any]:
                return {
                    json.dumps(a["labels"], sort_keys=True): a["status"] for a in await am.alerts()
                }

            async def suppressed() -> bool:
                got = await states()
                return len(got) == 3 and got[key(ticket)]["state"] == "suppressed"

            await eventually(suppressed, what="the ticket suppressed in Alertmanager")
            got = await states()
    assert got[key(ticket)]["state"] == "suppressed"
    assert got[key(ticket)]["inhibitedBy"]
    assert got[key(page)]["state"] == "active"
    assert got[key(exhausted)]["state"] == "active"


def service_config(bootstrap: str, topic: str, group: str, path: Path, urls: list[str]) -> Config:
    hooks = "".join(f"  - {{type: webhook, url: {url!r}}}\n" for url in urls)
    return parse_config(
        "slos:\n"
        "  - {name: checkout-availability, service: checkout, sli: availability, objective: 99}\n"
        "evaluation: {tick: 1s, allowed_lateness: 0s}\n"
        "budget_alerts: {projected: false}\n"
        f"kafka: {{bootstrap_servers: {bootstrap!r}, topics: [{topic}], group_id: {group}}}\n"
        "http: {listen: 127.0.0.1:0}\n"
        f"state: {{path: {str(path)!r}, interval: 1s}}\n"
        f"receivers:\n{hooks}"
    )


async def settled(runtime: Runtime) -> None:
    """Until the consumer has had fetch answers for a second: it is in its group and
    polling, so a shutdown leaves no connection behind."""
    t0 = time.time()
    await eventually(
        lambda: (runtime.source.status().last_fetch_at or 0) > t0 + 1.0,  # type: ignore[union-attr]
        timeout_s=30,
        what="more fetch answers",
    )


def exhausted_of(receiver: Receiver) -> list[tuple[str, dict[str, Any]]]:
    """(webhook-id, alert) of every ErrorBudgetExhausted the receiver was sent."""
    return [
        (r.headers["webhook-id"], a)
        for r in receiver.requests
        for a in r.json()["alerts"]
        if a["labels"]["alertname"] == "ErrorBudgetExhausted"
    ]


@pytest.mark.asyncio
async def test_a_firing_budget_alert_survives_a_restart_and_is_announced_once_per_receiver(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    path = tmp_path / "state" / "burnrate.state"
    group = f"g-{uuid.uuid4().hex[:10]}"
    # every 10th request fails: ten times the 1% budget
    await produce(
        kafka_bootstrap, unique_topic, records_for(range(200), "json", batch=1, now=time.time())
    )
    async with receivers(2) as (old, new):
        cfg = service_config(kafka_bootstrap, unique_topic, group, path, [old.url])
        first = Running(Runtime(cfg, listen="127.0.0.1:0"))
        try:
            await first.listening()
            await eventually(lambda: bool(exhausted_of(old)), timeout_s=30, what="the alert")
            await settled(first.runtime)
        finally:
            await first.shutdown()
        cfg = service_config(kafka_bootstrap, unique_topic, group, path, [old.url, new.url])
        runtime = Runtime(cfg, listen="127.0.0.1:0")
        second = Running(runtime)
        try:
            await second.listening()
            await eventually(lambda: bool(exhausted_of(new)), timeout_s=30, what="announced")
            await settled(runtime)
            await old.quiet(1.0)
        finally:
            await second.shutdown()
    assert runtime.restored
    [(old_id, old_alert)] = exhausted_of(old)  # once: the restart did not send it again
    [(new_id, new_alert)] = exhausted_of(new)  # announced to the receiver new to the file
    assert new_id == old_id  # the same message, as it fired
    assert new_alert["labels"] == old_alert["labels"]
    assert new_alert["startsAt"] == old_alert["startsAt"]
    slo = runtime.http.api.view("checkout-availability")
    assert slo is not None
    assert [(b.alert, b.firing) for b in slo.budget_alerts] == [("ErrorBudgetExhausted", True)]
