"""Bearer-token auth without a server: `check()`, `from_config()` and the middleware on
mocked requests (no socket). Real HTTP is tests/integration/test_api.py."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st

from engine.adapters.http.auth import PUBLIC_PATHS, BearerAuth, RefusalLimiter, RefusalSummary
from engine.adapters.http.metrics import EngineMetrics
from engine.adapters.http.server import HttpServer
from engine.core.config import Config, Http, parse_config
from engine.core.evaluator import Evaluator
from engine.errors import ConfigError
from tests.unit.adapters.http.api_sample import CONFIG

TOKEN = "s3cr3t-Token_value.42"
MISSING = "missing bearer token"
INVALID = "invalid bearer token"

visible_ascii = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1)


def config_with(http: str) -> Config:
    return parse_config(CONFIG.replace("http:\n  listen: 127.0.0.1:0\n", f"http:\n{http}"))


# -- check ----------------------------------------------------------------------------


def test_without_a_token_auth_is_disabled_and_lets_everything_through() -> None:
    auth = BearerAuth(None)
    assert not auth.enabled
    for header in (None, "", "Basic abc", "Bearer anything", "garbage"):
        assert auth.check(header) is None


def test_with_a_token_auth_is_enabled() -> None:
    assert BearerAuth(TOKEN).enabled


@pytest.mark.parametrize("header", [None, "", "   "])
def test_no_header_is_a_missing_token(header: str | None) -> None:
    assert BearerAuth(TOKEN).check(header) == MISSING


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Bearer    ", "  Bearer  ", "bearer"])
def test_a_bearer_scheme_without_credentials_is_a_missing_token(header: str) -> None:
    assert BearerAuth(TOKEN).check(header) == MISSING


@pytest.mark.parametrize(
    "header",
    [
        f"Basic {TOKEN}",
        f"Token {TOKEN}",
        f"Bearer: {TOKEN}",
        f"Bearerx {TOKEN}",
        TOKEN,  # no scheme at all
    ],
)
def test_another_scheme_is_a_missing_token_even_with_the_right_credentials(header: str) -> None:
    assert BearerAuth(TOKEN).check(header) == MISSING


@pytest.mark.parametrize(
    "credentials",
    [
        "wrong",
        TOKEN + "x",
        TOKEN[:-1],
        "x" + TOKEN,
        TOKEN.upper(),
        f"{TOKEN} {TOKEN}",
        f"{TOKEN} extra",
    ],
)
def test_another_token_is_invalid(credentials: str) -> None:
    assert BearerAuth(TOKEN).check(f"Bearer {credentials}") == INVALID


@pytest.mark.parametrize(
    "header",
    [
        f"Bearer {TOKEN}",
        f"bearer {TOKEN}",
        f"BEARER {TOKEN}",
        f"bEaReR {TOKEN}",
        f"Bearer  {TOKEN} ",
        f"  Bearer {TOKEN}\t",
    ],
)
def test_the_right_token_passes_whatever_the_case_of_the_scheme(header: str) -> None:
    assert BearerAuth(TOKEN).check(header) is None


@given(token=visible_ascii, other=visible_ascii)
def test_only_the_configured_token_passes_and_reasons_never_carry_it(
    token: str, other: str
) -> None:
    auth = BearerAuth(token)
    assert auth.check(f"Bearer {token}") is None
    got = auth.check(f"Bearer {other}")
    if other == token:
        assert got is None
    else:
        assert got == INVALID
    assert auth.check(f"Basic {token}") == MISSING


@pytest.mark.parametrize("token", ["", "two words", "tab\there", "tökén", "line\n", " lead"])
def test_a_token_that_cannot_travel_in_a_header_is_refused(token: str) -> None:
    with pytest.raises(ValueError, match="visible ASCII"):
        BearerAuth(token)


# -- from_config ----------------------------------------------------------------------


def test_no_token_source_configured_means_disabled() -> None:
    assert not BearerAuth.from_config(Http()).enabled


def test_the_token_from_an_environment_variable() -> None:
    auth = BearerAuth.from_config(
        Http(auth_token_env="BURNRATE_TOKEN"), environ={"BURNRATE_TOKEN": f"  {TOKEN}\n"}
    )
    assert auth.enabled
    assert auth.check(f"Bearer {TOKEN}") is None
    assert auth.check("Bearer other") == INVALID


def test_the_token_from_a_file_without_its_newline(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"{TOKEN}\n")
    auth = BearerAuth.from_config(Http(auth_token_file=str(token_file)))
    assert auth.check(f"Bearer {TOKEN}") is None
    assert auth.check(f"Bearer {TOKEN}\n") is None  # surrounding whitespace is no part
    assert auth.check("Bearer other") == INVALID


@pytest.mark.parametrize("value", ["two words", "tökén", "a\tb"])
def test_an_environment_token_that_is_no_bearer_token_is_a_config_error(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        BearerAuth.from_config(Http(auth_token_env="T"), environ={"T": value})
    assert info.value.errors == [
        "$.http.auth_token_env: the token must be visible ASCII without spaces"
    ]
    assert value not in str(info.value)


def test_a_configured_but_unusable_token_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BURNRATE_UNSET_TOKEN", raising=False)
    monkeypatch.setenv("BURNRATE_EMPTY_TOKEN", "  ")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    spaced = tmp_path / "spaced"
    spaced.write_text("two words\n")
    cases = [
        (Http(auth_token_env="BURNRATE_UNSET_TOKEN"), "$.http.auth_token_env"),
        (Http(auth_token_env="BURNRATE_EMPTY_TOKEN"), "$.http.auth_token_env"),
        (Http(auth_token_file=str(tmp_path / "missing")), "$.http.auth_token_file"),
        (Http(auth_token_file=str(empty)), "$.http.auth_token_file"),
        (Http(auth_token_file=str(spaced)), "$.http.auth_token_file"),
        (Http(auth_token_env="X", auth_token_file=str(spaced)), "$.http:"),
    ]
    for http, path in cases:
        with pytest.raises(ConfigError) as info:
            BearerAuth.from_config(http)
        assert info.value.errors[0].startswith(path), info.value.errors
        assert "two words" not in str(info.value)
    # and the server refuses to start open
    cfg = config_with("  listen: 127.0.0.1:0\n  auth_token_env: BURNRATE_UNSET_TOKEN\n")
    ev = Evaluator(cfg)
    with pytest.raises(ConfigError):
        HttpServer("127.0.0.1:0", EngineMetrics(ev, lambda: None), lambda: None)


# -- the middleware on mocked requests (no socket) ------------------------------------


class Handler:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        self.calls.append(request.path)
        return web.Response(text="ok")


_APP = HttpServer(
    "127.0.0.1:0", EngineMetrics(Evaluator(parse_config(CONFIG)), lambda: None), lambda: None
).app
"""The server's real router: the middleware reads the route a request matched."""


async def request(path: str, authorization: str | None = None) -> web.Request:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        ("192.0.2.7", 40000) if name == "peername" else default
    )
    headers = {} if authorization is None else {"Authorization": authorization}
    req = make_mocked_request("GET", path, headers=headers, transport=transport, app=_APP)
    match_info = await _APP.router.resolve(req)
    match_info.add_app(_APP)
    req._match_info = match_info
    return req


async def through(auth: BearerAuth, req: web.Request) -> tuple[web.Response, Handler]:
    handler = Handler()
    resp = await auth.middleware()(req, handler)
    assert isinstance(resp, web.Response)
    return resp, handler


def body(resp: web.Response) -> Any:
    assert isinstance(resp.body, bytes)
    return json.loads(resp.body)


@pytest.mark.asyncio
@pytest.mark.parametrize("path", sorted(PUBLIC_PATHS))
async def test_the_probes_need_no_token(path: str) -> None:
    resp, handler = await through(BearerAuth(TOKEN), await request(path))
    assert resp.status == 200
    assert handler.calls == [path]


@pytest.mark.asyncio
async def test_a_request_without_a_token_is_refused_before_the_handler() -> None:
    resp, handler = await through(BearerAuth(TOKEN), await request("/metrics"))
    assert resp.status == 401
    assert handler.calls == []
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="burnrate"'
    assert resp.content_type == "application/json"
    assert body(resp) == {"error": MISSING}


@pytest.mark.asyncio
async def test_a_wrong_token_is_refused_as_an_invalid_token() -> None:
    resp, handler = await through(BearerAuth(TOKEN), await request("/v1/slos", "Bearer nope"))
    assert resp.status == 401
    assert handler.calls == []
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="burnrate", error="invalid_token"'
    assert body(resp) == {"error": INVALID}


@pytest.mark.asyncio
async def test_the_right_token_reaches_the_handler() -> None:
    resp, handler = await through(BearerAuth(TOKEN), await request("/v1/slos", f"bearer {TOKEN}"))
    assert resp.status == 200
    assert handler.calls == ["/v1/slos"]


@pytest.mark.asyncio
async def test_disabled_auth_lets_every_path_through() -> None:
    for path in ("/metrics", "/v1/slos", "/healthz"):
        resp, handler = await through(BearerAuth(None), await request(path))
        assert resp.status == 200
        assert handler.calls == [path]


@pytest.mark.asyncio
async def test_a_refusal_is_logged_with_address_and_encoded_path_never_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="burnrate")
    wrong = "wrong-Token-value-123"
    await through(BearerAuth(TOKEN), await request("/v1/slos/a%0Ab", f"Bearer {wrong}"))
    records = [r for r in caplog.records if r.name == "burnrate.adapters.http.auth"]
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "401 GET /v1/slos/a%0Ab from 192.0.2.7: invalid bearer token"
    assert record.__dict__["data"] == {
        "event": "unauthorized",
        "remote": "192.0.2.7",
        "method": "GET",
        "path": "/v1/slos/a%0Ab",
        "reason": INVALID,
    }
    for secret in (TOKEN, wrong):
        assert secret not in caplog.text
        assert secret not in repr(record.__dict__)


# -- the refusal log limiter -------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def test_the_limiter_logs_a_key_once_per_interval_and_sums_up_the_rest() -> None:
    clock = Clock()
    limiter = RefusalLimiter(interval_s=60.0, burst=10, clock=clock)
    key = ("192.0.2.7", "GET", "/metrics", INVALID)
    assert limiter.admit(key, INVALID)
    assert limiter.take_summary() is None  # nothing counted yet
    for _ in range(40):
        assert not limiter.admit(key, INVALID)
    other = ("192.0.2.7", "GET", "/metrics", MISSING)
    assert limiter.admit(other, MISSING)  # another key: logged in full too
    for _ in range(16):
        assert not limiter.admit(other, MISSING)
    clock.now_s += 59.0
    assert limiter.seconds_left() == pytest.approx(1.0)
    assert limiter.take_summary() is None  # the interval is not over
    clock.now_s += 1.0
    summary = limiter.take_summary()
    assert summary == RefusalSummary(56, {INVALID: 40, MISSING: 16}, 60.0)
    assert summary.message() == (
        "56 more unauthorized requests in the last 60s "
        "(invalid bearer token: 40, missing bearer token: 16)"
    )
    assert limiter.take_summary() is None  # taken once
    # A new interval: the same key is logged in full again, once.
    assert limiter.admit(key, INVALID)
    assert not limiter.admit(key, INVALID)


def test_the_limiter_logs_at_most_burst_distinct_refusals_per_interval() -> None:
    clock = Clock()
    limiter = RefusalLimiter(interval_s=60.0, burst=3, clock=clock)
    admitted = [limiter.admit(("192.0.2.7", "GET", f"/p{i}", MISSING), MISSING) for i in range(8)]
    assert admitted == [True, True, True, False, False, False, False, False]
    assert limiter.take_summary(force=True) == RefusalSummary(5, {MISSING: 5}, 60.0)
    clock.now_s += 60.0
    assert limiter.admit(("192.0.2.7", "GET", "/p7", MISSING), MISSING)


def test_the_limiter_refuses_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="interval_s must be > 0"):
        RefusalLimiter(interval_s=0.0)
    with pytest.raises(ValueError, match="burst must be >= 1"):
        RefusalLimiter(burst=0)


@pytest.mark.asyncio
async def test_a_client_hammering_with_bad_tokens_gets_one_warning_then_a_summary(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="burnrate")
    clock = Clock()
    auth = BearerAuth(TOKEN, refusals=RefusalLimiter(clock=clock))
    wrong = "wrong-Token-value-123"
    for _ in range(100):
        resp, _ = await through(auth, await request("/metrics", f"Bearer {wrong}"))
        assert resp.status == 401  # every one is still refused
    records = [r for r in caplog.records if r.name == "burnrate.adapters.http.auth"]
    assert [r.getMessage() for r in records] == [
        "401 GET /metrics from 192.0.2.7: invalid bearer token"
    ]

    clock.now_s += 60.0
    await through(auth, await request("/v1/slos"))
    records = [r for r in caplog.records if r.name == "burnrate.adapters.http.auth"]
    assert [r.getMessage() for r in records] == [
        "401 GET /metrics from 192.0.2.7: invalid bearer token",
        "99 more unauthorized requests in the last 60s (invalid bearer token: 99)",
        "401 GET /v1/slos from 192.0.2.7: missing bearer token",
    ]
    assert all(r.levelno == logging.WARNING for r in records)
    assert records[1].__dict__["data"] == {
        "event": "unauthorized_summary",
        "count": 99,
        "by_reason": {INVALID: 99},
        "interval_s": 60.0,
    }
    for secret in (TOKEN, wrong):
        assert secret not in caplog.text


@pytest.mark.asyncio
async def test_the_summary_comes_when_the_interval_ends_even_without_another_refusal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="burnrate")
    auth = BearerAuth(TOKEN, refusals=RefusalLimiter(interval_s=0.05))
    for _ in range(3):
        await through(auth, await request("/metrics"))

    def summaries() -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.name == "burnrate.adapters.http.auth" and "more unauthorized" in r.getMessage()
        ]

    async with asyncio.timeout(5.0):  # a bounded wait for the timer, not a timing assertion
        while not summaries():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert summaries() == [
        "2 more unauthorized requests in the last 0.05s (missing bearer token: 2)"
    ]


# -- the warning of an open API ------------------------------------------------------------


@pytest.mark.parametrize(
    ("listen", "token", "warned"),
    [
        ("0.0.0.0:0", None, True),
        ("[::]:0", None, True),
        ("burnrate.example:0", None, True),
        ("127.0.0.1:0", None, False),
        ("[::1]:0", None, False),
        ("localhost:0", None, False),
        ("0.0.0.0:0", TOKEN, False),
    ],
)
def test_an_open_api_on_a_reachable_address_is_warned_about(
    listen: str, token: str | None, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="burnrate")
    ev = Evaluator(parse_config(CONFIG))
    server = HttpServer(
        listen, EngineMetrics(ev, lambda: None), lambda: None, auth=BearerAuth(token)
    )
    assert server.warn_if_open() is warned
    records = [r for r in caplog.records if r.name == "burnrate.adapters.http.server"]
    assert len(records) == int(warned)
    if warned:
        assert records[0].levelno == logging.WARNING
        assert "no API token configured" in records[0].getMessage()
