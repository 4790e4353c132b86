"""Security overheads, in one run: the audit log on the alert path, and TLS on
`/metrics` scrapes.

    python -m benchmarks.bench_security [--transitions 2000] [--repeat 3] [--dir DIR]
        [--slos 1000] [--scrapes 300] [--only audit|tls]

TLS: `/metrics` scrape latency over HTTP and HTTPS, keep-alive and a new connection
per scrape, as benchmarks.bench_tls_scrape measures it (its docstring says how; it
also runs alone), reported as `bench_tls_scrape`.

Audit log: alert transitions per second through the engine's alert path, without the
audit log and with it (fsync after each entry, and batched).

A Runtime (not started: no broker is needed) with four SLOs takes `--transitions`
alert transitions, one per call to its transition callback (as evaluation ticks hand
them over: logged, queued for delivery, recorded in the audit log when there is one),
alternately firing and resolved across the SLOs and both severities. Three kinds of
run in turn, `--repeat` times each, the best of each kind kept:

- `none`: no `audit:` section (the baseline);
- `fsync_entry`: `audit: {fsync: entry}`, one write and one fsync per transition;
- `fsync_batch`: `audit: {fsync: batch, fsync_interval: 1s}`, one write per
  transition and an fsync a second or every 1000 entries.

The log is written in `--dir` (default: a temporary directory; fsync costs what that
file system's device costs) and verified after each run, so what was timed is a whole
chain. Printed: transitions/s, microseconds per transition, and each ratio to `none`.
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import bench_tls_scrape as tls_scrape
from benchmarks.common import report
from engine.adapters.store.audit import FileAudit
from engine.core.audit_verify import verify_lines
from engine.core.config import parse_config
from engine.core.transitions import Transition
from engine.runtime.service import Runtime

SLOS = ("checkout-avail", "checkout-latency", "search-avail", "search-latency")
KINDS = {
    "none": "",
    "fsync_entry": "audit: {{path: '{path}', fsync: entry}}\n",
    "fsync_batch": "audit: {{path: '{path}', fsync: batch, fsync_interval: 1s}}\n",
}


def config_text(audit: str) -> str:
    return (
        "slos:\n"
        "  - {name: checkout-avail, service: checkout, sli: availability, objective: 99.9}\n"
        "  - {name: checkout-latency, service: checkout, sli: latency, threshold_ms: 300,"
        " objective: 99}\n"
        "  - {name: search-avail, service: search, sli: availability, objective: 99.9}\n"
        "  - {name: search-latency, service: search, sli: latency, threshold_ms: 300,"
        " objective: 99}\n"
        "http: {listen: 127.0.0.1:0}\n" + audit
    )


def transitions(n: int) -> list[Transition]:
    """`n` transitions: each (SLO, severity) alert fires, then resolves, in turn."""
    out = []
    for i in range(n):
        alert = (i // 2) % (len(SLOS) * 2)
        out.append(
            Transition(
                slo=SLOS[alert // 2],
                severity="page" if alert % 2 == 0 else "ticket",
                state="firing" if i % 2 == 0 else "resolved",
                at=1_700_000_000.0 + i,
                long_window_s=3600,
                short_window_s=300,
                burn_rate_long=15.2,
                burn_rate_short=20.1,
                factor=14.4,
                error_budget_remaining_ratio=0.42,
            )
        )
    return out


def run_once(kind: str, batch: list[Transition], where: Path) -> dict[str, Any]:
    path = where / f"audit-{kind}-{time.monotonic_ns()}.jsonl"
    rt = Runtime(parse_config(config_text(KINDS[kind].format(path=path))), sinks=[])
    sink = rt.audit.sink
    if isinstance(sink, FileAudit):
        sink.open()
    gc.collect()
    t0 = time.perf_counter()
    for tr in batch:
        rt._on_transitions([tr])
    rt.audit.close()  # the batch policy's last fsync is part of the cost
    took = time.perf_counter() - t0
    row: dict[str, Any] = {"kind": kind, "seconds": took}
    if isinstance(sink, FileAudit):
        with path.open("rb") as f:
            v = verify_lines(f)
        if not (v.ok and v.entries == len(batch)):
            raise SystemExit(f"the {kind} log does not verify: {v}")
        row["fsyncs"] = sink.syncs
        path.unlink()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transitions", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--slos", type=int, default=1000, help="SLOs behind /metrics (TLS)")
    parser.add_argument("--scrapes", type=int, default=300, help="scrapes per run (TLS)")
    parser.add_argument("--only", choices=("audit", "tls"), default=None)
    args = parser.parse_args()
    if args.only != "tls":
        audit_part(args)
    if args.only != "audit":
        tls_scrape.report_runs(args.slos, args.scrapes, args.repeat)


def audit_part(args: argparse.Namespace) -> None:
    batch = transitions(args.transitions)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        best: dict[str, dict[str, Any]] = {}
        for _ in range(args.repeat):
            for kind in KINDS:
                row = run_once(kind, batch, Path(tmp))
                if kind not in best or row["seconds"] < best[kind]["seconds"]:
                    best[kind] = row
    base = args.transitions / best["none"]["seconds"]
    rows = []
    for kind, row in best.items():
        rate = args.transitions / row["seconds"]
        rows.append(
            {
                "kind": kind,
                "transitions": args.transitions,
                "per_s": rate,
                "us_per_transition": row["seconds"] / args.transitions * 1e6,
                "ratio_to_none": rate / base,
                "fsyncs": row.get("fsyncs"),
            }
        )
    report("bench_security_audit", rows)


if __name__ == "__main__":
    main()
