"""`/readyz` follows the broker: 503 with a reason while it is gone, 200 once it is back.

The test owns its broker (an embedded Tansu on a fixed port), even when
KAFKA_BOOTSTRAP_SERVERS points at a cluster: it has to stop it and bring it back.
Tansu keeps everything in memory, so the broker that comes back is empty: the test
re-creates the topic, as an operator would after losing a broker's data, and the
engine has to find its way back on its own (reconnect, rejoin its group, fetch).
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from engine.adapters.http.server import READY_FETCH_AGE_S
from engine.adapters.kafka.embedded_broker import EmbeddedBroker, create_topic
from engine.runtime.service import Runtime
from tests.integration.test_run import Running
from tests.integration.test_source import counts, make_config, produce, records_for, wait_until

UNREADY_DEADLINE_S = READY_FETCH_AGE_S + 30.0
READY_DEADLINE_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        yield s


@pytest_asyncio.fixture
async def broker() -> AsyncIterator[EmbeddedBroker]:
    b = EmbeddedBroker(port=free_port())
    await asyncio.to_thread(b.start)
    try:
        yield b
    finally:
        await asyncio.to_thread(b.stop)


async def readyz(session: aiohttp.ClientSession, rt: Runtime) -> tuple[int, dict[str, Any]]:
    async with session.get(f"{rt.http.url}/readyz") as resp:
        body: dict[str, Any] = await resp.json()
        return resp.status, body


async def wait_readyz(
    session: aiohttp.ClientSession, rt: Runtime, want: int, deadline_s: float
) -> dict[str, Any]:
    """Poll /readyz until it answers `want`; its body."""
    t0 = time.monotonic()
    seen: list[str] = []
    while True:
        status, body = await readyz(session, rt)
        if status == want:
            return body
        if not seen or seen[-1] != body.get("reason"):
            seen.append(str(body.get("reason")))
        if time.monotonic() - t0 > deadline_s:
            pytest.fail(f"/readyz not {want} within {deadline_s:.0f}s; reasons seen: {seen}")
        await asyncio.sleep(0.2)


@pytest.mark.asyncio
async def test_readyz_unready_while_the_broker_is_down_and_ready_once_it_is_back(
    broker: EmbeddedBroker, session: aiohttp.ClientSession
) -> None:
    bootstrap = broker.bootstrap_servers
    topic = f"it-readiness-{uuid.uuid4().hex[:8]}"
    await create_topic(bootstrap, topic, 1)
    rt = Runtime(make_config(bootstrap, topic), listen="127.0.0.1:0", sinks=[])
    running = Running(rt)
    try:
        await running.listening()
        body = await wait_readyz(session, rt, 200, READY_DEADLINE_S)
        assert body["ready"] is True
        assert body["partitions"] == [f"{topic}:0"]
        now = time.time()
        await produce(
            bootstrap, topic, records_for(range(100), "json", batch=1, now=now), partitions=1
        )
        await wait_until(lambda: counts(rt.evaluator)[0] >= 100, "100 events")

        stopping = time.monotonic()
        await asyncio.to_thread(broker.stop)
        body = await wait_readyz(session, rt, 503, UNREADY_DEADLINE_S)
        assert body["ready"] is False
        assert "broker unreachable" in body["reason"], body
        # not before the fetch-age limit: a short broker hiccup must not flap readiness
        assert time.monotonic() - stopping >= READY_FETCH_AGE_S - 1.0

        await asyncio.to_thread(broker.start)
        assert broker.bootstrap_servers == bootstrap
        await create_topic(bootstrap, topic, 1)  # the new broker is empty
        body = await wait_readyz(session, rt, 200, READY_DEADLINE_S)
        assert body["ready"] is True
        assert body["partitions"] == [f"{topic}:0"]
        # ready means consuming: new events are counted
        now = time.time()
        await produce(
            bootstrap, topic, records_for(range(100, 150), "json", batch=1, now=now), partitions=1
        )
        await wait_until(lambda: counts(rt.evaluator)[0] >= 150, "50 more events")
    finally:
        elapsed = await running.shutdown()
    assert elapsed < 10
