"""Sinks over real HTTP: signing, retries, Retry-After, drops, a full queue, close, and the
Alertmanager sink against a real Alertmanager (Debian `prometheus-alertmanager`).

What needs no network (backoff, URL checks, the console line, build_sinks) is tested in
tests/unit/adapters/alerts/."""

from __future__ import annotations

import base64
import json
import logging
import random
import socket
import time
from collections.abc import AsyncIterator, Coroutine
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from engine.adapters.alerts.alertmanager import AlertmanagerSink
from engine.adapters.alerts.http_sink import RetryPolicy
from engine.adapters.alerts.payloads import alert_labels, fingerprint, rfc3339, webhook_body
from engine.adapters.alerts.signing import WebhookVerifier
from engine.adapters.alerts.sinks import build_sinks
from engine.adapters.alerts.webhook import WebhookSink
from engine.core.config import Config, WebhookReceiver
from tests.integration.alertmanager import eventually, running_alertmanager
from tests.integration.http_receiver import (
    FAST,
    HANG,
    Receiver,
    Reply,
    counts,
    serve,
    started,
)
from tests.unit.adapters.alerts.factories import (
    EXTERNAL,
    SLO,
    SLOS,
    T0,
    FixedClock,
    firing,
    new_secret,
    resolved,
)


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serve(Receiver()) as rcv:
        yield rcv


def webhook_sink(url: str, **kwargs: Any) -> WebhookSink:
    kwargs.setdefault("clock", FixedClock())
    kwargs.setdefault("retry", FAST)
    return WebhookSink(url, SLOS, external_url=EXTERNAL, rng=random.Random(7), **kwargs)


def run_without_suspending(coro: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine to completion in one step: proof that it never waited on anything."""
    with pytest.raises(StopIteration):
        coro.send(None)


# -- webhooks -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_signed_delivery_verifies_with_either_secret_of_a_rotation(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = new_secret(), new_secret()
    monkeypatch.setenv("BURNRATE_TEST_WEBHOOK_SECRET", f"{old}\n {new}")
    config = Config(
        slos=[SLO],
        receivers=[WebhookReceiver(url=receiver.url, secret_env="BURNRATE_TEST_WEBHOOK_SECRET")],
    )
    clock = FixedClock()
    [sink] = build_sinks(config, EXTERNAL, clock=clock, retry=FAST)
    assert isinstance(sink, WebhookSink)
    assert sink.signed
    async with started(sink):
        await sink.deliver(firing())
        [request] = await receiver.wait_for(1)
        await eventually(lambda: counts(sink)["delivered"] == 1, what="delivered count")

    for secret in (old, new):
        WebhookVerifier([secret]).verify(request.headers, request.body, now_s=clock())
    assert request.headers["webhook-timestamp"] == str(int(T0))
    assert request.headers["webhook-id"].startswith("msg_")
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("burnrate/")
    msg = request.json()
    assert msg["version"] == "4"
    assert msg["status"] == "firing"
    [alert] = msg["alerts"]
    assert alert["labels"] == {
        "alertname": "SLOErrorBudgetBurn",
        "slo": "checkout-availability",
        "service": "checkout",
        "severity": "page",
        "long_window": "1h",
        "short_window": "5m",
        "team": "payments",
    }
    assert alert["startsAt"] == rfc3339(T0)
    assert counts(sink) == {"delivered": 1, "retried": 0, "failed": 0, "dropped_queue_full": 0}


@pytest.mark.asyncio
async def test_an_unsigned_delivery_still_carries_id_and_timestamp(receiver: Receiver) -> None:
    async with started(webhook_sink(receiver.url)) as sink:
        assert not sink.signed
        await sink.deliver(firing())
        [request] = await receiver.wait_for(1)
    assert request.headers["webhook-id"].startswith("msg_")
    assert request.headers["webhook-timestamp"] == str(int(T0))
    assert "webhook-signature" not in request.headers


@pytest.mark.asyncio
async def test_5xx_is_retried_with_the_same_id_and_body_until_it_succeeds(
    receiver: Receiver,
) -> None:
    receiver.script.extend([Reply(500), Reply(503), Reply(502), Reply(200)])
    secret = new_secret()
    clock = FixedClock()
    sink = webhook_sink(receiver.url, clock=clock, secrets=[base64.b64decode(secret[6:])])
    async with started(sink):
        await sink.deliver(firing())
        requests = await receiver.wait_for(4)
        await eventually(lambda: counts(sink)["delivered"] == 1, what="delivered count")
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    assert len({r.body for r in requests}) == 1
    verifier = WebhookVerifier([secret], remember_ids=0)
    for r in requests:
        verifier.verify(r.headers, r.body, now_s=clock())
    assert counts(sink) == {"delivered": 1, "retried": 3, "failed": 0, "dropped_queue_full": 0}


@pytest.mark.asyncio
@pytest.mark.parametrize("form", ["delay-seconds", "http-date"])
async def test_429_waits_as_long_as_retry_after_says(receiver: Receiver, form: str) -> None:
    clock = FixedClock(float(int(time.time())))
    header = "1" if form == "delay-seconds" else formatdate(clock() + 1, usegmt=True)
    receiver.script.extend([Reply(429, {"Retry-After": header}), Reply(204)])
    async with started(webhook_sink(receiver.url, clock=clock)) as sink:
        await sink.deliver(firing())
        first, second = await receiver.wait_for(2)
    # Our own backoff is at most 0.05 s here: only Retry-After explains the gap.
    assert second.at - first.at >= 0.95
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert counts(sink)["retried"] == 1


@pytest.mark.asyncio
async def test_retry_after_is_capped(receiver: Receiver) -> None:
    receiver.script.extend([Reply(503, {"Retry-After": "3600"}), Reply(204)])
    policy = RetryPolicy(initial_backoff_s=0.01, max_backoff_s=0.05, max_retry_after_s=0.1)
    async with started(webhook_sink(receiver.url, retry=policy)) as sink:
        await sink.deliver(firing())
        first, second = await receiver.wait_for(2)
    assert second.at - first.at < 3600


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
async def test_a_4xx_other_than_429_is_logged_counted_and_not_retried(
    receiver: Receiver, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.script.extend([Reply(status), Reply(204)])
    async with started(webhook_sink(receiver.url)) as sink:
        await sink.deliver(firing())
        await sink.deliver(firing(severity="ticket"))
        first, second = await receiver.wait_for(2)
        await eventually(lambda: counts(sink)["delivered"] == 1, what="delivered count")
    assert first.json()["alerts"][0]["labels"]["severity"] == "page"
    assert second.json()["alerts"][0]["labels"]["severity"] == "ticket"
    assert counts(sink) == {"delivered": 1, "retried": 0, "failed": 1, "dropped_queue_full": 0}
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert f"HTTP {status}" in error.getMessage()
    assert "checkout-availability/page firing" in error.getMessage()


@pytest.mark.asyncio
async def test_a_timeout_is_retried_with_the_same_message(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.script.extend([HANG, Reply(204)])
    async with started(webhook_sink(receiver.url, timeout_s=0.3)) as sink:
        await sink.deliver(firing())
        first, second = await receiver.wait_for(2)
        await eventually(lambda: counts(sink)["delivered"] == 1, what="delivered count")
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    assert counts(sink)["retried"] == 1
    assert any("no response within 0.3s" in r.getMessage() for r in caplog.records)


@pytest.mark.asyncio
async def test_connection_errors_are_retried_until_the_receiver_comes_up() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = webhook_sink(f"http://127.0.0.1:{port}/hook")
    async with started(sink):
        await sink.deliver(firing())
        await eventually(lambda: counts(sink)["retried"] >= 3, what="retries")
        async with serve(Receiver(), port) as late:
            [request] = await late.wait_for(1)
            await eventually(lambda: counts(sink)["delivered"] == 1, what="delivered count")
    assert request.json()["alerts"][0]["status"] == "firing"


@pytest.mark.asyncio
async def test_a_full_queue_drops_and_counts_without_ever_blocking_the_caller(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.script.append(HANG)
    async with started(webhook_sink(receiver.url, queue_size=2)) as sink:
        run_without_suspending(sink.deliver(firing(at=T0)))
        await receiver.wait_for(1)  # the worker now waits on the hung request
        for i in range(1, 6):
            run_without_suspending(sink.deliver(firing(at=T0 + i)))
        assert counts(sink)["dropped_queue_full"] == 3
        assert sum("DROPPED" in r.getMessage() for r in caplog.records) == 3
        receiver.release.set()
        requests = await receiver.wait_for(3)
        await eventually(lambda: counts(sink)["delivered"] == 3, what="delivered count")
    # Delivered in order, the first three; the last three were the ones dropped.
    assert [r.json()["alerts"][0]["startsAt"] for r in requests] == [
        rfc3339(T0 + i) for i in range(3)
    ]


@pytest.mark.asyncio
async def test_resolved_body_starts_when_it_fired_and_keeps_the_fired_window_labels(
    receiver: Receiver,
) -> None:
    async with started(webhook_sink(receiver.url)) as sink:
        await sink.deliver(firing(at=T0))
        await sink.deliver(resolved(at=T0 + 900))
        fired_msg, resolved_msg = (r.json() for r in await receiver.wait_for(2))
    [fired_alert], [resolved_alert] = fired_msg["alerts"], resolved_msg["alerts"]
    assert resolved_msg["status"] == resolved_alert["status"] == "resolved"
    assert resolved_alert["startsAt"] == rfc3339(T0)
    assert resolved_alert["endsAt"] == rfc3339(T0 + 900)
    assert resolved_alert["labels"] == fired_alert["labels"]
    assert resolved_alert["labels"]["long_window"] == "1h"
    assert resolved_alert["labels"]["short_window"] == "5m"
    assert resolved_alert["fingerprint"] == fired_alert["fingerprint"]
    notes = resolved_alert["annotations"]
    assert (notes["long_window"], notes["short_window"], notes["factor"]) == ("6h", "30m", "6")
    assert resolved_msg["groupKey"] == fired_msg["groupKey"]


@pytest.mark.asyncio
async def test_close_logs_every_transition_left_undelivered(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.default = Reply(503)
    sink = webhook_sink(receiver.url)
    await sink.start()
    await sink.deliver(firing(at=T0))
    await sink.deliver(resolved(at=T0 + 60))
    await eventually(lambda: counts(sink)["retried"] >= 2, what="retries")
    await sink.close(timeout_s=0.05)
    [error] = [r for r in caplog.records if "not delivered before shutdown" in r.getMessage()]
    assert error.levelno == logging.ERROR
    text = error.getMessage()
    assert "2 alert transitions" in text
    assert f"checkout-availability/page firing at {rfc3339(T0)}" in text
    assert f"checkout-availability/page resolved at {rfc3339(T0 + 60)}" in text
    await sink.deliver(firing())
    assert "is closed" in caplog.records[-1].getMessage()


# -- Alertmanager ---------------------------------------------------------------------


def am_sink(url: str, **kwargs: Any) -> AlertmanagerSink:
    kwargs.setdefault("clock", FixedClock())
    return AlertmanagerSink(
        url, SLOS, external_url=EXTERNAL, retry=FAST, rng=random.Random(7), **kwargs
    )


@pytest.mark.asyncio
async def test_alertmanager_sink_resends_while_firing_and_retries_failures(
    receiver: Receiver,
) -> None:
    receiver.script.append(Reply(500))
    clock = FixedClock(T0 + 30)
    base = receiver.url.removesuffix("/hook")
    async with started(am_sink(base, clock=clock, resend_interval_s=0.1)) as sink:
        await sink.deliver(firing(at=T0))
        await receiver.wait_for(4)  # a failed attempt, its retry, then re-sends
        assert counts(sink)["retried"] == 1
        await sink.deliver(resolved(at=T0 + 60))
        await eventually(
            lambda: receiver.requests[-1].json()[0]["endsAt"] == rfc3339(T0 + 30),
            what="the resolve",
        )
        assert sink.firing == []
    posted = [r.json() for r in receiver.requests]
    assert all(len(body) == 1 for body in posted)
    labels = alert_labels(firing(), SLO)
    for body in posted[:4]:
        [alert] = body
        assert alert["labels"] == labels
        assert alert["startsAt"] == rfc3339(T0)
        assert alert["endsAt"] == rfc3339(T0 + 30 + 4 * 0.1)
        assert alert["generatorURL"] == f"{EXTERNAL}/v1/slos/checkout-availability"
    [last] = posted[-1]
    # The resolve names the fired row's windows and ends at min(resolve time, now).
    assert last["labels"] == labels
    assert last["startsAt"] == rfc3339(T0)
    assert all(r.headers.get("Content-Type") == "application/json" for r in receiver.requests)


@pytest.mark.asyncio
async def test_real_alertmanager_takes_fires_notifies_and_resolves_our_alert(
    receiver: Receiver, tmp_path: Path
) -> None:
    async with running_alertmanager(tmp_path, receiver.url) as am:
        sink = am_sink(am.url, clock=time.time, resend_interval_s=1.0)
        fired = firing(at=time.time() - 5)
        labels = alert_labels(fired, SLO)
        async with started(sink):
            await sink.deliver(fired)

            async def listed() -> bool:
                return any(a["labels"] == labels for a in await am.alerts())

            await eventually(listed, what="the alert in GET /api/v2/alerts")
            [alert] = [a for a in await am.alerts() if a["labels"] == labels]
            assert alert["status"]["state"] == "active"
            assert alert["fingerprint"] == fingerprint(labels)
            assert alert["generatorURL"] == f"{EXTERNAL}/v1/slos/checkout-availability"
            assert alert["annotations"]["runbook_url"] == "https://runbooks.example/checkout"

            def notified(status: str) -> bool:
                return any(
                    r.json()["status"] == status
                    and any(a["labels"] == labels for a in r.json()["alerts"])
                    for r in receiver.requests
                )

            await eventually(lambda: notified("firing"), what="Alertmanager's firing webhook")
            await eventually(lambda: counts(sink)["delivered"] >= 2, what="a re-send")

            await sink.deliver(resolved(at=time.time()))

            async def gone() -> bool:
                return not any(a["labels"] == labels for a in await am.alerts())

            await eventually(gone, what="the alert resolved in Alertmanager")
            await eventually(lambda: notified("resolved"), what="Alertmanager's resolved webhook")
    note = next(r.json() for r in receiver.requests if r.json()["status"] == "resolved")
    [am_alert] = note["alerts"]
    assert am_alert["labels"] == labels  # the fired row's windows, not the resolved row's
    assert am_alert["fingerprint"] == fingerprint(labels)
    assert am_alert["startsAt"].startswith(rfc3339(fired.at)[:19])
    # Our own webhook body has the shape, group key and identity Alertmanager's has.
    ours = json.loads(webhook_body([(fired, SLO)], receiver="test", external_url=EXTERNAL))
    assert set(ours) == set(note)
    assert set(ours["alerts"][0]) == set(am_alert)
    assert ours["groupKey"] == note["groupKey"]
    assert ours["groupLabels"] == note["groupLabels"]
    assert ours["alerts"][0]["fingerprint"] == am_alert["fingerprint"]
    assert counts(sink)["failed"] == counts(sink)["retried"] == 0


# -- across restarts, and a resolve never first ------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("why", ["refused with 400", "never seen"])
async def test_a_webhook_never_sends_the_resolve_of_a_firing_its_receiver_did_not_take(
    receiver: Receiver, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.script.append(Reply(400))
    async with started(webhook_sink(receiver.url)) as sink:
        if why == "refused with 400":
            await sink.deliver(firing(at=T0))
        else:
            receiver.script.clear()
        await sink.deliver(resolved(at=T0 + 60))
        await sink.deliver(firing(at=T0 + 120, severity="ticket"))  # proof the queue moved on
        await eventually(
            lambda: any(
                r.json()["alerts"][0]["labels"]["severity"] == "ticket" for r in receiver.requests
            ),
            what="the ticket",
        )
    statuses = [
        (r.json()["status"], r.json()["alerts"][0]["labels"]["severity"]) for r in receiver.requests
    ]
    expected = [("firing", "ticket")]
    if why == "refused with 400":
        expected.insert(0, ("firing", "page"))
    assert statuses == expected  # no resolved at all
    assert any(
        "page resolved" in r.getMessage() and "never took this alert's firing" in r.getMessage()
        for r in caplog.records
    )


@pytest.mark.asyncio
async def test_a_webhook_restored_in_a_new_process_sends_the_same_message_it_could_not_deliver(
    receiver: Receiver,
) -> None:
    receiver.default = Reply(503)
    first = webhook_sink(receiver.url)
    async with started(first):
        await first.deliver(firing(at=T0))
        await receiver.wait_for(2)
    state = first.delivery_state()
    refused = list(await receiver.quiet())

    receiver.default = Reply(204)
    second = webhook_sink(receiver.url)  # the same receiver, in the restarted engine
    assert second.identity == first.identity
    assert second.restore(state, [], [firing(at=T0)]) == 1
    async with started(second):
        [*_, delivered] = await receiver.wait_for(len(refused) + 1)
        await eventually(lambda: counts(second)["delivered"] == 1, what="delivered count")
        await second.deliver(resolved(at=T0 + 60))  # announced now: its resolve goes out
        [*_, resolve] = await receiver.wait_for(len(refused) + 2)
    assert delivered.json()["status"] == "firing"
    assert delivered.headers["webhook-id"] == refused[0].headers["webhook-id"]
    assert delivered.body == refused[0].body
    assert resolve.json()["status"] == "resolved"
    assert resolve.json()["alerts"][0]["labels"] == delivered.json()["alerts"][0]["labels"]
    assert len(receiver.requests) == len(refused) + 2  # the firing once, then its resolve


@pytest.mark.asyncio
async def test_alertmanager_sink_resends_what_it_kept_up_at_once_after_a_restart(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    base = receiver.url.removesuffix("/hook")
    clock = FixedClock(T0 + 30)
    first = am_sink(base, clock=clock, resend_interval_s=3600)
    async with started(first):
        await first.deliver(firing(at=T0))
        await receiver.wait_for(1)
    state = first.delivery_state()
    assert state.queued == []
    assert [tr.at for tr in state.announced] == [T0]

    second = am_sink(base, clock=clock, resend_interval_s=3600)
    second.restore(state, [], [firing(at=T0, burn_rate_long=1.0)])
    async with started(second):
        await receiver.wait_for(2)  # at once, not a resend interval later
        await second.deliver(resolved(at=T0 + 20))
        await receiver.wait_for(3)
        await second.deliver(resolved(at=T0 + 25, severity="ticket"))  # never fired here
        await second.deliver(firing(at=T0 + 26, severity="ticket"))
        await receiver.wait_for(4)
    bodies = [r.json() for r in receiver.requests]
    [[fired], [again], [resolve], [ticket]] = bodies
    assert again["labels"] == fired["labels"]
    assert again["startsAt"] == fired["startsAt"] == rfc3339(T0)
    assert again["annotations"] == fired["annotations"]  # the stored firing, not a rebuilt one
    assert resolve["labels"] == fired["labels"]
    assert resolve["endsAt"] == rfc3339(T0 + 20)
    assert ticket["labels"]["severity"] == "ticket"
    assert ticket["endsAt"] != rfc3339(T0 + 25)  # the ticket's resolve was never sent
    assert any("never took the alert's firing" in r.getMessage() for r in caplog.records)
