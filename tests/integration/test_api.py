"""The JSON API and bearer-token auth over real HTTP (aiohttp on port 0, no broker).

The evaluator is fed directly in event time (`api_sample`), so every number is known
exactly. The views without a server are tests/unit/adapters/http/test_api.py, the
token checks and config errors tests/unit/adapters/http/test_auth.py; the budget
arithmetic is tests/unit/core/test_budget.py.
"""

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
from multidict import CIMultiDictProxy
from prometheus_client.parser import text_string_to_metric_families

from engine.adapters.http.metrics import EngineMetrics
from engine.adapters.http.server import HttpServer
from engine.core.config import Config, parse_config
from engine.core.decode import Event
from engine.core.evaluator import Evaluator
from tests.unit.adapters.http.api_sample import CONFIG, PERIOD_30D_S, T0, fed_evaluator


class Server:
    def __init__(self, server: HttpServer, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session

    async def get(
        self, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
        async with self.session.get(f"{self.server.url}{path}", headers=headers) as resp:
            return resp.status, resp.headers, await resp.read()

    async def json(self, path: str, headers: dict[str, str] | None = None) -> Any:
        status, _, body = await self.get(path, headers)
        assert status == 200, body
        return strict_json(body)


def strict_json(body: bytes) -> Any:
    """JSON that must not hold NaN or Infinity (Python's json accepts both by default)."""

    def refuse(name: str) -> None:
        raise AssertionError(f"non-JSON constant {name} in {body[:200]!r}")

    return json.loads(body, parse_constant=refuse)


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        yield s


@pytest_asyncio.fixture
async def served(session: aiohttp.ClientSession) -> AsyncIterator[tuple[Server, Evaluator, Any]]:
    ev, transitions = fed_evaluator(parse_config(CONFIG))
    metrics = EngineMetrics(ev, lambda: None)
    server = HttpServer("127.0.0.1:0", metrics, lambda: None)
    await server.start()
    try:
        yield Server(server, session), ev, transitions
    finally:
        await server.stop()


def by_window(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {w["window"]: w for w in view["windows"]}


@pytest.mark.asyncio
async def test_one_slo_with_budget_and_no_alert(served: tuple[Server, Evaluator, Any]) -> None:
    http, _, _ = served
    view = await http.json("/v1/slos/checkout-availability")
    static = {k: view[k] for k in view if k not in ("windows", "error_budget", "alerts")}
    assert static == {
        "name": "checkout-availability",
        "service": "checkout",
        "operation": "POST /orders",
        "sli": "availability",
        "threshold_ms": None,
        "objective": 99.0,
        "objective_ratio": 0.99,
        "period": "30d",
        "period_s": PERIOD_30D_S,
        "labels": {"team": "payments", "tier": "1"},
        "description": "Orders are accepted",
        "runbook_url": "https://runbooks.example/checkout",
        "calendar_period": None,  # rolling
        "events_total": 1000,
        "bad_events_total": 5,
        "excluded_events_total": 0,  # no corrections
        "evaluated_at": T0,
    }
    assert [(w["window"], w["window_s"]) for w in view["windows"]] == [
        ("5m", 300),
        ("30m", 1800),
        ("1h", 3600),
        ("2h", 7200),
        ("6h", 21600),
        ("1d", 86400),
        ("3d", 259200),
        ("7d", 604800),
        ("30d", PERIOD_30D_S),
    ]
    for w in view["windows"]:  # every event lies inside every window
        assert (w["good"], w["bad"], w["total"]) == (995, 5, 1000)
        assert w["error_ratio"] == pytest.approx(0.005, rel=1e-12)
        assert w["burn_rate"] == pytest.approx(0.5, rel=1e-12)
    budget = view["error_budget"]
    assert budget["remaining_ratio"] == pytest.approx(0.5, rel=1e-12)
    assert budget["burn_rate"] == pytest.approx(0.5, rel=1e-12)
    assert budget["burn_rate_window"] == "1h"
    # half the budget left, burning half a budget per period: one more period
    assert budget["time_to_exhaustion_s"] == pytest.approx(PERIOD_30D_S, rel=1e-12)
    assert view["alerts"] == {
        "page": {"firing": False, "since": None, "row": None},
        "ticket": {"firing": False, "since": None, "row": None},
    }


@pytest.mark.asyncio
async def test_firing_alerts_carry_the_row_that_fired(
    served: tuple[Server, Evaluator, Any],
) -> None:
    http, _, transitions = served
    firing = {(t.slo, t.severity): t for t in transitions if t.state == "firing"}

    search = await http.json("/v1/slos/search-availability")
    assert search["period"] == "7d"
    assert by_window(search)["5m"]["burn_rate"] == pytest.approx(1000, rel=1e-9)
    assert search["error_budget"]["time_to_exhaustion_s"] == 0  # overspent
    page = search["alerts"]["page"]
    assert page["firing"] is True
    assert page["since"] == firing[("search-availability", "page")].at
    # 2% of a 7d budget in 1h is a factor of 3.36
    assert page["row"] == {
        "severity": "page",
        "long": "1h",
        "short": "5m",
        "long_s": 3600,
        "short_s": 300,
        "factor": pytest.approx(3.36, rel=1e-12),
    }
    assert search["alerts"]["ticket"]["firing"] is True

    latency = await http.json("/v1/slos/checkout-latency")
    assert (latency["events_total"], latency["bad_events_total"]) == (1000, 10)
    assert latency["threshold_ms"] == 300
    assert by_window(latency)["3d"]["burn_rate"] == pytest.approx(2.0, rel=1e-9)
    assert latency["alerts"]["page"]["firing"] is False
    ticket = latency["alerts"]["ticket"]
    assert ticket["firing"] is True
    assert ticket["since"] == firing[("checkout-latency", "ticket")].at
    # burning at 2x: not the 1d/2h row (3x), the 3d/6h one (1x)
    assert (ticket["row"]["long"], ticket["row"]["short"]) == ("3d", "6h")
    assert ticket["row"]["factor"] == pytest.approx(1.0)


@pytest.mark.asyncio
async def test_no_data_is_null_never_nan(served: tuple[Server, Evaluator, Any]) -> None:
    http, _, _ = served
    status, headers, body = await http.get("/v1/slos/idle-availability")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert b"NaN" not in body
    assert b"Infinity" not in body
    view = strict_json(body)
    for w in view["windows"]:
        assert (w["good"], w["bad"], w["total"]) == (0, 0, 0)
        assert w["error_ratio"] is None
        assert w["burn_rate"] is None
    assert view["error_budget"] == {
        "remaining_ratio": None,
        "time_to_exhaustion_s": None,
        "burn_rate": None,
        "burn_rate_window": "1h",
    }
    assert (view["events_total"], view["bad_events_total"]) == (0, 0)


@pytest.mark.asyncio
async def test_list_matches_the_single_views_and_metrics(
    served: tuple[Server, Evaluator, Any],
) -> None:
    http, ev, _ = served
    listing = await http.json("/v1/slos")
    assert listing["evaluated_at"] == T0
    assert [s["name"] for s in listing["slos"]] == ev.names
    for view in listing["slos"]:
        assert view == await http.json(f"/v1/slos/{view['name']}")
    # the same numbers as /metrics, to the last bit
    status, _, body = await http.get("/metrics")
    assert status == 200
    exported = {
        (s.name, s.labels["slo"], s.labels.get("window")): s.value
        for f in text_string_to_metric_families(body.decode())
        for s in f.samples
        if "slo" in s.labels
    }
    for view in listing["slos"]:
        name = view["name"]
        for w in view["windows"]:
            key = ("burnrate_slo_burn_rate", name, w["window"])
            if w["burn_rate"] is None:
                assert key not in exported
            else:
                assert exported[key] == w["burn_rate"]
                assert exported[("burnrate_slo_error_ratio", name, w["window"])] == w["error_ratio"]
        remaining = view["error_budget"]["remaining_ratio"]
        if remaining is not None:
            key = ("burnrate_slo_error_budget_remaining_ratio", name, None)
            assert exported[key] == remaining
        assert exported[("burnrate_slo_events_total", name, None)] == view["events_total"]


@pytest.mark.asyncio
async def test_list_is_rebuilt_per_evaluation_tick(served: tuple[Server, Evaluator, Any]) -> None:
    http, ev, _ = served
    before = await http.json("/v1/slos")
    ev.ingest(ev.classifier.columns([Event(service="idle", ts=T0 + 2, status=200)]))
    ev.advance(T0 + 11)
    http.server.metrics.invalidate()  # what the runtime does after every tick
    after = await http.json("/v1/slos")
    assert after != before
    assert after["evaluated_at"] == T0 + 10
    idle = next(s for s in after["slos"] if s["name"] == "idle-availability")
    assert idle["events_total"] == 1
    assert by_window(idle)["5m"]["burn_rate"] == 0
    assert idle["error_budget"]["time_to_exhaustion_s"] is None  # nothing burns


@pytest.mark.asyncio
async def test_unknown_slo_is_a_json_404(served: tuple[Server, Evaluator, Any]) -> None:
    http, _, _ = served
    status, headers, body = await http.get("/v1/slos/no-such-slo")
    assert status == 404
    assert headers["Content-Type"] == "application/json"
    assert strict_json(body) == {"error": "no SLO of that name", "slo": "no-such-slo"}


# -- auth ------------------------------------------------------------------------------


def config_with(http: str) -> Config:
    return parse_config(CONFIG.replace("http:\n  listen: 127.0.0.1:0\n", f"http:\n{http}"))


PROTECTED = ["/metrics", "/v1/slos", "/v1/slos/checkout-availability"]


@pytest.mark.asyncio
async def test_bearer_token_guards_everything_but_the_probes(
    session: aiohttp.ClientSession, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = f"tok-{secrets.token_urlsafe(24)}"
    wrong = f"tok-{secrets.token_urlsafe(24)}"
    token_file = tmp_path / "token"
    token_file.write_text(f"{token}\n")
    ev, _ = fed_evaluator(config_with(f"  listen: 127.0.0.1:0\n  auth_token_file: {token_file}\n"))
    server = HttpServer("127.0.0.1:0", EngineMetrics(ev, lambda: None), lambda: None)
    assert server.auth.enabled
    await server.start()
    http = Server(server, session)
    try:
        for path in PROTECTED:
            status, headers, body = await http.get(path)
            assert status == 401, path
            assert headers["WWW-Authenticate"] == 'Bearer realm="burnrate"'
            assert headers["Content-Type"] == "application/json"
            assert strict_json(body) == {"error": "missing bearer token"}

            status, headers, body = await http.get(path, {"Authorization": f"Bearer {wrong}"})
            assert status == 401, path
            assert headers["WWW-Authenticate"].startswith("Bearer ")
            assert 'error="invalid_token"' in headers["WWW-Authenticate"]
            assert strict_json(body) == {"error": "invalid bearer token"}

            for bad in (
                f"Basic {token}",
                token,
                "Bearer",
                f"Bearer {token}x",
                f"Bearer {token[:-1]}",
            ):
                status, _, _ = await http.get(path, {"Authorization": bad})
                assert status == 401, (path, bad.replace(token, "<token>"))

            status, _, _ = await http.get(path, {"Authorization": f"Bearer {token}"})
            assert status == 200, path
            status, _, _ = await http.get(path, {"Authorization": f"bearer  {token} "})
            assert status == 200, path  # the scheme is case-insensitive (RFC 9110)

        # unknown routes are not revealed without the token
        assert (await http.get("/v1/slos/nope"))[0] == 401
        assert (await http.get("/v1/slos/nope", {"Authorization": f"Bearer {token}"}))[0] == 404
        # the probes need none: kubelets and load balancers carry no credentials
        assert (await http.get("/healthz"))[0] == 200
        assert (await http.get("/readyz"))[0] == 503  # not consuming, but not 401
    finally:
        await server.stop()

    refused = [r for r in caplog.records if r.name == "burnrate.adapters.http.auth"]
    assert refused, "401s are logged"
    for record in refused:
        assert record.levelno == logging.WARNING
        message = record.getMessage()
        assert message.startswith("401 GET /")
        assert "from 127.0.0.1" in message
        data = record.__dict__["data"]
        assert data["remote"] == "127.0.0.1"
        assert data["path"].startswith("/")
    assert "401 GET /v1/slos/checkout-availability from 127.0.0.1: invalid bearer token" in [
        r.getMessage() for r in refused
    ]
    for secret in (token, wrong, token[:-1]):
        assert secret not in caplog.text
        for record in caplog.records:
            assert secret not in repr(record.__dict__)


@pytest.mark.asyncio
async def test_token_from_the_environment(
    session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = secrets.token_hex(16)
    monkeypatch.setenv("BURNRATE_TEST_TOKEN", token)
    ev, _ = fed_evaluator(
        config_with("  listen: 127.0.0.1:0\n  auth_token_env: BURNRATE_TEST_TOKEN\n")
    )
    server = HttpServer("127.0.0.1:0", EngineMetrics(ev, lambda: None), lambda: None)
    await server.start()
    http = Server(server, session)
    try:
        assert (await http.get("/v1/slos"))[0] == 401
        assert (await http.get("/v1/slos", {"Authorization": f"Bearer {token}"}))[0] == 200
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_no_token_configured_means_open(served: tuple[Server, Evaluator, Any]) -> None:
    http, _, _ = served
    assert not http.server.auth.enabled
    for path in PROTECTED:
        assert (await http.get(path))[0] == 200
