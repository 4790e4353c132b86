"""The dashboards' PromQL against the real Prometheus: every panel and annotation query,
expanded as Grafana expands its variables, passes `promtool check rules` and, run by a
Prometheus scraping the engine (fed through the broker, a change posted), returns data.

The traffic makes every query have data: every SLO has bad events in every window (so
burn rates, budgets spent and times to exhaustion have series), alerts fire, and a
change of `checkout` is posted before Prometheus scrapes.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from engine.adapters.grafana.dashboards import OVERVIEW_FILE, build_dashboards, encode
from engine.core.config import Config, parse_config
from engine.runtime.service import Runtime
from tests.integration.live import post_json
from tests.integration.prometheus_server import PROMTOOL_BIN, require_binary, running_prometheus
from tests.integration.test_prometheus import get_json
from tests.integration.test_run import Running, wait_ready
from tests.integration.test_source import produce
from tests.unit.adapters.grafana.panels import Query, expansions, queries

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 90.0
N_EVENTS = 1200
CHANGES = [{"service": "checkout", "kind": "deploy"}, {"service": "pay", "kind": "config"}]
SLOS = """
slos:
  - {name: checkout-availability, service: checkout, sli: availability, objective: 99}
  - name: checkout-latency
    service: checkout
    sli: latency
    threshold_ms: 300
    objective: 99
    policy: [{severity: ticket, long: 2h, short: 10m, burn_rate: 4.5}]
  - {name: pay.api-availability, service: pay, sli: availability, objective: 99.5}
  - name: journey
    composite: [{slo: checkout-availability}, {slo: pay.api-availability}]
    objective: 99
budget_alerts: {}
budget_policy:
  - {budget_remaining_at_most: 0, decision: fail, escalate: [oncall]}
  - {alert_firing: ticket, decision: warn}
receivers: [{type: console, name: oncall}]
"""


def make_config(bootstrap: str = "127.0.0.1:9092", topic: str = "t") -> Config:
    return parse_config(
        SLOS + "kafka:\n"
        f"  bootstrap_servers: {bootstrap}\n"
        f"  topics: [{topic}]\n"
        f"  group_id: g-{uuid.uuid4().hex[:10]}\n"
        "http: {listen: 127.0.0.1:0}\n"
    )


def boards(config: Config) -> dict[str, dict[str, Any]]:
    return {name: encode(b) for name, b in build_dashboards(config, "prom").items()}


def expanded(all_boards: dict[str, dict[str, Any]]) -> list[tuple[Query, str]]:
    """Every query under every value of the variables it uses."""
    return [
        (q, expr)
        for q in queries(all_boards)
        for expr in dict.fromkeys(expansions(all_boards[q.dashboard], q.expr))
    ]


def committed_boards() -> dict[str, dict[str, Any]]:
    directory = ROOT / "docker" / "grafana" / "dashboards"
    return {p.name: json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))}


def test_every_query_parses_with_promtool(tmp_path: Path) -> None:
    """One recording rule per expanded query (the test config's dashboards and the
    committed docker ones), checked by `promtool check rules`."""
    promtool = require_binary(PROMTOOL_BIN)
    odd = parse_config(
        "slos:\n"
        "  - {name: a.b, service: 'we\"ird\\\\ (svc)|x*', sli: availability, objective: 99}\n"
        "  - {name: c, service: 'zürich.eu+1', sli: availability, objective: 99}\n"
        "  - {name: ac, composite: [{slo: a.b}, {slo: c}], objective: 99}\n"
    )
    assert odd.slos[0].service == 'we"ird\\\\ (svc)|x*'  # two backslashes
    pairs = expanded(boards(make_config())) + expanded(boards(odd)) + expanded(committed_boards())
    assert len(pairs) > 40
    rules = [{"record": f"dashboard:query_{i}", "expr": expr} for i, (_, expr) in enumerate(pairs)]
    path = tmp_path / "dashboards.rules.yml"
    path.write_bytes(msgspec.json.encode({"groups": [{"name": "dashboards", "rules": rules}]}))
    out = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules)} rules found" in out.stdout


def event(i: int, now: float) -> list[dict[str, object]]:
    """A checkout and a pay request, 80-100 s old: half of checkout fails, a third is
    slow, a quarter of pay fails."""
    ts = now - 100.0 + i * (20.0 / N_EVENTS)
    return [
        {
            "service": "checkout",
            "status": 500 if i % 2 == 0 else 200,
            "latency_ms": 900.0 if i % 3 == 0 else 20.0,
            "ts": ts,
        },
        {"service": "pay", "status": 503 if i % 4 == 0 else 200, "latency_ms": 10.0, "ts": ts},
    ]


@pytest.mark.asyncio
async def test_every_query_returns_data_from_prometheus_scraping_the_engine(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    cfg = make_config(kafka_bootstrap, unique_topic)
    all_boards = boards(cfg)
    pairs = expanded(all_boards)
    overview = [expr for q, expr in pairs if q.dashboard == OVERVIEW_FILE]
    assert len(overview) > 20  # every service and every window
    for metric in ("burnrate_budget_alert_firing", "burnrate_escalation_firing"):
        assert any(metric in expr for _, expr in pairs), metric
    rt = Runtime(cfg, listen="127.0.0.1:0", sinks=[])
    running = Running(rt)
    prom_dir = tmp_path / "prometheus"
    prom_dir.mkdir()
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        try:
            await running.listening()
            await wait_ready(http, rt)
            now = time.time()
            records = [msgspec.json.encode(event(i, now)) for i in range(N_EVENTS)]
            await produce(kafka_bootstrap, unique_topic, records)
            await settled(http, rt)
            for change in CHANGES:
                await post_json(http, f"{rt.http.url}/v1/changes", change)
            async with running_prometheus(prom_dir, [f"127.0.0.1:{rt.http.port}"], http) as prom:
                # the change scraped, and enough scrapes for rate() over a minute
                end = time.monotonic() + DEADLINE_S
                while (
                    len(await prom.query(http, "burnrate_changes_total")) < len(CHANGES)
                    or (await prom.scalar(http, "count_over_time(up[1m])") or 0) < 4
                ):
                    if time.monotonic() > end:
                        health = await prom.target_health(http)
                        pytest.fail(f"Prometheus never scraped the change: {health}")
                    await asyncio.sleep(0.5)
                empty = [
                    f"{q.dashboard}: {q.where}: {expr}"
                    for q, expr in pairs
                    if not await prom.query(http, expr)
                ]
                (annotation,) = [
                    q.expr
                    for q in queries(all_boards)
                    if q.where.startswith("annotation") and q.dashboard == OVERVIEW_FILE
                ]
                marks = await prom.query(http, annotation)
        finally:
            await running.shutdown()
    assert empty == [], "queries without data:\n" + "\n".join(empty)
    # one change mark per posted change, labelled for the annotation's title and tags
    assert sorted((m["metric"]["service"], m["metric"]["kind"]) for m in marks) == sorted(
        (c["service"], c["kind"]) for c in CHANGES
    )


async def settled(http: aiohttp.ClientSession, rt: Runtime) -> None:
    """Every event counted and inside the 5m window of the last evaluation, and the
    alerts firing."""
    end = time.monotonic() + DEADLINE_S
    while True:
        view = await get_json(http, f"{rt.http.url}/v1/slos/checkout-availability")
        windows = {w["window"]: w for w in view["windows"]}
        if windows.get("5m", {}).get("total") == N_EVENTS and view["alerts"]["page"]["firing"]:
            return
        if time.monotonic() > end:
            pytest.fail(f"the engine never counted {N_EVENTS} events and paged: {view}")
        await asyncio.sleep(0.2)
