"""End to end: Kafka in, a signed webhook out, through the whole service wiring.

Traffic with an outage at the current time goes to a real broker; the engine (the same
`Runtime` that `burnrate run` starts) consumes it and a real HTTP receiver must get a
signed `firing` notification for the page alert and later a `resolved` one, both
verifying with the Standard Webhooks verifier users import. The detection time (from
producing the first event that makes the alert condition true to receiving the
webhook) is printed; it is measured, not asserted (the benchmarks compare it).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import msgspec
import pytest
import pytest_asyncio
from aiohttp import ClientSession, web
from aiokafka import AIOKafkaProducer

from engine.adapters.alerts.signing import WebhookVerifier
from engine.core.config import parse_config
from engine.runtime.service import Runtime

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
RATE_PER_S = 200
GOOD_BEFORE_S = 5.0
OUTAGE_S = 3.0
FACTOR = 14.4
OBJECTIVE = 99.9


class Receiver:
    def __init__(self) -> None:
        self.got: list[tuple[float, dict[str, str], bytes]] = []
        self.changed = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append((time.time(), dict(request.headers), await request.read()))
        self.changed.set()
        return web.Response(status=204)

    async def wait_for(self, status: str, deadline_s: float) -> tuple[float, dict[str, str], bytes]:
        async with asyncio.timeout(deadline_s):
            while True:
                for item in self.got:
                    if json.loads(item[2])["status"] == status:
                        return item
                self.changed.clear()
                await self.changed.wait()


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    rcv = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rcv.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield rcv, f"http://127.0.0.1:{port}/hook"
    await runner.cleanup()


def config_yaml(bootstrap: str, topic: str, url: str) -> str:
    return f"""
slos:
  - {{name: pay-availability, service: pay, sli: availability, objective: {OBJECTIVE}, period: 1d}}
policy:
  - {{severity: page, long: 2m, short: 30s, burn_rate: {FACTOR}}}
evaluation: {{tick: 1s, allowed_lateness: 5s, future_limit: 1m}}
kafka: {{bootstrap_servers: "{bootstrap}", topics: [{topic}], group_id: e2e-{topic}}}
receivers:
  - {{type: webhook, url: "{url}", secret_env: E2E_WEBHOOK_SECRET, timeout: 5s}}
"""


@pytest.mark.asyncio
async def test_an_outage_pages_through_a_signed_webhook_and_resolves(
    kafka_bootstrap: str,
    unique_topic: str,
    receiver: tuple[Receiver, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rcv, url = receiver
    monkeypatch.setenv("E2E_WEBHOOK_SECRET", SECRET)
    cfg = parse_config(config_yaml(kafka_bootstrap, unique_topic, url))
    runtime = Runtime(cfg, listen="127.0.0.1:0")
    stop = asyncio.Event()
    run = asyncio.create_task(runtime.run(stop))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
    await producer.start()
    enc = msgspec.json.Encoder()
    sent = {"good": 0, "bad": 0}
    condition_true_at: float | None = None
    try:
        async with asyncio.timeout(60):
            await runtime.started.wait()

        async def send(seconds: float, bad: bool) -> None:
            nonlocal condition_true_at
            step = 0.05
            per_step = int(RATE_PER_S * step)
            end = time.time() + seconds
            while time.time() < end:
                for _ in range(per_step):
                    now = time.time()
                    value = enc.encode({"service": "pay", "ts": now, "status": 503 if bad else 200})
                    await producer.send(unique_topic, value)
                    sent["bad" if bad else "good"] += 1
                    total = sent["good"] + sent["bad"]
                    # Both windows hold everything sent so far (the test is shorter than
                    # the 30 s short window until the outage ends), so the condition is
                    # true from the first event that lifts the overall burn rate >= 14.4.
                    burn = sent["bad"] / total / (1 - OBJECTIVE / 100)
                    if condition_true_at is None and burn >= FACTOR:
                        condition_true_at = now
                await producer.flush()
                await asyncio.sleep(step)

        await send(GOOD_BEFORE_S, bad=False)
        await send(OUTAGE_S, bad=True)
        firing_task = asyncio.create_task(rcv.wait_for("firing", 60))
        keep_good = asyncio.create_task(send(60, bad=False))
        fired_at, fired_headers, fired_body = await firing_task
        resolved_at, resolved_headers, resolved_body = await rcv.wait_for("resolved", 90)
        keep_good.cancel()
        async with (
            ClientSession() as http,
            http.get(f"{runtime.http.url}/metrics") as resp,
        ):
            metrics = await resp.text()
    finally:
        stop.set()
        await producer.stop()
        await asyncio.wait_for(run, 15)

    verifier = WebhookVerifier([SECRET])
    for headers, body, at in (
        (fired_headers, fired_body, fired_at),
        (resolved_headers, resolved_body, resolved_at),
    ):
        verifier.verify(headers, body, now_s=at)
    fired = json.loads(fired_body)
    assert fired["version"] == "4"
    assert fired["status"] == "firing"
    alert = fired["alerts"][0]
    assert alert["labels"]["alertname"]
    assert alert["labels"]["slo"] == "pay-availability"
    assert alert["labels"]["service"] == "pay"
    assert alert["labels"]["severity"] == "page"
    assert (alert["labels"]["long_window"], alert["labels"]["short_window"]) == ("2m", "30s")
    resolved = json.loads(resolved_body)["alerts"][0]
    assert resolved["fingerprint"] == alert["fingerprint"]
    assert resolved["startsAt"] == alert["startsAt"]
    delivered = [
        line
        for line in metrics.splitlines()
        if line.startswith("burnrate_webhook_deliveries_total{") and 'outcome="delivered"' in line
    ]
    assert len(delivered) == 1
    assert float(delivered[0].rsplit(" ", 1)[1]) == 2.0
    assert condition_true_at is not None
    detection_s = fired_at - condition_true_at
    print(
        f"\ndetection: {detection_s:.2f} s from the first event that made the page condition "
        f"true to the signed webhook (tick 1 s); resolved {resolved_at - fired_at:.1f} s "
        f"after firing"
    )
