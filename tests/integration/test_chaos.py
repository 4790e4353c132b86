"""Chaos: `burnrate run` under broker freezes, engine kills and receiver outages.

For CHAOS_S seconds (BURNRATE_CHAOS_S overrides it for a quick local run) a live
producer sends `checkout` requests at about 200 events/s to an embedded broker, with a
20 s incident (every request fails) every 90 s, while faults are injected at seeded
random moments:

- the engine (`python -m engine run`, snapshots every 5 s) is SIGKILLed or SIGTERMed
  and started again after 0-15 s of downtime, while production goes on (a backlog);
- the broker's process group is frozen with SIGSTOP for 2-10 s, then SIGCONT; the
  broker keeps its data in memory, so it is never restarted, and production pauses
  (its in-flight sends awaited) around each freeze, so no send can fail and the acked
  counts stay exact;
- the webhook receiver (a real aiohttp server) is closed, so connections are refused,
  for 5-20 s, then listens again on the same port.

Afterwards every fault is undone, good traffic runs for a while so the last page
resolves, and the engine must have counted exactly what the broker acked, and the
receiver must have seen, per alert, firing and resolved alternate starting with firing
(consecutive repeats of a state collapsed: a retry or a restart may send one again),
ending in the engine's final state, with no more firings than incidents.

Always its own embedded broker (never KAFKA_BOOTSTRAP_SERVERS): marked `slow`, not
`kafka`, so CI runs it once. Run it with `-s` for the summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

import aiohttp
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer

from engine.adapters.kafka.embedded_broker import EmbeddedBroker, create_topic

CHAOS_S = 300.0
"""How long faults are injected; BURNRATE_CHAOS_S overrides it (e.g. 60 locally)."""

SLO = "checkout-availability"
SEVERITY = "page"
PARTITIONS = 3
RATE_PER_S = 200
BATCH_EVERY_S = 0.05
BACKGROUND_BAD_RATIO = 0.002
INCIDENT_FIRST_S = 20.0
INCIDENT_EVERY_S = 90.0
INCIDENT_LENGTH_S = 20.0
GOOD_TAIL_S = 30.0
"""Good traffic after the chaos, so event time passes the last incident and it resolves."""
READY_DEADLINE_S = 90.0
COUNT_DEADLINE_S = 90.0
DELIVERY_DEADLINE_S = 120.0
"""The sink's backoff after a 20 s receiver outage can be ~30 s more (full jitter)."""
TERM_DEADLINE_S = 15.0
PAUSE_DEADLINE_S = 30.0


def chaos_seconds() -> float:
    raw = os.environ.get("BURNRATE_CHAOS_S", "").strip()
    return float(raw) if raw else CHAOS_S


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def incident_starts(chaos_s: float) -> list[float]:
    """Offsets from the start at which an incident begins; each ends within the chaos."""
    starts = []
    t = INCIDENT_FIRST_S
    while t + INCIDENT_LENGTH_S <= chaos_s:
        starts.append(t)
        t += INCIDENT_EVERY_S
    return starts


class Producer:
    """Sends wire events at RATE_PER_S; counts what the broker acked, per status."""

    def __init__(self, bootstrap: str, topic: str, rng: random.Random, chaos_s: float) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.rng = rng
        self.incidents = incident_starts(chaos_s)
        self.acked: Counter[int] = Counter()
        self.acked_in_incident: Counter[int] = Counter()
        """Incident index: events acked while it ran."""
        self.failures: list[str] = []
        self.pauses = 0
        self._inflight: set[asyncio.Future[Any]] = set()
        self._go = asyncio.Event()
        self._go.set()
        self._idle = asyncio.Event()
        self._stopping = False
        self._seq = 0
        self._t0 = 0.0
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            linger_ms=5,
            request_timeout_ms=30_000,
        )
        await self._producer.start()
        self._t0 = time.monotonic()
        self._task = asyncio.create_task(self._run())

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    def incident_at(self, elapsed: float) -> int | None:
        for i, start in enumerate(self.incidents):
            if start <= elapsed < start + INCIDENT_LENGTH_S:
                return i
        return None

    def last_incident_end(self) -> float:
        return self.incidents[-1] + INCIDENT_LENGTH_S if self.incidents else 0.0

    @property
    def events_total(self) -> int:
        return sum(self.acked.values())

    @property
    def bad_total(self) -> int:
        return self.acked[500]

    def incidents_produced(self) -> int:
        return len(self.acked_in_incident)

    async def pause(self) -> None:
        """Stop sending and wait until every send in flight has been answered."""
        self.pauses += 1
        self._idle.clear()
        self._go.clear()
        assert self._task is not None
        async with asyncio.timeout(PAUSE_DEADLINE_S):
            idle = asyncio.create_task(self._idle.wait())
            await asyncio.wait({idle, self._task}, return_when=asyncio.FIRST_COMPLETED)
            idle.cancel()
        if self._task.done():
            await self._task  # raises what ended it

    def resume(self) -> None:
        self._go.set()

    async def stop(self) -> None:
        self._stopping = True
        self._go.set()
        if self._task is not None:
            async with asyncio.timeout(PAUSE_DEADLINE_S + 10):
                await self._task

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._producer is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(15):
                    await self._producer.stop()

    async def _drain(self) -> None:
        if self._inflight:
            await asyncio.wait(set(self._inflight))

    def _done(self, status: int, incident: int | None, fut: asyncio.Future[Any]) -> None:
        self._inflight.discard(fut)
        if fut.cancelled():
            self.failures.append(f"a {status} send was cancelled")
        elif fut.exception() is not None:
            self.failures.append(f"a {status} send failed: {fut.exception()!r}")
        else:
            self.acked[status] += 1
            if incident is not None:
                self.acked_in_incident[incident] += 1

    async def _run(self) -> None:
        assert self._producer is not None
        per_batch = round(RATE_PER_S * BATCH_EVERY_S)
        next_t = time.monotonic()
        while not self._stopping:
            if not self._go.is_set():
                await self._drain()
                self._idle.set()
                await self._go.wait()
                next_t = time.monotonic()
                continue
            incident = self.incident_at(self.elapsed())
            for _ in range(per_batch):
                bad = incident is not None or self.rng.random() < BACKGROUND_BAD_RATIO
                status = 500 if bad else 200
                value = json.dumps(
                    {
                        "service": "checkout",
                        "ts": time.time(),
                        "status": status,
                        "latency_ms": round(self.rng.uniform(5, 250), 1),
                    }
                ).encode()
                fut = await self._producer.send(
                    self.topic, value=value, partition=self._seq % PARTITIONS
                )
                self._seq += 1
                self._inflight.add(fut)
                fut.add_done_callback(lambda f, s=status, i=incident: self._done(s, i, f))
            next_t += BATCH_EVERY_S
            await asyncio.sleep(max(0.0, next_t - time.monotonic()))
        await self._drain()


class Receiver:
    """A webhook receiver on a fixed loopback port that can be taken down and back."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.deliveries: list[tuple[float, str | None, dict[str, Any]]] = []
        self.bad_requests: list[str] = []
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    @property
    def up(self) -> bool:
        return self._runner is not None

    async def _hook(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            self.bad_requests.append(raw[:200].decode("utf-8", "replace"))
            return web.Response(status=400)
        self.deliveries.append((time.monotonic(), request.headers.get("webhook-id"), body))
        return web.Response(status=200)

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        runner = web.AppRunner(app, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        for attempt in range(50):
            try:
                await site.start()
                break
            except OSError:
                if attempt == 49:
                    await runner.cleanup()
                    raise
                await asyncio.sleep(0.1)
        self._runner = runner

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def sequences(self) -> dict[tuple[str, str], list[str]]:
        """Per (slo, severity), the alert states in the order they were received."""
        out: dict[tuple[str, str], list[str]] = {}
        for _, _, body in self.deliveries:
            for alert in body.get("alerts", []):
                labels = alert.get("labels", {})
                key = (str(labels.get("slo")), str(labels.get("severity")))
                out.setdefault(key, []).append(str(alert.get("status", body.get("status"))))
        return out


def collapse(states: list[str]) -> list[str]:
    out: list[str] = []
    for s in states:
        if not out or out[-1] != s:
            out.append(s)
    return out


class Engine:
    """`python -m engine run` as a child process, killed and restarted at will."""

    def __init__(self, config: Path, bootstrap: str, log: IO[bytes], url: str) -> None:
        self.config = config
        self.env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
        self.log = log
        self.log_path = Path(log.name)
        self.url = url
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.unexpected_exits: list[int] = []
        self.term_codes: list[int] = []
        self.term_timeouts = 0

    async def start(self) -> None:
        self.check_alive()
        if self.proc is not None and self.proc.returncode is None:
            return
        self.starts += 1
        self.log.write(f"--- start #{self.starts} ---\n".encode())
        self.log.flush()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "engine",
            "run",
            "--config",
            str(self.config),
            "--log-format",
            "json",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self.log,
            stderr=self.log,
            env=self.env,
        )

    def check_alive(self) -> None:
        """Record an exit nobody asked for (then forget the process)."""
        if self.proc is not None and self.proc.returncode is not None:
            self.unexpected_exits.append(self.proc.returncode)
            self.proc = None

    async def kill(self) -> None:
        self.check_alive()
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()

    async def terminate(self) -> None:
        self.check_alive()
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(TERM_DEADLINE_S):
                self.term_codes.append(await proc.wait())
        except TimeoutError:
            self.term_timeouts += 1
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    def log_tail(self, lines: int = 40) -> str:
        try:
            data = self.log_path.read_bytes()[-32 * 1024 :]
        except OSError:
            return ""
        return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


async def poll(
    what: str, cond: Callable[[], Awaitable[Any]], deadline_s: float, detail: Callable[[], str]
) -> Any:
    end = time.monotonic() + deadline_s
    while True:
        result = await cond()
        if result:
            return result
        if time.monotonic() > end:
            pytest.fail(f"{what} not within {deadline_s:.0f}s: {detail()}")
        await asyncio.sleep(0.25)


async def get_json(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    try:
        async with session.get(url) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text
    except (aiohttp.ClientError, TimeoutError):
        return 0, None


def write_config(path: Path, *, bootstrap: str, topic: str, http_port: int, hook: str) -> None:
    path.write_text(
        "slos:\n"
        f"  - {{name: {SLO}, service: checkout, sli: availability, objective: 99}}\n"
        "policy:\n"
        f"  - {{severity: {SEVERITY}, long: 1m, short: 10s, burn_rate: 10}}\n"
        # `min_events`: the stream's first tick may be a window of ten events, where one
        # background failure burns at 10 and pages without an incident.
        "evaluation: {tick: 1s, allowed_lateness: 10s, min_events: 100}\n"
        "kafka:\n"
        f"  bootstrap_servers: {bootstrap}\n"
        f"  topics: [{topic}]\n"
        f"  group_id: chaos-{uuid.uuid4().hex[:10]}\n"
        "http:\n"
        f"  listen: 127.0.0.1:{http_port}\n"
        "receivers:\n"
        f"  - {{type: webhook, url: {hook}}}\n"
        "state:\n"
        f"  path: {path.parent / 'state.snapshot'}\n"
        "  interval: 5s\n"
    )


class Chaos:
    """The fault injectors; every fault is undone before its task returns."""

    def __init__(
        self,
        rng: random.Random,
        broker: EmbeddedBroker,
        engine: Engine,
        receiver: Receiver,
        producer: Producer,
        end: float,
    ) -> None:
        self.rng = rng
        self.broker = broker
        self.engine = engine
        self.receiver = receiver
        self.producer = producer
        self.end = end
        self.faults: Counter[str] = Counter()
        self.timeline: list[str] = []
        self.frozen = False

    def note(self, text: str) -> None:
        self.timeline.append(f"{self.producer.elapsed():6.1f}s {text}")

    def broker_pgid(self) -> int:
        proc = self.broker._proc  # the /bin/sh watchdog, leader of its own session
        assert proc is not None, "the embedded broker is not running"
        return proc.pid

    def thaw(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.broker_pgid(), signal.SIGCONT)
        self.frozen = False

    async def sleep_within(self, seconds: float) -> None:
        """Sleep `seconds`, but not past the end of the chaos."""
        await asyncio.sleep(max(0.0, min(seconds, self.end - time.monotonic())))

    async def freeze_broker(self) -> None:
        hold = self.rng.uniform(2, 10)
        await self.producer.pause()
        self.note(f"broker SIGSTOP for {hold:.1f}s")
        self.frozen = True
        os.killpg(self.broker_pgid(), signal.SIGSTOP)
        try:
            await asyncio.sleep(hold)
        finally:
            self.thaw()
            self.producer.resume()
        self.faults["broker_freeze"] += 1

    async def restart_engine(self, how: str) -> None:
        down = self.rng.uniform(0, 15)
        self.engine.check_alive()
        self.note(f"engine {how}, down {down:.1f}s")
        if how == "SIGKILL":
            await self.engine.kill()
        else:
            await self.engine.terminate()
        self.faults[f"engine_{how}"] += 1
        await asyncio.sleep(down)
        await self.engine.start()

    async def engine_and_broker_faults(self) -> None:
        while True:
            await self.sleep_within(self.rng.uniform(8, 30))
            if time.monotonic() >= self.end:
                return
            kind = self.rng.choice(["SIGKILL", "SIGTERM", "freeze"])
            if kind == "freeze":
                await self.freeze_broker()
            else:
                await self.restart_engine(kind)

    async def receiver_faults(self) -> None:
        rng = random.Random(self.rng.random())  # its own stream: the tasks interleave
        while True:
            await self.sleep_within(rng.uniform(10, 40))
            if time.monotonic() >= self.end:
                return
            down = rng.uniform(5, 20)
            self.note(f"receiver down {down:.1f}s")
            await self.receiver.stop()
            try:
                await asyncio.sleep(down)
            finally:
                await self.receiver.start()
            self.faults["receiver_down"] += 1


@pytest.mark.slow
@pytest.mark.asyncio
async def test_counts_and_alerts_survive_chaos(tmp_path: Path) -> None:
    chaos_s = chaos_seconds()
    seed = int(os.environ.get("BURNRATE_CHAOS_SEED", "") or random.SystemRandom().randrange(2**32))
    print(f"\nchaos: seed {seed} (BURNRATE_CHAOS_SEED={seed} repeats it), {chaos_s:g}s")
    rng = random.Random(seed)
    topic = f"chaos-{uuid.uuid4().hex[:10]}"
    http_port = free_port()
    receiver = Receiver(free_port())
    api = f"http://127.0.0.1:{http_port}"
    config = tmp_path / "burnrate.yaml"

    broker = EmbeddedBroker()
    engine: Engine | None = None
    producer: Producer | None = None
    chaos: Chaos | None = None
    tasks: list[asyncio.Task[None]] = []
    log = (tmp_path / "engine.log").open("ab")
    timeout = aiohttp.ClientTimeout(total=5)
    try:
        broker.start()
        bootstrap = broker.bootstrap_servers
        await create_topic(bootstrap, topic, PARTITIONS)
        write_config(
            config, bootstrap=bootstrap, topic=topic, http_port=http_port, hook=receiver.url
        )
        await receiver.start()
        engine = Engine(config, bootstrap, log, api)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await engine.start()

            async def ready() -> bool:
                assert engine is not None
                engine.check_alive()
                if engine.proc is None:
                    pytest.fail(
                        f"the engine exited ({engine.unexpected_exits}):\n{engine.log_tail()}"
                    )
                return (await get_json(session, f"{api}/readyz"))[0] == 200

            await poll("/readyz 200", ready, READY_DEADLINE_S, engine.log_tail)

            producer = Producer(bootstrap, topic, random.Random(rng.random()), chaos_s)
            await producer.start()
            chaos = Chaos(rng, broker, engine, receiver, producer, time.monotonic() + chaos_s)
            tasks = [
                asyncio.create_task(chaos.engine_and_broker_faults()),
                asyncio.create_task(chaos.receiver_faults()),
            ]
            # The chaos, then the last fault undone (each task finishes its own).
            await asyncio.sleep(chaos_s)
            async with asyncio.timeout(60):
                await asyncio.gather(*tasks)
            chaos.thaw()
            await receiver.start()
            engine.check_alive()
            await engine.start()
            chaos.note("faults over")
            # Good traffic until event time is well past the last incident, then stop.
            tail_end = max(chaos_s, producer.last_incident_end()) + GOOD_TAIL_S
            await asyncio.sleep(max(0.0, tail_end - producer.elapsed()))
            await producer.stop()
            assert not producer.failures, (
                f"{len(producer.failures)} sends failed, the acked counts are not exact "
                f"(seed {seed}): {producer.failures[:5]}"
            )
            await poll("/readyz 200 after the chaos", ready, READY_DEADLINE_S, engine.log_tail)

            view: dict[str, Any] = {}

            async def counted() -> bool:
                nonlocal view
                status, body = await get_json(session, f"{api}/v1/slos/{SLO}")
                if status == 200 and isinstance(body, dict):
                    view = body
                assert producer is not None
                return (
                    view.get("events_total") == producer.events_total
                    and view.get("bad_events_total") == producer.bad_total
                )

            def count_detail() -> str:
                assert producer is not None
                assert chaos is not None
                return (
                    f"seed {seed}: produced (acked) events_total={producer.events_total} "
                    f"bad={producer.bad_total}, engine events_total="
                    f"{view.get('events_total')} bad_events_total="
                    f"{view.get('bad_events_total')}; faults {dict(chaos.faults)}; "
                    f"timeline {chaos.timeline}"
                )

            counts_ok = True
            try:
                await poll("exact counts", counted, COUNT_DEADLINE_S, count_detail)
            except pytest.fail.Exception:
                counts_ok = False

            def final_state() -> str:
                alert = view.get("alerts", {}).get(SEVERITY, {})
                return "firing" if alert.get("firing") else "resolved"

            async def settled() -> bool:
                nonlocal view
                status, body = await get_json(session, f"{api}/v1/slos/{SLO}")
                if status == 200 and isinstance(body, dict):
                    view = body
                seq = collapse(receiver.sequences().get((SLO, SEVERITY), []))
                return final_state() == "resolved" and bool(seq) and seq[-1] == "resolved"

            deliveries_ok = True
            try:
                await poll(
                    "page resolved and delivered",
                    settled,
                    DELIVERY_DEADLINE_S,
                    lambda: f"engine {final_state()}, received {receiver.sequences()}",
                )
            except pytest.fail.Exception:
                deliveries_ok = False

            sequences = receiver.sequences()
            page = sequences.get((SLO, SEVERITY), [])
            collapsed = collapse(page)
            firings = collapsed.count("firing")
            ids = [wid for _, wid, _ in receiver.deliveries]
            others = {k: v for k, v in sequences.items() if k != (SLO, SEVERITY)}
            print(
                "chaos summary:\n"
                f"  seed {seed}, chaos {chaos_s:g}s, incidents produced "
                f"{producer.incidents_produced()} of {len(producer.incidents)} scheduled\n"
                f"  events produced (acked) {producer.events_total} "
                f"(bad {producer.bad_total}, good {producer.acked[200]}), "
                f"counted {view.get('events_total')} (bad {view.get('bad_events_total')})\n"
                f"  faults {dict(chaos.faults)}; producer pauses {producer.pauses}; "
                f"engine starts {engine.starts}, SIGTERM exit codes {engine.term_codes}, "
                f"SIGTERM timeouts {engine.term_timeouts}, "
                f"unexpected exits {engine.unexpected_exits}\n"
                f"  deliveries {len(receiver.deliveries)} ({len(set(ids))} distinct webhook-id, "
                f"{sum(wid is None for wid in ids)} without one), bad requests "
                f"{len(receiver.bad_requests)}\n"
                f"  page states received {page}\n"
                f"  collapsed {collapsed}; engine final state {final_state()}\n"
                f"  other alerts {others}\n"
                "  timeline:\n    " + "\n    ".join(chaos.timeline)
            )

            assert counts_ok, f"counts differ: {count_detail()}"
            assert not engine.unexpected_exits, (
                f"the engine exited by itself with {engine.unexpected_exits} (seed {seed})"
            )
            assert not receiver.bad_requests, receiver.bad_requests[:3]
            assert set(sequences) == {(SLO, SEVERITY)}, f"unexpected alerts {sequences}"
            assert collapsed, f"no page was ever delivered (seed {seed})"
            assert collapsed[0] == "firing", (
                f"the first page state delivered is {collapsed[0]!r} (seed {seed}): {page}"
            )
            assert all(s in ("firing", "resolved") for s in collapsed), page
            assert collapsed[-1] == final_state(), (
                f"last delivered {collapsed[-1]!r} but the engine says {final_state()!r} "
                f"(seed {seed}): {page}"
            )
            assert deliveries_ok, (
                f"the page did not end resolved, in the engine ({final_state()}) and at the "
                f"receiver ({collapsed}), within {DELIVERY_DEADLINE_S:.0f}s (seed {seed})"
            )
            assert 1 <= firings <= producer.incidents_produced(), (
                f"{firings} firing episodes delivered for {producer.incidents_produced()} "
                f"incidents (seed {seed}): {page}"
            )
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(ProcessLookupError, AssertionError):
            if broker._proc is not None:
                os.killpg(broker._proc.pid, signal.SIGCONT)
        if producer is not None:
            await producer.close()
        if engine is not None:
            with contextlib.suppress(Exception):
                await engine.terminate()
        await receiver.stop()
        broker.stop()
        log.close()
