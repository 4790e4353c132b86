"""Scale-out throughput: `--role all` against ingest + evaluate workers, and the price of
the ingest workers' transactions.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:PORT python -m benchmarks.bench_scale \
        [--events 1000000] [--batch 100] [--partitions 6]

Apache Kafka only (transactions; scripts/kafka/apache-kafka.sh). One run pre-produces
`--events` synthetic events (four services, one SLO each, `--batch` events per JSON
array record) into a topic of `--partitions` partitions, then reads all of it again
from the earliest offset in each setup, every one with fresh groups and internal topics,
every worker a `python -m engine run` process of its own, as deployed:

- all: one `--role all` process, until its `burnrate_slo_events_total` add up to the
  events (the baseline);
- 1i+1e, 2i+1e: one or two `--role ingest` workers and one `--role evaluate` worker,
  until the evaluator's counts add up to the events;
- ingest txn / ingest alo: one ingest worker alone, until the group's committed offsets
  are the end of every partition, with transactions and with deltas produced without
  them (`--ingest-at-least-once`, for this comparison only).

Each time runs from the first record a process reports consumed to the moment the
counts are complete (polled every 100 ms; the single process and the evaluator render
their metrics once per second, which bounds the resolution: use enough events that a
setup takes several seconds), and again from the launch of the processes (start-up,
group joins and, for the roles, the counts topic and the changelog included).
Events/s and the ratio to the baseline are printed with the machine; the workers share
the machine's cores with the broker, so more workers than cores measure contention, not
scale. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from benchmarks.common import free_port, report
from engine.adapters.kafka.embedded_broker import create_topic

SERVICES = ("checkout", "search", "catalog", "payments")
EVENT_SPAN_S = 600.0
DEADLINE_S = 600.0
ROOT = Path(__file__).resolve().parents[1]


def config_text(bootstrap: str, topic: str, suffix: str) -> str:
    slos = "".join(
        f"  - {{name: {s}-availability, service: {s}, sli: availability, objective: 99.9}}\n"
        for s in SERVICES
    )
    return (
        f"slos:\n{slos}"
        "evaluation: {allowed_lateness: 30m}\n"
        "kafka:\n"
        f"  bootstrap_servers: {bootstrap}\n"
        f"  topics: [{topic}]\n"
        f"  group_id: bench-{suffix}\n"
        f"  scale: {{counts_topic: bench-counts-{suffix}, counts_partitions: 6, "
        f"changelog_topic: bench-changelog-{suffix}, evaluate_group_id: bench-eval-{suffix}}}\n"
    )


async def produce_events(bootstrap: str, topic: str, events: int, batch: int, parts: int) -> int:
    rng = random.Random(1)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks="all")
    await producer.start()
    end = time.time()
    records = (events + batch - 1) // batch
    try:
        pending = []
        for r in range(records):
            ts = end - EVENT_SPAN_S * (1 - r / records)
            body = [
                {
                    "service": SERVICES[rng.randrange(4)],
                    "ts": ts,
                    "status": 500 if rng.random() < 0.01 else 200,
                }
                for _ in range(min(batch, events - r * batch))
            ]
            pending.append(
                await producer.send(topic, json.dumps(body).encode(), partition=r % parts)
            )
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return records


async def metrics(http: aiohttp.ClientSession, port: int) -> dict[str, float]:
    try:
        async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
            text = await resp.text()
    except aiohttp.ClientError:
        return {}
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[key] = float(value)
    return out


def total(series: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in series.items() if k.startswith(prefix))


async def committed_at_end(bootstrap: str, topic: str, group: str, parts: int) -> bool:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(parts)]
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            if (await consumer.committed(tp) or 0) != ends[tp]:
                return False
        return True
    finally:
        await consumer.stop()


async def setup(
    name: str,
    bootstrap: str,
    topic: str,
    tmp: Path,
    *,
    ingest: int,
    evaluate: int,
    single: bool = False,
    at_least_once: bool = False,
    events: int,
    parts: int,
) -> tuple[float, float]:
    """Seconds from the first record a process reports consumed to the counts complete,
    and from the launch of the processes."""
    suffix = uuid.uuid4().hex[:8]
    path = tmp / f"{name.replace(' ', '-')}.yaml"
    path.write_text(config_text(bootstrap, topic, suffix))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs: list[tuple[str, int, asyncio.subprocess.Process]] = []
    log = (tmp / f"{name.replace(' ', '-')}.log").open("wb")

    async def start(role: str, k: int) -> None:
        port = free_port()
        argv = ["run", "--config", str(path), "--role", role, "--listen", f"127.0.0.1:{port}"]
        if role == "ingest":
            argv += ["--worker-id", f"{name.replace(' ', '-')}-{k}-{suffix}"]
            if at_least_once:
                argv.append("--ingest-at-least-once")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "engine", *argv, env=env, stdout=log, stderr=log
        )
        procs.append((role, port, proc))

    launched = time.monotonic()
    try:
        if single:
            await start("all", 0)
        else:
            for k in range(evaluate):
                await start("evaluate", k)
            for k in range(ingest):
                await start("ingest", k)
        consumers = [p for r, p, _ in procs if r in ("all", "ingest")]
        sinks = [p for r, p, _ in procs if r in ("all", "evaluate")]
        t0: float | None = None
        deadline = time.monotonic() + DEADLINE_S
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                for _, _, proc in procs:
                    if proc.returncode is not None:
                        raise RuntimeError(f"{name}: a worker exited with {proc.returncode}")
                if t0 is None:
                    for port in consumers:
                        if total(await metrics(http, port), "burnrate_records_consumed") > 0:
                            t0 = time.monotonic()
                            break
                    continue
                if evaluate or single:
                    counted = 0.0
                    for port in sinks:
                        counted += total(await metrics(http, port), "burnrate_slo_events_total{")
                    if counted >= events:
                        return time.monotonic() - t0, time.monotonic() - launched
                elif await committed_at_end(bootstrap, topic, f"bench-{suffix}", parts):
                    return time.monotonic() - t0, time.monotonic() - launched
        raise RuntimeError(f"{name}: not done within {DEADLINE_S:.0f}s")
    finally:
        for _, _, proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        log.close()


async def main(args: argparse.Namespace) -> None:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if not bootstrap:
        sys.exit("bench_scale: set KAFKA_BOOTSTRAP_SERVERS to an Apache Kafka (transactions)")
    topic = f"bench-scale-{uuid.uuid4().hex[:8]}"
    await create_topic(bootstrap, topic, args.partitions)
    t = time.perf_counter()
    records = await produce_events(bootstrap, topic, args.events, args.batch, args.partitions)
    print(
        f"produced {args.events:,} events in {records:,} records in {time.perf_counter() - t:.1f}s"
    )
    n, parts = args.events, args.partitions
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        plans = [
            ("all", {"single": True, "ingest": 0, "evaluate": 0}),
            ("1i+1e", {"ingest": 1, "evaluate": 1}),
            ("2i+1e", {"ingest": 2, "evaluate": 1}),
            ("ingest txn", {"ingest": 1, "evaluate": 0}),
            ("ingest alo", {"ingest": 1, "evaluate": 0, "at_least_once": True}),
        ]
        times: dict[str, tuple[float, float]] = {}
        for name, kw in plans:
            s, whole = await setup(name, bootstrap, topic, tmp, events=n, parts=parts, **kw)  # type: ignore[arg-type]
            times[name] = (s, whole)
            print(f"{name}: {s:.2f}s ({whole:.2f}s from launch), {n / s:,.0f} events/s", flush=True)
        for name, (s, whole) in times.items():
            base, base_whole = times["ingest txn"] if name == "ingest alo" else times["all"]
            rows.append(
                {
                    "setup": name,
                    "seconds": round(s, 2),
                    "events_per_s": round(n / s),
                    "ratio": round(base / s, 3),
                    "from_launch_s": round(whole, 2),
                    "ratio_from_launch": round(base_whole / whole, 3),
                    "baseline": "ingest txn" if name == "ingest alo" else "all",
                }
            )
    report("bench_scale", rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=6)
    asyncio.run(main(parser.parse_args()))
