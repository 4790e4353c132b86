"""`burnrate run --role evaluate` on Apache Kafka: real worker processes sharing the
counts topic, fed count deltas by a transactional producer (as ingest workers write
them), with a real webhook receiver.

What is checked: every SLO is counted by exactly one worker and exactly (aborted
transactions not at all); a partition that moves between workers on join and leave
keeps its counts and alert state (a firing alert is not paged again, and its resolve
comes from the new owner); after kill -9 of a worker and a restart the counts are
still exact.

Transactions need Apache Kafka: the tests use `KAFKA_BOOTSTRAP_SERVERS` when it is set,
else start one with scripts/kafka/apache-kafka.sh for the module (Java and the jars of
`apache-kafka.sh fetch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer

from engine.adapters.kafka.partitions import partition_of
from engine.core.config import Config, parse_config
from engine.core.deltas import encode_delta, encode_heartbeat, partition_keys
from engine.runtime.evaluate_role import EvaluateWorker
from tests.integration.alertmanager import eventually
from tests.integration.http_receiver import Receiver, serve

pytestmark = [pytest.mark.kafka_txn, pytest.mark.slow, pytest.mark.asyncio]

REPO = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000
PARTITIONS = 4
SLOS = [f"s{k}" for k in range(8)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def apache_kafka() -> Iterator[str]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if external:
        yield external
        return
    port = _free_port()
    script = REPO / "scripts" / "kafka" / "apache-kafka.sh"
    subprocess.run([str(script), "start", str(port)], check=True, timeout=600)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(script), "stop", str(port)], check=False, timeout=120)


def _config_text(bootstrap: str, receiver_url: str, suffix: str) -> str:
    slos = "".join(
        f"  - {{name: {name}, service: svc{k}, sli: availability, objective: 99, period: 1h}}\n"
        for k, name in enumerate(SLOS)
    )
    return (
        f"kafka:\n  bootstrap_servers: '{bootstrap}'\n  topics: [requests-{suffix}]\n"
        f"  group_id: g-{suffix}\n"
        f"  scale: {{counts_topic: counts-{suffix}, counts_partitions: {PARTITIONS}, "
        f"changelog_topic: changelog-{suffix}, evaluate_group_id: eval-{suffix}, "
        "snapshot_interval: 1s}\n"
        "http: {listen: '127.0.0.1:0'}\n"
        f"receivers:\n  - {{type: webhook, url: '{receiver_url}'}}\n"
        "policy:\n  - {severity: page, long: 5m, short: 1m, burn_rate: 4}\n"
        "evaluation: {tick: 10s, allowed_lateness: 0s}\n"
        f"slos:\n{slos}"
    )


class Cluster:
    """Worker processes of one config, and the producer that feeds them."""

    def __init__(self, bootstrap: str, config_path: Path, config: Config, tmp: Path) -> None:
        self.bootstrap = bootstrap
        self.config_path = config_path
        self.config = config
        self.tmp = tmp
        self.topic = config.kafka.scale.counts_topic
        self.workers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
        self.keys = partition_keys(config)
        self.expected: dict[str, list[int]] = {name: [0, 0] for name in SLOS}

    def start(self, name: str) -> None:
        port = _free_port()
        with (self.tmp / f"{name}.log").open("ab") as log:  # the child keeps its own fd
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "engine",
                    "run",
                    "--role",
                    "evaluate",
                    "--config",
                    str(self.config_path),
                    "--listen",
                    f"127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        self.workers[name] = (proc, f"http://127.0.0.1:{port}")

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc, _ = self.workers.pop(name)
        proc.send_signal(sig)
        code = proc.wait(timeout=60)
        if sig == signal.SIGTERM:
            assert code == 0, f"{name} exited with {code}"

    def close(self) -> None:
        for name in list(self.workers):
            self.stop(name, signal.SIGKILL)

    async def metrics(self) -> dict[str, dict[str, float]]:
        """Per worker, its `/metrics` series (name{labels} -> value); {} while down."""
        out: dict[str, dict[str, float]] = {}
        async with aiohttp.ClientSession() as session:
            for name, (_, url) in self.workers.items():
                try:
                    async with session.get(url + "/metrics") as resp:
                        text = await resp.text()
                except aiohttp.ClientError:
                    out[name] = {}
                    continue
                out[name] = {
                    line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
                    for line in text.splitlines()
                    if line and not line.startswith("#")
                }
        return out

    async def counts_match(self) -> bool:
        """Every SLO served by exactly one worker, with the expected counts."""
        seen: dict[str, list[int]] = {}
        for series in (await self.metrics()).values():
            for key, value in series.items():
                for metric, slot in (
                    ("burnrate_slo_events_total", 0),
                    ("burnrate_slo_bad_events_total", 1),
                ):
                    prefix = metric + '{slo="'
                    if key.startswith(prefix):
                        slo = key[len(prefix) : -2]
                        got = seen.setdefault(slo, [-1, -1])
                        if got[slot] != -1:
                            return False  # served twice
                        got[slot] = int(value)
        return seen == self.expected

    async def ready(self, names: list[str]) -> bool:
        async with aiohttp.ClientSession() as session:
            for name in names:
                try:
                    async with session.get(self.workers[name][1] + "/readyz") as resp:
                        if resp.status != 200:
                            return False
                except aiohttp.ClientError:
                    return False
        return True

    @contextlib.asynccontextmanager
    async def producer(self) -> AsyncIterator[AIOKafkaProducer]:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, transactional_id=f"test-{uuid.uuid4().hex}"
        )
        await producer.start()
        try:
            yield producer
        finally:
            await producer.stop()

    async def send(
        self,
        producer: AIOKafkaProducer,
        counts: dict[str, tuple[int, int]],
        t: int,
        *,
        abort: bool = False,
    ) -> None:
        """One transaction (one flush of an ingest worker): a delta per SLO of
        `counts` at second `t`, heartbeats to the other partitions."""
        await producer.begin_transaction()
        touched = set()
        for slo, (total, bad) in counts.items():
            key = self.keys[slo]
            touched.add(partition_of(key, PARTITIONS))
            await producer.send(
                self.topic, encode_delta(slo, t, [t], [total], [bad]), key=key.encode()
            )
        for p in range(PARTITIONS):
            if p not in touched:
                await producer.send(self.topic, encode_heartbeat(t), partition=p)
        if abort:
            await producer.abort_transaction()
            return
        await producer.commit_transaction()
        for slo, (total, bad) in counts.items():
            self.expected[slo][0] += total
            self.expected[slo][1] += bad


@pytest_asyncio.fixture
async def cluster(apache_kafka: str, tmp_path: Path) -> AsyncIterator[tuple[Cluster, Receiver]]:
    async with serve(Receiver()) as receiver:
        suffix = uuid.uuid4().hex[:10]
        text = _config_text(apache_kafka, receiver.url, suffix)
        path = tmp_path / "burnrate.yaml"
        path.write_text(text)
        c = Cluster(apache_kafka, path, parse_config(text.encode()), tmp_path)
        try:
            yield c, receiver
        finally:
            c.close()


def _webhooks(receiver: Receiver, slo: str) -> list[tuple[str, str]]:
    """(status, webhook-id) of each webhook about `slo`, in arrival order."""
    out = []
    for req in receiver.requests:
        body: Any = req.json()
        if any(a["labels"]["slo"] == slo for a in body["alerts"]):
            out.append((body["status"], req.headers.get("webhook-id", "")))
    return out


async def test_workers_partition_the_slos_and_moves_keep_counts_and_alerts(
    cluster: tuple[Cluster, Receiver],
) -> None:
    c, receiver = cluster
    keys = c.keys
    parts = {slo: partition_of(keys[slo], PARTITIONS) for slo in SLOS}
    assert len(set(parts.values())) > 1, parts  # the SLOs spread over the partitions
    c.start("a")
    c.start("b")
    await eventually(lambda: c.ready(["a", "b"]), timeout_s=120, what="both workers ready")
    async with c.producer() as producer:
        # s0 fails every request for ten minutes of event time: its page fires
        for k in range(60):
            t = T0 + 10 * k
            # the others' errors burn at most 0.3: never a page
            counts = {slo: (10, 10) if slo == "s0" else (1000, k % 4) for slo in SLOS}
            await c.send(producer, counts, t)
        await c.send(producer, {slo: (1000, 1000) for slo in SLOS}, T0 + 600, abort=True)
        await eventually(c.counts_match, timeout_s=120, what="exact counts over a and b")
        await eventually(lambda: _webhooks(receiver, "s0") != [], timeout_s=60, what="s0's page")
        fired = _webhooks(receiver, "s0")
        assert [status for status, _ in fired] == ["firing"]
        # a leaves: b takes every partition, from a's snapshots
        c.stop("a")
        await eventually(c.counts_match, timeout_s=120, what="b alone counts the same")
        served = await c.metrics()
        assert served["b"]['burnrate_alert_firing{slo="s0",severity="page"}'] == 1.0
        # c joins: partitions move again
        c.start("c")
        await eventually(lambda: c.ready(["c"]), timeout_s=120, what="c ready")
        for k in range(60, 63):
            await c.send(producer, {slo: (5, 0) for slo in SLOS}, T0 + 10 * k)
        await eventually(c.counts_match, timeout_s=120, what="exact counts over b and c")
        # two hours later (heartbeats; time moves when the next flush starts): s0's
        # windows are empty, it resolves
        await c.send(producer, {}, T0 + 7200)
        await c.send(producer, {}, T0 + 7201)
        await eventually(
            lambda: len(_webhooks(receiver, "s0")) >= 2, timeout_s=60, what="s0's resolve"
        )
    await receiver.quiet(1.0)
    statuses = [status for status, _ in _webhooks(receiver, "s0")]
    assert statuses == ["firing", "resolved"], statuses  # paged once, resolved once
    for slo in SLOS[1:]:
        assert _webhooks(receiver, slo) == []


async def test_kill_9_and_restart_keeps_counts_exact(
    cluster: tuple[Cluster, Receiver],
) -> None:
    c, _ = cluster
    c.start("a")
    c.start("b")
    await eventually(lambda: c.ready(["a", "b"]), timeout_s=120, what="both workers ready")
    async with c.producer() as producer:
        for k in range(40):
            await c.send(producer, {slo: (3, k % 2) for slo in SLOS}, T0 + k)
        await eventually(c.counts_match, timeout_s=120, what="exact counts")
        for k in range(40, 80):  # a dies in the middle of this stretch
            await c.send(producer, {slo: (3, k % 2) for slo in SLOS}, T0 + k)
            if k == 60:
                c.stop("a", signal.SIGKILL)
        c.start("a2")
        await eventually(lambda: c.ready(["a2"]), timeout_s=120, what="a2 ready")
        await c.send(producer, {slo: (1, 1) for slo in SLOS}, T0 + 81, abort=True)
        for k in range(82, 90):
            await c.send(producer, {slo: (2, 1) for slo in SLOS}, T0 + k)
        await eventually(c.counts_match, timeout_s=180, what="exact counts after kill -9")
        c.stop("b", signal.SIGKILL)
        await eventually(c.counts_match, timeout_s=180, what="a2 alone after b's kill -9")


async def test_every_worker_knows_where_each_slo_lives(apache_kafka: str) -> None:
    """Two workers in one process: each SLO is evaluated by one of them, and both name
    that one's URL as its owner (from the changelog's owner records)."""
    text = _config_text(apache_kafka, "http://127.0.0.1:9/hook", uuid.uuid4().hex[:10])
    config = parse_config(text.encode())
    workers = [EvaluateWorker(config, listen="127.0.0.1:0", sinks=lambda c, u: []) for _ in "ab"]
    stops = [asyncio.Event() for _ in workers]
    tasks = [asyncio.create_task(w.run(s)) for w, s in zip(workers, stops, strict=True)]

    def settled() -> bool:
        a, b = (w.assignment for w in workers)
        return bool(a) and bool(b) and not a & b and a | b == set(range(PARTITIONS))

    def known() -> bool:
        for slo in SLOS:
            holders = [w for w in workers if w.evaluator_of(slo) is not None]
            if len(holders) != 1 or any(w.owner_of(slo) != holders[0].url for w in workers):
                return False
        return True

    try:
        await eventually(settled, timeout_s=120, what="the partitions shared out")
        await eventually(known, timeout_s=60, what="every owner known to both")
        for w in workers:
            assert w.owner_of("no-such-slo") is None
            assert any(w.evaluator_of(slo) is not None for slo in SLOS)
            assert w.engines() == [w.owned[p].evaluator for p in sorted(w.owned)]
    finally:
        for stop in stops:
            stop.set()
        await asyncio.gather(*tasks)
