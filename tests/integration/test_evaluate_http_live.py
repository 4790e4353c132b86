"""`burnrate run --role evaluate` workers over HTTP, on Apache Kafka: the single
process's server over each worker's owned partitions (engine.runtime.evaluate_http).

Two worker subprocesses are fed count deltas in transactions; each one's `/metrics`
must parse as the text format, hold the owned SLOs' series and the worker's own
consumer figures, and `/v1/slos/{name}` of an SLO the other worker owns must redirect
there (the owner's URL read from the changelog's owner records). A gate override
and a change POSTed to the wrong worker reach the owner of their service; once that
worker is killed, the one left answers every SLO itself, the gate with the override and
the service's changes with that change.
"""

from __future__ import annotations

import signal
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.adapters.kafka.partitions import partition_of
from tests.integration.alertmanager import eventually
from tests.integration.http_receiver import Receiver
from tests.integration.test_evaluate_role import (
    PARTITIONS,
    SLOS,
    T0,
    Cluster,
    apache_kafka,
    cluster,
)

__all__ = ["apache_kafka", "cluster"]  # the fixtures, shared with test_evaluate_role

pytestmark = [pytest.mark.kafka_txn, pytest.mark.slow, pytest.mark.asyncio]


async def _families(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await resp.text()
    return {f.name: f for f in text_string_to_metric_families(text)}


def _samples(families: dict[str, Any], name: str) -> dict[tuple[tuple[str, str], ...], float]:
    fam = families.get(name)
    if fam is None:
        return {}
    return {
        tuple(sorted(s.labels.items())): s.value
        for s in fam.samples
        if s.name in (name, name + "_total")
    }


async def test_workers_serve_metrics_and_redirect_to_each_others_slos(
    cluster: tuple[Cluster, Receiver],
) -> None:
    c, _ = cluster
    c.start("a")
    c.start("b")
    await eventually(lambda: c.ready(["a", "b"]), timeout_s=120, what="both workers ready")
    # records to the partitions that hold SLOs (the others are paused, never read)
    homes = {partition_of(c.keys[slo], PARTITIONS) for slo in SLOS}
    sent = 0
    async with c.producer() as producer:
        for k in range(20):
            counts = {slo: (100, k % 3) for slo in SLOS[k % 2 :]}
            await c.send(producer, counts, T0 + 10 * k)
            touched = {partition_of(c.keys[slo], PARTITIONS) for slo in counts}
            sent += len(counts) + len(homes - touched)  # deltas, heartbeats
    await eventually(c.counts_match, timeout_s=120, what="exact counts over a and b")
    urls = {name: url for name, (_, url) in c.workers.items()}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        families = {name: await _families(session, url) for name, url in urls.items()}
        owner: dict[str, str] = {}
        for name, fams in families.items():
            events = _samples(fams, "burnrate_slo_events")
            assert events, f"{name} serves no SLO"
            for labels, value in events.items():
                slo = dict(labels)["slo"]
                assert slo not in owner, f"{slo} served by {owner.get(slo)} and {name}"
                owner[slo] = name
                assert value == c.expected[slo][0]
            # the worker's own figures, once per worker
            offsets = _samples(fams, "burnrate_evaluate_partition_offset")
            assert offsets
            assert all(v > 0 for v in offsets.values())
            assert set(_samples(fams, "burnrate_records_consumed")) == {()}
            assert "burnrate_evaluation_duration_seconds" in fams
            gates = {dict(k)["service"] for k in _samples(fams, "burnrate_gate_decision")}
            slos_here = {dict(k)["slo"] for k in events}
            assert gates == {f"svc{s[1:]}" for s in slos_here}  # each owned SLO's service
        assert sorted(owner) == sorted(SLOS)
        assert set(owner.values()) == {"a", "b"}
        consumed = [_samples(fams, "burnrate_records_consumed")[()] for fams in families.values()]
        # no partition moved since both were ready: each record applied once, by its owner
        assert sum(consumed) == sent

        async def caught_up() -> bool:
            for url in urls.values():
                lag = _samples(await _families(session, url), "burnrate_consumer_lag")
                if not lag or any(v != 0 for v in lag.values()):
                    return False
            return True

        await eventually(caught_up, timeout_s=60, what="a lag of 0 on every owned partition")

        # an SLO owned by b, asked at a: 307 to the same path at b (once a has read b's
        # owner record), and b answers it
        slo = next(s for s in SLOS if owner[s] == "b")
        path = f"/v1/slos/{slo}"

        async def redirected() -> bool:
            async with session.get(urls["a"] + path, allow_redirects=False) as resp:
                return resp.status == 307 and resp.headers["Location"] == urls["b"] + path

        await eventually(redirected, timeout_s=60, what="a redirects to b")
        async with session.get(urls["a"] + path) as resp:
            assert resp.status == 200
            view = await resp.json()
        assert view["name"] == slo
        async with session.get(urls["b"] + path + "/history") as resp:
            assert resp.status == 200
            history = await resp.json()
        # b's history of its partition holds every event counted (sampled per batch)
        assert history["slo"] == slo
        finest = history["tiers"][0]
        assert sum(finest["good"]) + sum(finest["bad"]) == c.expected[slo][0]
        assert sum(finest["bad"]) == c.expected[slo][1]
        async with session.get(urls["a"] + "/v1/slos") as resp:
            listed = await resp.json()
        assert sorted(v["name"] for v in listed["slos"]) == sorted(
            s for s in SLOS if owner[s] == "a"
        )

        # an override of b's service, POSTed to a: it follows the 307 to b, which
        # writes it to the changelog at once; b is then killed (no snapshot at exit),
        # and a, which takes over b's partitions, answers the gate with it
        service = f"svc{slo[1:]}"
        override = {"reason": "hotfix", "ttl": "1h", "ticket": "OPS-9"}
        async with session.post(f"{urls['a']}/v1/gates/{service}/override", json=override) as resp:
            assert resp.status == 201, await resp.text()
            assert str(resp.url).startswith(urls["b"])
        deploy = {"service": service, "kind": "deploy", "version": "v9"}
        async with session.post(f"{urls['a']}/v1/changes", json=deploy) as resp:
            assert resp.status == 201, await resp.text()
            assert str(resp.url).startswith(urls["b"])
            change = await resp.json()
        c.stop("b", signal.SIGKILL)

        async def answered_at_a() -> bool:
            async with session.get(urls["a"] + path, allow_redirects=False) as resp:
                return resp.status == 200

        await eventually(answered_at_a, timeout_s=120, what="a answers b's SLO")
        await eventually(c.counts_match, timeout_s=60, what="a alone counts the same")
        fams = await _families(session, urls["a"])
        assert {dict(k)["slo"] for k in _samples(fams, "burnrate_slo_events")} == set(SLOS)
        async with session.get(f"{urls['a']}/v1/gates/{service}") as resp:
            assert resp.status == 200
            gate = await resp.json()
        assert (gate["decision"], gate["override"]["ticket"]) == ("pass", "OPS-9")
        async with session.get(f"{urls['a']}/v1/changes?service={service}") as resp:
            assert resp.status == 200
            kept = (await resp.json())["changes"]
        assert [(k["id"], k["version"]) for k in kept] == [(change["id"], "v9")]
