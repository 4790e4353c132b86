"""Incidents live, against a real broker: `burnrate run` (the Runtime) with `incidents:`
on SQLite while one service fails. The page opens an incident that the API and
`burnrate incidents` (a process of its own) list, with an onset before it opened; it
is acknowledged (once: a second acknowledgement changes nothing); the engine restarts
and the incident is still there and still open; the service recovers, the page
resolves and the incident closes after the quiet period, in the store too."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from engine.core.config import Config, parse_config
from engine.runtime.service import Runtime
from tests.integration.live import burnrate, get_json, post_json
from tests.integration.test_run import Running
from tests.integration.test_source import wait_until
from tests.unit.runtime.test_incidents import stored

QUIET_S = 5.0


def config(bootstrap: str, topic: str, tmp: Path) -> Config:
    """A page when over 20% of the last 10 s and 30 s failed; 1 s ticks, 2 s lateness,
    so event time follows the wall clock closely and the test takes seconds."""
    return parse_config(
        "slos:\n"
        "  - {name: shop-avail, service: shop, sli: availability, objective: 90}\n"
        "  - {name: blog-avail, service: blog, sli: availability, objective: 90}\n"
        "policy:\n"
        "  - {severity: page, long: 30s, short: 10s, burn_rate: 2}\n"
        "evaluation: {tick: 1s, allowed_lateness: 2s}\n"
        f"kafka: {{bootstrap_servers: '{bootstrap}', topics: [{topic}],"
        f" group_id: g-{uuid.uuid4().hex[:10]}}}\n"
        "http: {listen: 127.0.0.1:0}\n"
        f"state: {{path: '{tmp / 'burnrate.state'}', interval: 1h}}\n"
        f"incidents: {{path: '{tmp / 'incidents.db'}', quiet_period: {QUIET_S:g}s}}\n"
    )


class Traffic:
    """Events of both services at the wall clock, ten a half second: shop's fail while
    `failing`, blog's never do. Each is also kept as a JSON line in `lines` (the
    recording a replay of the same events reads)."""

    def __init__(self, *, failing: bool = True) -> None:
        self.failing = failing
        self.lines: list[str] = []

    @contextlib.asynccontextmanager
    async def flowing(self, bootstrap: str, topic: str) -> AsyncIterator[None]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        await producer.start()
        task = asyncio.create_task(self._send(producer, topic))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await producer.stop()

    async def _send(self, producer: AIOKafkaProducer, topic: str) -> None:
        while True:
            now = time.time()
            for i in range(5):
                for event in (
                    {"service": "shop", "ts": now, "status": 500 if self.failing else 200},
                    {"service": "blog", "ts": now, "status": 200},
                ):
                    line = json.dumps(event)
                    await producer.send(topic, line.encode(), partition=i % 2)
                    self.lines.append(line)
            await producer.flush()
            await asyncio.sleep(0.5)


async def incidents_cli(url: str, *argv: str) -> tuple[int, str]:
    return await burnrate("incidents", "--url", url, *argv)


async def listed(session: aiohttp.ClientSession, url: str, query: str = "") -> list[Any]:
    body = await get_json(session, f"{url}/v1/incidents{query}")
    return body["incidents"]  # type: ignore[no-any-return]


async def metric(session: aiohttp.ClientSession, url: str, name: str) -> dict[str, float]:
    async with session.get(f"{url}/metrics") as resp:
        text = await resp.text()
    return {
        json.dumps(s.labels, sort_keys=True): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name
    }


@pytest.mark.asyncio
async def test_an_incident_opens_is_acknowledged_survives_a_restart_and_closes(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    cfg = config(kafka_bootstrap, unique_topic, tmp_path)
    traffic = Traffic()
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        traffic.flowing(kafka_bootstrap, unique_topic),
    ):
        rt = Runtime(cfg, listen="127.0.0.1:0", sinks=[])
        running = Running(rt)
        try:
            await running.listening()
            url = rt.http.url
            found: list[Any] = []

            async def opened() -> bool:
                found[:] = await listed(session, url, "?state=open")
                return bool(found)

            await wait_async(opened, "an open incident")
            [inc] = found
            assert (inc["service"], inc["slos"]) == ("shop", ["shop-avail"])
            assert inc["onset_at"] < inc["opened_at"]
            assert inc["time_to_detect_s"] == inc["opened_at"] - inc["onset_at"] > 0
            assert inc["closed_at"] is None
            assert [a["severity"] for a in inc["alerts"]] == ["page"]

            code, out = await incidents_cli(url)
            assert code == 0, out
            assert inc["id"] in out
            assert out.splitlines()[1].split()[1:3] == ["shop", "open"]
            code, out = await incidents_cli(url, "--format", "json", "--state", "open")
            assert code == 0, out
            assert [i["id"] for i in json.loads(out)["incidents"]] == [inc["id"]]

            ack_url = f"{url}/v1/incidents/{inc['id']}/acknowledge"
            acked = await post_json(session, ack_url, {"by": "alice"}, status=200)
            assert acked["acknowledged_by"] == "alice"
            assert acked["time_to_acknowledge_s"] >= 0
            again = await post_json(session, ack_url, {"by": "bob"}, status=200)
            assert (again["acknowledged_by"], again["acknowledged_at"]) == (
                "alice",
                acked["acknowledged_at"],
            )

            assert await metric(session, url, "burnrate_incidents_open") == {
                '{"service": "blog"}': 0.0,
                '{"service": "shop"}': 1.0,
            }
            ttd = await metric(session, url, "burnrate_incident_time_to_detect_seconds_count")
            assert ttd == {"{}": 1.0}
        finally:
            await running.shutdown()

        again_rt = Runtime(cfg, listen="127.0.0.1:0", sinks=[])
        running = Running(again_rt)
        try:
            await running.listening()
            url = again_rt.http.url
            # read back from the store at start: still open, still acknowledged
            [kept] = await listed(session, url)
            assert (kept["id"], kept["state"]) == (inc["id"], "open")
            assert kept["acknowledged_by"] == "alice"
            await wait_until(again_rt.started.is_set, "the engine started again")
            assert again_rt.restored

            traffic.failing = False  # shop recovers: the page resolves, quiet follows
            closed: list[Any] = []

            async def is_closed() -> bool:
                closed[:] = await listed(session, url, "?state=closed")
                return bool(closed)

            await wait_async(is_closed, "the incident closed", deadline_s=90)
            [done] = closed
            assert done["id"] == inc["id"]
            assert done["closed_at"] == done["resolved_at"] + QUIET_S
            assert done["acknowledged_by"] == "alice"
            assert [e["kind"] for e in done["timeline"]][-1] == "closed"
            assert await listed(session, url, "?state=open") == []
        finally:
            await running.shutdown()

    [kept] = await stored(tmp_path / "incidents.db")
    assert (kept.id, kept.state, kept.acknowledged_by) == (inc["id"], "closed", "alice")


async def wait_async(check: Any, what: str, deadline_s: float = 60.0) -> None:
    end = time.monotonic() + deadline_s
    while not await check():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)
