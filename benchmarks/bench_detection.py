"""Detection delay: Burnrate vs Prometheus rules (Sloth-style) on one synthetic outage.

    python -m benchmarks.bench_detection [--rate 500] [--good-s 60] [--outage-s 60]

The same traffic goes at the same time to
(a) Burnrate, through Kafka (an embedded broker unless KAFKA_BOOTSTRAP_SERVERS is set),
    one single-event record per request, evaluation tick 1 s;
(b) a real Prometheus server (Debian's /usr/bin/prometheus, started here on a free
    loopback port with its TSDB in a temp dir) scraping `requests_total{service}` and
    `requests_errors_total{service}` from this process every 5 s, evaluating every 5 s
    Sloth-style recording rules (error ratio per policy window with `rate()`) and a
    multi-window alert without `for` (benchmarks.promrules), same policy rows.

Traffic: good requests at `--rate`/s, then 100% errors for `--outage-s`, then good
again until both systems have resolved. Delays are measured on the wall clock from
the outage start (fire) and end (resolve): Burnrate when a sink passed to the Runtime
receives the transition, Prometheus when `/api/v1/alerts` (polled every 0.25 s) shows
the alert `firing`, then no longer lists it. The theoretical minimum is computed
from the timestamps actually sent: the first instant t at which both windows (t - W, t]
burn at >= the factor, and after the outage the first instant at which they no longer
both do. Finally both systems' 5m burn rates are compared with each other and with the
exact value. Nothing is asserted; the goal (Burnrate within 2 s of the theoretical
minimum) is printed beside the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import numpy as np
from aiohttp import web
from aiokafka import AIOKafkaProducer

from benchmarks.common import report
from benchmarks.promrules import RuleSlo, alert_name, check_rules, ratio_expr, rule_groups
from benchmarks.promrules import write_rules as write_rule_file
from engine.adapters.kafka.embedded_broker import EmbeddedBroker, create_topic
from engine.core.config import PolicyRow, parse_config
from engine.core.durations import format_duration
from engine.core.evaluator import Transition
from engine.runtime.service import Runtime

SERVICE = "checkout"
SLO_NAME = "checkout-availability"
POLL_S = 0.25
PROMETHEUS_BIN = os.environ.get("PROMETHEUS_BIN", "/usr/bin/prometheus")
PROMTOOL_BIN = os.environ.get("PROMTOOL_BIN", "promtool")
GOAL_S = 2.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- the Prometheus side --------------------------------------------------------------


class Counters:
    """The two counters Prometheus scrapes, incremented as events are generated."""

    def __init__(self) -> None:
        self.total = 0
        self.errors = 0

    def body(self) -> bytes:
        s = f'{{service="{SERVICE}"}}'
        return (
            "# HELP requests_total Requests served.\n"
            "# TYPE requests_total counter\n"
            f"requests_total{s} {self.total}\n"
            "# HELP requests_errors_total Requests that failed (server side).\n"
            "# TYPE requests_errors_total counter\n"
            f"requests_errors_total{s} {self.errors}\n"
        ).encode()


async def start_exporter(counters: Counters) -> tuple[web.AppRunner, int]:
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(
            body=counters.body(), headers={"Content-Type": "text/plain; version=0.0.4"}
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    return runner, int(port)


class Prometheus:
    """A throwaway Prometheus server on a free loopback port (terminated by `stop()`)."""

    def __init__(self, workdir: Path, target: str, rules: Path, interval_s: float) -> None:
        self.workdir = workdir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        iv = format_duration(interval_s)
        self.config = workdir / "prometheus.yml"
        self.config.write_text(
            "global:\n"
            f"  scrape_interval: {iv}\n"
            f"  evaluation_interval: {iv}\n"
            f"rule_files: [{str(rules)!r}]\n"
            "scrape_configs:\n"
            "  - job_name: traffic\n"
            f"    scrape_interval: {iv}\n"
            f"    static_configs: [{{targets: [{target!r}]}}]\n"
        )
        self.log = workdir / "prometheus.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def spawn(self) -> subprocess.Popen[bytes]:
        exe = shutil.which(PROMETHEUS_BIN)
        if exe is None:
            raise SystemExit(f"{PROMETHEUS_BIN} not found: apt-get install prometheus")
        with self.log.open("wb") as log:
            self._proc = subprocess.Popen(
                [
                    exe,
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self._proc

    async def start(self, session: aiohttp.ClientSession, timeout_s: float = 60.0) -> None:
        proc = self.spawn()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"prometheus exited:\n{self.log.read_text()[-2000:]}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(f"{self.url}/-/ready") as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"prometheus not ready in {timeout_s}s:\n{self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    async def query(
        self, session: aiohttp.ClientSession, expr: str, at: float | None = None
    ) -> tuple[float, float] | None:
        """(timestamp, value) of the first sample of an instant query, or None."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        async with session.get(f"{self.url}/api/v1/query", params=params) as r:
            data = await r.json()
        result = data.get("data", {}).get("result", [])
        if not result:
            return None
        ts, value = result[0]["value"]
        return float(ts), float(value)


@dataclass
class AlertWatch:
    """What polling /api/v1/alerts saw of one alert (wall times)."""

    name: str
    first_pending: float | None = None
    first_firing: float | None = None
    active_at: float | None = None
    gone_after_firing: float | None = None
    refired: int = 0
    states: list[tuple[float, str]] = field(default_factory=list)
    polls: int = 0


async def watch_alert(
    prom: Prometheus, session: aiohttp.ClientSession, watch: AlertWatch, stop: asyncio.Event
) -> None:
    last = "inactive"
    while not stop.is_set():
        t_sent = time.time()
        try:
            async with session.get(f"{prom.url}/api/v1/alerts") as r:
                data = await r.json()
        except (aiohttp.ClientError, TimeoutError):
            await asyncio.sleep(POLL_S)
            continue
        now = time.time()
        watch.polls += 1
        state, active_at = "inactive", None
        for alert in data.get("data", {}).get("alerts", []):
            if alert.get("labels", {}).get("alertname") == watch.name:
                state = alert.get("state", "?")
                active_at = alert.get("activeAt")
        if state != last:
            watch.states.append((now, state))
            if state == "pending" and watch.first_pending is None:
                watch.first_pending = now
            if state == "firing":
                if watch.first_firing is None:
                    watch.first_firing = now
                    if active_at:
                        watch.active_at = _parse_rfc3339(active_at)
                elif watch.gone_after_firing is not None:
                    watch.refired += 1
            if state == "inactive" and last == "firing" and watch.gone_after_firing is None:
                watch.gone_after_firing = now
            last = state
        await asyncio.sleep(max(POLL_S - (time.time() - t_sent), 0.0))


def _parse_rfc3339(text: str) -> float:
    # Prometheus writes e.g. 2026-01-01T12:00:05.123456789Z (nanoseconds: cut to micro)
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", text)
    if m is None:
        return math.nan
    frac = (m.group(2) or ".0")[:7]
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(f"{m.group(1)}{frac}{tz}").timestamp()


# -- the Burnrate side ----------------------------------------------------------------


class RecordingSink:
    """A sink that notes the wall time each transition reaches it."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, Transition]] = []

    async def start(self) -> None:
        return None

    async def deliver(self, tr: Transition) -> None:
        self.seen.append((time.time(), tr))

    async def close(self, timeout_s: float) -> None:
        return None

    def stats(self) -> dict[tuple[str, str], int]:
        return {}

    def first(self, state: str) -> tuple[float, Transition] | None:
        return next(((t, tr) for t, tr in self.seen if tr.state == state), None)


# -- traffic and theory ---------------------------------------------------------------


@dataclass
class Traffic:
    rate: float
    t0: float
    outage_start: float
    outage_end: float
    sent_ts: list[float] = field(default_factory=list)
    sent_bad: list[bool] = field(default_factory=list)
    first_bad_sent_wall: float | None = None


async def send_traffic(
    producer: Any, topic: str, traffic: Traffic, counters: Counters, stop: asyncio.Event
) -> None:
    enc = msgspec.json.Encoder()
    i = 0
    while not stop.is_set():
        due = math.floor((time.time() - traffic.t0) * traffic.rate) + 1
        futures = []
        while i < due:
            ts = traffic.t0 + i / traffic.rate
            bad = traffic.outage_start <= ts < traffic.outage_end
            value = enc.encode({"service": SERVICE, "ts": ts, "status": 503 if bad else 200})
            futures.append(await producer.send(topic, value))
            counters.total += 1
            if bad:
                counters.errors += 1
                if traffic.first_bad_sent_wall is None:
                    traffic.first_bad_sent_wall = time.time()
            traffic.sent_ts.append(ts)
            traffic.sent_bad.append(bad)
            i += 1
        if futures:
            await asyncio.gather(*futures)
        await asyncio.sleep(0.01)


class Truth:
    """Exact window sums over the events sent (windows are (t - W, t])."""

    def __init__(self, traffic: Traffic, budget: float) -> None:
        self.ts = np.asarray(traffic.sent_ts)
        self.bad_cum = np.concatenate(([0], np.cumsum(np.asarray(traffic.sent_bad, dtype=int))))
        self.budget = budget

    def burn(self, t: np.ndarray | float, window_s: float) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        lo = np.searchsorted(self.ts, t - window_s, side="right")
        hi = np.searchsorted(self.ts, t, side="right")
        total = hi - lo
        bad = self.bad_cum[hi] - self.bad_cum[lo]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(bad / total / self.budget)

    def burn_between(self, lo: float, hi: float) -> float:
        """Burn rate over the events with lo < ts <= hi."""
        a, b = np.searchsorted(self.ts, [lo, hi], side="right")
        bad = self.bad_cum[b] - self.bad_cum[a]
        return float(bad / (b - a) / self.budget) if b > a else math.nan

    def holds(self, t: np.ndarray, row: PolicyRow) -> np.ndarray:
        f = row.factor_for(30 * 86400)
        return np.asarray((self.burn(t, row.long_s) >= f) & (self.burn(t, row.short_s) >= f))

    def first(self, start: float, span_s: float, want: bool, row: PolicyRow) -> float | None:
        grid = start + np.arange(0.0, span_s, 0.001)
        hit = np.flatnonzero(self.holds(grid, row) == want)
        return float(grid[hit[0]]) if len(hit) else None


# -- the run --------------------------------------------------------------------------


def burnrate_config(bootstrap: str, topic: str, objective: float, row: PolicyRow) -> str:
    return f"""
slos:
  - {{name: {SLO_NAME}, service: {SERVICE}, sli: availability, objective: {objective}}}
policy:
  - {{severity: {row.severity}, long: {row.long}, short: {row.short}, burn_rate: {row.burn_rate}}}
evaluation: {{tick: 1s}}
kafka:
  bootstrap_servers: "{bootstrap}"
  topics: [{topic}]
  group_id: bench-detection-{uuid.uuid4().hex[:8]}
http: {{listen: "127.0.0.1:0"}}
"""


def _metric_value(body: str, name: str, **labels: str) -> float | None:
    for line in body.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def _rel(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b:
        return None
    return abs(a - b) / abs(b)


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    row = PolicyRow(severity="page", long=args.long, short=args.short, burn_rate=args.factor)
    objective_ratio = args.objective / 100
    rule_slo = RuleSlo(SLO_NAME, SERVICE, objective_ratio)
    budget = rule_slo.error_budget_ratio
    workdir = Path(tempfile.mkdtemp(prefix="bench-detection-"))
    broker: EmbeddedBroker | None = None
    prom: Prometheus | None = None
    exporter: web.AppRunner | None = None
    try:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
        if not bootstrap:
            broker = EmbeddedBroker().start()
            bootstrap = broker.bootstrap_servers
        topic = f"bench-detection-{uuid.uuid4().hex[:8]}"
        await create_topic(bootstrap, topic, 1)

        counters = Counters()
        exporter, exporter_port = await start_exporter(counters)
        rules = write_rule_file(
            workdir / "rules.yml",
            rule_groups([rule_slo], [row], interval_s=args.eval_s, layout=args.layout),
        )
        print(check_rules(rules, PROMTOOL_BIN))
        prom = Prometheus(workdir, f"127.0.0.1:{exporter_port}", rules, args.eval_s)

        config = parse_config(burnrate_config(bootstrap, topic, args.objective, row))
        sink = RecordingSink()
        runtime = Runtime(config, listen="127.0.0.1:0", sinks=[sink])
        stop_runtime = asyncio.Event()

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            await prom.start(session)
            run_task = asyncio.create_task(runtime.run(stop_runtime))
            async with asyncio.timeout(60):
                await runtime.started.wait()
            # Prometheus holds a few samples of the idle counters before traffic begins.
            async with asyncio.timeout(60):
                while True:
                    got = await prom.query(session, "count_over_time(requests_total[1m])")
                    if got is not None and got[1] >= 2:
                        break
                    await asyncio.sleep(0.5)
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks=1)
            await producer.start()
            t0 = time.time() + 0.05
            traffic = Traffic(
                rate=args.rate,
                t0=t0,
                outage_start=t0 + args.good_s,
                outage_end=t0 + args.good_s + args.outage_s,
            )
            watch = AlertWatch(alert_name(rule_slo, row.severity))
            stop_traffic = asyncio.Event()
            poll_task = asyncio.create_task(watch_alert(prom, session, watch, stop_traffic))
            send_task = asyncio.create_task(
                send_traffic(producer, topic, traffic, counters, stop_traffic)
            )
            print(
                f"traffic: {args.rate:g}/s good for {args.good_s:g}s, 100% errors for "
                f"{args.outage_s:g}s, then good until both resolve (at most {args.post_max_s:g}s)"
            )
            deadline = traffic.outage_end + args.post_max_s
            while time.time() < deadline and not send_task.done():
                resolved = sink.first("resolved") is not None
                if time.time() > traffic.outage_end and resolved and watch.gone_after_firing:
                    break
                await asyncio.sleep(0.25)
            await asyncio.sleep(1.0)  # both have evaluated a little past the resolve

            # -- burn rates at the end, while traffic still flows --------------------
            ev = runtime.evaluator
            w5 = ev.windows.index(row.long_s)
            br_at = ev.evaluated_at_s
            br_burn = float(ev.burn_rates()[w5, 0])
            br_watermark = ev.watermark_s
            bucket_s = ev.windows.resolution_s(row.long_s)
            async with session.get(f"{runtime.http.url}/metrics") as r:
                metrics_body = await r.text()
            br_metrics = _metric_value(
                metrics_body, "burnrate_slo_burn_rate", slo=SLO_NAME, window=row.long
            )
            recorded = await prom.query(session, f"slo:sli_error:ratio_rate{row.long}")
            same_instant = await prom.query(session, ratio_expr(rule_slo, row.long_s), br_at)

            stop_traffic.set()
            for task in (send_task, poll_task):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await producer.stop()
            stop_runtime.set()
            await run_task
    finally:
        if prom is not None:
            prom.stop()
        if exporter is not None:
            await exporter.cleanup()
        if broker is not None:
            broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    truth = Truth(traffic, budget)
    fire_theory = truth.first(traffic.outage_start, args.outage_s, True, row)
    resolve_theory = truth.first(traffic.outage_end, args.post_max_s, False, row)
    th_fire = _diff(fire_theory, traffic.outage_start)
    th_resolve = _diff(resolve_theory, traffic.outage_end)

    br_fire = sink.first("firing")
    br_res = sink.first("resolved")
    br_fire_s = _diff(br_fire[0] if br_fire else None, traffic.outage_start)
    br_res_s = _diff(br_res[0] if br_res else None, traffic.outage_end)
    pr_fire_s = _diff(watch.first_firing, traffic.outage_start)
    pr_res_s = _diff(watch.gone_after_firing, traffic.outage_end)

    exact_at_br = float(truth.burn(br_at, row.long_s)) if br_at is not None else None
    # What Burnrate's window holds between ticks: whole buckets of the window's resolution
    # up to the one holding the tick, with the events counted so far (up to the
    # watermark) in that last bucket; so its value may include up to a tick of later events.
    exact_buckets = None
    if br_at is not None:
        head = math.ceil(br_at / bucket_s) - 1
        lo = (head + 1) * bucket_s - row.long_s
        exact_buckets = truth.burn_between(lo, min(br_watermark, (head + 1) * bucket_s))
    pr_rec_burn = recorded[1] / budget if recorded else None
    pr_rec_at = recorded[0] if recorded else None
    exact_at_pr = float(truth.burn(pr_rec_at, row.long_s)) if pr_rec_at else None
    pr_same_burn = same_instant[1] / budget if same_instant else None

    print(f"\noutage {traffic.outage_start:.3f} .. {traffic.outage_end:.3f} (epoch s)")
    first_bad_lag = _diff(traffic.first_bad_sent_wall, traffic.outage_start)
    print(f"first bad event handed to the producer {first_bad_lag:+.3f}s after the start")
    print(f"sent {len(traffic.sent_ts):,} events, {int(truth.bad_cum[-1]):,} bad")
    for wall, tr in sink.seen:
        print(
            f"burnrate transition {tr.state:8} observed {wall - traffic.outage_start:+8.3f}s "
            f"(tick at {tr.at - traffic.outage_start:+8.3f}s) from outage start; "
            f"burn long {tr.burn_rate_long} short {tr.burn_rate_short}"
        )
    for wall, state in watch.states:
        print(f"prometheus alert {state:8} observed {wall - traffic.outage_start:+8.3f}s")
    if watch.active_at is not None:
        print(
            f"prometheus activeAt (rule evaluation) {watch.active_at - traffic.outage_start:+.3f}s"
        )
    print(f"prometheus /api/v1/alerts polls: {watch.polls}; pending seen: {watch.first_pending}")
    print(
        f"{row.long} burn at the end: burnrate {br_burn:.4f} (/metrics {br_metrics}) at tick "
        f"{(br_at or 0) - traffic.outage_end:+.1f}s after outage end, "
        f"exact there {exact_at_br:.4f}, exact over its {bucket_s}s buckets up to its "
        f"watermark {exact_buckets:.4f}; "
        f"prometheus recorded {pr_rec_burn} at {(pr_rec_at or 0) - traffic.outage_end:+.1f}s, "
        f"exact there {exact_at_pr}; prometheus expression at burnrate's tick {pr_same_burn}"
    )

    policy = (
        f"{row.severity} {row.long}/{row.short} {row.burn_rate:g}x, objective {args.objective}%"
    )
    rows: list[dict[str, Any]] = [
        {
            "system": "burnrate (kafka, tick 1s)",
            "policy": policy,
            "fire_s": br_fire_s,
            "fire_theory_s": th_fire,
            "fire_over_theory_s": _diff(br_fire_s, th_fire),
            "resolve_s": br_res_s,
            "resolve_theory_s": th_resolve,
            "resolve_over_theory_s": _diff(br_res_s, th_resolve),
            "goal": f"<= {GOAL_S:g} s over theory",
        },
        {
            "system": f"prometheus {args.layout} rules (scrape {args.eval_s:g}s, eval "
            f"{args.eval_s:g}s)",
            "policy": policy,
            "fire_s": pr_fire_s,
            "fire_theory_s": th_fire,
            "fire_over_theory_s": _diff(pr_fire_s, th_fire),
            "resolve_s": pr_res_s,
            "resolve_theory_s": th_resolve,
            "resolve_over_theory_s": _diff(pr_res_s, th_resolve),
            "goal": "as measured",
        },
        {
            "system": f"{row.long} burn rate at the end: burnrate vs prometheus recorded",
            "burnrate_burn": br_burn,
            "prometheus_burn": pr_rec_burn,
            "rel_diff": _rel(pr_rec_burn, br_burn),
            "burnrate_vs_exact": _rel(br_burn, exact_at_br),
            "burnrate_vs_exact_buckets": _rel(br_burn, exact_buckets),
            "prometheus_vs_exact": _rel(pr_rec_burn, exact_at_pr),
            "prometheus_at_burnrate_tick": pr_same_burn,
            "rel_diff_same_instant": _rel(pr_same_burn, br_burn),
        },
    ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=500.0, help="events per second")
    parser.add_argument("--good-s", type=float, default=60.0)
    parser.add_argument("--outage-s", type=float, default=60.0)
    parser.add_argument("--post-max-s", type=float, default=120.0)
    parser.add_argument("--objective", type=float, default=99.99, help="percent")
    parser.add_argument("--long", default="5m")
    parser.add_argument("--short", default="30s")
    parser.add_argument("--factor", type=float, default=14.4)
    parser.add_argument("--eval-s", type=float, default=5.0, help="scrape and rule interval")
    parser.add_argument("--layout", choices=("sloth", "single"), default="sloth")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        rows = asyncio.run(run(args))
    else:  # the loop `burnrate run` uses
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            rows = runner.run(run(args))
    report("bench_detection", rows)


if __name__ == "__main__":
    main()
