"""Scrape cost: /metrics render time, and consumption while Prometheus-like scrapes run.

    python -m benchmarks.bench_scrape [--slos 1000 10000] [--records 500000]

(i) Render. An Evaluator with N SLOs (benchmarks.bench_core.bench_config) and traffic
in its windows; EngineMetrics' render is timed uncached (the first scrape after a tick)
and cached (every further scrape within the tick), against a baseline measured in the
same run: the same series as prometheus_client Gauge children in a registry
(`.labels(...).set(...)` for every series, then `generate_latest`), with the cost of
setting every child once (what keeping Gauges current costs per tick) shown too.

(ii) Consumption. A topic pre-produced with `--records` single-event records spread
over the 5,000 services of a 10,000-SLO config (embedded broker unless
KAFKA_BOOTSTRAP_SERVERS is set) is consumed by a fresh Runtime as fast as it goes,
once with nobody scraping and once with a scraper GETting /metrics every second (an
aiohttp client in a separate process, as Prometheus would be). Runs alternate
(`--repeat` pairs) and the best of each kind is kept. The goal, < 10% throughput loss,
is printed beside the figures; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import signal
import statistics
import time
import uuid
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from benchmarks.bench_core import SERVICES, bench_config, filled_evaluator
from benchmarks.common import (
    READY,
    best_of,
    child_summary,
    engine_config,
    free_port,
    kafka_bootstrap,
    report,
    run_async,
    running_engine,
    start_child,
)
from engine.adapters.http.metrics import EngineMetrics
from engine.adapters.kafka.embedded_broker import create_topic
from engine.core.durations import format_duration
from engine.core.evaluator import Evaluator
from engine.loadgen.publish import produce
from engine.loadgen.spec import LoadSpec

SCRAPE_INTERVAL_S = 1.0
SCRAPE_TIMEOUT_S = 10.0
GOAL_LOSS = 0.10

# -- (i) render -------------------------------------------------------------------------


def gauge_registry(ev: Evaluator) -> tuple[CollectorRegistry, float]:
    """The evaluator's SLO series as Gauge children; returns the registry and the time
    one pass of setting every child took (children created beforehand)."""
    reg = CollectorRegistry(auto_describe=False)
    objective = Gauge("burnrate_slo_objective_ratio", "objective", ["slo"], registry=reg)
    error_ratio = Gauge("burnrate_slo_error_ratio", "error ratio", ["slo", "window"], registry=reg)
    burn_rate = Gauge("burnrate_slo_burn_rate", "burn rate", ["slo", "window"], registry=reg)
    budget = Gauge(
        "burnrate_slo_error_budget_remaining_ratio", "budget left", ["slo"], registry=reg
    )
    events = Gauge("burnrate_slo_events_total", "events", ["slo"], registry=reg)
    bad = Gauge("burnrate_slo_bad_events_total", "bad events", ["slo"], registry=reg)
    firing = Gauge("burnrate_alert_firing", "firing", ["slo", "severity"], registry=reg)
    windows = [format_duration(w) for w in ev.windows.windows_s]
    names = ev.names

    def set_all() -> None:
        ratios, burns = ev.error_ratios(), ev.burn_rates()
        counts, alerts = ev.counts(), ev.alerts()
        for i, name in enumerate(names):
            objective.labels(name).set(ev.slos[i].objective_ratio)
        for w, label in enumerate(windows):
            r_row, b_row = ratios[w].tolist(), burns[w].tolist()
            for i in np.flatnonzero(~np.isnan(ratios[w])).tolist():
                error_ratio.labels(names[i], label).set(r_row[i])
                burn_rate.labels(names[i], label).set(b_row[i])
        for name, value in zip(names, ev.budget_remaining().tolist(), strict=True):
            if value == value:  # not NaN
                budget.labels(name).set(value)
        for name, t, b in zip(
            names, counts.events_total.tolist(), counts.bad_events_total.tolist(), strict=True
        ):
            events.labels(name).set(t)
            bad.labels(name).set(b)
        for i, name in enumerate(names):
            for j, sev in enumerate(ev.severities):
                firing.labels(name, sev).set(float(alerts.firing[i, j]))

    set_all()  # creates the children
    return reg, best_of(set_all, repeat=2)


def _series(body: bytes) -> int:
    return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))


def bench_render(n_slos: int) -> list[dict[str, Any]]:
    ev = filled_evaluator(n_slos)
    metrics = EngineMetrics(ev, lambda: None)
    body = metrics.render()
    gc.collect()

    def uncached() -> None:
        metrics.invalidate()
        metrics.render()

    uncached_s = best_of(uncached, repeat=3)
    metrics.render()
    calls = 10_000
    t0 = time.perf_counter()
    for _ in range(calls):
        metrics.render()
    cached_s = (time.perf_counter() - t0) / calls

    reg, set_all_s = gauge_registry(ev)
    base_body = generate_latest(reg)
    gc.collect()
    baseline_s = best_of(lambda: generate_latest(reg), repeat=3)
    common = {
        "slos": n_slos,
        "series": _series(body),
        "body_mib": len(body) / 2**20,
        "baseline_series": _series(base_body),
        "baseline": "prometheus_client Gauge children + generate_latest",
    }
    return [
        {
            "measure": "/metrics render, uncached (first scrape after a tick)",
            **common,
            "baseline_ms": baseline_s * 1000,
            "burnrate_ms": uncached_s * 1000,
            "ratio": baseline_s / uncached_s,
            "baseline_set_all_children_ms": set_all_s * 1000,
        },
        {
            "measure": "/metrics render, cached (further scrapes in the tick)",
            **common,
            "baseline_ms": baseline_s * 1000,
            "burnrate_ms": cached_s * 1000,
            "burnrate_us": cached_s * 1e6,
            "ratio": baseline_s / cached_s,
        },
    ]


# -- (ii) consumption under scrapes ---------------------------------------------------


async def scraper_main(url: str, interval_s: float) -> None:
    """The scraper process: GET `url` every `interval_s` until SIGTERM, then print a
    JSON summary on stdout."""
    import aiohttp

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(READY, flush=True)
    durations: list[float] = []
    sizes: list[int] = []
    failures = 0
    timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        next_at = time.monotonic()
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                async with session.get(url) as r:
                    body = await r.read()
                durations.append(time.monotonic() - t0)
                sizes.append(len(body))
            except (aiohttp.ClientError, TimeoutError):
                if durations:  # refused before the server first listens: not a failure
                    failures += 1
            next_at += interval_s
            now = time.monotonic()
            if next_at < now:  # overran: the next scrape is the next slot, as Prometheus does
                next_at += ((now - next_at) // interval_s + 1) * interval_s
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(next_at - now):
                    await stop.wait()
    print(json.dumps({"durations_s": durations, "sizes": sizes, "failures": failures}))


async def start_scraper(url: str) -> asyncio.subprocess.Process:
    """Start the scraper process; returns once it handles SIGTERM (it retries a refused
    connection on its next slot, so it may start before the server listens)."""
    return await start_child("benchmarks.bench_scrape", "--scraper", url)


def consume_config(bootstrap: str, topic: str, n_slos: int, listen: str) -> str:
    # Lateness 10m: the records are stamped when produced, and the runs that read them
    # come some minutes later; the default 60s would make later runs reject them.
    return engine_config(
        bench_config(n_slos), bootstrap, topic, listen, group="bench-scrape", lateness="10m"
    )


async def consume_once(
    bootstrap: str, topic: str, n_slos: int, records: int, scrape: bool, path: str = "/metrics"
) -> dict[str, Any]:
    """One consumption run; with `scrape`, a client GETs `path` every second meanwhile."""
    listen = f"127.0.0.1:{free_port()}"
    # The scraper starts first (it retries until the server listens), so the whole
    # consumption is measured under scrapes.
    scraper = await start_scraper(f"http://{listen}{path}") if scrape else None
    summary = None
    try:
        async with running_engine(consume_config(bootstrap, topic, n_slos, listen)) as runtime:
            src = runtime.source
            t_first = n_first = None
            deadline = time.monotonic() + 600
            while src.records_consumed < records and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
                if t_first is None and src.records_consumed > 0:
                    t_first, n_first = time.perf_counter(), src.records_consumed
            t_end = time.perf_counter()
            consumed = src.records_consumed
            if scraper is not None:
                summary, scraper = await child_summary(scraper, terminate=True), None
    finally:
        if scraper is not None:  # the engine did not start
            await child_summary(scraper, terminate=True)
    if t_first is None or n_first is None:
        raise RuntimeError("the runtime consumed nothing")
    ev = runtime.evaluator
    out: dict[str, Any] = {
        "records_per_s": (consumed - n_first) / (t_end - t_first),
        "consumed": consumed,
        "seconds": t_end - t_first,
        "events": ev.counts().accepted_events,
        "rejected": sum(ev.rejected_counts().values()),
    }
    if summary is not None:
        d = summary["durations_s"]
        out.update(
            scrapes=len(d),
            scrape_failures=summary["failures"],
            scrape_median_s=statistics.median(d) if d else None,
            scrape_max_s=max(d) if d else None,
            body_mib=(max(summary["sizes"]) / 2**20) if summary["sizes"] else None,
        )
    return out


async def bench_consume(
    n_slos: int, records: int, repeat: int, path: str = "/metrics", goal_loss: float = GOAL_LOSS
) -> dict[str, Any]:
    async with kafka_bootstrap() as bootstrap:
        topic = f"bench-scrape-{uuid.uuid4().hex[:8]}"
        await create_topic(bootstrap, topic, 3)
        n_services = max(n_slos // 2, 1) if n_slos > 2 * len(SERVICES) else len(SERVICES)
        services = tuple(
            f"svc-{i}" if n_slos > 2 * len(SERVICES) else SERVICES[i] for i in range(n_services)
        )
        spec = LoadSpec(
            rate_per_s=records / 30.0,
            duration_s=30.0,
            services=services,
            operations_per_service=1,
            error_ratio=0.01,
        )
        t0 = time.perf_counter()
        sent = await produce(bootstrap, topic, spec, realtime=False, batch=1)
        print(
            f"produced {sent.records:,} records in {time.perf_counter() - t0:.1f}s "
            f"({n_services:,} services)",
            flush=True,
        )
        plain: list[dict[str, Any]] = []
        scraped: list[dict[str, Any]] = []
        for k in range(repeat):
            for scrape, runs in ((False, plain), (True, scraped)):
                r = await consume_once(bootstrap, topic, n_slos, sent.records, scrape, path)
                runs.append(r)
                print(f"  run {k + 1} {'with' if scrape else 'without'} scrapes: {r}", flush=True)
    best_plain = max(plain, key=lambda r: r["records_per_s"])
    best_scraped = max(scraped, key=lambda r: r["records_per_s"])
    loss = 1 - best_scraped["records_per_s"] / best_plain["records_per_s"]
    return {
        "measure": f"consumption while {path} is polled every 1s",
        "slos": n_slos,
        "records": sent.records,
        "baseline": "same run without scrapes",
        "baseline_per_s": best_plain["records_per_s"],
        "burnrate_per_s": best_scraped["records_per_s"],
        "ratio": best_scraped["records_per_s"] / best_plain["records_per_s"],
        "loss": loss,
        "scrapes": best_scraped.get("scrapes"),
        "scrape_median_s": best_scraped.get("scrape_median_s"),
        "scrape_max_s": best_scraped.get("scrape_max_s"),
        "body_mib": best_scraped.get("body_mib"),
        "all_runs_per_s": {
            "without": [round(r["records_per_s"]) for r in plain],
            "with": [round(r["records_per_s"]) for r in scraped],
        },
        "goal": f"loss < {goal_loss:.0%}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--slos", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--consume-slos", type=int, default=10_000)
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--repeat", type=int, default=2, help="pairs of consumption runs")
    parser.add_argument("--skip-render", action="store_true")
    parser.add_argument("--skip-consume", action="store_true")
    parser.add_argument("--scraper", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scraper:
        run_async(scraper_main(args.scraper, SCRAPE_INTERVAL_S))
        return
    rows: list[dict[str, Any]] = []
    if not args.skip_render:
        for n in args.slos:
            rows += bench_render(n)
            print(f"render at {n:,} SLOs done", flush=True)
    if not args.skip_consume:
        rows.append(run_async(bench_consume(args.consume_slos, args.records, args.repeat)))
    report("bench_scrape", rows)


if __name__ == "__main__":
    main()
