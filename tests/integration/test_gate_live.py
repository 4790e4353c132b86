"""The release gate live, against a real broker: one service has spent its budget, the
other is healthy; the API and `burnrate gate` (the console command, a process of its
own) say fail (exit 1) and pass (exit 0); an override flips the failing one to pass,
and survives a restart of the engine through the state file."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import aiohttp
import pytest

from engine.core.config import Config, parse_config
from engine.runtime.service import Runtime
from tests.integration.live import burnrate, get_json
from tests.integration.test_run import Running
from tests.integration.test_source import produce, wait_until


def config(bootstrap: str, topic: str, state: Path) -> Config:
    return parse_config(
        "slos:\n"
        "  - {name: shop-avail, service: shop, sli: availability, objective: 90}\n"
        "  - {name: blog-avail, service: blog, sli: availability, objective: 90}\n"
        f"kafka: {{bootstrap_servers: '{bootstrap}', topics: [{topic}],"
        f" group_id: g-{uuid.uuid4().hex[:10]}}}\n"
        "http: {listen: 127.0.0.1:0}\n"
        f"state: {{path: '{state}', interval: 1h}}\n"
    )


def records(now: float) -> list[bytes]:
    """100 events per service over 20 s ending 80 s ago: shop 30 failed (its 10% budget
    spent three times over), blog none."""
    out = []
    for i in range(100):
        ts = now - 100 + i * 0.2
        out.append(json.dumps({"service": "shop", "ts": ts, "status": 500 if i < 30 else 200}))
        out.append(json.dumps({"service": "blog", "ts": ts, "status": 200}))
    return [r.encode() for r in out]


async def gate_cli(url: str, service: str) -> tuple[int, str]:
    return await burnrate("gate", "--service", service, "--url", url)


@pytest.mark.asyncio
async def test_the_gate_fails_the_spent_service_passes_the_healthy_one_and_an_override_holds(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    cfg = config(kafka_bootstrap, unique_topic, tmp_path / "burnrate.state")
    await produce(kafka_bootstrap, unique_topic, records(time.time()))
    rt = Runtime(cfg, listen="127.0.0.1:0", sinks=[])
    running = Running(rt)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        try:
            await running.listening()
            url = rt.http.url
            decisions: dict[str, str] = {}

            def evaluated() -> bool:
                for service in ("shop", "blog"):
                    gate = rt.http.gates.gate(service)
                    decisions[service] = "" if gate is None else gate.decision
                return rt.evaluator.evaluated_at_s is not None and bool(
                    rt.evaluator.counts().events_total.sum() == 200
                )

            await wait_until(evaluated, "both services' events evaluated")
            shop = await get_json(session, f"{url}/v1/gates/shop")
            blog = await get_json(session, f"{url}/v1/gates/blog")
            assert (shop["decision"], blog["decision"]) == ("fail", "pass")
            assert shop["slos"][0]["error_budget_remaining_ratio"] == pytest.approx(-2.0)
            assert await gate_cli(url, "shop") == (
                1,
                "shop: fail\n"
                "  - shop-avail: error budget remaining -200% is at or below 0% -> fail\n"
                "  - shop-avail: error budget remaining -200% is below 25% -> warn\n"
                "  - shop-avail: ticket alert firing -> warn\n",
            )
            assert await gate_cli(url, "blog") == (0, "blog: pass\n")

            body = {"reason": "rollback of a bad deploy", "ttl": "1h", "ticket": "INC-42"}
            async with session.post(f"{url}/v1/gates/shop/override", json=body) as resp:
                assert resp.status == 201
                assert (await resp.json())["decision"] == "pass"
            code, text = await gate_cli(url, "shop")
            assert code == 0
            assert text.startswith(
                "shop: pass\n  - override: rollback of a bad deploy (ticket INC-42), expires in"
            )
            assert "; without it: fail\n" in text
            # saved at once, not at the next periodic save an hour away
            await wait_until(lambda: rt.state_saves >= 1, "the state saved after the override")
        finally:
            await running.shutdown()

        again = Runtime(cfg, listen="127.0.0.1:0", sinks=[])
        running = Running(again)
        try:
            await running.listening()
            await wait_until(again.started.is_set, "the engine started again")
            assert again.restored
            shop = await get_json(session, f"{again.http.url}/v1/gates/shop")
            assert shop["decision"] == "pass"
            assert shop["override"]["ticket"] == "INC-42"
            async with session.delete(f"{again.http.url}/v1/gates/shop/override") as resp:
                assert resp.status == 200
                assert (await resp.json())["decision"] == "fail"
        finally:
            await running.shutdown()
