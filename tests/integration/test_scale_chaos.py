"""Chaos of the whole scale-out: 2 ingest and 3 evaluate workers, SIGKILLed at random.

A known stream (six availability SLOs, two of which go through a 30 s incident) is
produced while workers of both roles are SIGKILLed at seeded random moments (at least
ten kills) and started again after 0-3 s. At the end:

- every SLO's `burnrate_slo_events_total` / `burnrate_slo_bad_events_total` over the
  evaluate workers' `/metrics` equal the stream's counts exactly, and no SLO is exported
  by two workers;
- every alert transition reached the webhook receiver: the SLOs with an incident were
  paged and resolved (consecutive repeats collapsed: a restart may send one again, but
  with the same `webhook-id`), the others never, and no alert is left firing.

Apache Kafka only (`KAFKA_BOOTSTRAP_SERVERS`): transactions. `BURNRATE_TEST_SEED`
replays a run; run with `-s` for the summary.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from engine.adapters.kafka.embedded_broker import create_topic
from tests.integration.http_receiver import Receiver, serve
from tests.integration.test_ingest_role import Worker, needs_transactions, wait_for

pytestmark = [pytest.mark.kafka_txn, pytest.mark.slow, pytest.mark.asyncio]

SOURCE_PARTITIONS = 4
COUNTS_PARTITIONS = 6
SLOS = [f"s{k}" for k in range(6)]
INCIDENT_SLOS = ("s0", "s3")
STREAM_S = 150.0
INCIDENT_AT_S, INCIDENT_S = 40.0, 30.0
MIN_KILLS = 10


def write_config(path: Path, *, bootstrap: str, hook: str, suffix: str) -> Path:
    slos = "".join(
        f"  - {{name: {name}, service: svc{k}, sli: availability, objective: 99}}\n"
        for k, name in enumerate(SLOS)
    )
    path.write_text(
        f"slos:\n{slos}"
        "policy:\n  - {severity: page, long: 1m, short: 10s, burn_rate: 5}\n"
        # Lateness above the spread of the ingest workers' lag (a killed one's partitions
        # wait for its session to end): the evaluate side judges deltas against the
        # newest writer's watermark. `min_events`: the first second of the stream is a
        # window of a few dozen events, and two background failures in it burn past 5
        # (seed 144055651 paged s0 on its first 77 events, 5 of them bad). 500 events
        # is 2.5 s of one SLO's traffic: a quarter of a short window, half of one with
        # a writer behind.
        "evaluation: {tick: 1s, allowed_lateness: 60s, min_events: 500}\n"
        "kafka:\n"
        f"  bootstrap_servers: {bootstrap}\n"
        f"  topics: [chaos-src-{suffix}]\n"
        f"  group_id: chaos-ingest-{suffix}\n"
        f"  scale: {{counts_topic: chaos-counts-{suffix}, counts_partitions: "
        f"{COUNTS_PARTITIONS}, changelog_topic: chaos-changelog-{suffix}, "
        f"evaluate_group_id: chaos-eval-{suffix}, flush_interval: 250ms, "
        "snapshot_interval: 2s}\n"
        f"receivers:\n  - {{type: webhook, url: '{hook}'}}\n"
    )
    return path


class Stream:
    """Requests of every SLO's service at a steady pace; the expected counts."""

    def __init__(self, bootstrap: str, topic: str, rng: random.Random) -> None:
        self.bootstrap, self.topic, self.rng = bootstrap, topic, rng
        self.expected: dict[str, list[int]] = {s: [0, 0] for s in SLOS}

    async def run(self, seconds: float) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        await producer.start()
        start = time.monotonic()
        try:
            while (elapsed := time.monotonic() - start) < seconds:
                incident = INCIDENT_AT_S <= elapsed < INCIDENT_AT_S + INCIDENT_S
                sends = []
                for _ in range(10):
                    now = time.time()
                    events = []
                    for k, slo in enumerate(SLOS):
                        count = self.rng.randint(1, 3)
                        failed = (incident and slo in INCIDENT_SLOS) or self.rng.random() < 0.002
                        events.append(
                            {
                                "service": f"svc{k}",
                                "ts": now,
                                "status": 503 if failed else 200,
                                "count": count,
                            }
                        )
                        self.expected[slo][0] += count
                        self.expected[slo][1] += count if failed else 0
                    sends.append(
                        await producer.send(
                            self.topic,
                            json.dumps(events).encode(),
                            partition=self.rng.randrange(SOURCE_PARTITIONS),
                        )
                    )
                await asyncio.gather(*sends)
                await asyncio.sleep(0.1)
        finally:
            await producer.stop()


async def evaluator_series(workers: list[Worker]) -> list[dict[str, float]]:
    out = []
    async with aiohttp.ClientSession() as http:
        for w in workers:
            if not w.alive():
                out.append({})
                continue
            try:
                async with http.get(f"http://127.0.0.1:{w.port}/metrics") as resp:
                    text = await resp.text()
            except aiohttp.ClientError:
                out.append({})
                continue
            out.append(
                {
                    line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
                    for line in text.splitlines()
                    if line and not line.startswith("#")
                }
            )
    return out


def exported(series: list[dict[str, float]], metric: str) -> dict[str, list[float]]:
    """Per SLO, the values of `metric{slo=...}` over the workers (one each, ideally)."""
    out: dict[str, list[float]] = defaultdict(list)
    for s in series:
        for key, value in s.items():
            if key.startswith(metric + "{"):
                slo = key.split('slo="', 1)[1].split('"', 1)[0]
                out[slo].append(value)
    return out


def webhook_states(receiver: Receiver) -> dict[str, list[tuple[str, str]]]:
    """Per SLO, (status, webhook-id) of each webhook about it, in arrival order."""
    out: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for req in receiver.requests:
        body: Any = req.json()
        for alert in body["alerts"]:
            out[alert["labels"]["slo"]].append((alert["status"], req.headers.get("webhook-id", "")))
    return out


async def test_scale_out_counts_and_alerts_survive_sigkills(tmp_path: Path) -> None:
    needs_transactions()
    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"].strip()
    seed = int(os.environ.get("BURNRATE_TEST_SEED", "0")) or random.randrange(1 << 30)
    rng = random.Random(seed)
    suffix = uuid.uuid4().hex[:8]
    await create_topic(bootstrap, f"chaos-src-{suffix}", SOURCE_PARTITIONS)
    async with serve(Receiver()) as receiver:
        config = write_config(
            tmp_path / "scale.yaml", bootstrap=bootstrap, hook=receiver.url, suffix=suffix
        )
        log_path = tmp_path / "workers.log"
        with log_path.open("wb") as log:
            ingest = [Worker(config, bootstrap, log, f"i{k}") for k in range(2)]
            evaluate = [Worker(config, bootstrap, log, f"e{k}", role="evaluate") for k in range(3)]
            workers = ingest + evaluate

            def tail() -> str:
                return f"(seed {seed}) " + log_path.read_text(errors="replace")[-4000:]

            stream = Stream(bootstrap, f"chaos-src-{suffix}", random.Random(seed + 1))
            try:
                for w in ingest:  # the ingest workers create the counts topic
                    await w.start()
                await wait_for(
                    "an ingest worker writing counts",
                    lambda: ingest[0].produced_at_least(COUNTS_PARTITIONS),
                    90,
                    tail,
                )
                for w in evaluate:
                    await w.start()
                produce = asyncio.create_task(stream.run(STREAM_S))
                kills: list[str] = []
                deadline = time.monotonic() + STREAM_S - 10
                while time.monotonic() < deadline or len(kills) < MIN_KILLS:
                    await asyncio.sleep(rng.uniform(2.0, (STREAM_S - 20) / MIN_KILLS))
                    victim = rng.choice(workers)
                    await victim.kill()
                    kills.append(victim.worker_id)
                    await asyncio.sleep(rng.uniform(0.0, 3.0))
                    await victim.start()
                await produce
                expected = {s: (float(t), float(b)) for s, (t, b) in stream.expected.items()}

                async def exact() -> bool:
                    series = await evaluator_series(evaluate)
                    totals = exported(series, "burnrate_slo_events_total")
                    bads = exported(series, "burnrate_slo_bad_events_total")
                    if any(len(v) != 1 for v in (*totals.values(), *bads.values())):
                        return False  # an SLO exported twice, or a worker not up
                    got = {s: (totals[s][0], bads[s][0]) for s in totals if s in bads}
                    return got == expected

                await wait_for("the evaluators' counts equal to the stream", exact, 240, tail)
                series = await evaluator_series(evaluate)
                totals = exported(series, "burnrate_slo_events_total")
                assert sorted(totals) == SLOS
                assert all(len(v) == 1 for v in totals.values()), totals

                async def resolved() -> bool:
                    states = webhook_states(receiver)
                    return all(
                        states.get(s) and states[s][-1][0] == "resolved" for s in INCIDENT_SLOS
                    )

                await wait_for("the incidents' resolves at the receiver", resolved, 240, tail)
                await receiver.quiet(2.0)
                firing = exported(await evaluator_series(evaluate), "burnrate_alert_firing")
                assert all(v == [0.0] for v in firing.values()), firing
            finally:
                for w in workers:
                    if w.proc is not None:
                        await w.kill()
    states = webhook_states(receiver)
    print(
        f"seed {seed}: kills {len(kills)} ({', '.join(kills)}); webhooks "
        f"{ {s: len(v) for s, v in states.items()} }"
    )
    assert len(kills) >= MIN_KILLS
    assert sorted(states) == sorted(INCIDENT_SLOS), states
    for slo in INCIDENT_SLOS:
        sent = states[slo]
        # Repeats only of the same transition, with the same id.
        collapsed: list[tuple[str, str]] = []
        for status, wid in sent:
            if collapsed and collapsed[-1][0] == status:
                assert collapsed[-1][1] == wid, f"{slo}: {status} sent again with another id"
                continue
            collapsed.append((status, wid))
        assert [s for s, _ in collapsed] == ["firing", "resolved"], sent
