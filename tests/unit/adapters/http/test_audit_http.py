"""The audit entries of the HTTP routes, over real HTTP (aiohttp on port 0): gate
overrides set and ended, corrections and changes posted, decisions asked for by a named
token (bounded), the actor from the auth middleware's token name, and the
`on_denied` hook for the auth middleware. Every log written verifies."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.typedefs import Handler

from engine.adapters.http.audit import TOKEN_NAME_KEY, actor_of, auth_denied_hook
from engine.adapters.http.gates import ASKED_EVERY_S
from engine.adapters.http.metrics import EngineMetrics
from engine.adapters.http.server import HttpServer
from engine.adapters.store.audit import FileAudit
from engine.core.audit import parse_line
from engine.core.audit_verify import verify_lines
from tests.unit.adapters.http.test_gates_api import NOW, Clock, fed_evaluator


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        yield s


def entries(path: Path) -> list[Any]:
    lines = path.read_bytes().splitlines(keepends=True)
    assert verify_lines(lines).ok
    return [parse_line(line) for line in lines]


@web.middleware
async def token_names(request: web.Request, handler: Handler) -> web.StreamResponse:
    """What the auth middleware does for a valid token: its name in the request."""
    name = request.headers.get("X-Test-Token-Name")
    if name:
        with warnings.catch_warnings():  # aiohttp would rather have a web.RequestKey
            warnings.simplefilter("ignore", web.NotAppKeyWarning)
            request[TOKEN_NAME_KEY] = name
    return await handler(request)


async def start(tmp_path: Path, clock: Clock) -> tuple[HttpServer, FileAudit]:
    ev = fed_evaluator()
    server = HttpServer("127.0.0.1:0", EngineMetrics(ev, lambda: None, clock), lambda: None)
    log = FileAudit(tmp_path / "audit.jsonl", clock=clock)
    log.open()
    for api in (server.gates, server.changes, server.corrections, server.incidents):
        api.audit = log
    server.app.middlewares.append(token_names)
    await server.start()
    return server, log


async def send(
    session: aiohttp.ClientSession, method: str, url: str, body: object = None, who: str = ""
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", "X-Test-Token-Name": who}
    async with session.request(method, url, json=body, headers=headers) as resp:
        return resp.status, await resp.json()


@pytest.mark.asyncio
async def test_overrides_are_recorded_with_their_actor(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    clock = Clock()
    server, log = await start(tmp_path, clock)
    try:
        url = f"{server.url}/v1/gates/shop/override"
        body = {"reason": "hotfix for OPS-7", "ttl": "1h", "ticket": "OPS-7"}
        assert (await send(session, "POST", url, body, who="deployer"))[0] == 201
        assert (await send(session, "POST", url, {"ttl": "1h"}, who="deployer"))[0] == 400
        assert (await send(session, "DELETE", url))[0] == 200
        assert (await send(session, "DELETE", url))[0] == 404
    finally:
        await server.stop()
        log.close()
    created, ended = entries(tmp_path / "audit.jsonl")
    assert (created.actor, created.action, created.subject) == (
        "deployer",
        "gate.override.created",
        "shop",
    )
    assert created.at == NOW
    assert created.details == {
        "reason": "hotfix for OPS-7",
        "ticket": "OPS-7",
        "set_at": NOW,
        "expires_at": NOW + 3600,
        "replaced": False,
        "remote": "127.0.0.1",
    }
    assert (ended.actor, ended.action, ended.details["why"]) == (
        "anonymous",
        "gate.override.ended",
        "ended",
    )


@pytest.mark.asyncio
async def test_corrections_and_changes_are_recorded(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    clock = Clock()
    server, log = await start(tmp_path, clock)
    try:
        correction = {
            "name": "maint",
            "start": "2030-01-01T00:00:00Z",
            "duration": "1h",
            "services": ["shop"],
            "reason": "db upgrade",
        }
        status, _ = await send(session, "POST", f"{server.url}/v1/corrections", correction, "ops")
        assert status == 201
        change = {"service": "shop", "kind": "deploy", "version": "1.2.3"}
        assert (await send(session, "POST", f"{server.url}/v1/changes", change, "ci"))[0] == 201
        assert (await send(session, "POST", f"{server.url}/v1/changes", change, "ci"))[0] == 200
    finally:
        await server.stop()
        log.close()
    corr, chg = entries(tmp_path / "audit.jsonl")  # the repeated change is not new
    assert (corr.actor, corr.action, corr.subject) == ("ops", "correction.created", "maint")
    assert corr.details["applies_to"] == ["shop-avail"]
    assert corr.details["reason"] == "db upgrade"
    assert (chg.actor, chg.action, chg.subject) == ("ci", "change.recorded", "shop")
    assert (chg.details["kind"], chg.details["version"], chg.details["source"]) == (
        "deploy",
        "1.2.3",
        "api",
    )


@pytest.mark.asyncio
async def test_decisions_asked_by_a_named_token_are_recorded_bounded(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    clock = Clock()
    server, log = await start(tmp_path, clock)
    try:
        gate = f"{server.url}/v1/gates/shop"
        for _ in range(20):  # a pipeline polling
            assert (await send(session, "GET", gate, who="rollouts"))[0] == 200
        for _ in range(5):  # anonymous: the engine's record of changes covers these
            assert (await send(session, "GET", gate))[0] == 200
        assert (await send(session, "GET", f"{server.url}/v1/gates/blog", who="rollouts"))[0] == 200
        clock.now += ASKED_EVERY_S
        assert (await send(session, "GET", gate, who="rollouts"))[0] == 200
        override = {"reason": "break glass"}
        assert (await send(session, "POST", f"{gate}/override", override, who="sre"))[0] == 201
        assert (await send(session, "GET", gate, who="rollouts"))[0] == 200  # answer changed
    finally:
        await server.stop()
        log.close()
    got = [
        (e.actor, e.action, e.subject, e.details.get("decision"))
        for e in entries(tmp_path / "audit.jsonl")
    ]
    assert got == [
        ("rollouts", "gate.decision", "shop", "fail"),
        ("rollouts", "gate.decision", "blog", "pass"),
        ("rollouts", "gate.decision", "shop", "fail"),  # a minute later
        ("sre", "gate.override.created", "shop", None),
        ("rollouts", "gate.decision", "shop", "pass"),
    ]


def test_actor_of_a_request() -> None:
    from aiohttp.test_utils import make_mocked_request

    request = make_mocked_request("GET", "/v1/gates/shop")
    assert actor_of(request) == "anonymous"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        request[TOKEN_NAME_KEY] = "deployer"
    assert actor_of(request) == "deployer"


def test_the_auth_denied_hook_records_without_the_token(tmp_path: Path) -> None:
    log = FileAudit(tmp_path / "audit.jsonl", clock=Clock())
    log.open()
    on_denied = auth_denied_hook(log)
    on_denied("10.0.0.7", "POST", "/v1/gates/shop/override", 403, "missing scope operate", "viewer")
    on_denied("10.0.0.8", "GET", "/metrics", 401, "invalid token", None)
    log.close()
    forbidden, unauthorized = entries(tmp_path / "audit.jsonl")
    assert forbidden._replace(hash="", prev="", seq=0) == forbidden._replace(
        hash="",
        prev="",
        seq=0,
        at=NOW,
        actor="viewer",
        action="auth.denied",
        subject="/v1/gates/shop/override",
        details={
            "method": "POST",
            "status": 403,
            "reason": "missing scope operate",
            "remote": "10.0.0.7",
        },
    )
    assert (unauthorized.actor, unauthorized.details["status"]) == ("anonymous", 401)
