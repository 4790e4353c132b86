"""`/metrics` scrape latency over HTTP and over HTTPS, in one run.

    python -m benchmarks.bench_tls_scrape [--slos 1000] [--scrapes 300] [--repeat 3]

An Evaluator with `--slos` SLOs and traffic in its windows (benchmarks.bench_core)
behind two HttpServers on loopback in this process, on uvloop as `burnrate run` is:
one plain, one with `http.tls` (an ECDSA P-256 certificate from a CA made for the run),
both requiring a bearer token as a production scrape would. A client in its own
process (aiohttp, as Prometheus would be: off the engine's core) GETs `/metrics`
back to back, `--scrapes` times per run, in three ways:

- keep-alive: one connection for every scrape (what Prometheus does between scrapes);
- new connection: a fresh TCP (and TLS) connection per scrape, handshake included.

The body is the cached one (rendering is the same work for both schemes and is
measured by benchmarks.bench_scrape), so the ratio is the transport's alone.

Runs alternate HTTP and HTTPS (`--repeat` pairs) and each keeps its best p50. Printed:
p50 and p99 latency, scrapes per second, and the HTTPS/HTTP ratio of each; the machine
too. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_core import filled_evaluator
from benchmarks.common import READY, child_summary, report, run_async, start_child
from engine.adapters.http.auth import BearerAuth
from engine.adapters.http.metrics import EngineMetrics
from engine.adapters.http.server import HttpServer
from engine.adapters.http.tls import server_ssl_context
from engine.core.config_io import HttpTls
from tests.certs import CA

TOKEN = "bench-Scrape-Token"
MODES = ("keep-alive", "new connection")


async def client_main(url: str, cafile: str, scrapes: int, fresh: bool) -> None:
    """The client process: `scrapes` GETs of `url`, then a JSON line of durations."""
    import aiohttp

    ctx = ssl.create_default_context(cafile=cafile) if url.startswith("https") else None
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if fresh:
        headers["Connection"] = "close"
    print(READY, flush=True)
    durations: list[float] = []
    sizes = 0
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(ssl=ctx if ctx is not None else False, force_close=fresh)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        for i in range(scrapes + 5):
            t0 = time.perf_counter()
            async with session.get(url, headers=headers) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"{url}: {resp.status}")
            if i >= 5:  # the first few warm up both ends
                durations.append(time.perf_counter() - t0)
                sizes = len(body)
    print(json.dumps({"durations_s": durations, "size": sizes}))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def one_run(url: str, cafile: str, scrapes: int, fresh: bool) -> dict[str, float]:
    child = await start_child(
        "benchmarks.bench_tls_scrape", "--client", url, cafile, str(scrapes), str(int(fresh))
    )
    summary = await child_summary(child)
    d: list[float] = summary["durations_s"]
    return {
        "p50_ms": statistics.median(d) * 1000,
        "p99_ms": percentile(d, 0.99) * 1000,
        "scrapes_per_s": len(d) / sum(d),
        "body_kib": summary["size"] / 1024,
    }


async def bench(n_slos: int, scrapes: int, repeat: int) -> list[dict[str, Any]]:
    ev = filled_evaluator(n_slos)
    metrics = EngineMetrics(ev, lambda: None)
    with tempfile.TemporaryDirectory() as tmp:
        ca = CA(Path(tmp), "bench ca")
        cert = ca.issue("server", server=True)
        tls = server_ssl_context(
            HttpTls(cert_file=str(cert.cert_file), key_file=str(cert.key_file))
        )
        servers = {
            "http": HttpServer(
                "127.0.0.1:0", metrics, lambda: None, auth=BearerAuth(TOKEN), tls=False
            ),
            "https": HttpServer(
                "127.0.0.1:0", metrics, lambda: None, auth=BearerAuth(TOKEN), tls=tls
            ),
        }
        for server in servers.values():
            await server.start()
        rows: list[dict[str, Any]] = []
        try:
            for mode in MODES:
                best: dict[str, dict[str, float]] = {}
                for _ in range(repeat):
                    for scheme, server in servers.items():
                        got = await one_run(
                            f"{server.url}/metrics",
                            str(ca.cert_file),
                            scrapes,
                            mode == "new connection",
                        )
                        if scheme not in best or got["p50_ms"] < best[scheme]["p50_ms"]:
                            best[scheme] = got
                http, https = best["http"], best["https"]
                rows.append(
                    {
                        "mode": mode,
                        "slos": n_slos,
                        "body_kib": http["body_kib"],
                        "http_p50_ms": http["p50_ms"],
                        "https_p50_ms": https["p50_ms"],
                        "http_p99_ms": http["p99_ms"],
                        "https_p99_ms": https["p99_ms"],
                        "http_per_s": http["scrapes_per_s"],
                        "https_per_s": https["scrapes_per_s"],
                        "p50_ratio_https_http": https["p50_ms"] / http["p50_ms"],
                    }
                )
        finally:
            for server in servers.values():
                await server.stop()
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        url, cafile, scrapes, fresh = sys.argv[2:6]
        asyncio.run(client_main(url, cafile, int(scrapes), fresh == "1"))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slos", type=int, default=1000)
    parser.add_argument("--scrapes", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    report_runs(args.slos, args.scrapes, args.repeat)


def report_runs(slos: int, scrapes: int, repeat: int) -> None:
    """Measure, report as `bench_tls_scrape` and print each ratio."""
    rows = run_async(bench(slos, scrapes, repeat))
    report("bench_tls_scrape", rows)
    for row in rows:
        print(
            f"{row['mode']}: HTTPS p50 is {row['p50_ratio_https_http']:.2f}x HTTP's "
            f"({row['https_p50_ms']:.2f} ms vs {row['http_p50_ms']:.2f} ms)"
        )


if __name__ == "__main__":
    main()
