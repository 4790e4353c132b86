"""`/v1/corrections` over real HTTP (aiohttp on port 0, no broker): listing, adding at run
time, the bearer token, bad bodies, the INFO line, and the excluded counts in /metrics
and /v1/slos."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from engine.adapters.http.metrics import EngineMetrics
from engine.adapters.http.server import HttpServer
from engine.core.config import parse_config
from engine.core.decode import Event
from engine.core.evaluator import Evaluator
from tests.unit.adapters.http.api_sample import CONFIG, T0

CORRECTIONS = """\
corrections:
  - name: search-maintenance
    start: 2023-11-14T22:00:00Z
    duration: 2h
    services: [search]
    reason: index rebuild
"""

POSTED = {
    "name": "bad-canary",
    "start": T0 + 100,
    "end": "2023-11-15T00:00:00Z",
    "slos": ["checkout-availability"],
    "reason": "canary sent synthetic 500s",
}


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        yield s


async def start(http: str = "  listen: 127.0.0.1:0\n") -> tuple[HttpServer, Evaluator]:
    text = CONFIG.replace("http:\n  listen: 127.0.0.1:0\n", f"http:\n{http}") + CORRECTIONS
    ev = Evaluator(parse_config(text))
    server = HttpServer("127.0.0.1:0", EngineMetrics(ev, lambda: None), lambda: None)
    await server.start()
    return server, ev


async def call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: bytes | None = None,
    token: str | None = None,
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with session.request(method, url, data=body, headers=headers) as resp:
        raw = await resp.read()
        return resp.status, json.loads(raw) if resp.content_type == "application/json" else raw


def events(start: float, n: int, service: str = "checkout") -> list[Event]:
    return [
        Event(service=service, operation="POST /orders", ts=start + i, status=500) for i in range(n)
    ]


@pytest.mark.asyncio
async def test_posting_a_correction_lists_it_and_excludes_later_events(
    session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="burnrate.adapters.http.corrections")
    server, ev = await start()
    url = f"{server.url}/v1/corrections"
    try:
        status, body = await call(session, "GET", url)
        assert status == 200
        [configured] = body["corrections"]
        assert configured == {
            "name": "search-maintenance",
            "start": "2023-11-14T22:00:00Z",
            "end": "2023-11-15T00:00:00Z",
            "start_s": 1699999200.0,
            "end_s": 1700006400.0,
            "duration_s": 7200.0,
            "recurrence": None,
            "slos": None,
            "services": ["search"],
            "applies_to": ["search-availability"],
            "reason": "index rebuild",
            "source": "config",
        }
        ev.ingest(ev.classifier.columns(events(T0 + 100, 10)))  # before the POST: counted

        status, body = await call(session, "POST", url, json.dumps(POSTED).encode())
        assert status == 201, body
        assert body["applies_to"] == ["checkout-availability"]
        assert (body["start_s"], body["end_s"], body["source"]) == (T0 + 100, 1700006400.0, "api")
        [record] = [r for r in caplog.records if r.name == "burnrate.adapters.http.corrections"]
        assert record.levelno == logging.INFO
        data = record.__dict__["data"]
        assert data["event"] == "correction_added"
        assert data["reason"] == "canary sent synthetic 500s"
        assert data["slos"] == ["checkout-availability"]
        assert data["remote"] == "127.0.0.1"

        status, body = await call(session, "GET", url)
        assert [c["name"] for c in body["corrections"]] == ["search-maintenance", "bad-canary"]

        ev.ingest(ev.classifier.columns(events(T0 + 110, 7)))
        ev.ingest(ev.classifier.columns(events(T0 + 120, 3, "search")))
        ev.flush()
        server.metrics.invalidate()
        status, slo = await call(session, "GET", f"{server.url}/v1/slos/checkout-availability")
        assert (slo["events_total"], slo["excluded_events_total"]) == (10, 7)
        _, search = await call(session, "GET", f"{server.url}/v1/slos/search-availability")
        assert (search["events_total"], search["excluded_events_total"]) == (0, 3)
        status, text = await call(session, "GET", f"{server.url}/metrics")
        assert b'burnrate_slo_excluded_events_total{slo="checkout-availability"} 7.0\n' in text
        assert b'burnrate_slo_excluded_events_total{slo="search-availability"} 3.0\n' in text
        assert b'burnrate_slo_excluded_events_total{slo="idle-availability"} 0.0\n' in text
    finally:
        await server.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({**POSTED, "end": T0}, ["$.end: must be after start"]),
        ({**POSTED, "slos": ["nope"]}, ["$.slos[0]: no SLO named 'nope'"]),
        (
            {**POSTED, "services": ["search"], "duration": "1h"},
            ["$: give exactly one of end or duration", "$: give exactly one of slos or services"],
        ),
        ({**POSTED, "recurrence": "monthly"}, ["$.recurrence: Invalid enum value 'monthly'"]),
        ({**POSTED, "start": "tomorrow"}, None),
        (
            {k: v for k, v in POSTED.items() if k != "reason"},
            ["$: Object missing required field `reason`"],
        ),
    ],
)
async def test_a_bad_body_is_400_with_every_problem_at_its_path_and_adds_nothing(
    session: aiohttp.ClientSession, body: dict[str, Any], errors: list[str] | None
) -> None:
    server, ev = await start()
    try:
        status, got = await call(
            session, "POST", f"{server.url}/v1/corrections", json.dumps(body).encode()
        )
        assert status == 400
        if errors is not None:
            assert got == {"error": "; ".join(errors), "errors": errors}
        else:
            assert got["errors"][0].startswith("$.start: expected an RFC 3339 time")
        for raw in (b"{not json", b"", b"[1]"):
            status, got = await call(session, "POST", f"{server.url}/v1/corrections", raw)
            assert status == 400
            assert got["error"].startswith("$"), got
        assert ev.runtime_corrections == ()
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_an_oversized_body_is_refused(session: aiohttp.ClientSession) -> None:
    server, ev = await start()
    try:
        big = json.dumps({**POSTED, "reason": "x" * 100_000}).encode()
        status, _ = await call(session, "POST", f"{server.url}/v1/corrections", big)
        assert status == 413
        assert ev.runtime_corrections == ()
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_corrections_need_the_bearer_token_when_one_is_configured(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    token = f"tok-{secrets.token_urlsafe(24)}"
    token_file = tmp_path / "token"
    token_file.write_text(f"{token}\n")
    server, ev = await start(f"  listen: 127.0.0.1:0\n  auth_token_file: {token_file}\n")
    url = f"{server.url}/v1/corrections"
    body = json.dumps(POSTED).encode()
    try:
        for wrong in (None, "nope"):
            status, got = await call(session, "GET", url, token=wrong)
            assert status == 401
            status, got = await call(session, "POST", url, body, token=wrong)
            assert status == 401
        assert ev.runtime_corrections == ()
        status, _ = await call(session, "POST", url, body, token=token)
        assert status == 201
        status, got = await call(session, "GET", url, token=token)
        assert status == 200
        assert len(got["corrections"]) == 2
        assert [c.name for c in ev.runtime_corrections] == ["bad-canary"]
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_a_correction_of_a_grouped_slo_names_it_once(
    session: aiohttp.ClientSession,
) -> None:
    config = parse_config(
        """
slos:
  - {name: g, service: checkout, sli: availability, objective: 99, group_by: [region],
     max_groups: 3}
corrections:
  - {name: c, start: 1700000000, duration: 1h, slos: [g], reason: maintenance}
"""
    )
    ev = Evaluator(config)
    server = HttpServer("127.0.0.1:0", EngineMetrics(ev, lambda: None), lambda: None)
    await server.start()
    try:
        status, body = await call(session, "GET", f"{server.url}/v1/corrections")
    finally:
        await server.stop()
    assert status == 200
    assert [c["applies_to"] for c in body["corrections"]] == [["g"]]
