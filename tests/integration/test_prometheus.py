"""`/metrics` against the real Prometheus tools: promtool's linter and a scraping server.

The engine runs as the service does (Runtime, HTTP on port 0, a real broker); the
traffic is a known mix of good, failed, client-error and slow requests plus records
that must be rejected, every event carrying payload values that must never become
label values.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from engine.adapters.kafka.changes import REJECT_REASON as CHANGE_REJECT_REASON
from engine.core.budget_alerts import ALERTNAMES
from engine.core.config import Config, parse_config
from engine.core.decode import DECODE_REASONS, TIME_REASONS
from engine.core.durations import format_duration
from engine.runtime.service import Runtime
from tests.integration.prometheus_server import JOB, promtool_check_metrics, running_prometheus
from tests.integration.test_run import Running, wait_ready
from tests.integration.test_source import produce, wait_until

DEADLINE_S = 60.0
SLO = "checkout-availability"
N_EVENTS = 2000
MARKER = "payload-marker-7f3a"
"""Appears in event payloads (operation, status words, unknown fields, an unknown service)
and must appear nowhere in the exposition."""
ALLOWED_LABELS = frozenset(
    {"slo", "window", "severity", "reason", "topic", "partition"}
    # governance and incidents: a configured service, an enumerated decision or budget
    # alert, a config path, and a change's kind (checked against a pattern, at most 50
    # kinds kept)
    | {"service", "decision", "alert", "policy_row", "kind"}
)


def make_config(
    bootstrap: str,
    topic: str,
    *,
    token_file: Path | None = None,
    incidents_db: Path | None = None,
) -> Config:
    auth = f"  auth_token_file: {token_file}\n" if token_file else ""
    incidents = f"incidents: {{path: '{incidents_db}'}}\n" if incidents_db else ""
    return parse_config(
        "slos:\n"
        f"  - {{name: {SLO}, service: checkout, sli: availability, objective: 99,"
        " labels: {team: payments}}\n"
        "  - {name: checkout-latency, service: checkout, sli: latency, threshold_ms: 300,"
        " objective: 99.5, period: 7d}\n"
        "kafka:\n"
        f"  bootstrap_servers: {bootstrap}\n"
        f"  topics: [{topic}]\n"
        f"  group_id: g-{uuid.uuid4().hex[:10]}\n"
        "http:\n"
        "  listen: 127.0.0.1:0\n"
        f"{auth}"
        f"{incidents}"
    )


def event(i: int, now: float) -> dict[str, object]:
    """1 in 20 failed (5xx), 1 in 13 a client error (good), 1 in 7 slow; all 80-100 s old,
    so the runtime's evaluation time (wall clock - allowed lateness) is past them at once."""
    status: int | str = 500 if i % 20 == 0 else 404 if i % 13 == 0 else 200
    return {
        "service": "checkout",
        "operation": f"GET /items/{MARKER}-{i % 3}",
        "status": status,
        "latency_ms": 900.0 if i % 7 == 0 else 25.0,
        "ts": now - 100.0 + i * 0.01,
        "user": f"{MARKER}-user-{i}",
        "trace_id": uuid.uuid4().hex,
    }


def expected_counts() -> dict[str, tuple[int, int]]:
    avail_bad = sum(1 for i in range(N_EVENTS) if i % 20 == 0)
    lat_bad = sum(1 for i in range(N_EVENTS) if i % 7 == 0 or i % 20 == 0)
    return {SLO: (N_EVENTS, avail_bad), "checkout-latency": (N_EVENTS, lat_bad)}


def traffic(now: float) -> list[bytes]:
    """Single-event and batched records, then records that must be rejected or unmatched."""
    enc = msgspec.json.encode
    single = [enc(event(i, now)) for i in range(N_EVENTS // 2)]
    batched = [
        enc([event(i, now) for i in range(k, min(k + 50, N_EVENTS))])
        for k in range(N_EVENTS // 2, N_EVENTS, 50)
    ]
    poison = [
        f'{{"service": "checkout", "status": "{MARKER}'.encode(),  # malformed JSON
        enc({"service": 5, "note": MARKER}),  # wrong type
        enc({"service": "checkout", "latency_ms": -1, "note": MARKER}),  # bad value
        enc({"operation": MARKER}),  # no service
        enc({"service": f"{MARKER}-svc", "ts": now - 90, "status": MARKER}),  # no SLO
    ]
    return single + batched + poison


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def get_json(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> Any:
    async with session.get(url, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def settled_view(
    session: aiohttp.ClientSession, rt: Runtime, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """Wait until every event is counted and inside the windows, then for one more
    evaluation tick, so that every /metrics body rendered from now on is final."""
    end = time.monotonic() + DEADLINE_S
    url = f"{rt.http.url}/v1/slos/{SLO}"
    while True:
        view = await get_json(session, url, headers)
        windows = {w["window"]: w for w in view["windows"]}
        if view["events_total"] == N_EVENTS and windows["5m"]["total"] == N_EVENTS:
            break
        if time.monotonic() > end:
            pytest.fail(f"the engine never counted {N_EVENTS} events: {view}")
        await asyncio.sleep(0.1)
    generation = rt.metrics.generation
    await wait_until(lambda: rt.metrics.generation > generation, "an evaluation tick")
    view = await get_json(session, url, headers)
    assert view["events_total"] == N_EVENTS
    return view  # type: ignore[no-any-return]


@pytest.mark.asyncio
async def test_metrics_pass_promtool_and_labels_carry_no_payload_values(
    kafka_bootstrap: str, unique_topic: str, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    cfg = make_config(kafka_bootstrap, unique_topic, incidents_db=tmp_path / "incidents.db")
    rt = Runtime(cfg, listen="127.0.0.1:0", sinks=[])
    running = Running(rt)
    try:
        await running.listening()
        await wait_ready(http, rt)
        await produce(kafka_bootstrap, unique_topic, traffic(time.time()))
        await settled_view(http, rt)
        await wait_until(lambda: sum(rt.evaluator.rejected_counts().values()) >= 4, "4 rejections")
        await wait_until(lambda: rt.source.status().lag != {}, "a lag reading")
        rt.metrics.invalidate()
        async with http.get(f"{rt.http.url}/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            body = await resp.read()
    finally:
        await running.shutdown()

    # the real linter, with its warnings as failures: no exception is needed
    code, output = await promtool_check_metrics(body)
    assert code == 0, output
    assert output.strip() == "", output

    text = body.decode()
    assert MARKER not in text
    families = list(text_string_to_metric_families(text))
    names = {f.name for f in families}
    for wanted in (
        "burnrate_slo_burn_rate",
        "burnrate_records_rejected",
        "burnrate_consumer_lag",
        "burnrate_incidents_open",
        "burnrate_incident_time_to_detect_seconds",
    ):
        assert wanted in names
    windows = {format_duration(w) for w in rt.evaluator.windows.windows_s}
    allowed_values = {
        "slo": set(rt.evaluator.names),
        "window": windows,
        "severity": {"page", "ticket"},
        "reason": set(DECODE_REASONS) | set(TIME_REASONS) | {CHANGE_REJECT_REASON},
        "topic": {unique_topic},
        "service": {s.service for s in rt.evaluator.config_slos if s.service is not None},
        "decision": {"pass", "warn", "fail"},
        "alert": set(ALERTNAMES.values()),
        "policy_row": set(),  # no budget policy row escalates in this config
        "kind": set(),  # no change was posted
    }
    seen_reasons = set()
    for family in families:
        assert family.type != "unknown", f"{family.name} has no TYPE line"
        assert family.documentation, f"{family.name} has no HELP text"
        for s in family.samples:
            labels = dict(s.labels)
            if family.type == "histogram":
                labels.pop("le", None)
            assert set(labels) <= ALLOWED_LABELS, (s.name, labels)
            for key, value in labels.items():
                if key == "partition":
                    assert re.fullmatch(r"\d+", value), (s.name, labels)
                else:
                    assert value in allowed_values[key], (s.name, labels)
            if s.name == "burnrate_records_rejected_total":
                seen_reasons.add(labels["reason"])
    assert {"malformed", "wrong_type", "bad_value", "missing_service"} <= seen_reasons
    # configured SLO labels are not exported (yet); the API carries them
    assert "team=" not in text


@pytest.mark.asyncio
async def test_prometheus_scrapes_what_the_api_reports(
    kafka_bootstrap: str,
    unique_topic: str,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    token = f"tok-{secrets.token_urlsafe(24)}"
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    auth = {"Authorization": f"Bearer {token}"}
    cfg = make_config(kafka_bootstrap, unique_topic, token_file=token_file)
    rt = Runtime(cfg, listen="127.0.0.1:0", sinks=[])
    running = Running(rt)
    prom_dir = tmp_path / "prometheus"
    prom_dir.mkdir()
    slo_sel = f'slo="{SLO}"'
    burn_5m = f'burnrate_slo_burn_rate{{{slo_sel},window="5m"}}'
    events_total = f"burnrate_slo_events_total{{{slo_sel}}}"
    try:
        await running.listening()
        await wait_ready(http, rt)
        async with http.get(f"{rt.http.url}/metrics") as resp:
            assert resp.status == 401  # so the scrapes below prove Prometheus sent the token
        await produce(kafka_bootstrap, unique_topic, traffic(time.time()))
        await settled_view(http, rt, auth)
        settled_at = time.time()

        async with running_prometheus(
            prom_dir, [f"127.0.0.1:{rt.http.port}"], http, bearer_token_file=token_file
        ) as prom:
            end = time.monotonic() + DEADLINE_S
            while True:
                stamps = [
                    await prom.scalar(http, f"timestamp({q})") for q in (burn_5m, events_total)
                ]
                if all(ts is not None and ts > settled_at for ts in stamps):
                    break
                if time.monotonic() > end:
                    health = await prom.target_health(http)
                    pytest.fail(f"Prometheus has no scrape after the traffic settled: {health}")
                await asyncio.sleep(0.2)
            # the same moment, as nearly as two HTTP calls allow (the values are settled)
            got = {
                "burn_5m": await prom.scalar(http, burn_5m),
                "burn_1h": await prom.scalar(
                    http, f'burnrate_slo_burn_rate{{{slo_sel},window="1h"}}'
                ),
                "error_ratio_5m": await prom.scalar(
                    http, f'burnrate_slo_error_ratio{{{slo_sel},window="5m"}}'
                ),
                "events": await prom.scalar(http, events_total),
                "bad": await prom.scalar(http, f"burnrate_slo_bad_events_total{{{slo_sel}}}"),
                "budget": await prom.scalar(
                    http, f"burnrate_slo_error_budget_remaining_ratio{{{slo_sel}}}"
                ),
                "page": await prom.scalar(
                    http, f'burnrate_alert_firing{{{slo_sel},severity="page"}}'
                ),
                "up": await prom.scalar(http, f'up{{job="{JOB}"}}'),
            }
            api = await get_json(http, f"{rt.http.url}/v1/slos/{SLO}", auth)
    finally:
        await running.shutdown()

    windows = {w["window"]: w for w in api["windows"]}
    want = {
        "burn_5m": windows["5m"]["burn_rate"],
        "burn_1h": windows["1h"]["burn_rate"],
        "error_ratio_5m": windows["5m"]["error_ratio"],
        "events": api["events_total"],
        "bad": api["bad_events_total"],
        "budget": api["error_budget"]["remaining_ratio"],
        "page": float(api["alerts"]["page"]["firing"]),
        "up": 1.0,
    }
    assert all(v is not None for v in got.values()), got
    assert got == {k: pytest.approx(v, rel=1e-12) for k, v in want.items()}
    # and both are what the traffic mix makes: 5% failed at a 99% objective burns at 5x
    total, bad = expected_counts()[SLO]
    assert (api["events_total"], api["bad_events_total"]) == (total, bad)
    assert windows["5m"]["total"] == total
    assert windows["5m"]["error_ratio"] == pytest.approx(bad / total, rel=1e-12)
    assert windows["5m"]["burn_rate"] == pytest.approx(5.0, rel=1e-12)
    assert api["error_budget"]["remaining_ratio"] == pytest.approx(-4.0, rel=1e-12)
    assert api["error_budget"]["time_to_exhaustion_s"] == 0
    # Prometheus sent the token on every scrape: the one 401 is ours; no token in any log
    refused = [
        r
        for r in caplog.records
        if r.name == "burnrate.adapters.http.auth" and r.levelno >= logging.WARNING
    ]
    assert [r.getMessage() for r in refused] == [
        "401 GET /metrics from 127.0.0.1: missing bearer token"
    ]
    assert token not in caplog.text
