"""The gate answer at 10,000 SLOs: `GET /v1/gates/{service}` against a running engine,
next to `GET /healthz` in the same run.

    python -m benchmarks.bench_gate [--services 100] [--slos-per-service 100]
                                    [--connections 1 4] [--seconds 10] [--repeat 2]

A Runtime (`burnrate run`'s, on uvloop with its GC tuning) serves `--services` x
`--slos-per-service` SLOs (half availability at 99.9 %, half latency at 99 % under
250 ms) judged by a five-row budget policy (the default four and an
`exhaustion_within` row). It first consumes `--events` events of the last minute
(embedded broker unless KAFKA_BOOTSTRAP_SERVERS is set) in which a fifth of the
services fail 5 % of requests (budget spent, pages firing), a fifth fail 0.09 % (a
tenth of the budget left: warn), a tenth are slow (latency SLOs spent, pages) and the
rest are healthy, so decisions, reasons and alerts are those of a real fleet.

Then a client in its own process (aiohttp on uvloop, `--connections` keep-alive
connections, each with one request in flight, the services' gates in turn) GETs for
`--seconds` after a one-second warm-up, alternately `/healthz` (the baseline: the
cheapest route of the same server, so the ratio of request rates is what the gate
answer costs on top of aiohttp) and `/v1/gates/{service}`; `--repeat` pairs per
connection count, the best run of each kind kept. Latency is the client's, request
sent to body read. `server_cpu` is the share of a core the engine process used during
the measured window (near 1: the engine is the bottleneck; otherwise the client is).

Last, in the engine's process with no HTTP: the gate answer (`GatesApi.body`, what the
handler does) timed over every service, as served between evaluations (encoded once
per evaluation) and right after one (`miss_*`: decided from the arrays and encoded);
the parts of a miss timed alone (`read_ms`: the arrays, once per evaluation for all
services; `columns_ms`, `decide_ms`, `encode_ms`: one service's); and a cProfile of
the misses (`bench_gate_profile`). The goal,
p99 <= 5 ms and >= 0.5x the healthz request rate, is printed beside the figures;
nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import pstats
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec

from benchmarks.common import (
    READY,
    child_summary,
    engine_config,
    free_port,
    kafka_bootstrap,
    report,
    run_async,
    running_engine,
    start_child,
)
from engine.adapters.http.gates import gate_view
from engine.adapters.kafka.embedded_broker import create_topic
from engine.core.evaluator import Evaluator
from engine.loadgen.publish import produce
from engine.loadgen.spec import Incident, LoadSpec
from engine.runtime.service import Runtime
from engine.runtime.tuning import tune_gc

GOAL_P99_MS = 5.0
GOAL_RATIO = 0.5
GOAL = f"p99 <= {GOAL_P99_MS:g} ms, >= {GOAL_RATIO}x healthz rate"
WARMUP_S = 1.0
TRAFFIC_S = 60.0
"""Event time the traffic spans, ending when it is produced."""
WINDOW_START, WINDOW_END = "window-start", "window-end"
"""What the client prints when its measured window opens and closes."""

BUDGET_POLICY = """\
budget_policy:
  - {budget_remaining_at_most: 0, decision: fail}
  - {alert_firing: page, decision: fail}
  - {budget_remaining_below: 0.25, decision: warn}
  - {alert_firing: ticket, decision: warn}
  - {exhaustion_within: 3d, lookback: 1h, decision: warn}
"""


def service_name(i: int) -> str:
    return f"svc-{i:03d}"


def gate_config(n_services: int, per_service: int) -> str:
    """`per_service` SLOs on each of `n_services` services, alternately availability
    and latency, with `BUDGET_POLICY`."""
    lines = ["slos:"]
    for s in range(n_services):
        svc = service_name(s)
        for k in range(per_service):
            if k % 2 == 0:
                lines.append(
                    f"  - {{name: {svc}-avail-{k}, service: {svc}, sli: availability,"
                    " objective: 99.9}"
                )
            else:
                lines.append(
                    f"  - {{name: {svc}-latency-{k}, service: {svc}, sli: latency,"
                    " threshold_ms: 250, objective: 99}"
                )
    return "\n".join(lines) + "\n" + BUDGET_POLICY


def traffic(n_services: int, events: int) -> LoadSpec:
    """`events` over `TRAFFIC_S` seconds on every service: a fifth failing 5 % of
    requests, a fifth 0.09 %, a tenth slow (800 ms median), the rest healthy (0.02 %
    errors, p99 200 ms)."""
    incidents: list[Incident] = []
    for s in range(n_services):
        svc, band = service_name(s), s * 10 // n_services
        if band in (0, 1):
            incidents.append(Incident(start_s=0.0, error_ratio=0.05, service=svc))
        elif band in (2, 3):
            incidents.append(Incident(start_s=0.0, error_ratio=0.0009, service=svc))
        elif band == 4:
            incidents.append(Incident(start_s=0.0, latency_median_ms=800.0, service=svc))
    return LoadSpec(
        rate_per_s=events / TRAFFIC_S,
        duration_s=TRAFFIC_S,
        services=tuple(service_name(s) for s in range(n_services)),
        operations_per_service=1,
        error_ratio=0.0002,
        latency_median_ms=40.0,
        latency_p99_ms=200.0,
        incidents=tuple(incidents),
        seed=11,
    )


# -- the client (its own process) -------------------------------------------------------


async def client_main(base_url: str, paths: list[str], connections: int, seconds: float) -> None:
    """GET `paths` in turn over `connections` connections, one request in flight on
    each, for a warm-up and then `seconds`; print a JSON summary of the measured
    window (requests started in it) on stdout."""
    import aiohttp

    latencies: list[float] = []
    sizes: list[int] = []
    statuses: Counter[int] = Counter()
    failures = 0
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(base_url, connector=connector, timeout=timeout) as session:
        print(READY, flush=True)
        start = time.perf_counter() + WARMUP_S
        end = start + seconds

        async def worker(k: int) -> None:
            nonlocal failures
            i = k
            while (t0 := time.perf_counter()) < end:
                path = paths[i % len(paths)]
                i += connections
                try:
                    async with session.get(path) as r:
                        body = await r.read()
                        status = r.status
                except (aiohttp.ClientError, TimeoutError):
                    if t0 >= start:
                        failures += 1
                    continue
                if t0 >= start:
                    latencies.append(time.perf_counter() - t0)
                    sizes.append(len(body))
                    statuses[status] += 1

        async def marks() -> None:
            await asyncio.sleep(start - time.perf_counter())
            print(WINDOW_START, flush=True)
            cpu0 = time.process_time()
            await asyncio.sleep(end - time.perf_counter())
            print(WINDOW_END, flush=True)
            cpu_s.append(time.process_time() - cpu0)

        cpu_s: list[float] = []
        await asyncio.gather(marks(), *(worker(k) for k in range(connections)))
    latencies.sort()
    print(
        json.dumps(
            {
                "requests": len(latencies),
                "seconds": seconds,
                "p50_s": _quantile(latencies, 0.50),
                "p99_s": _quantile(latencies, 0.99),
                "max_s": latencies[-1] if latencies else None,
                "mean_bytes": statistics.fmean(sizes) if sizes else None,
                "statuses": {str(k): v for k, v in statuses.items()},
                "failures": failures,
                "client_cpu": cpu_s[0] / seconds if cpu_s else None,
            }
        )
    )


def _quantile(ordered: list[float], q: float) -> float | None:
    """The `q` quantile of sorted values (nearest rank)."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def load_once(
    base_url: str, kind: str, n_services: int, connections: int, seconds: float
) -> dict[str, Any]:
    """One measured run of the client against the engine serving in this process."""
    proc = await start_child(
        "benchmarks.bench_gate",
        "--client",
        base_url,
        "--client-kind",
        kind,
        "--services",
        str(n_services),
        "--connections",
        str(connections),
        "--seconds",
        str(seconds),
    )
    assert proc.stdout is not None
    marks: dict[str, tuple[float, float]] = {}
    for _ in range(2):  # the engine's CPU over the client's measured window
        line = (await proc.stdout.readline()).decode().strip()
        marks[line] = (time.perf_counter(), time.process_time())
    out = await child_summary(proc)
    if set(marks) != {WINDOW_START, WINDOW_END}:
        raise RuntimeError(f"the client did not mark its window: {sorted(marks)}")
    (w0, c0), (w1, c1) = marks[WINDOW_START], marks[WINDOW_END]
    bad = {k: v for k, v in out["statuses"].items() if k != "200"}
    if bad or out["failures"] or not out["requests"]:
        raise RuntimeError(f"{kind}: requests failed: {out}")
    out["per_s"] = out["requests"] / out["seconds"]
    out["server_cpu"] = (c1 - c0) / (w1 - w0)
    return out


def load_row(
    n_slos: int,
    n_services: int,
    connections: int,
    healthz: list[dict[str, Any]],
    gates: list[dict[str, Any]],
) -> dict[str, Any]:
    base = max(healthz, key=lambda r: r["per_s"])
    best = max(gates, key=lambda r: r["per_s"])
    plural = "s" if connections > 1 else ""
    return {
        "measure": f"GET /v1/gates/{{service}}, {connections} connection{plural}",
        "slos": n_slos,
        "services": n_services,
        "connections": connections,
        "baseline": "GET /healthz, same server, same run",
        "baseline_per_s": base["per_s"],
        "burnrate_per_s": best["per_s"],
        "ratio": best["per_s"] / base["per_s"],
        "p50_ms": best["p50_s"] * 1000,
        "p99_ms": best["p99_s"] * 1000,
        "max_ms": best["max_s"] * 1000,
        "baseline_p50_ms": base["p50_s"] * 1000,
        "baseline_p99_ms": base["p99_s"] * 1000,
        "body_kib": best["mean_bytes"] / 1024,
        "server_cpu": best["server_cpu"],
        "baseline_server_cpu": base["server_cpu"],
        "client_cpu": best["client_cpu"],
        "baseline_client_cpu": base["client_cpu"],
        "all_runs_per_s": {
            "healthz": [round(r["per_s"]) for r in healthz],
            "gates": [round(r["per_s"]) for r in gates],
        },
        "goal": GOAL,
    }


# -- in the engine's process ------------------------------------------------------------


def handler_row(runtime: Runtime, rounds: int) -> dict[str, Any]:
    """The gate answer without HTTP (what the handler does: `GatesApi.body`), every
    service `rounds` times: as served between evaluations (the encoded answer kept) and
    right after one (`miss`: the answer decided and encoded afresh from a reading of the
    arrays); the parts of a miss alone."""
    gates, ev = runtime.http.gates, runtime.evaluator
    book = gates.book
    services = book.services()
    reading = book.read()
    answers = [g for s in services if (g := book.gate(s, reading)) is not None]
    decisions = Counter(g.decision for g in answers)
    gc.collect()
    hits: list[float] = []
    for _ in range(rounds):
        for s in services:
            gates.body(s)  # kept from here on, until the next evaluation
            t0 = time.perf_counter()
            gates.body(s)
            hits.append(time.perf_counter() - t0)
    hits.sort()
    misses: list[float] = []
    for _ in range(rounds):
        for s in services:
            t0 = time.perf_counter()
            gate = book.gate(s, reading)
            assert gate is not None
            _encoder.encode(gate_view(gate))
            misses.append(time.perf_counter() - t0)
    misses.sort()
    first = services[0]
    # The parts alone, each timed by the median of 50 calls: the arrays read once per
    # evaluation, a service's columns, its decision, and the encoding of its answer.
    parts: dict[str, Callable[[], object]] = {
        "read_ms": book.read,
        "columns_ms": lambda: book.columns(first),
        "decide_ms": lambda: book.gate(first, reading),
        "encode_ms": lambda: _encoder.encode(gate_view(answers[0])),
    }
    firing = ev.alerts().firing
    return {
        "measure": "gate answer in the engine's process, no HTTP",
        "slos": len(ev.slos),
        "services": len(services),
        "answers": len(hits),
        "p50_ms": statistics.median(hits) * 1000,
        "p99_ms": (_quantile(hits, 0.99) or 0.0) * 1000,
        "miss_p50_ms": statistics.median(misses) * 1000,
        "miss_p99_ms": (_quantile(misses, 0.99) or 0.0) * 1000,
        **{k: _median_ms(fn, 50) for k, fn in parts.items()},
        "decisions": ", ".join(f"{d} {decisions[d]}" for d in ("pass", "warn", "fail")),
        "slos_paging": int(firing[:, ev.severities.index("page")].sum())
        if "page" in ev.severities
        else None,
        "reasons_per_answer": statistics.fmean(len(g.reasons) for g in answers),
    }


_encoder = msgspec.json.Encoder()


def _median_ms(fn: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def profile_rows(runtime: Runtime, rounds: int, top: int) -> list[dict[str, Any]]:
    """cProfile of the gate answer right after an evaluation (decided and encoded from
    a reading), every service `rounds` times: the `top` functions by own time, per
    answer."""
    book = runtime.http.gates.book
    services = book.services()
    reading = book.read()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(rounds):
        for s in services:
            gate = book.gate(s, reading)
            assert gate is not None
            _encoder.encode(gate_view(gate))
    prof.disable()
    n = rounds * len(services)
    stats = pstats.Stats(prof)
    entries: dict[tuple[str, int, str], tuple[int, int, float, float, Any]]
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in entries.values())
    ranked = sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    rows = []
    for (path, line, func), (_, calls, tt, ct, _) in ranked:
        where = f"{path.rsplit('/engine/', 1)[-1]}:{line}" if "/engine/" in path else path
        rows.append(
            {
                "function": func if path == "~" else f"{func} ({where})",
                "calls_per_answer": calls / n,
                "own_ms_per_answer": tt / n * 1000,
                "cum_ms_per_answer": ct / n * 1000,
                "own_share": tt / total,
            }
        )
    return rows


# -- the run ----------------------------------------------------------------------------


async def wait_evaluated(runtime: Runtime, records: int, last_ts: float, timeout_s: float) -> None:
    """Until every record is consumed and an evaluation has passed the traffic's end."""
    ev: Evaluator = runtime.evaluator
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = runtime.source.records_consumed >= records
        if done and ev.evaluated_at_s is not None and ev.evaluated_at_s >= last_ts - ev.tick_s:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(
        f"not caught up after {timeout_s:.0f}s: {runtime.source.records_consumed:,} of "
        f"{records:,} records, evaluated at {ev.evaluated_at_s} (traffic ends {last_ts})"
    )


async def run(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    n_services, per_service = args.services, args.slos_per_service
    n_slos = n_services * per_service
    async with kafka_bootstrap() as bootstrap:
        topic = f"bench-gate-{uuid.uuid4().hex[:8]}"
        await create_topic(bootstrap, topic, 3)
        spec = traffic(n_services, args.events)
        t0 = time.perf_counter()
        end_ts = time.time()
        sent = await produce(
            bootstrap,
            topic,
            spec,
            realtime=False,
            batch=args.batch,
            start_ts=end_ts - spec.duration_s,
        )
        print(
            f"produced {sent.events:,} events in {sent.records:,} records in "
            f"{time.perf_counter() - t0:.1f}s ({n_services} services)",
            flush=True,
        )
        listen = f"127.0.0.1:{free_port()}"
        config = engine_config(
            gate_config(n_services, per_service),
            bootstrap,
            topic,
            listen,
            group="bench-gate",
            lateness="10m",
        )
        async with running_engine(config) as runtime:
            await wait_evaluated(runtime, sent.records, end_ts, timeout_s=300)
            print(f"engine caught up: {n_slos:,} SLOs evaluated", flush=True)
            base_url = f"http://{listen}"
            rows: list[dict[str, Any]] = []
            for c in args.connections:
                healthz: list[dict[str, Any]] = []
                gates: list[dict[str, Any]] = []
                for k in range(args.repeat):
                    for kind, runs in (("healthz", healthz), ("gates", gates)):
                        r = await load_once(base_url, kind, n_services, c, args.seconds)
                        runs.append(r)
                        print(
                            f"  {c} conn, run {k + 1}, {kind}: {r['per_s']:,.0f}/s, "
                            f"p50 {r['p50_s'] * 1000:.2f} ms, p99 {r['p99_s'] * 1000:.2f} ms, "
                            f"server cpu {r['server_cpu']:.2f}, client cpu {r['client_cpu']:.2f}",
                            flush=True,
                        )
                rows.append(load_row(n_slos, n_services, c, healthz, gates))
            rows.append(handler_row(runtime, args.rounds))
            profile = profile_rows(runtime, args.rounds, args.top)
    return rows, profile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--slos-per-service", type=int, default=100)
    parser.add_argument("--events", type=int, default=300_000, help="traffic, in events")
    parser.add_argument("--batch", type=int, default=10, help="events per Kafka record")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--seconds", type=float, default=10.0, help="per measured run")
    parser.add_argument("--repeat", type=int, default=2, help="healthz/gate pairs of runs")
    parser.add_argument("--rounds", type=int, default=5, help="in-process answers per service")
    parser.add_argument("--top", type=int, default=12, help="functions in the profile")
    parser.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--client-kind", choices=("healthz", "gates"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        paths = (
            ["/healthz"]
            if args.client_kind == "healthz"
            else [f"/v1/gates/{service_name(s)}" for s in range(args.services)]
        )
        run_async(client_main(args.client, paths, args.connections[0], args.seconds))
        return
    tune_gc()  # as `burnrate run`
    rows, profile = run_async(run(args))
    report("bench_gate", rows)
    report("bench_gate_profile", profile)


if __name__ == "__main__":
    main()
