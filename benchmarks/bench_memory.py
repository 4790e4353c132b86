"""Resident memory per SLO for 30-day periods with the default policy.

    python -m benchmarks.bench_memory [--sizes 1000,10000]

Each size is measured in a fresh subprocess: RSS after importing everything, then after
building the evaluator and running traffic through every SLO (so every ring page is
touched). The baseline is the size of a flat ring of 5 s buckets covering 30 days (what
one resolution for every window would need). Goals: <= 64 KiB per SLO, 10,000 SLOs in
<= 1 GiB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from benchmarks.common import report

CHILD = r"""
import gc, json, sys
import numpy as np
from benchmarks.bench_core import bench_config
from benchmarks.common import current_rss_bytes
from engine.core.config import parse_config
from engine.core.decode import Event
from engine.core.evaluator import Evaluator
n = int(sys.argv[1])
cfg = parse_config(bench_config(n))
gc.collect()
before = current_rss_bytes()
ev = Evaluator(cfg)
for lv in ev.windows.levels:
    lv.data[:] = 0
    lv.data += 1  # touch every page
start = 1_767_225_600.0
rng = np.random.default_rng(1)
for k in range(20):
    evs = [Event(service=f"svc-{int(s)}", ts=start + k * 60 + float(t), status=200, latency_ms=5.0)
           for s, t in zip(rng.integers(0, max(n // 2, 1), 20000), np.sort(rng.random(20000) * 60))]
    ev.ingest(ev.classifier.columns(evs))
gc.collect()
after = current_rss_bytes()
print(json.dumps({"rss": after - before, "arrays": ev.windows.nbytes()}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description="memory per SLO benchmark")
    parser.add_argument("--sizes", default="1000,10000")
    args = parser.parse_args()
    baseline_kib = 30 * 86400 / 5 * 16 / 1024  # int64 total + bad per 5 s bucket
    rows: list[dict[str, object]] = []
    for n in (int(x) for x in args.sizes.split(",")):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(n)], capture_output=True, text=True, check=True
        )
        got = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(
            {
                "slos": n,
                "rss_mib": got["rss"] / 2**20,
                "kib_per_slo": got["rss"] / n / 1024,
                "window_arrays_kib_per_slo": got["arrays"] / n / 1024,
                "baseline_flat_5s_ring_kib_per_slo": baseline_kib,
                "ratio": baseline_kib / (got["rss"] / n / 1024),
                "goal": "<= 64 KiB/SLO; 10k SLOs <= 1 GiB",
            }
        )
    report("bench_memory", rows)


if __name__ == "__main__":
    main()
