"""Resident memory per SLO, and per SLO group, for 30-day periods with the default policy.

    python -m benchmarks.bench_memory [--sizes 1000,10000] [--groups 10000] [--max-groups 1000]

Each size is measured in a fresh subprocess: RSS after importing everything, then after
building the evaluator and running traffic through every SLO (so every ring page is
touched). The baseline is the size of a flat ring of 5 s buckets covering 30 days (what
one resolution for every window would need). Goals: <= 64 KiB per SLO, 10,000 SLOs in
<= 1 GiB.

With SLO groups: `--groups / --max-groups` SLOs grouped by a label with `--max-groups`
each, every group assigned by traffic, measured the same way; per group is the growth
over `--groups` (the `__other__` columns and the classifier's per-group keys are in
it). Its baseline is as many plain SLOs in the same run (`vs_plain`: its KiB per group
over their KiB per SLO). Goal: <= 32 KiB per group. The growth also holds what the
traffic left behind (the allocator keeps pages of the freed event objects), which
depends on the batch sizes, not on the number of groups. Beside every row is the config's own
estimate, `Config.window_bytes()` per column, which the 1 GiB limit is checked with.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys

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
from engine.core.ladder import BUCKET_BYTES

CHILD = "import sys; from benchmarks.bench_memory import child; child(*map(int, sys.argv[1:]))"


def child(n: int, max_groups: int) -> None:
    """Measure `n` plain SLOs (`max_groups` 0) or `n` groups in SLOs of `max_groups`, and
    print the result as JSON (run in a fresh process by `measure`)."""
    if max_groups:
        cfg = parse_config(bench_config(n // max_groups, group_by=True, max_groups=max_groups))
    else:
        cfg = parse_config(bench_config(n))
    gc.collect()
    before = current_rss_bytes()
    ev = Evaluator(cfg)
    for lv in ev.windows.levels:
        lv.data[:] = 0
        lv.data += 1  # touch every page
    rng = np.random.default_rng(1)
    for k in range(20):
        if max_groups:  # the first chunk has one event of every group
            dicts = labelled_events(
                services_of(cfg),
                max_groups,
                20_000 + (n if k == 0 else 0),
                cover=k == 0,
                seed=k,
                start=START + k * 60,
                span_s=60.0,
            )
            evs = msgspec.convert(dicts, list[Event])
            del dicts
        else:
            evs = [
                Event(
                    service=f"svc-{int(s)}",
                    ts=START + k * 60 + float(t),
                    status=200,
                    latency_ms=5.0,
                )
                for s, t in zip(
                    rng.integers(0, max(n // 2, 1), 20000),
                    np.sort(rng.random(20000) * 60),
                    strict=True,
                )
            ]
        ev.ingest(ev.classifier.columns(evs))
    if max_groups and groups_assigned(ev) != n:
        raise RuntimeError(f"{groups_assigned(ev)} groups assigned, not {n}")
    del evs
    gc.collect()
    after = current_rss_bytes()
    out = {
        "rss": after - before,
        "arrays": ev.windows.nbytes(),
        "columns": cfg.column_count(),
        "estimate": cfg.window_bytes(),
        "slos": len(cfg.slos),
    }
    print(json.dumps(out))


def measure(n: int, max_groups: int = 0) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(n), str(max_groups)],
        capture_output=True,
        text=True,
        check=True,
    )
    got: dict[str, int] = json.loads(out.stdout.strip().splitlines()[-1])
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description="memory per SLO benchmark")
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--groups", type=int, default=10_000, help="SLO groups (0: skip)")
    parser.add_argument("--max-groups", type=int, default=1_000, help="groups per SLO")
    args = parser.parse_args()
    baseline_kib = 30 * 86400 / 5 * BUCKET_BYTES / 1024  # (total, bad) per 5 s bucket
    sizes = [int(x) for x in args.sizes.split(",")]
    if args.groups and args.groups % args.max_groups:
        parser.error(f"--groups {args.groups} is not a multiple of --max-groups")
    if args.groups and args.groups not in sizes:
        sizes.append(args.groups)  # the grouped row's baseline, measured in the same run
    rows: list[dict[str, object]] = []
    per_slo: dict[int, float] = {}
    for n in sizes:
        got = measure(n)
        kib = per_slo[n] = got["rss"] / n / 1024
        rows.append(
            {
                "slos": n,
                "groups": None,
                "columns": got["columns"],
                "rss_mib": got["rss"] / 2**20,
                "kib_per_slo": kib,
                "kib_per_group": None,
                "window_arrays_kib_per_column": got["arrays"] / got["columns"] / 1024,
                "config_estimate_kib_per_column": got["estimate"] / got["columns"] / 1024,
                "baseline_flat_5s_ring_kib_per_slo": baseline_kib,
                "ratio": baseline_kib / kib,
                "vs_plain": None,
                "goal": "<= 64 KiB/SLO; 10k SLOs <= 1 GiB",
            }
        )
    if args.groups:
        got = measure(args.groups, args.max_groups)
        kib = got["rss"] / args.groups / 1024

        rows.append(
            {
                "slos": got["slos"],
                "groups": args.groups,
                "columns": got["columns"],
                "rss_mib": got["rss"] / 2**20,
                "kib_per_slo": None,
                "kib_per_group": kib,
                "window_arrays_kib_per_column": got["arrays"] / got["columns"] / 1024,
                "config_estimate_kib_per_column": got["estimate"] / got["columns"] / 1024,
                "baseline_flat_5s_ring_kib_per_slo": baseline_kib,
                "ratio": baseline_kib / kib,
                "vs_plain": kib / per_slo[args.groups],
                "goal": "<= 32 KiB/group",
            }
        )
    report("bench_memory", rows)


if __name__ == "__main__":
    main()
