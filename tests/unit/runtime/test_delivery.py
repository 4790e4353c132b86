"""Delivery hands every transition to every sink in order; one failing sink neither
stops the others nor loses the next transitions; drain waits a bounded time."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import socket

import msgspec
import pytest

from engine.adapters.alerts.alertmanager import AlertmanagerSink
from engine.adapters.alerts.console import ConsoleSink
from engine.adapters.alerts.http_sink import RetryPolicy
from engine.adapters.alerts.pending import SinkState, message_id_for
from engine.adapters.alerts.webhook import WebhookSink
from engine.core import snapshot
from engine.core.config import parse_config
from engine.core.decode import Event
from engine.core.evaluator import Evaluator, Transition
from engine.runtime.delivery import Delivery, firing_alerts
from tests.unit.adapters.alerts.factories import (
    EXTERNAL,
    SLOS,
    T0,
    FixedClock,
    firing,
    resolved,
)


def transition(slo: str, state: str = "firing") -> Transition:
    return firing(slo=slo, state=state)


class Recording:
    def __init__(self, fail_on: str | None = None, gate: asyncio.Event | None = None) -> None:
        self.got: list[str] = []
        self.fail_on = fail_on
        self.gate = gate
        self.closed_with: float | None = None

    async def start(self) -> None:
        pass

    async def deliver(self, tr: Transition) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if tr.slo == self.fail_on:
            raise RuntimeError("receiver exploded")
        self.got.append(f"{tr.slo}/{tr.state}")

    async def close(self, timeout_s: float) -> None:
        self.closed_with = timeout_s

    def stats(self) -> dict[tuple[str, str], int]:
        return {("rec", "delivered"): len(self.got)}


@pytest.mark.asyncio
async def test_every_sink_gets_every_transition_in_order_despite_a_failing_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failing, healthy = Recording(fail_on="b"), Recording()
    delivery = Delivery([failing, healthy])
    await delivery.start()
    for name in ("a", "b", "c"):
        delivery.put(transition(name))
    delivery.put(transition("a", "resolved"))
    await delivery.drain(5.0)
    assert healthy.got == ["a/firing", "b/firing", "c/firing", "a/resolved"]
    assert failing.got == ["a/firing", "c/firing", "a/resolved"]
    assert any("failed to deliver b/page" in r.getMessage() for r in caplog.records)
    assert delivery.stats() == {("rec", "delivered"): 7}
    await delivery.close(1.5)
    assert failing.closed_with == healthy.closed_with == 1.5


@pytest.mark.asyncio
async def test_drain_gives_up_after_its_timeout_and_says_how_many_are_left(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    stuck = Recording(gate=asyncio.Event())
    delivery = Delivery([stuck])
    await delivery.start()
    delivery.put(transition("a"))
    delivery.put(transition("b"))
    await asyncio.sleep(0)
    await delivery.drain(0.05)
    assert stuck.got == []
    assert delivery.pending() == 1  # one taken by the worker, one still queued
    assert any("1 alert transitions not delivered" in r.getMessage() for r in caplog.records)
    await delivery.close(0.1)


# -- across restarts ------------------------------------------------------------------

PATIENT = RetryPolicy(initial_backoff_s=60.0, max_backoff_s=60.0)
"""After a failed attempt, wait longer than any test: what was taken stays undelivered."""


def refused_url() -> str:
    """A local port nothing listens on: every attempt fails at once (no network)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/hook"


def http_sinks(url: str) -> tuple[WebhookSink, AlertmanagerSink]:
    clock = FixedClock()
    return (
        WebhookSink(url, SLOS, external_url=EXTERNAL, clock=clock, retry=PATIENT),
        AlertmanagerSink(url, SLOS, external_url=EXTERNAL, clock=clock, retry=PATIENT),
    )


def queued(sink: WebhookSink | AlertmanagerSink) -> list[tuple[str, str, float, float | None]]:
    return [
        (j.tr.severity, j.tr.state, j.tr.at, None if j.fired is None else j.fired.at)
        for j in sink.delivery_state().queued
    ]


@pytest.mark.asyncio
async def test_what_the_sinks_did_not_deliver_is_restored_in_order_after_a_restart() -> None:
    url = refused_url()
    webhook, am = http_sinks(url)
    before = Delivery([webhook, am])
    await before.start()
    page, ticket = firing(at=T0), firing(at=T0 + 10, severity="ticket")
    for tr in (page, ticket, resolved(at=T0 + 60)):
        before.put(tr)
    await before.drain(5.0)
    for _ in range(500):  # the first attempt of each sink fails at once
        if all(s.stats()[(s.receiver, "retried")] >= 1 for s in (webhook, am)):
            break
        await asyncio.sleep(0.01)
    running = before.snapshot()
    await before.close(0.05)
    stopped = before.snapshot()
    assert before.undelivered() == 6  # three transitions, two receivers
    assert msgspec.msgpack.decode(stopped) == msgspec.msgpack.decode(running)

    webhook2, am2 = http_sinks(url)  # a new process, the same config
    after = Delivery([webhook2, am2])
    assert after.ids == before.ids
    await after.restore(stopped, [ticket])  # after the restore, only the ticket fires
    owed = [("page", "firing", T0, T0), ("ticket", "firing", T0 + 10, T0 + 10)]
    owed.append(("page", "resolved", T0 + 60, T0))  # the resolve names the firing it ends
    assert queued(webhook2) == owed
    # the Alertmanager sink re-sends what it was keeping up first: it expires otherwise
    assert queued(am2)[-3:] == owed
    assert {j.tr.state for j in am2.delivery_state().queued[:-3]} == {"firing"}
    await after.close(0.05)


def test_a_firing_the_receiver_took_is_not_sent_again_after_a_restart() -> None:
    webhook, _ = http_sinks(refused_url())
    page = firing(at=T0)
    held = webhook.restore(SinkState(announced=[page]), [], [page])
    assert held == 0  # the receiver has it: nothing to send
    webhook.enqueue(resolved(at=T0 + 60))
    [job] = webhook.delivery_state().queued
    assert job.tr.state == "resolved"
    assert job.fired == page  # labels and startsAt of the firing the receiver has
    assert webhook.delivery_state().announced == [page]


@pytest.mark.asyncio
async def test_a_file_without_deliveries_announces_every_firing_alert_to_the_http_sinks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="burnrate")
    webhook, am = http_sinks(refused_url())
    stream = io.StringIO()
    recording = Recording()
    delivery = Delivery([webhook, am, ConsoleSink(stream), recording])
    page = firing(at=T0)
    await delivery.restore(b"", [page])  # a version 1 state file: no deliveries in it
    assert queued(webhook) == queued(am) == [("page", "firing", T0, T0)]
    assert stream.getvalue() == ""  # the console and other sinks keep no state
    assert recording.got == []
    assert any("announcing 1 firing alerts" in m for m in caplog.messages)
    # the next snapshot knows the alert fires, as it fired
    saved = msgspec.msgpack.decode(delivery.snapshot())
    assert [tr["at"] for tr in saved["firing"]] == [T0]


@pytest.mark.asyncio
async def test_deliveries_that_cannot_be_read_announce_every_firing_alert(
    caplog: pytest.LogCaptureFixture,
) -> None:
    webhook, _ = http_sinks(refused_url())
    delivery = Delivery([webhook])
    await delivery.restore(b"\xc1 not msgpack", [firing(at=T0)])
    assert queued(webhook) == [("page", "firing", T0, T0)]
    assert any("cannot be read" in r.getMessage() for r in caplog.records)


@pytest.mark.asyncio
async def test_transitions_not_yet_handed_to_a_sink_are_kept_for_that_sink(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = refused_url()
    webhook, _ = http_sinks(url)
    stuck = Recording(gate=asyncio.Event())  # takes nothing
    before = Delivery([webhook, stuck])
    await before.start()
    a, b = firing(at=T0), firing(at=T0 + 1, severity="ticket")
    before.put(a)
    before.put(b)
    await asyncio.sleep(0.05)
    data = before.snapshot()
    await before.close(0.05)

    webhook2, _ = http_sinks(url)
    unstuck = Recording()
    after = Delivery([webhook2, unstuck])
    await after.restore(data, [a, b])
    assert unstuck.got == ["checkout-availability/firing"] * 2  # a and b, handed again
    assert [j.tr for j in webhook2.delivery_state().queued] == [a, b]  # each once


@pytest.mark.asyncio
async def test_undelivered_of_a_receiver_no_longer_configured_are_dropped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    old, _ = http_sinks(refused_url())
    old.enqueue(firing(at=T0))
    data = Delivery([old]).snapshot()
    new, _ = http_sinks(refused_url())  # another URL
    after = Delivery([new])
    await after.restore(data, [firing(at=T0)])
    assert queued(new) == [("page", "firing", T0, T0)]  # announced to the new receiver
    assert any(
        "1 undelivered alert transitions in the state file were for receivers no longer"
        in r.getMessage()
        for r in caplog.records
    )


def test_sink_ids_are_stable_carry_no_url_and_tell_repeats_apart() -> None:
    url = "https://hooks.example/services/T0/B0/SECRET"
    first = Delivery([*http_sinks(url), ConsoleSink(io.StringIO()), ConsoleSink(io.StringIO())])
    again = Delivery([*http_sinks(url), ConsoleSink(io.StringIO()), ConsoleSink(io.StringIO())])
    assert first.ids == again.ids
    assert len(set(first.ids)) == 4
    assert not any("SECRET" in i or "hooks.example" in i for i in first.ids)
    assert first.ids[0].startswith("webhook:")
    assert first.ids[1].startswith("alertmanager:")


def test_firing_alerts_rebuild_each_firing_transition_of_a_restored_evaluator() -> None:
    config = parse_config(
        "slos:\n"
        "  - {name: api, service: api, sli: availability, objective: 99, period: 1h}\n"
        "policy:\n"
        "  - {severity: page, long: 5m, short: 1m, burn_rate: 10}\n"
        "evaluation: {tick: 10s}\n"
    )
    ev = Evaluator(config)
    batch = [Event(service="api", ts=T0 + i, status=500) for i in range(30)]
    fired = ev.ingest(ev.classifier.columns(batch))
    fired += ev.advance(T0 + 40)
    [tr] = [t for t in fired if t.state == "firing"]
    restored = Evaluator(config)
    snapshot.load(restored, snapshot.dump(ev))
    [again] = firing_alerts(restored)
    assert (again.slo, again.severity, again.state, again.at) == (
        tr.slo,
        tr.severity,
        "firing",
        tr.at,
    )
    assert (again.long_window_s, again.short_window_s, again.factor) == (300, 60, 10.0)
    assert message_id_for(again) == message_id_for(tr)  # the same webhook-id
    assert firing_alerts(Evaluator(config)) == []


def test_the_webhook_id_follows_the_transition() -> None:
    page = firing(at=T0)
    assert message_id_for(page) == message_id_for(firing(at=T0, burn_rate_long=99.0))
    others = {
        message_id_for(tr)
        for tr in (
            resolved(at=T0),
            firing(at=T0 + 10),
            firing(at=T0, severity="ticket"),
            firing(at=T0, slo="other"),
        )
    }
    assert message_id_for(page) not in others
    assert len(others) == 4
    groups = {message_id_for(firing(at=T0, group=g)) for g in ("region=eu", "region=us")}
    assert len(groups) == 2
    assert message_id_for(page) not in groups
    assert re.fullmatch(r"msg_[0-9A-Za-z]{24}", message_id_for(page))


def test_firing_alerts_include_budget_alerts_and_escalations_routed_by_name() -> None:
    config = parse_config(
        "slos:\n"
        "  - {name: checkout-availability, service: api, sli: availability, objective: 99}\n"
        "evaluation: {tick: 10s}\n"
        "budget_alerts: {projected: false}\n"
        "receivers: [{type: console, name: oncall}]\n"
        "budget_policy: [{budget_remaining_at_most: 0, decision: fail, escalate: [oncall]}]\n"
    )
    ev = Evaluator(config)
    batch = [Event(service="api", ts=T0 - 5, status=500) for _ in range(10)]
    fired = ev.ingest(ev.classifier.columns(batch)) + ev.advance(T0 + 1)
    restored = Evaluator(config)
    snapshot.load(restored, snapshot.dump(ev))
    again = [t for t in firing_alerts(restored) if t.kind != "burn"]
    before = [t for t in fired if t.kind != "burn"]
    assert [(t.kind, t.at) for t in again] == [(t.kind, t.at) for t in before]
    assert [message_id_for(t) for t in again] == [message_id_for(t) for t in before]
    # announced after the restart: the escalation only to the receiver it names
    url = refused_url()
    named = WebhookSink(url, SLOS, external_url=EXTERNAL, clock=FixedClock(), name="oncall")
    other = WebhookSink(url, SLOS, external_url=EXTERNAL, clock=FixedClock(), name="chat")
    named.restore(None, [], again)
    other.restore(None, [], again)
    assert [j.tr.kind for j in named.delivery_state().queued] == ["budget_exhausted", "escalation"]
    assert [j.tr.kind for j in other.delivery_state().queued] == ["budget_exhausted"]
