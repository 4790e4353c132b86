"""Evaluation tick time vs number of SLOs, vs events between ticks, and with SLO groups.

    python -m benchmarks.bench_evaluate [--sizes 100,1000,10000]
                                        [--groups 10000] [--max-groups 1000]

A tick moves event time forward by one tick (10 s), updates every window's sum
incrementally and evaluates the default policy for every SLO. The baseline, measured in
the same run, is a full re-sum of every window's buckets (what a non-incremental design
does per tick). Goal: <= 10 ms per tick at 10,000 SLOs; growth linear in SLOs and flat
in the number of events applied between ticks. (100,000 SLOs, once a default size, are
over the config's 1 GiB limit on window arrays, `MAX_WINDOW_MEMORY_BYTES`, and refused.)

With SLO groups: `--groups / --max-groups` SLOs grouped by a label with `--max-groups`
each, so `--groups` groups (plus one `__other__` column per SLO), every one of them
assigned by traffic before the ticks are timed. Its baseline is the tick at as many
plain SLOs in the same run, timed in turns with it (`tick_vs_plain`: its tick time over
theirs). Goal: <= 10 ms per tick at 10,000 groups.

Memory beside each size: `window_mib`, the evaluator's window arrays (all resident
once the rings have cycled), and `rss_mib`, how much the process grew while building
and filling the evaluator with an hour of traffic (rings partly touched;
`bench_memory` measures the steady state in a fresh process).
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from functools import partial

import msgspec
import numpy as np

from benchmarks.bench_core import (
    START,
    bench_config,
    groups_assigned,
    labelled_events,
    services_of,
)
from benchmarks.common import current_rss_bytes, report
from engine.core.config import parse_config
from engine.core.decode import Event
from engine.core.evaluator import Evaluator


def _ingest(ev: Evaluator, batch: list[Event]) -> None:
    for i in range(0, len(batch), 20_000):
        ev.ingest(ev.classifier.columns(batch[i : i + 20_000]))


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
    _ingest(ev, batch)
    return ev


def filled_grouped(groups: int, max_groups: int) -> Evaluator:
    """`groups // max_groups` SLOs grouped by a label, with every group assigned by an hour
    of traffic (as many (event, column) pairs per column as `filled` gives, 1 % errors)."""
    if groups % max_groups:
        raise ValueError(f"--groups {groups} is not a multiple of --max-groups {max_groups}")
    cfg = parse_config(bench_config(groups // max_groups, group_by=True, max_groups=max_groups))
    ev = Evaluator(cfg)
    dicts = labelled_events(services_of(cfg), max_groups, 20 * groups, seed=5, error_rate=0.01)
    _ingest(ev, msgspec.convert(dicts, list[Event]))
    if groups_assigned(ev) != groups:
        raise RuntimeError(f"{groups_assigned(ev)} groups assigned, not {groups}")
    return ev


def built(make: Callable[[], Evaluator]) -> tuple[Evaluator, float]:
    """`make()`'s evaluator and how many MiB the process grew while it ran."""
    gc.collect()
    before = current_rss_bytes()
    ev = make()
    gc.collect()
    return ev, (current_rss_bytes() - before) / 2**20


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


def paired_tick_ms(evs: list[Evaluator], ticks: int, rounds: int = 5) -> list[float]:
    """`tick_ms` of each evaluator, measured in turns of `ticks // rounds` ticks so that
    a change in the machine's load hits all of them alike."""
    per = max(ticks // rounds, 1)
    spent = [0.0] * len(evs)
    for _ in range(rounds):
        for k, ev in enumerate(evs):
            spent[k] += tick_ms(ev, per)
    return [s / rounds for s in spent]


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
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--ticks", type=int, default=100)
    parser.add_argument("--groups", type=int, default=10_000, help="SLO groups (0: skip)")
    parser.add_argument("--max-groups", type=int, default=1_000, help="groups per SLO")
    args = parser.parse_args()
    rows: list[dict[str, object]] = []
    sizes = [int(x) for x in args.sizes.split(",")]
    if args.groups and args.groups not in sizes:
        sizes.append(args.groups)  # the grouped row's baseline
    for n in sizes:
        ev, rss = built(partial(filled, n))
        ticks = args.ticks if n <= 10_000 else max(args.ticks // 5, 5)
        grouped: list[dict[str, object]] = []
        if args.groups and n == args.groups:
            gev, grss = built(partial(filled_grouped, args.groups, args.max_groups))
            ms, gms = paired_tick_ms([ev, gev], ticks)
            base = full_resum_ms(gev)
            grouped.append(
                {
                    "slos": len(gev.config_slos),
                    "groups": args.groups,
                    "columns": len(gev.slos),
                    "events_between_ticks": 0,
                    "tick_ms": gms,
                    "us_per_column": gms * 1000 / len(gev.slos),
                    "baseline_full_resum_ms": base,
                    "speedup": base / gms,
                    "tick_vs_plain": gms / ms,
                    "window_mib": gev.windows.nbytes() / 2**20,
                    "rss_mib": grss,
                    "goal": f"<= 10 ms at {args.groups:,} groups",
                }
            )
            del gev
        else:
            ms = tick_ms(ev, ticks)
        base = full_resum_ms(ev, 3 if n > 10_000 else 5)
        rows.append(
            {
                "slos": n,
                "groups": None,
                "columns": n,
                "events_between_ticks": 0,
                "tick_ms": ms,
                "us_per_column": ms * 1000 / n,
                "baseline_full_resum_ms": base,
                "speedup": base / ms,
                "tick_vs_plain": None,
                "window_mib": ev.windows.nbytes() / 2**20,
                "rss_mib": rss,
                "goal": "<= 10 ms at 10,000",
            }
        )
        rows += grouped
        del ev
        gc.collect()
    ev = filled(10_000)
    for per_tick in (1_000, 10_000, 50_000):
        ms = tick_ms(ev, 30, per_tick)
        rows.append(
            {
                "slos": 10_000,
                "columns": 10_000,
                "events_between_ticks": per_tick,
                "tick_ms": ms,
                "us_per_column": ms * 1000 / 10_000,
                "goal": "flat in events",
            }
        )
    report("bench_evaluate", rows)


if __name__ == "__main__":
    main()
