"""`/v1/gates/{service}` over real HTTP (aiohttp on port 0, no broker): the body of the
contract, 404 for an unknown service, overrides set, bounded, ended and expired by the
clock, the bearer token, the INFO lines, and the gate series in /metrics."""

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
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from engine.adapters.http.metrics import EngineMetrics
from engine.adapters.http.server import HttpServer
from engine.core.config import parse_config
from engine.core.decode import Event
from engine.core.evaluator import Evaluator

T0 = 1_700_000_000.0
NOW = 1_800_000_000.0
CONFIG = """\
slos:
  - {name: shop-avail, service: shop, sli: availability, objective: 90}
  - name: blog-avail
    service: blog
    sli: availability
    objective: 90
    group_by: [region]
evaluation: {tick: 10s}
gate: {override_max_ttl: 2h}
"""


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def fed_evaluator() -> Evaluator:
    """shop: 100 events, 20 failed (its 10% budget spent twice over); blog: 100 good
    events in region eu, over (T0 - 100, T0]."""
    ev = Evaluator(parse_config(CONFIG))
    batch = [
        e
        for i in range(100)
        for e in (
            Event(service="shop", ts=T0 - 99 + i, status=500 if i < 20 else 200),
            Event(service="blog", ts=T0 - 99 + i, status=200, labels={"region": "eu"}),
        )
    ]
    ev.ingest(ev.classifier.columns(batch))
    ev.advance(T0 + 1)
    assert ev.counts().events_total.tolist()[:2] == [100, 100]
    return ev


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        yield s


async def start(clock: Clock, token_file: Path | None = None) -> tuple[HttpServer, list[int]]:
    ev = fed_evaluator()
    if token_file is not None:
        text = CONFIG + f"http: {{listen: 127.0.0.1:0, auth_token_file: {token_file}}}\n"
        ev = Evaluator(parse_config(text))
    server = HttpServer("127.0.0.1:0", EngineMetrics(ev, lambda: None, clock), lambda: None)
    changes: list[int] = []
    invalidate = server.gates.on_change
    assert invalidate is not None

    def changed() -> None:
        changes.append(1)
        invalidate()

    server.gates.on_change = changed
    await server.start()
    return server, changes


async def call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: object = None,
    token: str | None = None,
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    async with session.request(method, url, data=data, headers=headers) as resp:
        raw = await resp.read()
        return resp.status, json.loads(raw) if resp.content_type == "application/json" else raw


SHOP_REASONS = [
    "shop-avail: error budget remaining -100% is at or below 0% -> fail",
    "shop-avail: error budget remaining -100% is below 25% -> warn",
    "shop-avail: ticket alert firing -> warn",  # 3d/6h at burn rate 1
]


@pytest.mark.asyncio
async def test_the_gate_body_is_the_contracts(session: aiohttp.ClientSession) -> None:
    server, _ = await start(Clock())
    try:
        status, shop = await call(session, "GET", f"{server.url}/v1/gates/shop")
        assert status == 200
        assert shop == {
            "service": "shop",
            "decision": "fail",
            "reasons": SHOP_REASONS,
            "slos": [
                {
                    "slo": "shop-avail",
                    "decision": "fail",
                    "error_budget_remaining_ratio": pytest.approx(-1.0),
                    "alerts_firing": ["ticket"],
                }
            ],
            "override": None,
            "evaluated_at": T0,
        }
        status, blog = await call(session, "GET", f"{server.url}/v1/gates/blog")
        assert status == 200
        assert blog["decision"] == "pass"
        assert blog["reasons"] == []
        assert blog["slos"] == [
            {
                "slo": "blog-avail",
                "group": "region=eu",
                "decision": "pass",
                "error_budget_remaining_ratio": 1.0,
                "alerts_firing": [],
            },
            {
                "slo": "blog-avail",
                "group": "__other__",
                "decision": "pass",
                "error_budget_remaining_ratio": None,
                "alerts_firing": [],
            },
        ]
        status, missing = await call(session, "GET", f"{server.url}/v1/gates/nope")
        assert (status, missing) == (404, {"error": "no SLO has that service", "service": "nope"})
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_an_override_passes_until_it_is_ended_or_expires(
    session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    server, changes = await start(clock)
    url = f"{server.url}/v1/gates/shop"
    try:
        with caplog.at_level(logging.INFO, "burnrate.adapters.http.gates"):
            status, got = await call(
                session,
                "POST",
                f"{url}/override",
                {"reason": "hotfix", "ttl": "30m", "ticket": "OPS-1"},
            )
        assert status == 201
        assert got["decision"] == "pass"
        assert got["reasons"] == [
            "override: hotfix (ticket OPS-1), expires in 30m; without it: fail",
            *SHOP_REASONS,
        ]
        assert got["override"] == {
            "reason": "hotfix",
            "ticket": "OPS-1",
            "set_at": NOW,
            "expires_at": NOW + 1800,
        }
        (record,) = [r for r in caplog.records if r.name == "burnrate.adapters.http.gates"]
        assert record.data["event"] == "gate_override_set"  # type: ignore[attr-defined]
        assert record.data["reason"] == "hotfix"  # type: ignore[attr-defined]
        assert changes == [1]

        clock.now = NOW + 1799
        status, got = await call(session, "GET", url)
        assert (status, got["decision"]) == (200, "pass")
        clock.now = NOW + 1800  # expired by the clock, with nobody ending it
        status, got = await call(session, "GET", url)
        assert (got["decision"], got["override"]) == ("fail", None)

        status, got = await call(session, "POST", f"{url}/override", {"reason": "again"})
        assert status == 201
        assert got["override"]["expires_at"] == NOW + 1800 + 7200  # the configured maximum
        status, got = await call(session, "DELETE", f"{url}/override")
        assert (status, got["decision"], got["override"]) == (200, "fail", None)
        assert changes == [1, 1, 1]
        status, got = await call(session, "DELETE", f"{url}/override")
        assert (status, got) == (404, {"error": "no override in force", "service": "shop"})
        status, got = await call(session, "DELETE", f"{server.url}/v1/gates/nope/override")
        assert status == 404
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_the_answer_is_kept_until_the_next_evaluation(
    session: aiohttp.ClientSession,
) -> None:
    server, _ = await start(Clock())
    gates, ev = server.gates, server.gates.evaluator
    url = f"{server.url}/v1/gates/shop"
    try:
        status, got = await call(session, "GET", url)
        assert (status, got["decision"], got["evaluated_at"]) == (200, "fail", T0)
        kept = gates.body("shop")
        assert gates.body("shop") is kept  # encoded once per evaluation
        server.metrics.invalidate()  # a tick: read and encoded afresh, the same answer
        assert gates.body("shop") is not kept
        assert gates.body("shop") == kept
        # 1,000 good events after T0 and an evaluation past them: 20 of 1,100 failed,
        # the budget 82% left; the answer follows the evaluation time, tick or not
        batch = [Event(service="shop", ts=T0 + 1 + i / 100, status=200) for i in range(1000)]
        ev.ingest(ev.classifier.columns(batch))
        ev.advance(T0 + 21)
        status, got = await call(session, "GET", url)
        assert (status, got["decision"], got["evaluated_at"]) == (200, "pass", T0 + 20)
        assert got["slos"][0]["error_budget_remaining_ratio"] == pytest.approx(1 - 20 / 110)
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"ttl": "1h"}, ["$.reason: required (why the gate is overridden)"]),
        ({"reason": "x", "ttl": "3h"}, ["$.ttl: at most 2h, got 3h"]),
        ({"reason": "x", "ttl": 7200}, ["$.ttl: Expected `str | null`, got `int`"]),
        ({"reason": "x", "until": "later"}, ["$: Object contains unknown field `until`"]),
    ],
)
@pytest.mark.asyncio
async def test_a_bad_override_is_400_with_the_field_path(
    session: aiohttp.ClientSession, body: object, errors: list[str]
) -> None:
    server, changes = await start(Clock())
    try:
        status, got = await call(session, "POST", f"{server.url}/v1/gates/shop/override", body)
        assert (status, got) == (400, {"error": "; ".join(errors), "errors": errors})
        assert server.gates.overrides.all(NOW) == []
        assert changes == []
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_gates_and_overrides_need_the_bearer_token_when_one_is_configured(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    token = f"tok-{secrets.token_urlsafe(24)}"
    token_file = tmp_path / "token"
    token_file.write_text(f"{token}\n")
    server, _ = await start(Clock(), token_file)
    url = f"{server.url}/v1/gates/shop"
    try:
        for method, path in (("GET", ""), ("POST", "/override"), ("DELETE", "/override")):
            for wrong in (None, "tok-wrong"):
                status, _ = await call(session, method, url + path, {"reason": "x"}, token=wrong)
                assert status == 401, (method, wrong)
        assert server.gates.overrides.all(NOW) == []
        status, got = await call(session, "POST", f"{url}/override", {"reason": "x"}, token=token)
        assert (status, got["decision"]) == (201, "pass")
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_metrics_carry_the_gate_decisions_and_time_to_exhaustion(
    session: aiohttp.ClientSession,
) -> None:
    server, _ = await start(Clock())
    try:

        async def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            async with session.get(f"{server.url}/metrics") as resp:
                text = await resp.text()
            return {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(text)
                for s in f.samples
            }

        got = await scrape()
        gate = {k[1]: v for k, v in got.items() if k[0] == "burnrate_gate_decision"}
        assert gate == {
            (("decision", d), ("service", s)): float(d == want)
            for s, want in (("shop", "fail"), ("blog", "pass"))
            for d in ("pass", "warn", "fail")
        }
        tte = {k[1]: v for k, v in got.items() if k[0].endswith("exhaustion_seconds")}
        # shop is spent (0); blog burns nothing, so it has no series
        assert tte == {(("slo", "shop-avail"),): 0.0}

        generation = server.metrics.generation
        await call(session, "POST", f"{server.url}/v1/gates/shop/override", {"reason": "x"})
        # the cached body is invalidated at once (not at the next tick), and a render
        # reads the override
        assert server.metrics.generation == generation + 1
        text = generate_latest(server.metrics.registry).decode()
        assert 'burnrate_gate_decision{decision="pass",service="shop"} 1.0' in text
        assert 'burnrate_gate_decision{decision="fail",service="shop"} 0.0' in text
    finally:
        await server.stop()
