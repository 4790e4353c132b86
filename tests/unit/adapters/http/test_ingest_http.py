"""The ingest worker's HTTP (engine.adapters.http.ingest_metrics): its metrics, and the
bearer tokens of `http.tokens` as for `burnrate run` (probes open, `/metrics` needs
`read`)."""

from __future__ import annotations

import hashlib

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.adapters.http.ingest_metrics import IngestHttp, IngestProgress
from engine.core.config_io import Http, HttpToken


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def progress() -> IngestProgress:
    return IngestProgress(
        status=None,
        rejected={"invalid_json": 2},
        deltas_produced=7,
        heartbeats_produced=3,
        transactions_committed=5,
        transactions_aborted=1,
        watermark_s=1_700_000_000.0,
    )


@pytest.mark.asyncio
async def test_with_tokens_metrics_need_the_read_scope_and_the_probes_stay_open() -> None:
    http = Http(
        tokens=[
            HttpToken(name="prometheus", scopes=["read"], sha256=sha("prom")),
            HttpToken(name="deployer", scopes=["operate"], sha256=sha("dep")),
        ]
    )
    server = IngestHttp("127.0.0.1:0", http, progress, clock=lambda: 1_700_000_010.0)
    await server.start()
    try:
        url = f"http://127.0.0.1:{server.port}"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/healthz") as r:
                assert r.status == 200
            async with session.get(f"{url}/metrics") as r:
                assert r.status == 401
            bearer = {"Authorization": "Bearer dep"}
            async with session.get(f"{url}/metrics", headers=bearer) as r:
                assert r.status == 403
            bearer = {"Authorization": "Bearer prom"}
            async with session.get(f"{url}/metrics", headers=bearer) as r:
                assert r.status == 200
                text = await r.text()
    finally:
        await server.stop()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("burnrate_ingest_deltas_produced_total", ())] == 7
    assert samples[("burnrate_ingest_transactions_total", (("outcome", "aborted"),))] == 1
    assert samples[("burnrate_records_rejected_total", (("reason", "invalid_json"),))] == 2
    assert samples[("burnrate_event_time_lag_seconds", ())] == 10.0


@pytest.mark.asyncio
async def test_without_tokens_metrics_are_open() -> None:
    server = IngestHttp("127.0.0.1:0", Http(), progress)
    await server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        async with aiohttp.ClientSession() as session, session.get(url) as r:
            assert r.status == 200
    finally:
        await server.stop()
