"""Shared helpers for the benchmarks: machine facts, timing, results files, and a
running engine (Kafka broker, Runtime, helper processes) for the benchmarks that
measure one over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import resource
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from engine.runtime.service import Runtime

_T = TypeVar("_T")

RESULTS = Path(__file__).resolve().parent / "results"
DATA = Path(__file__).resolve().parent / "data"


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for dist in ("numpy", "msgspec", "aiokafka", "burnrate"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        **versions,
    }


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    """Fastest wall time of `repeat` runs, in seconds (least disturbed by the machine)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def report(name: str, rows: list[dict[str, Any]]) -> Path:
    """Print the rows as a table and write them with the machine facts as JSON."""
    info = machine()
    print(
        f"\n{name} on {info['cpu']} ({info['cores']} cores), Python {info['python']}, "
        f"numpy {info['numpy']}, msgspec {info['msgspec']}, aiokafka {info['aiokafka']}"
    )
    keys = list(dict.fromkeys(k for r in rows for k in r))
    widths = {k: max(len(k), *(len(_fmt(r.get(k))) for r in rows)) for k in keys}
    print("  ".join(k.ljust(widths[k]) for k in keys))
    for r in rows:
        print("  ".join(_fmt(r.get(k)).ljust(widths[k]) for k in keys))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": info, "rows": rows}, indent=2))
    print(f"results: {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return path


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


# -- a running engine -------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run_async(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run `coro` on uvloop when it is installed, the loop `burnrate run` uses."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


@contextlib.asynccontextmanager
async def kafka_bootstrap() -> AsyncIterator[str]:
    """The bootstrap servers of KAFKA_BOOTSTRAP_SERVERS, else of an embedded broker
    started for the block and stopped after it."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if external:
        yield external
        return
    from engine.adapters.kafka.embedded_broker import EmbeddedBroker

    broker = EmbeddedBroker()
    await asyncio.to_thread(broker.start)
    try:
        yield broker.bootstrap_servers
    finally:
        await asyncio.to_thread(broker.stop)


def engine_config(
    slos: str, bootstrap: str, topic: str, listen: str, *, group: str, lateness: str | None = None
) -> str:
    """A config of `slos` (YAML text, `slos:` and any other top-level keys) that
    consumes `topic` in a fresh consumer group named after `group` and serves HTTP on
    `listen`; `lateness`: `evaluation.allowed_lateness`."""
    lines = [f"evaluation: {{allowed_lateness: {lateness}}}"] if lateness is not None else []
    lines += [
        "kafka:",
        f'  bootstrap_servers: "{bootstrap}"',
        f"  topics: [{topic}]",
        f"  group_id: {group}-{uuid.uuid4().hex[:8]}",
        f'http: {{listen: "{listen}"}}',
    ]
    return slos + "\n".join(lines) + "\n"


@contextlib.asynccontextmanager
async def running_engine(config_text: str, start_timeout_s: float = 60.0) -> AsyncIterator[Runtime]:
    """A Runtime of `config_text` (no sinks) running in this loop, as `burnrate run`
    runs one: yielded once it listens and its consumer has joined; stopped after."""
    from engine.core.config import parse_config
    from engine.runtime.service import Runtime

    runtime = Runtime(parse_config(config_text), sinks=[])
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    try:
        async with asyncio.timeout(start_timeout_s):
            started = asyncio.create_task(runtime.started.wait())
            await asyncio.wait({started, task}, return_when=asyncio.FIRST_COMPLETED)
            started.cancel()
        if task.done():
            task.result()  # re-raises what ended it
            raise RuntimeError("the engine stopped before it started")
        yield runtime
    finally:
        stop.set()
        await task


# -- helper processes ---------------------------------------------------------------------

READY = "ready"


async def start_child(
    module: str, *args: str, ready_timeout_s: float = 30.0
) -> asyncio.subprocess.Process:
    """Start `python -m module args...` (a benchmark's helper: a client in its own
    process, off the engine's core); returns the process once it printed `READY`."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, *args, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    async with asyncio.timeout(ready_timeout_s):
        line = await proc.stdout.readline()
    if line.decode().strip() != READY:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"{module} {' '.join(args)} did not start: {line!r}")
    return proc


async def child_summary(
    proc: asyncio.subprocess.Process, *, terminate: bool = False
) -> dict[str, Any]:
    """The JSON summary a helper prints as its last line when it ends (after SIGTERM
    when `terminate`)."""
    if terminate:
        proc.send_signal(signal.SIGTERM)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"a helper process failed (exit {proc.returncode})")
    summary: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return summary
