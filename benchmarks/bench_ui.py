"""Web UI cost on the engine: the history it keeps, and consumption while the list polls.

    python -m benchmarks.bench_ui [--slos 10000] [--records 300000] [--repeat 2]

(i) History. An Evaluator with N SLOs (benchmarks.bench_core.filled_evaluator) and its
`History` (engine.core.history, default tiers: 30 days): the bytes its arrays hold per
SLO, against the goal of 8 KiB, and the time one sample (`History.observe`, once per
evaluation tick) takes against one evaluation tick of the same evaluator (the baseline,
timed in the same run). Also the list page's server-side render (once per page load).

Also the body the list page polls (`/v1/summary`, built once per tick whoever polls)
against the `/v1/slos` body (the baseline: the full views).

(ii) Consumption. As benchmarks.bench_scrape's consumption runs, with a client in a
separate process GETting `/v1/summary` (what the list page polls, every 2 s in the
UI) every second instead of `/metrics`: records/s against the same run with nobody polling.
The goal, < 5 % loss, is printed beside the figures; nothing is asserted.
"""

from __future__ import annotations

import argparse
import gc
import time
from typing import Any

from benchmarks.bench_core import filled_evaluator
from benchmarks.bench_scrape import bench_consume
from benchmarks.common import best_of, report, run_async
from engine.adapters.http.api import SloApi
from engine.adapters.http.auth import BearerAuth
from engine.adapters.http.summary import SummaryApi
from engine.adapters.http.ui import Ui
from engine.core.history import DEFAULT_TIERS, History

GOAL_LOSS = 0.05
GOAL_BYTES_PER_SLO = 8 * 1024


def bench_history(n_slos: int, ticks: int = 50) -> list[dict[str, Any]]:
    ev = filled_evaluator(n_slos)
    history = History(ev)
    assert ev.next_tick_s is not None
    t0 = ev.next_tick_s
    # Fill every point of every tier once (a month of samples at the coarse tier's
    # resolution is the same memory as a few: the arrays are allocated up front).
    gc.collect()
    tick_s = observe_s = 0.0
    for k in range(ticks):
        a = time.perf_counter()
        ev.advance(t0 + (k + 1) * 60 + 0.001)  # a minute apart: a new fine point each
        b = time.perf_counter()
        history.observe(ev)
        c = time.perf_counter()
        tick_s += b - a
        observe_s += c - b
    per_slo = history.nbytes / len(ev.slos)
    api = SloApi(ev)
    summary = SummaryApi(ev)
    ui = Ui(api, summary, BearerAuth(None))
    rows = summary.rows()
    render_s = best_of(lambda: "".join(ui._row_html(r) for r in rows), repeat=2)
    body_s = best_of(api.list_body, repeat=2)
    summary_s = best_of(summary.body, repeat=3)
    span = max(t.span_s for t in DEFAULT_TIERS) // 86400
    return [
        {
            "measure": f"history memory per SLO ({span} days, default tiers and policy)",
            "slos": n_slos,
            "windows": len(history.windows_s),
            "points": sum(t.points for t in DEFAULT_TIERS),
            "burnrate_bytes_per_slo": round(per_slo),
            "bytes_per_slo_without_shared_time_axes": history.bytes_per_slo,
            "history_mib": history.nbytes / 2**20,
            "goal": f"<= {GOAL_BYTES_PER_SLO} bytes",
        },
        {
            "measure": "history sample per evaluation tick",
            "slos": n_slos,
            "baseline": "the evaluation tick itself",
            "baseline_ms": tick_s / ticks * 1000,
            "burnrate_ms": observe_s / ticks * 1000,
            "ratio": observe_s / tick_s,
        },
        {
            "measure": "/v1/summary body built (once per tick while polled)",
            "slos": n_slos,
            "baseline": "/v1/slos body built",
            "baseline_ms": body_s * 1000,
            "burnrate_ms": summary_s * 1000,
            "ratio": body_s / summary_s,
            "body_mib": len(summary.body()) / 2**20,
        },
        {
            "measure": "list page rows rendered (per page load)",
            "slos": n_slos,
            "baseline": "/v1/slos body built",
            "baseline_ms": body_s * 1000,
            "burnrate_ms": render_s * 1000,
            "ratio": body_s / render_s,
        },
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--slos", type=int, default=10_000)
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=2, help="pairs of consumption runs")
    parser.add_argument("--skip-history", action="store_true")
    parser.add_argument("--skip-consume", action="store_true")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    if not args.skip_history:
        rows += bench_history(args.slos)
        print(f"history at {args.slos:,} SLOs done", flush=True)
    if not args.skip_consume:
        rows.append(
            run_async(bench_consume(args.slos, args.records, args.repeat, "/v1/summary", GOAL_LOSS))
        )
    report("bench_ui", rows)


if __name__ == "__main__":
    main()
