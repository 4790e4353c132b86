"""`/v1/changes` over real HTTP (aiohttp on port 0, no broker): a change posted and read
back with the budget consumed after it, 400 with the field's path, the defaults of
`at`, the GET filters and limit, the bearer token, and burnrate_changes_total."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.adapters.http.metrics import EngineMetrics
from engine.adapters.http.server import HttpServer
from engine.core.config import parse_config
from engine.core.decode import Event
from engine.core.evaluator import Evaluator
from tests.unit.adapters.http.test_gates_api import NOW, Clock, call, session

__all__ = ["session"]

T0 = 1_700_000_000.0
CONFIG = """\
slos:
  - {name: shop-avail, service: shop, sli: availability, objective: 90}
  - name: blog-avail
    service: blog
    sli: availability
    objective: 90
    group_by: [region]
evaluation: {tick: 10s}
changes: {attribution_window: 5m, max_kept: 3}
"""


def evaluator(extra: str = "") -> Evaluator:
    """shop: 80 good events before T0 - 100; nothing after yet."""
    ev = Evaluator(parse_config(CONFIG + extra))
    batch = [Event(service="shop", ts=T0 - 200 + i, status=200) for i in range(80)]
    ev.ingest(ev.classifier.columns(batch))
    ev.advance(T0 - 100 + 0.5)
    return ev


async def start(ev: Evaluator, clock: Clock) -> HttpServer:
    server = HttpServer("127.0.0.1:0", EngineMetrics(ev, lambda: None, clock), lambda: None)
    await server.start()
    return server


@pytest.mark.asyncio
async def test_a_change_is_charged_with_the_budget_burnt_after_it(
    session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    ev = evaluator()
    server = await start(ev, Clock())
    saved: list[int] = []
    server.changes.on_change = lambda: saved.append(1)
    body = {"service": "shop", "kind": "deploy", "version": "4.2.1", "url": "https://ci/1"}
    try:
        with caplog.at_level(logging.INFO, logger="burnrate.adapters.http.changes"):
            status, change = await call(session, "POST", f"{server.url}/v1/changes", body)
        assert status == 201, change
        assert change["at"] == ev.watermark_s  # the engine's event time
        assert change["slos"] == []  # nothing evaluated after it yet
        assert saved == [1]
        assert any(getattr(r, "data", {}).get("event") == "change_added" for r in caplog.records)
        # 20 failures of 20 events after it (in whole 10 s buckets after `at`):
        # 20 / (0.1 * 100 period events) = 2
        batch = [Event(service="shop", ts=T0 - 89 + i, status=500) for i in range(20)]
        ev.ingest(ev.classifier.columns(batch))
        ev.advance(T0 + 0.5)
        status, listed = await call(session, "GET", f"{server.url}/v1/changes?service=shop")
        assert status == 200
        (got,) = listed["changes"]
        assert got["id"] == change["id"]
        assert got["slos"] == [
            {
                "slo": "shop-avail",
                "events": 20,
                "bad_events": 20,
                "error_budget_consumed_ratio": pytest.approx(2.0),
            }
        ]
        assert got["evaluated_at"] == T0
        assert got["complete"] is False
        assert got["source"] == "api"
        assert got["received_at"] == NOW
        assert got["attribution_window_s"] == 300
        # the same change again is the one kept
        status, again = await call(
            session, "POST", f"{server.url}/v1/changes", body | {"at": change["at"]}
        )
        assert status == 200
        assert again["id"] == change["id"]
        text = server.metrics.render().decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        (sample,) = families["burnrate_changes"].samples
        assert sample.labels == {"service": "shop", "kind": "deploy"}
        assert sample.value == 1
    finally:
        await server.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"kind": "deploy"}, "$"),
        ({"service": "shop", "kind": ""}, "$.kind"),
        ({"service": "nope", "kind": "deploy"}, "$.service"),
        ({"service": "shop", "kind": "deploy", "at": NOW + 3600}, "$.at"),
        ({"service": "shop", "kind": "deploy", "description": "x" * 2000}, "$.description"),
        ({"service": "shop", "kind": "deploy", "url": "javascript:1"}, "$.url"),
    ],
)
async def test_a_bad_change_is_400_with_the_path(
    session: aiohttp.ClientSession, body: dict[str, object], path: str
) -> None:
    server = await start(evaluator(), Clock())
    try:
        status, answer = await call(session, "POST", f"{server.url}/v1/changes", body)
        assert status == 400
        assert answer["errors"][0].startswith(f"{path}:"), answer
        _, listed = await call(session, "GET", f"{server.url}/v1/changes")
        assert listed == {"changes": []}
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_a_body_over_the_limit_is_413(session: aiohttp.ClientSession) -> None:
    server = await start(evaluator(), Clock())
    try:
        status, answer = await call(session, "POST", f"{server.url}/v1/changes", "x" * 20_000)
        assert status == 413, answer
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_listing_filters_by_service_newest_first_and_bounded(
    session: aiohttp.ClientSession,
) -> None:
    server = await start(evaluator(), Clock())
    url = f"{server.url}/v1/changes"
    try:
        for k, service in enumerate(["shop", "blog", "shop", "shop"]):
            body = {"service": service, "kind": "deploy", "version": str(k), "at": T0 - 500 + k}
            status, _ = await call(session, "POST", url, body)
            assert status == 201
        _, listed = await call(session, "GET", url)  # max_kept 3: the oldest went
        assert [c["version"] for c in listed["changes"]] == ["3", "2", "1"]
        _, listed = await call(session, "GET", f"{url}?service=shop&limit=1")
        assert [c["version"] for c in listed["changes"]] == ["3"]
        _, listed = await call(session, "GET", f"{url}?service=blog")
        assert [c["version"] for c in listed["changes"]] == ["1"]
        status, answer = await call(session, "GET", f"{url}?service=nope")
        assert status == 404
        assert answer["service"] == "nope"
        for bad in ("0", "1001", "x", "-1"):
            status, answer = await call(session, "GET", f"{url}?limit={bad}")
            assert status == 400
            assert answer["errors"][0].startswith("limit:")
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_changes_need_the_bearer_token_when_one_is_configured(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    token = f"tok-{secrets.token_urlsafe(24)}"
    token_file = tmp_path / "token"
    token_file.write_text(token)
    ev = evaluator(f"http: {{listen: 127.0.0.1:0, auth_token_file: {token_file}}}\n")
    server = await start(ev, Clock())
    url = f"{server.url}/v1/changes"
    body = {"service": "shop", "kind": "deploy"}
    try:
        assert (await call(session, "POST", url, body))[0] == 401
        assert (await call(session, "GET", url))[0] == 401
        assert (await call(session, "POST", url, body, token=token))[0] == 201
        assert (await call(session, "GET", url, token=token))[0] == 200
    finally:
        await server.stop()
