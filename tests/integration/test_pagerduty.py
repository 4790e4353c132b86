"""The PagerDuty sink over real HTTP, against a local Events API v2 that checks every event
as the API documents it (tests/integration/pagerduty.py): trigger and resolve under one
dedup_key, retries on 429 and 5xx, no retry on 400, the routing key from the
environment or a file, groups, severities, and what a restart owes."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from engine.adapters.alerts.pagerduty import PagerDutySink
from engine.adapters.alerts.pagerduty_events import dedup_key
from engine.adapters.alerts.payloads import rfc3339
from engine.adapters.alerts.sinks import build_sinks
from engine.core.config import Config, PagerDutyReceiver, PagerDutySeverity
from tests.integration.alertmanager import eventually
from tests.integration.http_receiver import FAST, Reply, counts, serve, started
from tests.integration.pagerduty import PagerDuty
from tests.unit.adapters.alerts.factories import (
    EXTERNAL,
    SLO,
    SLOS,
    T0,
    FixedClock,
    firing,
    resolved,
)

KEY = "R0UTINGKEY0123456789abcdefABCDEF"
assert len(KEY) == 32


@pytest_asyncio.fixture
async def pagerduty() -> AsyncIterator[PagerDuty]:
    async with serve(PagerDuty(), path="/v2/enqueue") as pd:
        yield pd


def pd_sink(url: str, **kwargs: Any) -> PagerDutySink:
    kwargs.setdefault("routing_key", KEY)
    kwargs.setdefault("clock", FixedClock())
    kwargs.setdefault("retry", FAST)
    return PagerDutySink(SLOS, url=url, external_url=EXTERNAL, rng=random.Random(7), **kwargs)


@pytest.mark.asyncio
async def test_a_firing_triggers_and_its_resolve_resolves_the_same_pagerduty_alert(
    pagerduty: PagerDuty,
) -> None:
    async with started(pd_sink(pagerduty.url)) as sink:
        await sink.deliver(firing(at=T0))
        await eventually(lambda: len(pagerduty.alerts) == 1, what="the trigger")
        [(routing_key, key)] = pagerduty.alerts
        await sink.deliver(resolved(at=T0 + 900))
        await eventually(lambda: pagerduty.resolved == [(KEY, key)], what="the resolve")
    assert routing_key == KEY
    assert key == dedup_key(firing())
    trigger, resolve = pagerduty.accepted
    assert trigger["event_action"] == "trigger"
    payload = trigger["payload"]
    assert payload["severity"] == "critical"
    assert payload["source"] == "checkout"
    assert payload["timestamp"] == rfc3339(T0)
    assert payload["summary"].startswith("SLO checkout-availability (checkout) is burning")
    assert payload["custom_details"]["burn_rate_long"] == 25.3
    assert {link["text"] for link in trigger["links"]} >= {"Runbook"}
    assert resolve == {"routing_key": KEY, "event_action": "resolve", "dedup_key": key}
    assert [r.headers["Content-Type"] for r in pagerduty.requests] == ["application/json"] * 2
    assert counts(sink) == {"delivered": 2, "retried": 0, "failed": 0, "dropped_queue_full": 0}


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [429, 500, 503])
async def test_throttled_or_failing_requests_are_retried_with_the_same_event(
    pagerduty: PagerDuty, status: int
) -> None:
    pagerduty.script.extend([Reply(status), Reply(status, {"Retry-After": "0"})])
    async with started(pd_sink(pagerduty.url)) as sink:
        await sink.deliver(firing())
        requests = await pagerduty.wait_for(3)
        await eventually(lambda: counts(sink)["delivered"] == 1, what="delivered count")
    assert len({r.body for r in requests}) == 1  # the same event, the same dedup_key
    assert len(pagerduty.alerts) == 1
    assert counts(sink) == {"delivered": 1, "retried": 2, "failed": 0, "dropped_queue_full": 0}


@pytest.mark.asyncio
async def test_an_invalid_event_is_logged_with_pagerduty_s_reasons_and_not_retried(
    pagerduty: PagerDuty, caplog: pytest.LogCaptureFixture
) -> None:
    short_key = "not-an-integration-key"
    async with started(pd_sink(pagerduty.url, routing_key=short_key)) as sink:
        await sink.deliver(firing())
        await eventually(lambda: counts(sink)["failed"] == 1, what="the refusal")
        await sink.deliver(resolved(at=T0 + 60))  # its firing was refused: never sent
        await sink.deliver(firing(at=T0 + 120, severity="ticket"))  # the queue moves on
        await pagerduty.wait_for(2)
        await pagerduty.quiet(0.2)
    assert len(pagerduty.requests) == 2  # one attempt each; no retry, no resolve
    assert all(r.json()["event_action"] == "trigger" for r in pagerduty.requests)
    assert counts(sink) == {"delivered": 0, "retried": 0, "failed": 2, "dropped_queue_full": 0}
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert "HTTP 400" in errors[0]
    assert "checkout-availability/page firing" in errors[0]
    assert "should be 32 characters" in errors[0]  # PagerDuty's own reason
    assert all(short_key not in r.getMessage() for r in caplog.records)


@pytest.mark.asyncio
@pytest.mark.parametrize("source", ["routing_key_env", "routing_key_file"])
async def test_the_routing_key_is_read_from_the_environment_or_a_file(
    pagerduty: PagerDuty,
    source: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("BURNRATE_TEST_PD_KEY", KEY)
    (tmp_path / "pd-key").write_text(f"{KEY}\n")
    where = {
        "routing_key_env": "BURNRATE_TEST_PD_KEY",
        "routing_key_file": str(tmp_path / "pd-key"),
    }
    rcv = PagerDutyReceiver(url=pagerduty.url, **{source: where[source]})
    [sink] = build_sinks(
        Config(slos=[SLO], receivers=[rcv]), EXTERNAL, clock=FixedClock(), retry=FAST
    )
    assert isinstance(sink, PagerDutySink)
    async with started(sink):
        await sink.deliver(firing())
        await eventually(lambda: len(pagerduty.alerts) == 1, what="the trigger")
    assert [routing_key for routing_key, _ in pagerduty.alerts] == [KEY]
    assert all(KEY not in r.getMessage() for r in caplog.records)


@pytest.mark.asyncio
async def test_each_group_of_a_grouped_slo_is_its_own_pagerduty_alert(pagerduty: PagerDuty) -> None:
    async with started(pd_sink(pagerduty.url)) as sink:
        await sink.deliver(firing(group="region=eu"))
        await sink.deliver(firing(group="region=us"))
        await eventually(lambda: len(pagerduty.alerts) == 2, what="two triggers")
        await sink.deliver(resolved(at=T0 + 60, group="region=eu"))
        await eventually(lambda: len(pagerduty.resolved) == 1, what="the resolve")
    eu, us = (dedup_key(firing(group=g)) for g in ("region=eu", "region=us"))
    assert eu != us
    assert pagerduty.resolved == [(KEY, eu)]
    [(_, still_open)] = pagerduty.alerts
    assert still_open == us
    assert pagerduty.alerts[(KEY, us)]["payload"]["group"] == "region=us"


@pytest.mark.asyncio
async def test_a_receiver_hears_only_the_severities_it_takes_mapped_as_configured(
    pagerduty: PagerDuty,
) -> None:
    mapping = PagerDutySeverity(ticket="info")
    async with started(pd_sink(pagerduty.url, severities=["ticket"], severity_map=mapping)) as sink:
        await sink.deliver(firing())  # a page: not for this receiver
        await sink.deliver(firing(severity="ticket"))
        await sink.deliver(resolved(at=T0 + 60))
        await pagerduty.wait_for(1)
        await pagerduty.quiet(0.2)
    [event] = pagerduty.accepted
    assert event["payload"]["severity"] == "info"
    assert counts(sink)["failed"] == 0


@pytest.mark.asyncio
async def test_a_trigger_owed_at_shutdown_is_sent_after_a_restart_with_the_same_dedup_key(
    pagerduty: PagerDuty,
) -> None:
    pagerduty.script.extend([Reply(503)] * 1000)  # PagerDuty is down
    first = pd_sink(pagerduty.url)
    async with started(first):
        await first.deliver(firing(at=T0))
        refused = await pagerduty.wait_for(2)
    state = first.delivery_state()
    assert [job.tr.state for job in state.queued] == ["firing"]

    pagerduty.script.clear()  # and back
    second = pd_sink(pagerduty.url)  # the same receiver, in the restarted engine
    assert second.identity == first.identity
    assert pd_sink(pagerduty.url, routing_key="K" * 32).identity != first.identity
    assert second.restore(state, [], [firing(at=T0)]) == 1
    async with started(second):
        await eventually(lambda: len(pagerduty.alerts) == 1, what="the trigger")
        await second.deliver(resolved(at=T0 + 60))  # taken now: its resolve goes out
        await eventually(lambda: len(pagerduty.resolved) == 1, what="the resolve")
    trigger, resolve = pagerduty.accepted
    assert trigger == refused[0].json()
    assert resolve["dedup_key"] == trigger["dedup_key"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"routing_key": "short"}, "should be 32 characters"),
        ({"event_action": "open"}, "'event_action'"),
        (
            {"dedup_key": None, "event_action": "resolve", "payload": None},
            "'dedup_key' is required",
        ),
        ({"payload": {"summary": "x" * 1025, "source": "s", "severity": "critical"}}, "1024"),
        ({"payload": {"summary": "x", "source": "s", "severity": "page"}}, "'payload.severity'"),
        (
            {"payload": {"summary": "x", "source": "s", "severity": "info", "timestamp": "now"}},
            "ISO",
        ),
        ({"links": [{"text": "no href"}]}, "'links[0].href'"),
        ({"routing-key": KEY}, "Unknown field 'routing-key'"),
    ],
)
async def test_the_stand_in_refuses_what_the_events_api_refuses(
    pagerduty: PagerDuty, change: dict[str, Any], reason: str
) -> None:
    event = {
        "routing_key": KEY,
        "event_action": "trigger",
        "dedup_key": "k",
        "payload": {"summary": "x", "source": "s", "severity": "critical"},
    }
    event.update(change)
    event = {k: v for k, v in event.items() if v is not None}
    async with aiohttp.ClientSession() as http, http.post(pagerduty.url, json=event) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert body["status"] == "invalid event"
    assert any(reason in error for error in body["errors"]), body
    assert pagerduty.alerts == {}
