"""Config reload live, against a real broker.

1. A Runtime with tokens and `audit:` consumes a failing service and pages; its config
   file is rewritten: one SLO kept, one removed, one added, one changed. `POST
   /-/reload` needs the admin scope (401, 403), refuses an invalid file with its
   `$.path` errors and a file that moves the consumer group as needing a restart, the
   old config serving on; then takes the new file: the kept SLO keeps its counts and
   its page (no new firing), the removed one is gone from /v1 and /metrics, the added
   and changed ones start empty, and the reloads are counted, digested and audited.
2. `burnrate run` as a process: SIGHUP reloads its file, and an invalid file is
   refused in the log with its paths while the old config serves on.
"""

from __future__ import annotations

import hashlib
import signal
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.adapters.http.tokens import token_digest
from engine.core.audit import parse_line
from engine.core.config import decode_config_file
from engine.runtime.service import Runtime
from tests.integration.live import get_json
from tests.integration.test_incidents_live import Traffic, wait_async
from tests.integration.test_run import Running
from tests.integration.test_signals import Service, write_config

ADMIN, READER = "admin-token-of-the-reload-test", "reader-token-of-the-reload-test"

BEFORE = """\
  - {name: shop-avail, service: shop, sli: availability, objective: 90}
  - {name: shop-strict, service: shop, sli: availability, objective: 90}
  - {name: blog-avail, service: blog, sli: availability, objective: 90}
"""
AFTER = """\
  - {name: blog-fresh, service: blog, sli: availability, objective: 99}
  - {name: shop-avail, service: shop, sli: availability, objective: 90}
  - {name: shop-strict, service: shop, sli: availability, objective: 95}
"""


def write(path: Path, slos: str, bootstrap: str, topic: str, group: str, tmp: Path) -> str:
    """The config file with `slos`; its SHA-256."""
    text = (
        f"slos:\n{slos}"
        "policy:\n"
        "  - {severity: page, long: 30s, short: 10s, burn_rate: 2}\n"
        "evaluation: {tick: 1s, allowed_lateness: 2s}\n"
        "changes: {attribution_window: 30s}\n"
        f"kafka: {{bootstrap_servers: '{bootstrap}', topics: [{topic}], group_id: {group}}}\n"
        "http:\n"
        "  listen: 127.0.0.1:0\n"
        "  tokens:\n"
        f"    - {{name: deployer, scopes: [admin], sha256: {token_digest(ADMIN).hex()}}}\n"
        f"    - {{name: viewer, scopes: [read], sha256: {token_digest(READER).hex()}}}\n"
        f"audit: {{path: '{tmp / 'audit.jsonl'}'}}\n"
    )
    path.write_text(text)
    return hashlib.sha256(text.encode()).hexdigest()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def reload(session: aiohttp.ClientSession, url: str, token: str | None, status: int) -> Any:
    async with session.post(f"{url}/-/reload", headers=auth(token) if token else None) as resp:
        assert resp.status == status, await resp.text()
        assert resp.content_type == "application/json"
        return await resp.json()


async def metrics(session: aiohttp.ClientSession, url: str) -> dict[str, list[Any]]:
    async with session.get(f"{url}/metrics", headers=auth(READER)) as resp:
        assert resp.status == 200
        text = await resp.text()
    out: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append(s)
    return out


def slo_series(samples: dict[str, list[Any]]) -> set[str]:
    return {s.labels["slo"] for group in samples.values() for s in group if "slo" in s.labels}


@pytest.mark.asyncio
async def test_reload_over_http_keeps_unchanged_slos_and_refuses_bad_files(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    path = tmp_path / "burnrate.yaml"
    group = f"g-{uuid.uuid4().hex[:10]}"
    first = write(path, BEFORE, kafka_bootstrap, unique_topic, group, tmp_path)
    rt = Runtime(
        decode_config_file(path),
        listen="127.0.0.1:0",
        sinks=[],
        config_path=str(path),
        config_source=path.read_bytes(),
    )
    fired: list[tuple[str, str]] = []
    rt.subscribe(lambda trs: fired.extend((tr.slo, tr.state) for tr in trs))
    traffic = Traffic()
    running = Running(rt)
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        traffic.flowing(kafka_bootstrap, unique_topic),
    ):
        try:
            await running.listening()
            url = rt.http.url

            async def paging() -> bool:
                return ("shop-avail", "firing") in fired and ("shop-strict", "firing") in fired

            await wait_async(paging, "the shop pages")
            assert (await metrics(session, url))["burnrate_config_info"][0].labels == {
                "sha256": first
            }

            await reload(session, url, None, 401)
            await reload(session, url, READER, 403)

            write(
                path,
                AFTER.replace("objective: 99", "objective: 100"),
                kafka_bootstrap,
                unique_topic,
                group,
                tmp_path,
            )
            bad = await reload(session, url, ADMIN, 400)
            assert any(e.startswith("$.slos[0].objective:") for e in bad["errors"]), bad
            write(path, AFTER, kafka_bootstrap, unique_topic, "another-group", tmp_path)
            moved = await reload(session, url, ADMIN, 400)
            assert moved["errors"] == ["$.kafka.group_id: changed; needs a restart"]
            # the old config serves on
            assert rt.config_sha256 == first
            body = await get_json_auth(session, f"{url}/v1/slos/blog-avail")
            assert body["name"] == "blog-avail"

            i = rt.evaluator.names.index("shop-avail")
            kept_events = int(rt.evaluator.counts().events_total[i])
            since = float(rt.evaluator.alerts().firing_since_s[i, 0])
            assert kept_events > 0
            fired.clear()
            second = write(path, AFTER, kafka_bootstrap, unique_topic, group, tmp_path)
            done = await reload(session, url, ADMIN, 200)
            assert done["result"] == "ok"
            assert (done["kept"], done["added"], done["removed"], done["reset"]) == (
                ["shop-avail"],
                ["blog-fresh"],
                ["blog-avail"],
                ["shop-strict"],
            )
            assert (done["sha256"], done["previous_sha256"]) == (second, first)
            # the changed SLO's page ends with the old definition
            assert ("shop-strict", "resolved") in fired

            view = await get_json_auth(session, f"{url}/v1/slos/shop-avail")
            assert view["events_total"] >= kept_events
            assert view["alerts"]["page"]["firing"] is True
            i = rt.evaluator.names.index("shop-avail")
            assert float(rt.evaluator.alerts().firing_since_s[i, 0]) == since
            assert await status_of(session, f"{url}/v1/slos/blog-avail") == 404
            fresh = await get_json_auth(session, f"{url}/v1/slos/shop-strict")
            assert fresh["events_total"] < kept_events

            async def strict_pages_again() -> bool:
                return ("shop-strict", "firing") in fired

            await wait_async(strict_pages_again, "the changed SLO pages under its new objective")
            assert ("shop-avail", "firing") not in fired  # kept: never fired again

            samples = await metrics(session, url)
            assert slo_series(samples) == {"shop-avail", "shop-strict", "blog-fresh"}
            assert samples["burnrate_config_info"][0].labels == {"sha256": second}
            reloads = {
                s.labels["result"]: s.value for s in samples["burnrate_config_reloads_total"]
            }
            assert reloads == {"ok": 1.0, "rejected": 2.0}
        finally:
            await running.shutdown()

    entries = [
        parse_line(line) for line in (tmp_path / "audit.jsonl").read_bytes().splitlines(True)
    ]
    rejected = [e for e in entries if e.action == "config.reload_rejected"]
    assert [e.actor for e in rejected] == ["deployer", "deployer"]
    [reloaded] = [e for e in entries if e.action == "config.reloaded"]
    assert reloaded.actor == "deployer"
    assert reloaded.details["sha256"] == second
    assert reloaded.details["previous_sha256"] == first
    assert reloaded.details["removed"] == ["blog-avail"]


async def get_json_auth(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url, headers=auth(READER)) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def status_of(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url, headers=auth(READER)) as resp:
        return resp.status


@pytest.mark.asyncio
async def test_sighup_reloads_a_running_burnrate_and_refuses_an_invalid_file(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    path = write_config(tmp_path / "burnrate.yaml", kafka_bootstrap, unique_topic)
    service = await Service.start(path)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        try:
            url = await service.url()

            async def names() -> list[str]:
                body = await get_json(session, f"{url}/v1/slos")
                return [s["name"] for s in body["slos"]]

            assert await names() == ["checkout-availability"]
            text = path.read_text()
            added = (
                "  - {name: search-availability, service: search, sli: availability,"
                " objective: 99}\n"
            )
            path.write_text(text.replace("slos:\n", "slos:\n" + added))
            service.proc.send_signal(signal.SIGHUP)

            async def reloaded() -> Any:
                return service.event("config_reloaded")

            event = await service.wait_for("the reload", reloaded, 30)
            assert event["actor"] == "signal"
            assert event["kept"] == ["checkout-availability"]
            assert event["added"] == ["search-availability"]
            assert await names() == ["search-availability", "checkout-availability"]

            path.write_text(path.read_text().replace("objective: 99}", "objective: 120}"))
            service.proc.send_signal(signal.SIGHUP)

            async def refused() -> Any:
                return service.event("config_reload_rejected")

            event = await service.wait_for("the refusal", refused, 30)
            assert any(e.startswith("$.slos[0].objective:") for e in event["errors"]), event
            assert await names() == ["search-availability", "checkout-availability"]
            code, _ = await service.terminate()
            assert code == 0, service.log()
        finally:
            await service.kill()
