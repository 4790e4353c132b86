"""Kafka benchmarks: the engine's consume rate vs raw aiokafka, batched records, memory soak.

    python -m benchmarks.bench_kafka [--events 500000] [--minutes 0]

Runs against an embedded Tansu broker, or the cluster named by KAFKA_BOOTSTRAP_SERVERS.
One run pre-produces the same `--events` synthetic events (engine.loadgen) twice, as
single-event JSON records into one topic and as batched records (`--batch` events per
JSON array) into another, then times, on each topic and each time with a fresh
consumer group reading from the earliest offset:

- baseline: raw aiokafka, `getmany` in a loop, discarding the records, with the same
  fetch settings as the engine, until the known record count is reached;
- burnrate: the service (`Runtime`: Kafka source, evaluator, metrics, HTTP) until every
  record is applied; every event is decoded, classified and counted (checked).

- msgspec alone: the same record values, fetched once, decoded in process with the
  engine's typed decoder (`engine.core.decode.Record`) and nothing else.

- floor: the least any engine that fetches with aiokafka and decodes into msgspec's
  structs must spend in its one thread: the CPU time of this process in the fastest
  raw run, plus decoding the values and reading every event's fields into arrays
  (`decode_and_extract`). Each ratio's *ceiling* is that ratio with the floor in place
  of the engine's time: no such engine can reach a goal above it.

Each Kafka timing starts once the group has assigned the partitions and is the best of
`--repeat` runs, baseline and engine alternating. Printed beside them: engine/raw for
single-event records (goal >= 0.75), engine/msgspec-alone for batched records (goal
>= 0.5), the engine's batched event rate over its
single-event rate (goal >= 5x) and peak RSS. `--minutes M` adds a soak: a `burnrate
produce` process publishes at `--soak-rate` events/s in real time while the engine
consumes; RSS is sampled every 10 s and the mean of the last third of the samples is
compared with the first third. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import json
import logging
import operator
import os
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Coroutine
from itertools import chain, count
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from aiokafka import AIOKafkaConsumer

from benchmarks.common import current_rss_bytes, machine, peak_rss_bytes, report
from engine.adapters.kafka import source as engine_source
from engine.adapters.kafka.embedded_broker import EmbeddedBroker, create_topic
from engine.core.config import Config, parse_config
from engine.core.decode import Event, Record
from engine.loadgen.publish import produce
from engine.loadgen.spec import LoadSpec
from engine.runtime.logging import configure_logging
from engine.runtime.service import Runtime
from engine.runtime.tuning import tune_gc

SERVICES = ("checkout", "search", "catalog", "payments")
EVENT_SPAN_S = 600.0
"""Event time covered by the pre-produced events (they end at the time of producing)."""
MIB = 1024 * 1024
SOAK_SAMPLE_S = 10.0
DEADLINE_S = 600.0


def bench_config(bootstrap: str, topic: str) -> Config:
    """Two SLOs per service; lateness covers the backlog so no event is dropped as late.

    (The service moves event time to `wall clock - allowed_lateness` every second, so
    with the default 60 s a backlog older than that would be rejected, not counted.)
    """
    lines = ["slos:"]
    for svc in SERVICES:
        lines.append(
            f"  - {{name: {svc}-avail, service: {svc}, sli: availability, objective: 99.9}}"
        )
        lines.append(
            f"  - {{name: {svc}-latency, service: {svc}, sli: latency, threshold_ms: 250,"
            " objective: 99}"
        )
    lines += [
        "evaluation: {allowed_lateness: 1h}",
        "kafka:",
        f"  bootstrap_servers: {bootstrap}",
        f"  topics: [{topic}]",
        f"  group_id: bench-{uuid.uuid4().hex[:12]}",
        "http: {listen: 127.0.0.1:0}",
    ]
    return parse_config("\n".join(lines) + "\n")


def fresh_topic(kind: str) -> str:
    return f"bench-{kind}-{uuid.uuid4().hex[:10]}"


async def wait_for(cond: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> None:
    end = time.monotonic() + deadline_s
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


# -- the two consumers ------------------------------------------------------------------


FASTEST_RAW: dict[str, tuple[float, float]] = {}
"""Per topic, the fastest raw run (`consume_raw`): its wall and this process's CPU
seconds."""


async def consume_raw(bootstrap: str, topic: str, records: int) -> float:
    """Seconds for plain aiokafka to fetch `records` records (after assignment); the CPU
    time this process spent on it, in the fastest run, goes to `FASTEST_RAW`."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-raw-{uuid.uuid4().hex[:12]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=engine_source.FETCH_MAX_WAIT_MS,
        max_partition_fetch_bytes=engine_source.MAX_PARTITION_FETCH_BYTES,
        fetch_max_bytes=engine_source.FETCH_MAX_BYTES,
        max_poll_records=engine_source.MAX_POLL_RECORDS,
    )
    await consumer.start()
    try:
        await wait_for(lambda: bool(consumer.assignment()), "partition assignment")
        t0, cpu0 = time.perf_counter(), time.process_time()
        seen = 0
        end = time.monotonic() + DEADLINE_S
        while seen < records:
            data = await consumer.getmany(
                timeout_ms=engine_source.POLL_TIMEOUT_MS,
                max_records=engine_source.MAX_POLL_RECORDS,
            )
            for batch in data.values():
                seen += len(batch)
            if time.monotonic() > end:
                raise TimeoutError(f"raw consumer saw {seen} of {records} records")
        took, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        if took < FASTEST_RAW.get(topic, (float("inf"), 0.0))[0]:
            FASTEST_RAW[topic] = (took, cpu)
        return took
    finally:
        await consumer.stop()


async def fetch_values(bootstrap: str, topic: str, records: int) -> list[bytes]:
    """The values of the topic's first `records` records, fetched once (untimed)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-values-{uuid.uuid4().hex[:12]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=engine_source.MAX_PARTITION_FETCH_BYTES,
        fetch_max_bytes=engine_source.FETCH_MAX_BYTES,
    )
    await consumer.start()
    try:
        values: list[bytes] = []
        end = time.monotonic() + DEADLINE_S
        while len(values) < records:
            data = await consumer.getmany(timeout_ms=engine_source.POLL_TIMEOUT_MS)
            for batch in data.values():
                values += [r.value for r in batch if r.value is not None]
            if time.monotonic() > end:
                raise TimeoutError(f"fetched {len(values)} of {records} records")
        return values
    finally:
        await consumer.stop()


def decode_alone(values: list[bytes], repeat: int) -> float:
    """Seconds for msgspec alone to decode `values` into the engine's event structs (one
    reusable typed decoder, a record an object or an array), best of `repeat`, in slices
    of the engine's fetch size."""
    decode = msgspec.json.Decoder(Record).decode
    step = engine_source.MAX_POLL_RECORDS
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for i in range(0, len(values), step):
            [decode(v) for v in values[i : i + step]]
        best = min(best, time.perf_counter() - t0)
    return best


def decode_and_extract(values: list[bytes], repeat: int, *, batched: bool) -> float:
    """Seconds for the least any engine built on msgspec's structs does per event, best
    of `repeat`, in the engine's fetch slices: `decode_alone`, then each event's fields
    into arrays (its key, service, operation, status and ok, as a number from a dict of
    the keys seen; its time, latency and weight as numbers). Written plainly here, not
    the engine's code: a floor under the engine's own time, with Kafka's part on top.
    Each record is decoded as what it is (`batched`: an array of events, else one), the
    cheapest typed decode there is; the engine takes that path for single events too."""
    decode = msgspec.json.Decoder(list[Event] if batched else Event).decode
    step = engine_source.MAX_POLL_RECORDS
    key = operator.attrgetter("service", "operation", "status", "ok")
    fields = [operator.attrgetter(f) for f in ("ts", "latency_ms", "count")]
    best = float("inf")
    for _ in range(repeat):
        ids: dict[Any, int] = defaultdict(count().__next__)  # a new key: the next id
        t0 = time.perf_counter()
        for i in range(0, len(values), step):
            recs = [decode(v) for v in values[i : i + step]]
            events = list(chain.from_iterable(recs)) if batched else recs
            n = len(events)
            np.fromiter(map(ids.__getitem__, map(key, events)), np.int32, n)
            for f in fields:
                np.fromiter(map(f, events), np.float64, n)
        best = min(best, time.perf_counter() - t0)
    return best


@contextlib.asynccontextmanager
async def running(config: Config) -> AsyncIterator[Runtime]:
    """A Runtime serving `config` until the block ends."""
    rt = Runtime(config, listen="127.0.0.1:0", sinks=[])
    stop = asyncio.Event()
    task = asyncio.create_task(rt.run(stop))
    try:
        await wait_for(lambda: rt.started.is_set() or task.done(), "the consumer to start")
        if task.done():
            await task
        yield rt
    finally:
        stop.set()
        async with asyncio.timeout(30):
            await task


async def consume_engine(bootstrap: str, topic: str, records: int, events: int) -> float:
    """Seconds for the service to apply `records` records (after assignment)."""
    async with running(bench_config(bootstrap, topic)) as rt:
        await wait_for(lambda: bool(rt.source.status().assigned), "partition assignment")
        t0 = time.perf_counter()
        await wait_for(lambda: rt.source.records_consumed >= records, f"{records} records")
        took = time.perf_counter() - t0
        ev = rt.evaluator
    # every event must have been decoded, classified and counted, none rejected
    if (
        ev.counts().accepted_events != events
        or sum(ev.rejected_counts().values())
        or ev.counts().unmatched_events
    ):
        raise RuntimeError(
            f"engine applied {ev.counts().accepted_events} of {events} events "
            f"(rejected {ev.rejected_counts()}, unmatched {ev.counts().unmatched_events})"
        )
    if int(ev.counts().events_total.sum()) != 2 * events:  # two SLOs per service
        raise RuntimeError(f"SLO counts {int(ev.counts().events_total.sum())} != {2 * events}")
    return took


# -- the throughput comparison ----------------------------------------------------------


async def preproduce(bootstrap: str, topic: str, n: int, batch: int, partitions: int) -> Any:
    await create_topic(bootstrap, topic, partitions)
    spec = LoadSpec(rate_per_s=n / EVENT_SPAN_S, duration_s=EVENT_SPAN_S, services=SERVICES)
    t0 = time.perf_counter()
    summary = await produce(bootstrap, topic, spec, batch=batch, realtime=False)
    print(
        f"  produced {summary.events:,} events in {summary.records:,} records "
        f"({batch}/record) into {topic} in {time.perf_counter() - t0:.1f}s",
        flush=True,
    )
    return summary


async def best_of_pair(
    label: str,
    raw: Callable[[], Coroutine[Any, Any, float]],
    engine: Callable[[], Coroutine[Any, Any, float]],
    repeat: int,
) -> tuple[float, float]:
    best_raw = best_engine = float("inf")
    for i in range(repeat):
        r = await raw()
        e = await engine()
        print(f"  {label} run {i + 1}: raw {r:.2f}s, engine {e:.2f}s", flush=True)
        best_raw, best_engine = min(best_raw, r), min(best_engine, e)
    return best_raw, best_engine


async def bench_throughput(
    bootstrap: str, n: int, batch: int, partitions: int, repeat: int
) -> list[dict[str, Any]]:
    single_topic, batched_topic = fresh_topic("single"), fresh_topic("batched")
    print(f"pre-producing {n:,} events twice on {bootstrap}", flush=True)
    single = await preproduce(bootstrap, single_topic, n, 1, partitions)
    batched = await preproduce(bootstrap, batched_topic, n, batch, partitions)
    rss_produced = current_rss_bytes()

    rows: list[dict[str, Any]] = []
    rates: dict[int, float] = {}
    for per_record, topic, summary in ((1, single_topic, single), (batch, batched_topic, batched)):
        kind = "single-event" if per_record == 1 else f"batched ({per_record}/record)"
        records, events = summary.records, summary.events
        raw_s, engine_s = await best_of_pair(
            kind,
            functools.partial(consume_raw, bootstrap, topic, records),
            functools.partial(consume_engine, bootstrap, topic, records, events),
            repeat,
        )
        rates[per_record] = events / engine_s
        values = await fetch_values(bootstrap, topic, records)
        decode_s = decode_alone(values, repeat)
        raw_cpu_s = FASTEST_RAW[topic][1]
        floor_s = decode_and_extract(values, repeat, batched=per_record > 1) + raw_cpu_s
        print(
            f"  {kind}: msgspec decode alone {decode_s:.2f}s; floor {floor_s:.2f}s (raw "
            f"aiokafka's CPU {raw_cpu_s:.2f}s, decode and fields into arrays)",
            flush=True,
        )
        rows.append(
            {
                "measure": f"consume {kind} records",
                "events": events,
                "records": records,
                "baseline": "raw aiokafka getmany",
                "baseline_events_per_s": events / raw_s,
                "burnrate_events_per_s": events / engine_s,
                "ratio": raw_s / engine_s,
                "ceiling": raw_s / floor_s,
                "goal": ">= 0.75" if per_record == 1 else None,
            }
        )
        rows.append(
            {
                "measure": f"consume {kind} records vs decoding them alone",
                "events": events,
                "records": records,
                "baseline": "msgspec decode alone (in process, no Kafka)",
                "baseline_events_per_s": events / decode_s,
                "burnrate_events_per_s": events / engine_s,
                "ratio": decode_s / engine_s,
                "ceiling": decode_s / floor_s,
                "goal": ">= 0.5" if per_record > 1 else None,
            }
        )
    rows.append(
        {
            "measure": f"batched ({batch}/record) vs single-event records",
            "events": n,
            "baseline": "burnrate on single-event records",
            "baseline_events_per_s": rates[1],
            "burnrate_events_per_s": rates[batch],
            "ratio": rates[batch] / rates[1],
            "goal": ">= 5",
        }
    )
    gc.collect()
    rows.append(
        {
            "measure": "peak RSS of the benchmark process (MiB)",
            "value": peak_rss_bytes() / MIB,
            "notes": f"RSS after producing {rss_produced / MIB:.0f} MiB, "
            f"after consuming {current_rss_bytes() / MIB:.0f} MiB",
        }
    )
    return rows


# -- the soak ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def producer_process(
    bootstrap: str, topic: str, rate: float, minutes: float, batch: int, summary: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`burnrate produce` in real time, in its own process (its memory is not ours)."""
    argv = [
        sys.executable,
        "-m",
        "engine",
        "produce",
        "--bootstrap-servers",
        bootstrap,
        "--topic",
        topic,
        "--rate",
        f"{rate:g}",
        "--duration",
        f"{minutes * 60:g}s",
        "--batch",
        str(batch),
        "--services",
        ",".join(SERVICES),
        "--summary-json",
        str(summary),
        "-q",
    ]
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(15):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


async def bench_soak(
    bootstrap: str, minutes: float, rate: float, batch: int, partitions: int
) -> dict[str, Any]:
    topic = fresh_topic("soak")
    await create_topic(bootstrap, topic, partitions)
    gc.collect()
    samples: list[tuple[float, float, int, int]] = []  # (t, rss MiB, records, lag)
    print(
        f"soak: {minutes:g} min at {rate:g} events/s ({batch}/record) into {topic}, "
        f"RSS every {SOAK_SAMPLE_S:g}s",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        summary_path = Path(tmp) / "summary.json"
        async with running(bench_config(bootstrap, topic)) as rt:
            await wait_for(lambda: bool(rt.source.status().assigned), "partition assignment")
            t0 = time.monotonic()
            async with producer_process(
                bootstrap, topic, rate, minutes, batch, summary_path
            ) as proc:
                while proc.returncode is None:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(SOAK_SAMPLE_S):
                            await proc.wait()
                    status = rt.source.status()
                    sample = (
                        time.monotonic() - t0,
                        current_rss_bytes() / MIB,
                        status.records_consumed,
                        sum(status.lag.values()),
                    )
                    samples.append(sample)
                    print(
                        f"  t={sample[0]:5.0f}s rss={sample[1]:7.1f} MiB "
                        f"records={sample[2]:,} lag={sample[3]:,}",
                        flush=True,
                    )
                if proc.returncode != 0:
                    raise RuntimeError(f"burnrate produce exited with {proc.returncode}")
            produced = json.loads(summary_path.read_text())
            await wait_for(
                lambda: rt.source.records_consumed >= produced["records"],
                "the engine to catch up",
                60.0,
            )
            ev = rt.evaluator
            applied, rejected = ev.counts().accepted_events, ev.rejected_counts()
    third = max(len(samples) // 3, 1)
    first = mean([s[1] for s in samples[:third]])
    last = mean([s[1] for s in samples[-third:]])
    growth = (last - first) / first if first else float("nan")
    verdict = "RSS grows" if growth > 0.05 else "RSS flat"
    return {
        "measure": f"soak {minutes:g} min at {rate:g} events/s: RSS growth, last vs first third",
        "events": produced["events"],
        "records": produced["records"],
        "value": growth,
        "goal": "<= 0.05",
        "notes": f"{verdict}: {first:.1f} -> {last:.1f} MiB over {len(samples)} samples; "
        f"{applied:,} events applied, rejected {rejected or 'none'}, "
        f"max lag {max((s[3] for s in samples), default=0):,} records",
        "details": {
            "rss_first_third_mib": first,
            "rss_last_third_mib": last,
            "applied_events": applied,
            "rejected": rejected,
            "samples": [
                {"t_s": round(t, 1), "rss_mib": round(m, 1), "records": r, "lag": lag}
                for t, m, r, lag in samples
            ],
        },
    }


# -- main -------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    broker = None if external else EmbeddedBroker()
    try:
        if broker is not None:
            await asyncio.to_thread(broker.start)
        bootstrap = external or (broker.bootstrap_servers if broker else "")
        kind = "KAFKA_BOOTSTRAP_SERVERS" if external else "embedded Tansu"
        rows = await bench_throughput(
            bootstrap, args.events, args.batch, args.partitions, args.repeat
        )
        for row in rows:
            row["broker"] = kind
        if args.minutes > 0:
            soak = await bench_soak(
                bootstrap, args.minutes, args.soak_rate, args.soak_batch, args.partitions
            )
            soak["broker"] = kind
            rows.append(soak)
        return rows
    finally:
        if broker is not None:
            await asyncio.to_thread(broker.stop)


def run_loop(main: Coroutine[Any, Any, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """On uvloop when it is installed, like `burnrate run`."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=500_000, help="events per topic")
    parser.add_argument("--batch", type=int, default=100, help="events per batched record")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per measure (best)")
    parser.add_argument("--minutes", type=float, default=0, help="soak length (0: no soak)")
    parser.add_argument("--soak-rate", type=float, default=10_000, help="events/s in the soak")
    parser.add_argument("--soak-batch", type=int, default=1, help="events per record (soak)")
    parser.add_argument(
        "--gc",
        choices=("tuned", "default"),
        default="tuned",
        help="tuned: the garbage-collector settings `burnrate run` uses "
        "(engine.runtime.tuning.tune_gc), for the whole process, so the raw aiokafka baseline "
        "gets them too; default: Python's defaults for both (default: tuned)",
    )
    args = parser.parse_args()
    if args.gc == "tuned":
        tune_gc()
    configure_logging("text", logging.WARNING)
    print(f"machine: {json.dumps(machine())}", flush=True)
    rows = run_loop(run(args))
    for row in rows:
        row["gc"] = args.gc
    details = {i: r.pop("details") for i, r in enumerate(rows) if "details" in r}
    path = report("bench_kafka", rows)
    if details:  # the soak's RSS series goes into the results file, not the table
        data = json.loads(path.read_text())
        for i, d in details.items():
            data["rows"][i]["details"] = d
        path.write_text(json.dumps(data, indent=2))


if __name__ == "__main__":
    main()
