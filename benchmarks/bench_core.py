"""Core benchmarks: replay throughput vs msgspec decode alone, tick time, memory per SLO.

    python -m benchmarks.bench_core [--events 1000000] [--slos 10000]

Every figure is printed next to a baseline measured in the same run. Nothing here is
asserted; the goals (replay >= 0.5x decode-only, tick <= 10 ms at 10k SLOs, <= 64 KiB
per SLO) are printed beside the measurements.
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path

import msgspec
import numpy as np

from benchmarks.common import DATA, best_of, current_rss_bytes, report
from benchmarks.naive import naive_replay
from engine.adapters.store.events_file import read_chunks
from engine.core.config import parse_config
from engine.core.decode import Event
from engine.core.evaluator import Evaluator
from engine.runtime.replay import replay

SERVICES = [f"svc-{i}" for i in range(20)]


def bench_config(n_slos: int) -> str:
    lines = ["slos:"]
    for i in range(n_slos):
        svc = SERVICES[i % len(SERVICES)] if n_slos <= 2 * len(SERVICES) else f"svc-{i // 2}"
        if i % 2 == 0:
            lines.append(f"  - {{name: s{i}, service: {svc}, sli: availability, objective: 99.9}}")
        else:
            lines.append(
                f"  - {{name: s{i}, service: {svc}, sli: latency, threshold_ms: 250,"
                " objective: 99}"
            )
    return "\n".join(lines) + "\n"


def make_events_file(n: int) -> Path:
    """n single-event JSON lines over ~n/2000 seconds, 20 services, 0.1% errors."""
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"events-{n}.jsonl"
    if path.exists():
        return path
    rng = np.random.default_rng(7)
    start = 1_767_225_600.0
    ts = start + np.sort(rng.random(n)) * (n / 2000)
    svc = rng.integers(0, len(SERVICES), n)
    bad = rng.random(n) < 0.001
    lat = np.round(rng.lognormal(4.0, 0.5, n), 1)
    enc = msgspec.json.Encoder()
    with path.open("wb") as f:
        for i in range(n):
            f.write(
                enc.encode(
                    {
                        "service": SERVICES[svc[i]],
                        "ts": round(float(ts[i]), 3),
                        "operation": "GET /items",
                        "status": 503 if bad[i] else 200,
                        "latency_ms": float(lat[i]),
                    }
                )
                + b"\n"
            )
    return path


def decode_only(path: Path) -> int:
    """Baseline: read the same chunks and decode every line with msgspec, nothing else."""
    dec = msgspec.json.Decoder(Event | list[Event])
    n = 0
    for block, _ in read_chunks(path):
        n += len(dec.decode_lines(block))
    return n


def bench_replay(n_events: int) -> list[dict[str, object]]:
    path = make_events_file(n_events)
    cfg = parse_config(bench_config(40))
    decode_s = best_of(lambda: decode_only(path))
    replay_s = best_of(lambda: replay(cfg, path, lambda tr: None))
    naive_n = min(n_events, 200_000)
    naive_s = best_of(lambda: naive_replay(cfg, path, naive_n), repeat=1)
    return [
        {
            "measure": "replay vs naive Python (dicts, deques)",
            "events": naive_n,
            "baseline": "naive pure-Python engine",
            "baseline_per_s": naive_n / naive_s,
            "burnrate_per_s": n_events / replay_s,
            "ratio": (n_events / replay_s) / (naive_n / naive_s),
            "goal": ">= 10",
        },
        {
            "measure": "replay throughput",
            "events": n_events,
            "baseline": "msgspec decode only",
            "baseline_per_s": n_events / decode_s,
            "burnrate_per_s": n_events / replay_s,
            "ratio": decode_s / replay_s,
            "goal": ">= 0.5",
        },
    ]


def filled_evaluator(n_slos: int) -> Evaluator:
    """An evaluator with traffic in every SLO's windows so ticks do real work."""
    ev = Evaluator(parse_config(bench_config(n_slos)))
    rng = np.random.default_rng(3)
    start = 1_767_225_600.0
    events = [
        Event(
            service=f"svc-{int(s)}",
            ts=start + float(t),
            status=503 if rng.random() < 0.01 else 200,
            latency_ms=100.0,
        )
        for s, t in zip(
            rng.integers(0, max(n_slos // 2, 1), 200_000),
            np.sort(rng.random(200_000) * 3600),
            strict=True,
        )
    ]
    for i in range(0, len(events), 20_000):
        ev.ingest(ev.classifier.columns(events[i : i + 20_000]))
    return ev


def bench_tick(n_slos: int, ticks: int = 200) -> dict[str, object]:
    ev = filled_evaluator(n_slos)
    assert ev.next_tick_s is not None
    t0 = ev.next_tick_s
    gc.collect()
    start = time.perf_counter()
    for k in range(ticks):
        ev.advance(t0 + (k + 1) * ev.tick_s + 0.001)
    per_tick = (time.perf_counter() - start) / ticks
    # Baseline: a naive full re-sum of every window's buckets per tick, vectorised numpy.
    grids = [lv.grid() for lv in ev.windows.levels]
    naive_start = time.perf_counter()
    for _ in range(20):
        for lv, grid in zip(ev.windows.levels, grids, strict=True):
            for wi in lv.windows:
                grid[: ev.windows.buckets[wi]].sum(axis=0)
    naive = (time.perf_counter() - naive_start) / 20
    return {
        "measure": "evaluation tick",
        "slos": n_slos,
        "baseline": "full re-sum of windows (numpy)",
        "baseline_ms": naive * 1000,
        "burnrate_ms": per_tick * 1000,
        "ratio": naive / per_tick,
        "goal": "<= 10 ms at 10,000",
    }


def bench_memory(n_slos: int) -> dict[str, object]:
    gc.collect()
    before = current_rss_bytes()
    ev = Evaluator(parse_config(bench_config(n_slos)))
    for lv in ev.windows.levels:
        lv.data[:] = 1  # touch every page so RSS counts it
    after = current_rss_bytes()
    return {
        "measure": "memory per SLO (30d period, default policy)",
        "slos": n_slos,
        "baseline": "5 s buckets for 30 days (flat ring)",
        "baseline_kib": 30 * 86400 / 5 * 16 / 1024,
        "burnrate_kib": (after - before) / n_slos / 1024,
        "arrays_kib": ev.windows.nbytes() / n_slos / 1024,
        "goal": "<= 64 KiB",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--slos", type=int, default=10_000)
    args = parser.parse_args()
    rows = bench_replay(args.events)
    rows.append(bench_tick(args.slos))
    rows.append(bench_memory(args.slos))
    report("bench_core", rows)


if __name__ == "__main__":
    main()
