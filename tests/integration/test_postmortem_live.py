"""Postmortems live and offline of the same events, against a real broker: `burnrate
run` (the Runtime) while one service fails for a while; once its incident has closed,
`burnrate postmortem --incident` (a process of its own) asks the engine, which counts
from its window rings; then the events the test sent, recorded as a file, are replayed
by `burnrate postmortem --config --events`. Both find the same incident with the same
numbers: a 10-minute window keeps a ring at the tick's resolution (1 s) reaching back
past the onset, so the engine's counts are as exact as the replay's."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from engine.core.config import Config, parse_config
from engine.runtime.service import Runtime
from tests.integration.live import burnrate, get_json
from tests.integration.test_incidents_live import Traffic, wait_async
from tests.integration.test_run import Running

QUIET_S = 5.0
SLOS = (
    "slos:\n"
    "  - {name: shop-avail, service: shop, sli: availability, objective: 90}\n"
    "  - {name: blog-avail, service: blog, sli: availability, objective: 90}\n"
    "policy:\n"
    "  - {severity: page, long: 30s, short: 10s, burn_rate: 2}\n"
    # never fires (a burn of 9 over 10 minutes); its window keeps a 1 s ring 10 min long
    "  - {severity: ticket, long: 10m, short: 1m, burn_rate: 9}\n"
    "evaluation: {tick: 1s, allowed_lateness: 2s}\n"
    f"incidents: {{quiet_period: {QUIET_S:g}s}}\n"
)


def config(bootstrap: str, topic: str, tmp: Path) -> Config:
    return parse_config(
        SLOS[: SLOS.index("incidents:")]
        + f"incidents: {{quiet_period: {QUIET_S:g}s, path: '{tmp / 'incidents.db'}'}}\n"
        f"kafka: {{bootstrap_servers: '{bootstrap}', topics: [{topic}],"
        f" group_id: g-{uuid.uuid4().hex[:10]}}}\n"
        "http: {listen: 127.0.0.1:0}\n"
    )


def counted(lines: list[str], service: str, start: float, end: float) -> tuple[int, int]:
    events = [json.loads(line) for line in lines]
    inside = [e for e in events if e["service"] == service and start < e["ts"] <= end]
    return len(inside), sum(e["status"] == 500 for e in inside)


@pytest.mark.asyncio
async def test_live_and_offline_postmortems_of_the_same_events_agree(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    cfg = config(kafka_bootstrap, unique_topic, tmp_path)
    traffic = Traffic(failing=False)
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        traffic.flowing(kafka_bootstrap, unique_topic),
    ):
        rt = Runtime(cfg, listen="127.0.0.1:0", sinks=[])
        running = Running(rt)
        try:
            await running.listening()
            url = rt.http.url
            await asyncio.sleep(8)  # some good traffic before the outage
            traffic.failing = True
            found: list[Any] = []

            async def state(which: str) -> bool:
                body = await get_json(session, f"{url}/v1/incidents?state={which}")
                found[:] = body["incidents"]
                return bool(found)

            await wait_async(lambda: state("open"), "an open incident")
            await asyncio.sleep(5)
            traffic.failing = False
            await wait_async(lambda: state("closed"), "the incident closed", deadline_s=90)
            [inc] = found
            await asyncio.sleep(3)  # events up to the close are in, lateness included

            code, out = await burnrate(
                "postmortem", "--incident", inc["id"], "--url", url, "--format", "json"
            )
            assert code == 0, out
            live = json.loads(out)
            md = tmp_path / "live" / "pm.md"
            md.parent.mkdir()
            code, out = await burnrate(
                "postmortem", "--incident", inc["id"], "--url", url, "--output", str(md)
            )
            assert (code, out) == (0, "")
            code, out = await burnrate("postmortem", "--incident", "1-nosuch", "--url", url)
            assert code == 1, out
        finally:
            await running.shutdown()

    assert live["source"] == "live"
    [pm] = live["incidents"]
    assert pm["id"] == inc["id"]
    [slo] = pm["slos"]
    assert slo["resolution_s"] == 1
    # the engine's numbers are the exact counts of the events it was sent
    assert (slo["total_events"], slo["bad_events"]) == counted(
        traffic.lines, "shop", pm["impact_start_s"], pm["impact_end_s"]
    )
    assert slo["bad_events"] > 0
    assert [p.name for p in md.parent.glob("*.png")] == [f"pm-{inc['id']}-shop-avail.png"]
    assert "## Root cause" in md.read_text()

    events = tmp_path / "recorded.jsonl"
    events.write_text("".join(line + "\n" for line in traffic.lines))
    cfg_file = tmp_path / "slo.yaml"
    cfg_file.write_text(SLOS)
    code, out = await burnrate(
        "postmortem",
        "--config",
        str(cfg_file),
        "--events",
        str(events),
        "--format",
        "json",
        "--service",
        "shop",
    )
    assert code == 0, out
    offline = json.loads(out)
    assert offline["source"] == "replay"
    [again] = offline["incidents"]
    for key in ("id", "opened_at", "closed_at", "impact_start_s", "impact_end_s", "slos"):
        assert again[key] == pm[key], key
    assert again["detection"] == {**pm["detection"], "acknowledged_at": None}
    assert math.isclose(
        slo["error_budget_consumed_ratio"], again["slos"][0]["error_budget_consumed_ratio"]
    )
