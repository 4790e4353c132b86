"""A real Alertmanager (Debian package `prometheus-alertmanager`) for integration tests.

    async with running_alertmanager(tmp_path, webhook_url) as am:
        ...  # am.url is http://127.0.0.1:<port>; am.alerts() is GET /api/v2/alerts

The binary runs with a generated config whose only route sends every alert, grouped
by alertname/slo/severity, to `webhook_url` (group_wait 0s, group_interval 1s, resolved
notifications on), its storage under `tmp_path`, clustering off, and the web server on
port 0: the port it got is read from its log. A missing binary fails the test with an
install hint, never skips it: the Alertmanager sink is tested against the real thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

__all__ = [
    "BINARY_ENV",
    "Alertmanager",
    "alertmanager_binary",
    "eventually",
    "running_alertmanager",
]

BINARY_ENV = "ALERTMANAGER_BIN"
BINARY_NAMES = ("prometheus-alertmanager", "alertmanager")
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
_LISTENING = re.compile(r'msg="Listening on" address=(\S+)')

CONFIG_TEMPLATE = """\
route:
  receiver: test
  group_by: [alertname, slo, severity]
  group_wait: {group_wait}
  group_interval: {group_interval}
  repeat_interval: 1h
receivers:
  - name: test
    webhook_configs:
      - url: {webhook_url}
        send_resolved: true
"""


def alertmanager_binary() -> str:
    """Path of the Alertmanager binary: $ALERTMANAGER_BIN if set, else PATH, else /usr/bin."""
    override = os.environ.get(BINARY_ENV, "").strip()
    if override:
        candidates = [override]
        looked = f"${BINARY_ENV}={override}"
    else:
        candidates = []
        for name in BINARY_NAMES:
            candidates += [shutil.which(name) or "", f"/usr/bin/{name}"]
        looked = f"{' or '.join(BINARY_NAMES)} on PATH and in /usr/bin"
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK) and Path(candidate).is_file():
            return candidate
    pytest.fail(
        f"Alertmanager binary not found (looked for {looked}). Install it with "
        "`apt-get install prometheus-alertmanager` or point $ALERTMANAGER_BIN at one. "
        "The Alertmanager sink is only tested against a real Alertmanager, so this test "
        "fails instead of skipping.",
        pytrace=False,
    )


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    *,
    timeout_s: float = 15.0,
    what: str = "condition",
    interval_s: float = 0.02,
) -> None:
    """Wait until `check()` is true (it may be a coroutine function), or fail at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g}s waiting for {what}")
        await asyncio.sleep(interval_s)


@dataclass
class Alertmanager:
    url: str
    process: asyncio.subprocess.Process
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    async def alerts(self) -> list[dict[str, Any]]:
        """`GET /api/v2/alerts`: the alerts Alertmanager holds that have not ended."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.url}/api/v2/alerts") as resp,
        ):
            resp.raise_for_status()
            alerts: list[dict[str, Any]] = await resp.json()
            return alerts


@contextlib.asynccontextmanager
async def running_alertmanager(
    tmp_path: Path,
    webhook_url: str,
    *,
    group_wait: str = "0s",
    group_interval: str = "1s",
    extra_config: str = "",
) -> AsyncIterator[Alertmanager]:
    """Start Alertmanager, wait until `/-/ready` answers 200, yield it, kill it at exit.
    `extra_config`: more top-level YAML for its config (e.g. `inhibit_rules:`)."""
    binary = alertmanager_binary()
    workdir = tmp_path / "alertmanager"
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "alertmanager.yml"
    config.write_text(
        CONFIG_TEMPLATE.format(
            webhook_url=webhook_url, group_wait=group_wait, group_interval=group_interval
        )
        + extra_config,
        encoding="utf-8",
    )
    log_path = workdir / "alertmanager.log"
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={config}",
            f"--storage.path={workdir / 'data'}",
            "--web.listen-address=127.0.0.1:0",
            "--cluster.listen-address=",
            "--log.level=debug",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        address = await _listen_address(process, log_path)
        am = Alertmanager(f"http://{address}", process, log_path)
        await _wait_ready(am)
        yield am
    finally:
        await _stop(process)


async def _listen_address(process: asyncio.subprocess.Process, log_path: Path) -> str:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        text = await asyncio.to_thread(log_path.read_text, encoding="utf-8", errors="replace")
        found = _LISTENING.search(text)
        if found:
            return found.group(1)
        if process.returncode is not None:
            pytest.fail(
                f"Alertmanager exited with code {process.returncode} during startup:\n"
                f"{_tail(log_path)}",
                pytrace=False,
            )
        if time.monotonic() > deadline:
            pytest.fail(
                f"Alertmanager did not log its listen address within {STARTUP_TIMEOUT_S:g}s:\n"
                f"{_tail(log_path)}",
                pytrace=False,
            )
        await asyncio.sleep(0.02)


async def _wait_ready(am: Alertmanager) -> None:
    async def ready() -> bool:
        if am.process.returncode is not None:
            pytest.fail(
                f"Alertmanager exited with code {am.process.returncode}:\n{am.log_tail()}",
                pytrace=False,
            )
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{am.url}/-/ready") as resp,
            ):
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    await eventually(ready, timeout_s=STARTUP_TIMEOUT_S, what=f"{am.url}/-/ready")


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
    await process.wait()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])
