"""The service (`Runtime`) against a real broker and over real HTTP on port 0."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from engine.adapters.http.metrics import EngineMetrics
from engine.adapters.http.server import HttpServer
from engine.adapters.kafka.embedded_broker import EmbeddedBroker, create_topic
from engine.core.evaluator import Evaluator, Transition
from engine.runtime.service import Runtime
from tests.integration.test_source import (
    counts,
    encode,
    expected,
    make_config,
    produce,
    records_for,
    wait_until,
)

DEADLINE_S = 60.0


class ListSink:
    """A sink (engine.adapters.alerts.sinks.Sink) that keeps what it is given."""

    def __init__(self) -> None:
        self.got: list[Transition] = []

    async def start(self) -> None:
        pass

    async def deliver(self, tr: Transition) -> None:
        self.got.append(tr)

    async def close(self, timeout_s: float) -> None:
        pass

    def stats(self) -> dict[tuple[str, str], int]:
        return {}


class Running:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(runtime.run(self.stop))

    async def listening(self) -> None:
        await wait_until(lambda: self.runtime.http.port != 0 or self.task.done(), "HTTP")
        if self.task.done():
            await self.task  # raises what ended it
            pytest.fail("the runtime stopped before listening")

    async def shutdown(self) -> float:
        t0 = time.monotonic()
        self.stop.set()
        async with asyncio.timeout(15):
            await self.task
        return time.monotonic() - t0


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as resp:
        return resp.status, await resp.text()


async def wait_ready(session: aiohttp.ClientSession, rt: Runtime) -> None:
    end = time.monotonic() + DEADLINE_S
    while True:
        status, body = await get(session, f"{rt.http.url}/readyz")
        if status == 200:
            return
        if time.monotonic() > end:
            pytest.fail(f"/readyz never became ready: {body}")
        await asyncio.sleep(0.1)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def sample(
    data: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return data[(name, frozenset(labels.items()))]


@pytest.mark.asyncio
async def test_metrics_readiness_and_alerts_over_http(
    kafka_bootstrap: str, unique_topic: str, http: aiohttp.ClientSession
) -> None:
    cfg = make_config(kafka_bootstrap, unique_topic)
    sink = ListSink()
    rt = Runtime(cfg, listen="127.0.0.1:0", sinks=[sink])
    running = Running(rt)
    try:
        await running.listening()
        assert (await get(http, f"{rt.http.url}/healthz"))[0] == 200
        await wait_ready(http, rt)
        # an outage: every request of the last 30 s failed, so the 1h/5m page row burns at 100x
        now = time.time()
        values = [
            encode(
                {"service": "checkout", "status": 503, "latency_ms": 10, "ts": now - 30 + i * 0.01},
                "json",
            )
            for i in range(3000)
        ]
        await produce(kafka_bootstrap, unique_topic, values)
        await wait_until(lambda: counts(rt.evaluator)[0] >= 3000, "3000 events")
        await wait_until(
            lambda: any(t.slo == "checkout-availability" and t.state == "firing" for t in sink.got),
            "a firing transition delivered to the sink",
        )
        await wait_until(lambda: rt.source.status().lag != {}, "a lag reading")
        # the body is re-rendered per evaluation tick: wait for one rendered after a tick
        # that shows the events (a fast broker can deliver them all before the first tick)
        end = time.monotonic() + DEADLINE_S
        while True:
            status, text = await get(http, f"{rt.http.url}/metrics")
            assert status == 200
            data = samples(text)
            key = ("burnrate_slo_events_total", frozenset({("slo", "checkout-availability")}))
            ticks = data.get(("burnrate_evaluation_duration_seconds_count", frozenset()), 0)
            if (data.get(key) == 3000 and ticks >= 1) or time.monotonic() > end:
                break
            await asyncio.sleep(0.2)
        slo = "checkout-availability"
        assert sample(data, "burnrate_slo_events_total", slo=slo) == 3000
        assert sample(data, "burnrate_slo_bad_events_total", slo=slo) == 3000
        assert sample(data, "burnrate_slo_objective_ratio", slo=slo) == pytest.approx(0.99)
        assert sample(data, "burnrate_slo_error_ratio", slo=slo, window="1h") == 1.0
        assert sample(data, "burnrate_slo_burn_rate", slo=slo, window="5m") == pytest.approx(100)
        assert sample(data, "burnrate_slo_error_budget_remaining_ratio", slo=slo) < 0
        assert sample(data, "burnrate_alert_firing", slo=slo, severity="page") == 1
        assert sample(data, "burnrate_records_consumed_total") == 3000
        assert sample(data, "burnrate_events_unmatched_total") == 0
        assert sample(data, "burnrate_evaluation_duration_seconds_count") >= 1
        assert sample(data, "burnrate_fetch_batch_records_sum") == 3000
        assert any(name == "burnrate_consumer_lag" for name, _ in data)
        assert any(name == "burnrate_event_time_lag_seconds" for name, _ in data)
        # the latency SLO saw only fast requests... that all failed: bad too, by default
        assert sample(data, "burnrate_slo_bad_events_total", slo="checkout-latency") == 3000
    finally:
        elapsed = await running.shutdown()
    assert elapsed < 10
    assert rt.source.status().running is False


@pytest.mark.asyncio
async def test_readyz_is_503_with_a_reason_when_not_consuming(
    http: aiohttp.ClientSession,
) -> None:
    cfg = make_config("127.0.0.1:9", "unused")
    ev = Evaluator(cfg)
    server = HttpServer("127.0.0.1:0", EngineMetrics(ev, lambda: None), lambda: None)
    await server.start()
    try:
        async with http.get(f"{server.url}/readyz") as resp:
            assert resp.status == 503
            body = await resp.json()
        assert body == {"ready": False, "reason": "not consuming"}
        status, text = await get(http, f"{server.url}/metrics")
        assert status == 200
        data = samples(text)
        assert sample(data, "burnrate_slo_events_total", slo="checkout-availability") == 0
        # no data, no series (not NaN)
        assert not any(name == "burnrate_slo_burn_rate" for name, _ in data)
        assert not any(name == "burnrate_slo_error_budget_remaining_ratio" for name, _ in data)
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_two_instances_split_partitions_and_count_every_event(
    kafka_bootstrap: str, unique_topic: str, http: aiohttp.ClientSession
) -> None:
    group = f"g-{uuid.uuid4().hex[:10]}"
    cfg = make_config(kafka_bootstrap, unique_topic, group=group)
    a = Runtime(cfg, listen="127.0.0.1:0", sinks=[])
    b = Runtime(cfg, listen="127.0.0.1:0", sinks=[])
    ra, rb = Running(a), Running(b)
    try:
        await wait_until(
            lambda: (
                bool(a.source.status().assigned)
                and bool(b.source.status().assigned)
                and len(a.source.status().assigned) + len(b.source.status().assigned) == 3
            ),
            "both members with partitions",
        )
        assert not set(a.source.status().assigned) & set(b.source.status().assigned)
        now = time.time()
        await produce(
            kafka_bootstrap, unique_topic, records_for(range(1500), "json", batch=1, now=now)
        )
        await wait_until(
            lambda: counts(a.evaluator)[0] + counts(b.evaluator)[0] >= 1500, "1500 events"
        )
    finally:
        await ra.shutdown()
        await rb.shutdown()
    total = tuple(x + y for x, y in zip(counts(a.evaluator), counts(b.evaluator), strict=True))
    assert total == expected(range(1500))


@pytest.mark.asyncio
async def test_shutdown_with_the_broker_gone_finishes_within_10s(
    http: aiohttp.ClientSession,
) -> None:
    with EmbeddedBroker() as broker:
        topic = f"it-shutdown-{uuid.uuid4().hex[:8]}"
        await create_topic(broker.bootstrap_servers, topic, 1)
        cfg = make_config(broker.bootstrap_servers, topic)
        rt = Runtime(cfg, listen="127.0.0.1:0", sinks=[])
        running = Running(rt)
        await running.listening()
        await wait_ready(http, rt)
        await produce(
            broker.bootstrap_servers,
            topic,
            records_for(range(50), "json", batch=1, now=time.time()),
            partitions=1,
        )
        await wait_until(lambda: counts(rt.evaluator)[0] >= 50, "50 events")
        broker.stop()
        elapsed = await running.shutdown()
    assert elapsed < 10


@pytest.mark.asyncio
async def test_a_taken_port_ends_the_start_and_the_join_begun_with_it(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    # the consumer starts joining before the HTTP server binds: when the bind fails,
    # run raises what it raised and leaves neither a joining task nor a consumer behind
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = make_config(kafka_bootstrap, unique_topic, session_timeout="2s")
        rt = Runtime(cfg, listen=f"127.0.0.1:{port}", sinks=[])
        with pytest.raises(OSError, match="in use"):
            async with asyncio.timeout(DEADLINE_S):
                await rt.run(asyncio.Event())
    assert not rt.started.is_set()
    assert rt.source.status().running is False
    assert rt.source._consumer is None
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "join"]
