"""`burnrate run` as a real process: SIGTERM ends it cleanly, with or without a broker.

The service is started the way an init system or Kubernetes would start it (its own
process, a config file, JSON logs on stderr) and stopped with SIGTERM: it must exit
0 within 10 s and say so in its log, also when every broker is already gone (the
aiokafka `stop()` hang with every broker down).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from engine.adapters.http.server import READY_FETCH_AGE_S
from engine.adapters.kafka.embedded_broker import EmbeddedBroker, create_topic

STARTUP_DEADLINE_S = 60.0
EXIT_DEADLINE_S = 10.0


def burnrate_command() -> list[str]:
    """The installed console script next to this interpreter, else `python -m engine`."""
    script = Path(sys.executable).with_name("burnrate")
    if script.exists():
        return [str(script)]
    found = shutil.which("burnrate")
    return [found] if found else [sys.executable, "-m", "engine"]


def write_config(path: Path, bootstrap: str, topic: str) -> Path:
    path.write_text(
        "slos:\n"
        "  - {name: checkout-availability, service: checkout, sli: availability, objective: 99}\n"
        "kafka:\n"
        f"  bootstrap_servers: {bootstrap}\n"
        f"  topics: [{topic}]\n"
        f"  group_id: g-{uuid.uuid4().hex[:10]}\n"
        "http:\n"
        "  listen: 127.0.0.1:0\n"
    )
    return path


class Service:
    """A `burnrate run` child process whose JSON log lines are collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, config: Path) -> Service:
        # The config names the broker: an inherited KAFKA_BOOTSTRAP_SERVERS must not
        # redirect the service to another one.
        env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
        proc = await asyncio.create_subprocess_exec(
            *burnrate_command(),
            "run",
            "--config",
            str(config),
            "--log-format",
            "json",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            try:
                obj = json.loads(line)
            except ValueError:
                continue  # e.g. a traceback from a dependency
            if isinstance(obj, dict):
                self.events.append(obj)

    def log(self) -> str:
        return "\n".join(self.lines[-60:])

    def event(self, name: str) -> dict[str, Any] | None:
        return next((e for e in self.events if e.get("event") == name), None)

    async def wait_for(
        self, what: str, cond: Callable[[], Awaitable[Any]], deadline_s: float
    ) -> Any:
        end = time.monotonic() + deadline_s
        while True:
            result = await cond()
            if result:
                return result
            if self.proc.returncode is not None:
                pytest.fail(
                    f"burnrate exited ({self.proc.returncode}) before {what}:\n{self.log()}"
                )
            if time.monotonic() > end:
                pytest.fail(f"no {what} within {deadline_s:.0f}s:\n{self.log()}")
            await asyncio.sleep(0.1)

    async def url(self) -> str:
        async def listening() -> str | None:
            e = self.event("listening")
            return None if e is None else str(e["url"])

        url: str = await self.wait_for("listening line", listening, STARTUP_DEADLINE_S)
        return url

    async def readyz_status(self, session: aiohttp.ClientSession, url: str) -> int:
        try:
            async with session.get(f"{url}/readyz") as resp:
                return resp.status
        except aiohttp.ClientError:
            return 0

    async def wait_readyz(
        self, session: aiohttp.ClientSession, want: int, deadline_s: float
    ) -> None:
        url = await self.url()

        async def answered() -> bool:
            return await self.readyz_status(session, url) == want

        await self.wait_for(f"/readyz {want}", answered, deadline_s)

    async def terminate(self) -> tuple[int, float]:
        """SIGTERM; the exit code and the seconds it took (fails past the deadline)."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(EXIT_DEADLINE_S):
                code = await self.proc.wait()
        except TimeoutError:
            pytest.fail(
                f"burnrate still running {EXIT_DEADLINE_S:.0f}s after SIGTERM:\n{self.log()}"
            )
        took = time.monotonic() - t0
        async with asyncio.timeout(5):
            await self._reader
        return code, took

    async def kill(self) -> None:
        """Cleanup: whatever state the test left the process in."""
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        yield s


@pytest_asyncio.fixture
async def own_broker() -> AsyncIterator[EmbeddedBroker]:
    b = EmbeddedBroker()
    await asyncio.to_thread(b.start)
    try:
        yield b
    finally:
        await asyncio.to_thread(b.stop)


def assert_stopped_cleanly(service: Service, code: int) -> None:
    assert code == 0, service.log()
    signal_event = service.event("signal")
    assert signal_event is not None, service.log()
    assert signal_event["signal"] == "SIGTERM"
    assert service.event("shutdown") is not None, service.log()
    assert service.event("stopped") is not None, service.log()
    assert service.events[-1]["event"] == "stopped", service.log()


@pytest.mark.asyncio
async def test_sigterm_stops_the_service_cleanly(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    config = write_config(tmp_path / "burnrate.yaml", kafka_bootstrap, unique_topic)
    service = await Service.start(config)
    try:
        await service.wait_readyz(session, 200, STARTUP_DEADLINE_S)
        code, took = await service.terminate()
    finally:
        await service.kill()
    assert_stopped_cleanly(service, code)
    assert took < EXIT_DEADLINE_S


@pytest.mark.asyncio
@pytest.mark.parametrize("outage", ["just-stopped", "gone-for-a-while"])
async def test_sigterm_with_the_broker_gone_still_exits_within_10s(
    own_broker: EmbeddedBroker, outage: str, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    topic = f"it-signals-{uuid.uuid4().hex[:8]}"
    await create_topic(own_broker.bootstrap_servers, topic, 1)
    config = write_config(tmp_path / "burnrate.yaml", own_broker.bootstrap_servers, topic)
    service = await Service.start(config)
    try:
        await service.wait_readyz(session, 200, STARTUP_DEADLINE_S)
        await asyncio.to_thread(own_broker.stop)
        if outage == "gone-for-a-while":
            # long enough for the consumer to give up on the broker and say so
            await service.wait_readyz(session, 503, READY_FETCH_AGE_S + 30)
        code, took = await service.terminate()
    finally:
        await service.kill()
    assert_stopped_cleanly(service, code)
    assert took < EXIT_DEADLINE_S
