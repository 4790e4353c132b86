"""The scope matrix over every route of the app, over real HTTP.

The routes are read from the app's router (with and without `incidents:`, whose routes
differ), so a route added without an entry in the scope table
(engine.adapters.http.scopes) fails here. For each route and method: no token is 401
(the probes excepted), a token without the route's scope is 403, a token with it gets
past auth (any status but 401/403, never 500); the token cookie authorises GET and HEAD
only. A route the table does not name is refused to every token; the token's name
reaches the handler as `request["burnrate.token_name"]`; `on_denied` hears every refusal.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from engine.adapters.http import scopes
from engine.adapters.http.auth import COOKIE_NAME, TOKEN_NAME_KEY
from engine.adapters.http.metrics import EngineMetrics
from engine.adapters.http.scopes import ROUTE_SCOPES, UNKNOWN, required_scope
from engine.adapters.http.server import HttpServer
from engine.adapters.http.tokens import SCOPES, token_digest
from engine.core.config import parse_config
from engine.core.evaluator import Evaluator
from tests.unit.adapters.http.test_incidents_api import Engine, config_text

TOKENS = {
    "reader": ("read-Token-1", ["read"]),
    "operator": ("operate-Token-2", ["operate"]),
    "admin": ("admin-Token-3", ["admin"]),
    "all": ("all-Token-4", ["read", "operate", "admin"]),
}
SLOS = "slos: [{name: a1, service: a, sli: availability, objective: 99}]\n"
PARAMS = {"name": "a1", "service": "a", "id": "nope", "tail": "x", "path": "ui.css"}
UI_PAGES = frozenset({"/", "/slo/{name}"})
"""Web UI pages: refused for want of a token, they redirect to the login form."""
CATCH_ALL_METHODS = ("GET", "HEAD", "POST", "DELETE", "PUT", "PATCH")


def tokens_yaml() -> str:
    lines = "".join(
        f"    - {{name: {name}, scopes: [{', '.join(s)}], sha256: {token_digest(t).hex()}}}\n"
        for name, (t, s) in TOKENS.items()
    )
    return "http:\n  listen: 127.0.0.1:0\n  tokens:\n" + lines


def route_table(app: web.Application) -> list[tuple[str, str, str]]:
    """(method, canonical route, a concrete path) for every route of the app."""
    out = []
    for route in app.router.routes():
        resource = route.resource
        assert resource is not None
        canonical = resource.canonical
        path = re.sub(r"\{(\w+)\}", lambda m: PARAMS[m.group(1)], canonical)
        methods = CATCH_ALL_METHODS if route.method == "*" else (route.method,)
        out += [(method, canonical, path) for method in methods]
    return out


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        yield s


async def status_of(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    token: str | None = None,
    cookie: str | None = None,
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if cookie is not None:
        headers["Cookie"] = f"{COOKIE_NAME}={cookie}"
    async with session.request(
        method, url, data=b"{}", headers=headers, allow_redirects=False
    ) as resp:
        await resp.read()
        return resp.status, resp.headers


async def check_matrix(session: aiohttp.ClientSession, server: HttpServer) -> int:
    """Every route x every token; the number of requests made."""
    denied: list[tuple[Any, ...]] = []
    server.auth.on_denied = lambda *args: denied.append(args)
    made = 0
    routes = route_table(server.app)
    assert routes
    for method, canonical, path in routes:
        needed = required_scope(canonical, method)
        assert needed != UNKNOWN, f"{method} {canonical} has no entry in the scope table"
        url = f"{server.url}{path}"
        where = f"{method} {path}"

        status, headers = await status_of(session, method, url)
        made += 1
        if needed is None:
            # the login form answers a wrong token (here none) with 401, as it should
            assert status not in (403, 500), where
            assert status != 401 or canonical == "/login", where
            continue
        if canonical in UI_PAGES:
            assert status == 303, where
            assert headers["Location"] == "/login", where
        else:
            assert status == 401, where
            assert headers["WWW-Authenticate"].startswith('Bearer realm="burnrate"'), where
        assert denied[-1] == ("127.0.0.1", method, path, 401, "missing bearer token", None)

        for name, (token, granted) in TOKENS.items():
            status, headers = await status_of(session, method, url, token=token)
            made += 1
            if needed in granted:
                assert status not in (401, 403, 500), (where, name, status)
            else:
                assert status == 403, (where, name, status)
                assert (
                    f'error="insufficient_scope", scope="{needed}"' in (headers["WWW-Authenticate"])
                )
                assert denied[-1][3:] == (
                    403,
                    f"the token {name!r} lacks the scope {needed!r}",
                    name,
                )

        status, _ = await status_of(session, method, url, cookie=TOKENS["all"][0])
        made += 1
        if method in ("GET", "HEAD"):
            assert status not in (401, 403, 500), (where, "cookie")
        else:
            assert status == 401, (where, "a cookie never authorises a write")
    return made


@pytest.mark.asyncio
async def test_every_route_without_incidents(session: aiohttp.ClientSession) -> None:
    ev = Evaluator(parse_config(SLOS + tokens_yaml()))
    server = HttpServer("127.0.0.1:0", EngineMetrics(ev, lambda: None), lambda: None)
    await server.start()
    try:
        assert await check_matrix(session, server) > 50
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_every_route_with_incidents(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    text = config_text(tmp_path / "i.db", tokens_yaml())
    async with Engine(text) as engine:
        canon = {c for _, c, _ in route_table(engine.server.app)}
        assert "/v1/incidents/{id}/acknowledge" in canon
        assert await check_matrix(session, engine.server) > 50


def test_the_table_names_no_route_the_app_lacks() -> None:
    ev = Evaluator(parse_config(SLOS))
    plain = HttpServer("127.0.0.1:0", EngineMetrics(ev, lambda: None), lambda: None)
    served = {c for _, c, _ in route_table(plain.app)}
    served |= {"/v1/incidents/{id}", "/v1/incidents/{id}/postmortem"}
    served |= {"/v1/incidents/{id}/acknowledge"}
    assert set(ROUTE_SCOPES) - served == set()
    assert ROUTE_SCOPES["/-/reload"] == {"POST": "admin"}
    for methods in ROUTE_SCOPES.values():
        assert set(methods.values()) <= {None, *SCOPES}


@pytest.mark.asyncio
async def test_a_route_missing_from_the_table_is_refused_to_every_token(
    session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    names: list[str | None] = []

    async def whoami(request: web.Request) -> web.Response:
        names.append(request.get(TOKEN_NAME_KEY))
        return web.Response(text="hello")

    ev = Evaluator(parse_config(SLOS + tokens_yaml()))
    server = HttpServer("127.0.0.1:0", EngineMetrics(ev, lambda: None), lambda: None)
    server.app.router.add_get("/test/whoami", whoami)
    server.app.router.add_get("/test/listed", whoami)
    monkeypatch.setitem(scopes.ROUTE_SCOPES, "/test/listed", {"GET": "read"})
    await server.start()
    try:
        for token, _ in TOKENS.values():
            status, _ = await status_of(session, "GET", f"{server.url}/test/whoami", token=token)
            assert status == 403
        assert names == []
        for name in ("reader", "all"):
            status, _ = await status_of(
                session, "GET", f"{server.url}/test/listed", token=TOKENS[name][0]
            )
            assert status == 200
        status, _ = await status_of(
            session, "GET", f"{server.url}/test/listed", cookie=TOKENS["reader"][0]
        )
        assert status == 200
        assert names == ["reader", "all", "reader"]
        # Unknown paths: 401 without a token (the API is not mapped for strangers), 404 with.
        assert (await status_of(session, "GET", f"{server.url}/nowhere"))[0] == 401
        assert (await status_of(session, "GET", f"{server.url}/nowhere", token=TOKENS["admin"][0]))[
            0
        ] == 404
        assert (await status_of(session, "PUT", f"{server.url}/metrics", token=TOKENS["admin"][0]))[
            0
        ] == 405
    finally:
        await server.stop()
