"""Evaluation tick time vs number of SLOs, and vs events between ticks.

    python -m benchmarks.bench_evaluate [--sizes 100,1000,10000,100000]

A tick moves event time forward by one tick (10 s), updates every window's sum
incrementally and evaluates the default policy for every SLO. The baseline, measured in
the same run, is a full re-sum of every window's buckets (what a non-incremental design
does per tick). Goal: <= 10 ms per tick at 10,000 SLOs; growth linear in SLOs and flat
in the number of events applied between ticks.
"""

from __future__ import annotations

import argparse
import gc
import time

import numpy as np

from benchmarks.bench_core import bench_config
from benchmarks.common import report
from engine.core.config import parse_config
from engine.core.decode import Event
from engine.core.evaluator import Evaluator

START = 1_767_225_600.0


def filled(n_slos: int, events: int = 100_000) -> Evaluator:
    ev = Evaluator(parse_config(bench_config(n_slos)))
    rng = np.random.default_rng(5)
    services = rng.integers(0, max(n_slos // 2, 1), events)
    times = np.sort(rng.random(events) * 3600)
    batch = [
        Event(
            service=f"svc-{int(s)}",
            ts=START + float(t),
            status=503 if i % 97 == 0 else 200,
            latency_ms=100.0,
        )
        for i, (s, t) in enumerate(zip(services, times, strict=True))
    ]
    for i in range(0, len(batch), 20_000):
        ev.ingest(ev.classifier.columns(batch[i : i + 20_000]))
    return ev


def tick_ms(ev: Evaluator, ticks: int, events_per_tick: int = 0) -> float:
    """Mean wall time of `advance` over `ticks` ticks, with events applied in between
    (their ingest time is not counted)."""
    assert ev.next_tick_s is not None
    t = ev.next_tick_s
    n_slo = len(ev.slos)
    rng = np.random.default_rng(9)
    spent = 0.0
    for _ in range(ticks):
        if events_per_tick:
            svc = rng.integers(0, max(n_slo // 2, 1), events_per_tick)
            evs = [
                Event(service=f"svc-{int(s)}", ts=t - 1.0, status=200, latency_ms=50.0) for s in svc
            ]
            ev.ingest(ev.classifier.columns(evs))
        t += ev.tick_s
        gc.disable()
        start = time.perf_counter()
        ev.advance(t + 0.001)
        spent += time.perf_counter() - start
        gc.enable()
    return spent / ticks * 1000


def full_resum_ms(ev: Evaluator, repeat: int = 5) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        for lv in ev.windows.levels:
            grid = lv.grid()
            for wi in lv.windows:
                grid[: ev.windows.buckets[wi]].sum(axis=0)
    return (time.perf_counter() - start) / repeat * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description="evaluation tick benchmark")
    parser.add_argument("--sizes", default="100,1000,10000,100000")
    parser.add_argument("--ticks", type=int, default=100)
    args = parser.parse_args()
    rows: list[dict[str, object]] = []
    for n in (int(x) for x in args.sizes.split(",")):
        ev = filled(n)
        ticks = args.ticks if n <= 10_000 else max(args.ticks // 5, 5)
        ms = tick_ms(ev, ticks)
        base = full_resum_ms(ev, 3 if n > 10_000 else 5)
        rows.append(
            {
                "slos": n,
                "events_between_ticks": 0,
                "tick_ms": ms,
                "us_per_slo": ms * 1000 / n,
                "baseline_full_resum_ms": base,
                "speedup": base / ms,
                "goal": "<= 10 ms at 10,000",
            }
        )
        del ev
        gc.collect()
    ev = filled(10_000)
    for per_tick in (1_000, 10_000, 50_000):
        ms = tick_ms(ev, 30, per_tick)
        rows.append(
            {
                "slos": 10_000,
                "events_between_ticks": per_tick,
                "tick_ms": ms,
                "us_per_slo": ms * 1000 / 10_000,
                "baseline_full_resum_ms": None,
                "speedup": None,
                "goal": "flat in events",
            }
        )
    report("bench_evaluate", rows)


if __name__ == "__main__":
    main()
