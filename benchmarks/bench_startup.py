"""Start-up: from spawning `burnrate run` to its first counted event, on the embedded broker.

    python -m benchmarks.bench_startup [--repeat 3] [--session-timeouts 10s,6s,2s]

Starts the embedded Tansu broker (or uses KAFKA_BOOTSTRAP_SERVERS), creates a topic of
3 partitions and fills it with events stamped now. Then, per `kafka.session_timeout`,
alternating, each with a fresh consumer group reading from the earliest offset:

- baseline: a bare aiokafka consumer in a fresh interpreter (`python -c`: import
  aiokafka, start, `getmany` until a record comes), with the same group timing as the
  engine (`engine.adapters.kafka.settings.group_kwargs`): seconds from spawning it to
  the first record in hand;
- burnrate: `python -m engine run --config C` (tick 1s), seconds from spawning it to
  the first `/metrics` body whose `burnrate_slo_events_total` is above 0. /metrics is
  rendered afresh at a tick or 0.2 s after an applied batch, so this includes up to
  that much waiting.

The engine package is byte-compiled first (`compileall`, as pip does at install), and
the children run without PYTHONDONTWRITEBYTECODE, so no run pays for compiling sources.
Printed: the best of `--repeat` per case, engine over baseline, and the import time of
the `run` command alone (`python -c "import engine.commands.run"`, best of 5) and of
`python -m engine --help`. Tansu holds a new member's first JoinGroup for half the
session timeout (at least 1 s), which both sides pay. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import engine as engine_package
from benchmarks.common import free_port, machine, report
from engine.adapters.kafka.embedded_broker import EmbeddedBroker, create_topic
from engine.adapters.kafka.settings import group_kwargs
from engine.core.config import Kafka
from engine.loadgen.publish import produce
from engine.loadgen.spec import LoadSpec

TOPIC = "startup"
DEADLINE_S = 60.0
POLL_S = 0.01

_BARE_CONSUMER = """
import asyncio, sys
from aiokafka import AIOKafkaConsumer

async def main():
    consumer = AIOKafkaConsumer(
        sys.argv[2], bootstrap_servers=sys.argv[1], group_id=sys.argv[3],
        enable_auto_commit=False, auto_offset_reset="earliest", **eval(sys.argv[4]))
    await consumer.start()
    try:
        while not await consumer.getmany(timeout_ms=250):
            pass
    finally:
        await consumer.stop()
    print("first record", flush=True)

asyncio.run(main())
"""


def _config(bootstrap: str, port: int, session: str) -> str:
    return (
        "slos:\n"
        "  - {name: checkout-avail, service: checkout, sli: availability, objective: 99.9}\n"
        "evaluation: {tick: 1s, allowed_lateness: 1h}\n"
        "kafka:\n"
        f"  bootstrap_servers: {bootstrap}\n"
        f"  topics: [{TOPIC}]\n"
        f"  group_id: startup-{uuid.uuid4().hex[:12]}\n"
        f"  session_timeout: {session}\n"
        f"http: {{listen: 127.0.0.1:{port}}}\n"
    )


def _events_counted(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            body = resp.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False
    for line in body.splitlines():
        if line.startswith("burnrate_slo_events_total{") and float(line.rsplit(" ", 1)[1]) > 0:
            return True
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def time_engine(bootstrap: str, session: str, env: dict[str, str]) -> float:
    """Seconds from spawning `burnrate run` to its first counted event in /metrics."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "burnrate.yaml"
        path.write_text(_config(bootstrap, port, session))
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "run", "--config", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        try:
            while not _events_counted(port):
                if proc.poll() is not None:
                    raise RuntimeError(f"burnrate run exited with {proc.returncode}")
                if time.perf_counter() - t0 > DEADLINE_S:
                    raise TimeoutError("no event counted in time")
                time.sleep(POLL_S)
            return time.perf_counter() - t0
        finally:
            _stop(proc)


def time_bare(bootstrap: str, session: str, env: dict[str, str]) -> float:
    """Seconds from spawning a bare aiokafka consumer to its first record."""
    kwargs = group_kwargs(Kafka(session_timeout=session))
    group = f"startup-raw-{uuid.uuid4().hex[:12]}"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", _BARE_CONSUMER, bootstrap, TOPIC, group, repr(kwargs)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        took = time.perf_counter() - t0
        if not line:
            raise RuntimeError("the bare consumer got no record")
        return took
    finally:
        _stop(proc)


def time_command(argv: list[str], env: dict[str, str], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (best)")
    parser.add_argument(
        "--session-timeouts", default="10s,6s,2s", help="kafka.session_timeout values"
    )
    args = parser.parse_args()
    print(f"machine: {json.dumps(machine())}", flush=True)
    drop = ("KAFKA_BOOTSTRAP_SERVERS", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    package = Path(engine_package.__file__).parent
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True, env=env)
    rows: list[dict[str, Any]] = []
    imports = time_command([sys.executable, "-c", "import engine.commands.run"], env)
    bare_python = time_command([sys.executable, "-c", "pass"], env)
    helps = time_command([sys.executable, "-m", "engine", "--help"], env)
    rows.append(
        {
            "measure": "import of the run command (s)",
            "value": imports,
            "notes": f"python -c pass: {bare_python:.3f} s; python -m engine --help: {helps:.3f} s",
        }
    )
    print(f"imports: run {imports:.3f} s, --help {helps:.3f} s, bare python {bare_python:.3f} s")
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    broker = None if external else EmbeddedBroker().start()
    try:
        bootstrap = external or (broker.bootstrap_servers if broker else "")
        asyncio.run(create_topic(bootstrap, TOPIC, 3))
        spec = LoadSpec(rate_per_s=100, duration_s=10, services=("checkout",))
        asyncio.run(produce(bootstrap, TOPIC, spec, realtime=False))
        for session in args.session_timeouts.split(","):
            best_bare = best_engine = float("inf")
            for i in range(args.repeat):
                bare = time_bare(bootstrap, session, env)
                engine = time_engine(bootstrap, session, env)
                print(
                    f"  session {session} run {i + 1}: bare aiokafka {bare:.2f} s, "
                    f"burnrate run {engine:.2f} s",
                    flush=True,
                )
                best_bare, best_engine = min(best_bare, bare), min(best_engine, engine)
            rows.append(
                {
                    "measure": f"spawn to first counted event, session_timeout {session}",
                    "baseline": "bare aiokafka consumer, spawn to first record",
                    "baseline_s": best_bare,
                    "burnrate_s": best_engine,
                    "ratio": best_engine / best_bare,
                    "goal": "<= 3 s" if session != "10s" else None,
                    "broker": "KAFKA_BOOTSTRAP_SERVERS" if external else "embedded Tansu",
                }
            )
    finally:
        if broker is not None:
            broker.stop()
    report("bench_startup", rows)


if __name__ == "__main__":
    main()
