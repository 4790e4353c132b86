"""The web UI's HTTP side over real HTTP (aiohttp on port 0, no broker, no browser):
the login cookie, what is open without a token, the path prefix, the history route,
escaping and the headers. The browser tests are tests/integration/test_ui_browser.py."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from engine.adapters.http.auth import BearerAuth
from engine.adapters.http.metrics import EngineMetrics
from engine.adapters.http.server import HttpServer
from engine.adapters.http.ui import ASSETS
from engine.core.config import parse_config
from engine.core.evaluator import Evaluator
from tests.integration.test_api import strict_json
from tests.unit.adapters.http.api_sample import CONFIG, T0, fed_evaluator

TOKEN = secrets.token_hex(16)


async def serve(ev: Evaluator, token: str | None) -> HttpServer:
    server = HttpServer(
        "127.0.0.1:0", EngineMetrics(ev, lambda: None), lambda: None, auth=BearerAuth(token)
    )
    server.history.observe(ev)
    await server.start()
    return server


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # no cookie jar: each test sends the cookie it means to
    jar = aiohttp.DummyCookieJar()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10), cookie_jar=jar) as s:
        yield s


@pytest_asyncio.fixture
async def guarded() -> AsyncIterator[HttpServer]:
    ev, _ = fed_evaluator(parse_config(CONFIG))
    server = await serve(ev, TOKEN)
    try:
        yield server
    finally:
        await server.stop()


async def fetch(
    session: aiohttp.ClientSession, method: str, url: str, **kw: Any
) -> tuple[int, Any, str]:
    async with session.request(method, url, allow_redirects=False, **kw) as resp:
        return resp.status, resp.headers, await resp.text()


@pytest.mark.asyncio
async def test_only_the_login_and_the_assets_are_open_without_a_token(
    guarded: HttpServer, session: aiohttp.ClientSession
) -> None:
    url = guarded.url
    for name in ASSETS:
        status, headers, _ = await fetch(session, "GET", f"{url}/static/{name}")
        assert status == 200, name
        assert headers["X-Content-Type-Options"] == "nosniff"
    assert (await fetch(session, "GET", f"{url}/login"))[0] == 200
    for page in ("/", "/slo/checkout-availability"):
        status, headers, _ = await fetch(session, "GET", url + page)
        assert (status, headers["Location"]) == (303, "/login"), page
    for path in ("/v1/slos", "/v1/slos/checkout-availability/history", "/static/../v1/slos"):
        assert (await fetch(session, "GET", url + path))[0] == 401, path
    assert (await fetch(session, "GET", f"{url}/static/nope.js"))[0] == 404
    # an encoded way out of /static/ is no way to the data
    for sneaky in ("/static/%2e%2e/v1/slos", "/static/..%2fv1/slos", "/static//v1/slos"):
        assert (await fetch(session, "GET", url + sneaky))[0] in (401, 404), sneaky


@pytest.mark.asyncio
async def test_the_login_sets_a_strict_http_only_cookie_that_opens_reads_only(
    guarded: HttpServer, session: aiohttp.ClientSession
) -> None:
    url = guarded.url
    status, _, body = await fetch(session, "POST", f"{url}/login", data={"token": "wrong"})
    assert status == 401
    assert "not valid" in body
    status, headers, _ = await fetch(session, "POST", f"{url}/login", data={"token": TOKEN})
    assert (status, headers["Location"]) == (303, "/")
    cookie = headers["Set-Cookie"]
    assert cookie.startswith(f"burnrate_token={TOKEN};")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/;" in cookie or cookie.endswith("Path=/")
    assert "Secure" not in cookie  # plain HTTP, no proxy saying https
    jar = {"Cookie": f"burnrate_token={TOKEN}"}
    for path in ("/", "/slo/checkout-availability", "/v1/slos"):
        assert (await fetch(session, "GET", url + path, headers=jar))[0] == 200, path
    # a write with only the cookie is refused: the cookie is for reads
    status, _, _ = await fetch(
        session, "POST", f"{url}/v1/changes", headers=jar, json={"service": "checkout"}
    )
    assert status == 401
    bad = {"Cookie": "burnrate_token=nope"}
    assert (await fetch(session, "GET", f"{url}/v1/slos", headers=bad))[0] == 401


@pytest.mark.asyncio
async def test_behind_a_prefix_the_cookie_and_redirects_carry_it(
    guarded: HttpServer, session: aiohttp.ClientSession
) -> None:
    url = guarded.url
    proxy = {"X-Forwarded-Prefix": "/tools/burnrate/", "X-Forwarded-Proto": "https"}
    status, headers, _ = await fetch(session, "GET", f"{url}/", headers=proxy)
    assert (status, headers["Location"]) == (303, "/tools/burnrate/login")
    status, headers, _ = await fetch(
        session, "POST", f"{url}/login", data={"token": TOKEN}, headers=proxy
    )
    assert (status, headers["Location"]) == (303, "/tools/burnrate/")
    assert "Path=/tools/burnrate" in headers["Set-Cookie"]
    assert "Secure" in headers["Set-Cookie"]
    # a prefix that is not a plain path is ignored, never echoed
    status, headers, _ = await fetch(
        session, "GET", f"{url}/", headers={"X-Forwarded-Prefix": "//evil.example"}
    )
    assert headers["Location"] == "/login"
    status, headers, _ = await fetch(
        session, "GET", f"{url}/", headers={"X-Forwarded-Prefix": "/a\\b"}
    )
    assert headers["Location"] == "/login"


@pytest.mark.asyncio
async def test_pages_are_relative_escaped_and_locked_to_this_server(
    session: aiohttp.ClientSession,
) -> None:
    hostile = CONFIG.replace(
        "description: Orders are accepted",
        "description: \"<script>alert(1)</script> & 'quotes'\"",
    ).replace("runbook_url: https://runbooks.example/checkout", "runbook_url: javascript:alert(1)")
    ev, _ = fed_evaluator(parse_config(hostile))
    server = await serve(ev, None)
    try:
        status, headers, body = await fetch(session, "GET", f"{server.url}/")
        assert status == 200
        csp = headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp
        assert "script-src 'self'" in csp
        assert "connect-src 'self'" in csp
        hrefs = re.findall(r'(?:href|src|action)="([^"]*)"', body)
        assert hrefs
        assert not [h for h in hrefs if h.startswith(("/", "http:", "https:"))], hrefs
        status, _, body = await fetch(session, "GET", f"{server.url}/slo/checkout-availability")
        assert status == 200
        assert "<script>alert" not in body
        assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#x27;quotes&#x27;" in body
        assert "javascript:" not in body
        assert (await fetch(session, "GET", f"{server.url}/slo/nope"))[0] == 404
        # without a token the login form has nothing to do
        status, headers, _ = await fetch(session, "GET", f"{server.url}/login")
        assert (status, headers["Location"]) == (303, "/")
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_the_history_route_answers_the_tiers_of_one_slo(
    guarded: HttpServer, session: aiohttp.ClientSession
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    url = f"{guarded.url}/v1/slos/checkout-availability/history"
    status, _, body = await fetch(session, "GET", url, headers=auth)
    assert status == 200
    h = strict_json(body.encode())
    assert h["slo"] == "checkout-availability"
    assert h["group"] is None
    assert h["windows"] == ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]
    assert [(r["severity"], r["long"], r["short"], r["factor"]) for r in h["rows"]] == [
        ("page", "1h", "5m", 14.4),
        ("page", "6h", "30m", 6.0),
        ("ticket", "1d", "2h", 3.0),
        ("ticket", "3d", "6h", 1.0),
    ]
    assert h["bytes_per_slo"] == 7488
    assert [(t["resolution_s"], t["span_s"]) for t in h["tiers"]] == [
        (60, 3600),
        (1200, 86400),
        (14400, 2592000),
    ]
    for tier in h["tiers"]:
        assert tier["t"] == [T0]
        assert tier["good"] == [995.0]
        assert tier["bad"] == [5.0]
        assert tier["budget_remaining"] == [0.5]
        assert tier["burn_rates"]["1h"] == [0.5]
    idle = f"{guarded.url}/v1/slos/idle-availability/history"
    tier = strict_json((await fetch(session, "GET", idle, headers=auth))[2].encode())["tiers"][0]
    assert tier["budget_remaining"] == [None]
    assert tier["burn_rates"]["5m"] == [None]
    status, _, body = await fetch(
        session, "GET", f"{guarded.url}/v1/slos/nope/history", headers=auth
    )
    assert status == 404
    assert "no SLO" in body
    status, _, _ = await fetch(session, "GET", url + "?group=x", headers=auth)
    assert status == 404
