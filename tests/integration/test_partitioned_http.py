"""The HTTP layer of an evaluate worker over real HTTP (aiohttp on port 0, no broker).

Each worker serves the SLOs of the counts partitions it owns, each partition with its
own evaluator (tests/unit/adapters/http/partitioned_sample.py builds them from subset
configs, fed the same events as one evaluator of the same SLOs). The answers are
checked against the single process's (`HttpServer` over that one evaluator), and the
redirects between two workers are followed for real.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from engine.adapters.http.metrics import EngineMetrics
from engine.adapters.http.partitioned_metrics import PartitionedMetrics
from engine.adapters.http.partitions import OwnedPartitions
from engine.adapters.http.scopes import UNKNOWN, required_scope
from engine.adapters.http.server import HttpServer
from engine.core.config import parse_config
from engine.core.history import History
from tests.integration.prometheus_server import promtool_check_metrics
from tests.integration.test_scopes import TOKENS, UI_PAGES, route_table, status_of, tokens_yaml
from tests.unit.adapters.http.partitioned_sample import (
    CONFIG,
    T0,
    config,
    fed,
    names_in,
    owned_partitions,
    partition_of,
    subset,
)

GROUPED = "shop-avail"
"""In partition 2; the others: 0 api-avail, web-lat, cal-avail, front; 1 idle-avail,
queue-avail; 3 db-avail."""


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        yield s


async def serve(parts: OwnedPartitions) -> HttpServer:
    server = HttpServer(
        "127.0.0.1:0", PartitionedMetrics(parts, lambda: None), lambda: None, partitions=parts
    )
    await server.start()
    return server


async def serve_single(names: list[str]) -> HttpServer:
    """The single process over one evaluator of exactly the SLOs `names`."""
    ev = fed(subset(config(), names))
    server = HttpServer("127.0.0.1:0", EngineMetrics(ev, lambda: None), lambda: None)
    await server.start()
    return server


async def get(
    session: aiohttp.ClientSession, url: str, *, follow: bool = False, token: str | None = None
) -> tuple[int, Any, Any]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with session.get(url, allow_redirects=follow, headers=headers) as resp:
        body = await resp.read()
        try:
            doc = json.loads(body)
        except ValueError:
            doc = body
        return resp.status, resp.headers, doc


def test_the_sample_spreads_the_slos_over_every_partition() -> None:
    of = partition_of(config())
    assert {of(s.name) for s in config().slos} == {0, 1, 2, 3}
    assert of(GROUPED) == 2
    assert of("front") == of("api-avail") == of("web-lat")  # a composite lives with its members


@pytest.mark.asyncio
async def test_owned_slos_are_answered_as_the_single_process_answers_them(
    session: aiohttp.ClientSession,
) -> None:
    parts, engines = owned_partitions([0, 2])
    names = names_in(engines)
    worker, single = await serve(parts), await serve_single(names)
    try:
        for name in names:
            query = "?group=region%3Deu" if name == GROUPED else ""
            for path in (f"/v1/slos/{name}{query}", f"/v1/slos/{name}/history{query}"):
                status, _, got = await get(session, worker.url + path)
                want_status, _, want = await get(session, single.url + path)
                assert (status, got) == (want_status, want), path
                assert status == 200, path
        # a grouped SLO without ?group=: the same 400 naming its groups
        status, _, got = await get(session, f"{worker.url}/v1/slos/{GROUPED}")
        assert status == 400
        assert got == (await get(session, f"{single.url}/v1/slos/{GROUPED}"))[2]
    finally:
        await worker.stop()
        await single.stop()


@pytest.mark.asyncio
async def test_the_lists_hold_the_owned_slos_and_name_the_partitions(
    session: aiohttp.ClientSession,
) -> None:
    parts, engines = owned_partitions([1, 2, 3])
    names = names_in(engines)
    worker, single = await serve(parts), await serve_single(names)
    try:
        _, _, got = await get(session, worker.url + "/v1/slos")
        _, _, want = await get(session, single.url + "/v1/slos")
        assert got["slos"] == want["slos"]
        assert [v["name"] for v in got["slos"]] == [
            "idle-avail",
            GROUPED,
            GROUPED,
            GROUPED,
            "db-avail",
            "queue-avail",
        ]  # config order, a grouped SLO once per group in use (and its overflow group)
        assert got["evaluated_at"] == want["evaluated_at"]
        assert got["partitions"] == [
            {"partition": 1, "evaluated_at": want["evaluated_at"], "slos": 2},
            {"partition": 2, "evaluated_at": want["evaluated_at"], "slos": 1},
            {"partition": 3, "evaluated_at": want["evaluated_at"], "slos": 1},
        ]
        _, _, got = await get(session, worker.url + "/v1/summary")
        _, _, want = await get(session, single.url + "/v1/summary")
        assert got["slos"] == want["slos"]
        assert got["windows"] == want["windows"]
        assert [p["partition"] for p in got["partitions"]] == [1, 2, 3]
        assert any(got["slos"]["firing"].values())  # db-avail fails: its page fires
    finally:
        await worker.stop()
        await single.stop()


@pytest.mark.asyncio
async def test_an_slo_owned_elsewhere_redirects_to_its_owner_with_path_and_query(
    session: aiohttp.ClientSession,
) -> None:
    a_parts, _ = owned_partitions([0, 1])
    b_parts, _ = owned_partitions([2, 3])
    a, b = await serve(a_parts), await serve(b_parts)
    a_parts.owners.update({2: b.url, 3: b.url})
    b_parts.owners.update({0: a.url, 1: a.url})
    try:
        path = f"/v1/slos/{GROUPED}?group=region%3Deu"
        status, headers, body = await get(session, a.url + path)
        assert status == 307
        assert headers["Location"] == b.url + path
        assert body == {
            "error": "another worker evaluates this SLO",
            "slo": GROUPED,
            "owner": b.url + path,
        }
        status, _, view = await get(session, a.url + path, follow=True)
        assert status == 200
        assert (view["name"], view["group"]) == (GROUPED, "region=eu")
        status, headers, _ = await get(session, b.url + "/v1/slos/front/history")
        assert (status, headers["Location"]) == (307, a.url + "/v1/slos/front/history")
        status, _, history = await get(session, b.url + "/v1/slos/front/history", follow=True)
        assert (status, history["slo"]) == (200, "front")
    finally:
        await a.stop()
        await b.stop()


@pytest.mark.asyncio
async def test_an_owner_not_known_is_404_with_a_null_owner_and_an_unknown_slo_the_usual_404(
    session: aiohttp.ClientSession,
) -> None:
    parts, _ = owned_partitions([0])
    worker = await serve(parts)
    try:
        for path in ("/v1/slos/db-avail", "/v1/slos/db-avail/history"):
            status, _, body = await get(session, worker.url + path)
            assert status == 404
            assert body["owner"] is None
            assert body["slo"] == "db-avail"
        for path in ("/v1/slos/nope", "/v1/slos/nope/history"):
            status, _, body = await get(session, worker.url + path)
            assert status == 404
            assert body == {"error": "no SLO of that name", "slo": "nope"}
    finally:
        await worker.stop()


@pytest.mark.asyncio
async def test_ownership_changes_between_requests(session: aiohttp.ClientSession) -> None:
    parts, engines = owned_partitions([0, 3])
    worker = await serve(parts)
    try:
        assert (await get(session, worker.url + "/v1/slos/db-avail"))[0] == 200
        metrics = await scrape(session, worker.url)
        assert "db-avail" in metrics

        moved = parts.owned.pop(3)  # revoked: now another worker's, at an address known
        parts.owners[3] = "http://other.example:8080"
        status, headers, _ = await get(session, worker.url + "/v1/slos/db-avail?x=1")
        assert (status, headers["Location"]) == (
            307,
            "http://other.example:8080/v1/slos/db-avail?x=1",
        )
        _, _, listed = await get(session, worker.url + "/v1/slos")
        assert "db-avail" not in {v["name"] for v in listed["slos"]}
        assert [p["partition"] for p in listed["partitions"]] == [0]
        assert "db-avail" not in await scrape(session, worker.url)

        parts.owned[3] = moved  # assigned back
        assert (await get(session, worker.url + "/v1/slos/db-avail"))[0] == 200
        _, _, listed = await get(session, worker.url + "/v1/slos")
        assert "db-avail" in {v["name"] for v in listed["slos"]}
        _, _, summary = await get(session, worker.url + "/v1/summary")
        assert "db-avail" in summary["slos"]["name"]

        # a reload replaces the partition's evaluator (and the config): the new one answers
        cfg = parse_config(CONFIG.replace("objective: 99.9", "objective: 99.5"))
        fresh = fed(subset(cfg, ["db-avail"]))
        parts.config = cfg
        parts.owned[3] = (fresh, History(fresh))
        _, _, view = await get(session, worker.url + "/v1/slos/db-avail")
        assert view["objective"] == 99.5
        _, _, listed = await get(session, worker.url + "/v1/slos")
        assert [v["objective"] for v in listed["slos"] if v["name"] == "db-avail"] == [99.5]
        assert engines[3] is not fresh
    finally:
        await worker.stop()


async def scrape(session: aiohttp.ClientSession, url: str) -> str:
    status, _, body = await get(session, url + "/metrics")
    assert status == 200
    text = bytes(body).decode()
    list(text_string_to_metric_families(text))  # parses
    return text


@pytest.mark.asyncio
async def test_metrics_over_http_pass_promtool(session: aiohttp.ClientSession) -> None:
    parts, _ = owned_partitions([0, 1, 2, 3])
    worker = await serve(parts)
    try:
        async with session.get(worker.url + "/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            body = await resp.read()
        code, output = await promtool_check_metrics(body)
        assert code == 0, output
        assert output.strip() == "", output
    finally:
        await worker.stop()


@pytest.mark.asyncio
async def test_incidents_unconfigured_no_reload_file_and_the_probes(
    session: aiohttp.ClientSession,
) -> None:
    parts, _ = owned_partitions([0, 1, 2, 3])
    worker = await serve(parts)
    try:
        # incidents are served (engine.runtime.evaluate_incidents); not configured here
        async with session.get(worker.url + "/v1/incidents") as resp:
            assert resp.status == 404
            assert "incidents are not configured" in (await resp.json())["error"]
        # no config file to reload (a worker started from one reloads it)
        async with session.post(worker.url + "/-/reload") as resp:
            assert resp.status == 404
            assert "no config file to reload" in (await resp.json())["error"]
        assert (await get(session, worker.url + "/healthz"))[0] == 200
        assert (await get(session, worker.url + "/readyz"))[0] == 503  # not consuming
    finally:
        await worker.stop()


@pytest.mark.asyncio
async def test_auth_and_scopes_apply_as_in_one_process(session: aiohttp.ClientSession) -> None:
    cfg = parse_config(CONFIG.replace("http:\n  listen: 127.0.0.1:0\n", tokens_yaml()))
    parts, _ = owned_partitions([0])
    parts.config = cfg
    parts.owners[3] = "http://other.example:8080"
    worker = await serve(parts)
    reader, operator = TOKENS["reader"][0], TOKENS["operator"][0]
    try:
        assert worker.auth.enabled
        routes = route_table(worker.app)
        assert routes
        for method, canonical, path in routes:
            needed = required_scope(canonical, method)
            assert needed != UNKNOWN, f"{method} {canonical} has no entry in the scope table"
            status, headers = await status_of(session, method, worker.url + path)
            if needed is None:  # the probes, the login form, the static files
                assert status not in (403, 500), (method, path, status)
                assert status != 401 or canonical == "/login", (method, path, status)
            elif canonical in UI_PAGES:
                assert (status, headers["Location"]) == (303, "/login"), (method, path)
            else:
                assert status == 401, (method, path, status)
            for name, (token, granted) in TOKENS.items():
                status, _ = await status_of(session, method, worker.url + path, token=token)
                if needed is None:
                    assert status not in (403, 500), (method, path, name, status)
                    assert status != 401 or canonical == "/login", (method, path, name)
                elif needed in granted:
                    assert status not in (401, 403, 500), (method, path, name, status)
                else:
                    assert status == 403, (method, path, name, status)
        # no token: 401 before any redirect, so the owner is not told to strangers
        status, headers = await status_of(session, "GET", worker.url + "/v1/slos/db-avail")
        assert status == 401
        assert "Location" not in headers
        status, headers = await status_of(
            session, "GET", worker.url + "/v1/slos/db-avail", token=operator
        )
        assert status == 403
        status, headers = await status_of(
            session, "GET", worker.url + "/v1/slos/db-avail", token=reader
        )
        assert (status, headers["Location"]) == (307, "http://other.example:8080/v1/slos/db-avail")
        assert (await get(session, worker.url + "/metrics"))[0] == 401
        assert (await get(session, worker.url + "/metrics", token=reader))[0] == 200
    finally:
        await worker.stop()


@pytest.mark.asyncio
async def test_the_web_ui_lists_the_owned_slos_and_sends_the_others_to_their_owner(
    session: aiohttp.ClientSession,
) -> None:
    a_parts, a_engines = owned_partitions([0, 2])
    b_parts, _ = owned_partitions([1, 3])
    a, b = await serve(a_parts), await serve(b_parts)
    a_parts.owners.update({1: b.url, 3: b.url})
    try:
        status, headers, page = await get(session, a.url + "/")
        assert status == 200
        assert headers["Content-Security-Policy"].startswith("default-src 'none'")
        html = page.decode()
        listed = set(re.findall(r'<tr data-slo="([^"]+)"', html))
        assert listed == set(names_in(a_engines))
        assert html.count("<tr data-slo=") == 7  # 5 SLOs, the grouped one thrice
        assert "7 SLOs</span>" in html

        status, _, page = await get(session, a.url + "/slo/front")
        assert status == 200
        assert "<title>Burnrate: front</title>" in page.decode()
        status, headers, _ = await get(session, a.url + "/slo/db-avail")
        assert (status, headers["Location"]) == (307, b.url + "/slo/db-avail")
        status, _, page = await get(session, a.url + "/slo/db-avail", follow=True)
        assert status == 200
        assert "db-avail" in page.decode()
        # a grouped SLO's page without a group goes to its first group's, as in one process
        status, headers, _ = await get(session, a.url + f"/slo/{GROUPED}")
        assert status == 303
        assert headers["Location"].startswith(f"/slo/{GROUPED}?group=")
        assert (await get(session, a.url + "/slo/nope"))[0] == 404
        a_parts.owners.clear()
        assert (await get(session, a.url + "/slo/db-avail"))[0] == 404
        status, _, page = await get(session, a.url + "/static/slo.js")
        assert status == 200
    finally:
        await a.stop()
        await b.stop()


@pytest.mark.asyncio
async def test_owned_gates_are_answered_as_the_single_process_answers_them(
    session: aiohttp.ClientSession,
) -> None:
    parts, engines = owned_partitions([0, 2])
    names = names_in(engines)
    worker, single = await serve(parts), await serve_single(names)
    try:
        for service in ("api", "web", "shop"):
            status, _, got = await get(session, f"{worker.url}/v1/gates/{service}")
            want_status, _, want = await get(session, f"{single.url}/v1/gates/{service}")
            assert (status, got) == (want_status, want), service
            assert status == 200, service
        assert {s for s, d in gate_series(await metrics_of(session, worker.url))} == {
            "api",
            "web",  # with api: the composite front reads both
            "shop",
        }
        assert gate_series(await metrics_of(session, worker.url)) == gate_series(
            await metrics_of(session, single.url)
        )
    finally:
        await worker.stop()
        await single.stop()


async def metrics_of(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url + "/metrics") as resp:
        return await resp.text()


def gate_series(text: str) -> set[tuple[str, str]]:
    """(service, decision) of each `burnrate_gate_decision` at 1."""
    return {
        (s.labels["service"], s.labels["decision"])
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "burnrate_gate_decision" and s.value == 1.0
    }


@pytest.mark.asyncio
async def test_a_gate_owned_elsewhere_redirects_and_an_override_follows_it(
    session: aiohttp.ClientSession,
) -> None:
    """Two workers: a's gate of shop (partition 2, b's) is a 307 to b; an override
    POSTed to a reaches b (307 keeps the method and body), is kept with shop's
    partition and shows in b's answer and /metrics; DELETE likewise."""
    a_parts, _ = owned_partitions([0, 1])
    b_parts, _ = owned_partitions([2, 3])
    a, b = await serve(a_parts), await serve(b_parts)
    a_parts.owners.update({2: b.url, 3: b.url})
    b_parts.owners.update({0: a.url, 1: a.url})
    try:
        status, headers, got = await get(session, f"{a.url}/v1/gates/shop?x=1")
        assert (status, headers["Location"]) == (307, f"{b.url}/v1/gates/shop?x=1")
        assert got == {
            "error": "another worker owns this service's gate",
            "service": "shop",
            "owner": f"{b.url}/v1/gates/shop?x=1",
        }
        body = {"reason": "hotfix", "ttl": "30m", "ticket": "OPS-7"}
        async with session.post(f"{a.url}/v1/gates/shop/override", json=body) as resp:
            assert resp.status == 201, await resp.text()
            assert str(resp.url) == f"{b.url}/v1/gates/shop/override"
            got = await resp.json()
        assert (got["decision"], got["override"]["ticket"]) == ("pass", "OPS-7")
        assert b_parts.kept == [2]
        assert a_parts.kept == []
        held = b_parts.overrides_of("shop-avail")
        assert held is not None
        assert [(o.service, o.ticket) for o in held.all(time.time())] == [("shop", "OPS-7")]
        assert ("shop", "pass") in gate_series(await metrics_of(session, b.url))
        assert "shop" not in {s for s, _ in gate_series(await metrics_of(session, a.url))}
        async with session.delete(f"{a.url}/v1/gates/shop/override") as resp:
            assert resp.status == 200, await resp.text()
            got = await resp.json()
        assert got["override"] is None
        assert b_parts.kept == [2, 2]
    finally:
        await a.stop()
        await b.stop()


@pytest.mark.asyncio
async def test_a_gate_whose_owner_is_not_known_is_404_with_a_null_owner(
    session: aiohttp.ClientSession,
) -> None:
    parts, _ = owned_partitions([0])
    worker = await serve(parts)
    try:
        status, _, got = await get(session, f"{worker.url}/v1/gates/db")
        assert status == 404
        assert (got["service"], got["owner"]) == ("db", None)
        async with session.post(f"{worker.url}/v1/gates/db/override", json={}) as resp:
            assert resp.status == 404
        status, _, got = await get(session, f"{worker.url}/v1/gates/nobody")
        assert (status, got) == (404, {"error": "no SLO has that service", "service": "nobody"})
    finally:
        await worker.stop()


@pytest.mark.asyncio
async def test_changes_are_kept_by_the_owner_of_their_service(
    session: aiohttp.ClientSession,
) -> None:
    """Two workers: a change of shop (partition 2, b's) POSTed to a follows the 307 to
    b, which keeps it (written before the answer), lists it, names it in its /metrics;
    a lists only its own services' changes; a body without a known service gets the
    single process's 400 at any worker."""
    a_parts, a_engines = owned_partitions([0, 1])
    b_parts, _ = owned_partitions([2, 3])
    a, b = await serve(a_parts), await serve(b_parts)
    single = await serve_single(names_in(a_engines))
    a_parts.owners.update({2: b.url, 3: b.url})
    b_parts.owners.update({0: a.url, 1: a.url})
    try:
        change = {"service": "shop", "kind": "deploy", "version": "v2"}
        async with session.post(f"{a.url}/v1/changes", json=change) as resp:
            assert resp.status == 201, await resp.text()
            assert str(resp.url) == f"{b.url}/v1/changes"
            got = await resp.json()
        assert (got["service"], got["version"], got["source"]) == ("shop", "v2", "api")
        assert b_parts.kept == [2]
        async with session.post(f"{b.url}/v1/changes", json=change) as resp:
            assert resp.status == 200  # the same change: the one kept
            assert (await resp.json())["id"] == got["id"]
        assert b_parts.kept == [2]  # nothing new to keep
        status, headers, _ = await get(session, f"{a.url}/v1/changes?service=shop&limit=5")
        assert (status, headers["Location"]) == (307, f"{b.url}/v1/changes?service=shop&limit=5")
        status, _, listed = await get(session, f"{a.url}/v1/changes?service=shop", follow=True)
        assert (status, [c["id"] for c in listed["changes"]]) == (200, [got["id"]])
        api = {"service": "api", "kind": "config", "at": T0 - 30}
        async with session.post(f"{a.url}/v1/changes", json=api) as resp:
            assert resp.status == 201
            mine = await resp.json()
        assert mine["slos"]  # attributed against api's SLOs at a
        status, _, listed = await get(session, f"{a.url}/v1/changes")
        assert [c["id"] for c in listed["changes"]] == [mine["id"]]  # a's services only
        assert mine["id"] != got["id"]  # partitions number their changes apart
        assert 'burnrate_changes_total{kind="deploy",service="shop"} 1.0' in (
            await metrics_of(session, b.url)
        )
        for body in (
            {"service": "nobody", "kind": "deploy"},
            {"kind": "deploy"},
            {"service": 3, "kind": "deploy"},
        ):
            async with session.post(f"{a.url}/v1/changes", json=body) as resp:
                mine_status, errors = resp.status, await resp.json()
            async with session.post(f"{single.url}/v1/changes", json=body) as resp:
                assert (mine_status, errors) == (resp.status, await resp.json()), body
            assert mine_status == 400
        async with session.post(f"{a.url}/v1/changes", data=b"{not json") as resp:
            assert resp.status == 400
        status, _, got = await get(session, f"{a.url}/v1/changes?service=nobody")
        assert status == 404
    finally:
        for server in (a, b, single):
            await server.stop()


@pytest.mark.asyncio
async def test_a_correction_lives_with_the_partition_of_its_slos(
    session: aiohttp.ClientSession,
) -> None:
    """A correction of shop (partition 2, b's) POSTed to a follows the 307 to b, which
    applies it and keeps it (written before the answer); b lists it after the config's,
    a does not; one covering services of two partitions is 409; a bad body gets one
    process's 400 at any worker."""
    a_parts, a_engines = owned_partitions([0, 1])
    b_parts, b_engines = owned_partitions([2, 3])
    a, b = await serve(a_parts), await serve(b_parts)
    single = await serve_single(names_in(a_engines))
    a_parts.owners.update({2: b.url, 3: b.url})
    b_parts.owners.update({0: a.url, 1: a.url})
    window = {"start": "2035-01-01T00:00:00Z", "duration": "1h", "reason": "planned"}
    try:
        body = {"name": "shop-maint", "services": ["shop"], **window}
        async with session.post(f"{a.url}/v1/corrections", json=body) as resp:
            assert resp.status == 201, await resp.text()
            assert str(resp.url) == f"{b.url}/v1/corrections"
            got = await resp.json()
        assert (got["applies_to"], got["source"]) == (["shop-avail"], "api")
        assert b_parts.kept == [2]
        assert [c.name for c in b_engines[2].runtime_corrections] == ["shop-maint"]
        _, _, listed = await get(session, f"{b.url}/v1/corrections")
        assert [(c["name"], c["source"]) for c in listed["corrections"]] == [("shop-maint", "api")]
        _, _, listed = await get(session, f"{a.url}/v1/corrections")
        assert listed["corrections"] == []
        both = {"name": "wide", "services": ["shop", "api"], **window}
        async with session.post(f"{a.url}/v1/corrections", json=both) as resp:
            assert resp.status == 409
            assert "post one correction per service" in (await resp.json())["error"]
        for bad in ({"name": "x", "services": ["nobody"], **window}, {"name": "x"}):
            async with session.post(f"{a.url}/v1/corrections", json=bad) as resp:
                mine = (resp.status, await resp.json())
            async with session.post(f"{single.url}/v1/corrections", json=bad) as resp:
                assert mine == (resp.status, await resp.json()), bad
            assert mine[0] == 400
        assert b_parts.kept == [2]
    finally:
        for server in (a, b, single):
            await server.stop()
