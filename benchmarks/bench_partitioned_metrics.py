"""/metrics of an evaluate worker: the union of its partitions' evaluators, against one
evaluator of the same SLOs.

    python -m benchmarks.bench_partitioned_metrics [--slos 1000 10000] [--partitions 1 8 32 64]

N SLOs (benchmarks.bench_core.bench_config) are spread over P counts partitions by
their partition keys (engine.core.deltas.partition_keys, hashed with CRC-32 as a
stand-in for Kafka's partitioner); each partition gets its own evaluator over its SLOs,
fed the events of its services, and the baseline is one evaluator of all N SLOs fed
every event, rendered by the single process's path (`EngineMetrics`). Both are timed
uncached (the first scrape after a tick, `invalidate()` then `render()`), best of
`--repeat`, the runs interleaved. `ratio` is baseline / union: 1.0 means the union
costs what one evaluator costs, below 1 that it costs more. The per-SLO series of both
bodies are checked to be the same before anything is timed.
"""

from __future__ import annotations

import argparse
import gc
import zlib
from typing import Any

import msgspec
import numpy as np

from benchmarks.bench_core import START, bench_config
from benchmarks.common import best_of, report
from engine.adapters.http import metrics as metrics_module
from engine.adapters.http.metrics import EngineMetrics
from engine.adapters.http.partitioned_metrics import PartitionedMetrics
from engine.adapters.http.partitions import OwnedPartitions
from engine.core.config import Config, parse_config
from engine.core.decode import Event
from engine.core.deltas import partition_keys
from engine.core.evaluator import Evaluator

N_EVENTS = 200_000
BATCH = 20_000


def traffic(config: Config) -> list[Event]:
    """An hour of traffic over the config's services, 1% failing."""
    services = sorted({s.service for s in config.slos if s.service is not None})
    rng = np.random.default_rng(3)
    picks = rng.integers(0, len(services), N_EVENTS).tolist()
    times = np.sort(rng.random(N_EVENTS) * 3600).tolist()
    fails = (rng.random(N_EVENTS) < 0.01).tolist()
    return [
        Event(service=services[s], ts=START + t, status=503 if f else 200, latency_ms=100.0)
        for s, t, f in zip(picks, times, fails, strict=True)
    ]


def fed(config: Config, events: list[Event]) -> Evaluator:
    ev = Evaluator(config)
    for i in range(0, len(events), BATCH):
        ev.ingest(ev.classifier.columns(events[i : i + BATCH]))
    ev.advance(START + 3601)
    return ev


def split(config: Config, n_partitions: int, events: list[Event]) -> OwnedPartitions:
    keys = partition_keys(config)

    def partition_of(slo: str) -> int:
        return zlib.crc32(keys.get(slo, slo).encode()) % n_partitions

    owned = {}
    for p in range(n_partitions):
        slos = [s for s in config.slos if partition_of(s.name) == p]
        if not slos:
            continue
        services = {s.service for s in slos}
        sub = msgspec.structs.replace(config, slos=slos)
        owned[p] = (fed(sub, [e for e in events if e.service in services]), None)
    return OwnedPartitions(config=config, partition_of=partition_of, owned=owned)


def per_slo(body: bytes) -> list[bytes]:
    return sorted(line for line in body.splitlines() if line.startswith(b"burnrate_slo_"))


def bench(n_slos: int, partitions: list[int], repeat: int) -> list[dict[str, Any]]:
    config = parse_config(bench_config(n_slos))
    events = traffic(config)
    single = EngineMetrics(fed(config, events), lambda: None)
    want = per_slo(single.render())

    def render(m: EngineMetrics) -> None:
        m.invalidate()
        m.render()

    # every render fresh: no rate limit between a tick and the next render
    metrics_module.RENDER_BUDGET_FACTOR = 0

    unions = []
    for n in partitions:
        union = PartitionedMetrics(split(config, n, events), lambda: None)
        assert per_slo(union.render()) == want, "the union differs from one evaluator"
        unions.append(union)
    # interleaved, best of `repeat` each: this machine's noise hits all alike
    best = [float("inf")] * (1 + len(unions))
    gc.collect()
    for _ in range(repeat):
        for k, m in enumerate([single, *unions]):
            best[k] = min(best[k], best_of(lambda m=m: render(m), 1))  # type: ignore[misc]
    baseline_s = best[0]
    return [
        {
            "slos": n_slos,
            "partitions": n,
            "owned_evaluators": len(union.partitions.engines()),
            "series": len(want),
            "baseline_ms": baseline_s * 1000,
            "union_ms": union_s * 1000,
            "ratio": baseline_s / union_s,
        }
        for n, union, union_s in zip(partitions, unions, best[1:], strict=True)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slos", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--partitions", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    rows = []
    for n in args.slos:
        rows += bench(n, args.partitions, args.repeat)
    report("bench_partitioned_metrics", rows)


if __name__ == "__main__":
    main()
