"""A real Prometheus server (and promtool) for the integration tests.

Debian's `prometheus` package provides both (`apt-get install prometheus`); set
PROMETHEUS_BIN / PROMTOOL_BIN to use others. A missing binary fails the test rather
than skipping it, so a run without Prometheus cannot pass by testing nothing.

`PrometheusServer` writes a prometheus.yml scraping the given targets every second
(optionally with a bearer token from a file), keeps its TSDB under the given directory,
listens on a free loopback port, and is ready once `/-/ready` answers 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

PROMETHEUS_BIN = os.environ.get("PROMETHEUS_BIN", "/usr/bin/prometheus")
PROMTOOL_BIN = os.environ.get("PROMTOOL_BIN", "/usr/bin/promtool")
JOB = "burnrate"
START_DEADLINE_S = 60.0
STOP_TIMEOUT_S = 10.0
START_ATTEMPTS = 3


def require_binary(path: str) -> str:
    """The executable at `path` (or on PATH); fails the test when there is none."""
    found = shutil.which(path)
    if found is None:
        pytest.fail(
            f"{path} not found: install Debian's `prometheus` package "
            "(apt-get install prometheus) or point PROMETHEUS_BIN/PROMTOOL_BIN at the binaries",
            pytrace=False,
        )
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def scrape_config(
    targets: Sequence[str],
    *,
    interval_s: int = 1,
    bearer_token_file: Path | None = None,
) -> bytes:
    """prometheus.yml scraping `targets` (HOST:PORT) at /metrics. JSON is valid YAML."""
    job: dict[str, Any] = {
        "job_name": JOB,
        "metrics_path": "/metrics",
        "static_configs": [{"targets": list(targets)}],
    }
    if bearer_token_file is not None:
        job["authorization"] = {"type": "Bearer", "credentials_file": str(bearer_token_file)}
    return msgspec.json.encode(
        {
            "global": {
                "scrape_interval": f"{interval_s}s",
                "scrape_timeout": f"{interval_s}s",
                "evaluation_interval": f"{interval_s}s",
            },
            "scrape_configs": [job],
        }
    )


async def promtool_check_metrics(body: bytes) -> tuple[int, str]:
    """`promtool check metrics` on an exposition body: exit code and combined output."""
    proc = await asyncio.create_subprocess_exec(
        require_binary(PROMTOOL_BIN),
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(60):
        out, _ = await proc.communicate(body)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


class PrometheusServer:
    """One Prometheus process; `url` is set once it is ready."""

    def __init__(
        self,
        workdir: Path,
        targets: Sequence[str],
        *,
        bearer_token_file: Path | None = None,
        binary: str = PROMETHEUS_BIN,
    ) -> None:
        self.workdir = workdir
        self.binary = require_binary(binary)
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_bytes(scrape_config(targets, bearer_token_file=bearer_token_file))
        self.log_path = workdir / "prometheus.log"
        self.url = ""
        self._proc: asyncio.subprocess.Process | None = None

    def log_tail(self, n: int = 30) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    async def start(self, session: aiohttp.ClientSession) -> None:
        """Start and wait for /-/ready; another port when the chosen one was taken."""
        for _ in range(START_ATTEMPTS):
            port = free_port()
            await self._spawn(port)
            self.url = f"http://127.0.0.1:{port}"
            if await self._wait_ready(session):
                return
            await self.stop()
            if "address already in use" not in self.log_tail(200):
                break
        pytest.fail(f"Prometheus did not become ready:\n{self.log_tail()}", pytrace=False)

    async def _spawn(self, port: int) -> None:
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = await asyncio.create_subprocess_exec(
                self.binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={data}",
                f"--web.listen-address=127.0.0.1:{port}",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

    async def _wait_ready(self, session: aiohttp.ClientSession) -> bool:
        assert self._proc is not None
        end = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < end:
            if self._proc.returncode is not None:
                return False
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(f"{self.url}/-/ready") as resp:
                    if resp.status == 200:
                        return True
            await asyncio.sleep(0.05)
        return False

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            if proc is not None:
                await proc.wait()
            return
        proc.terminate()
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def query(self, session: aiohttp.ClientSession, promql: str) -> list[dict[str, Any]]:
        """The result vector of an instant query at the current time."""
        async with session.get(f"{self.url}/api/v1/query", params={"query": promql}) as resp:
            body = await resp.json()
        if resp.status != 200 or body.get("status") != "success":
            pytest.fail(f"PromQL {promql!r} failed: {resp.status} {body}")
        data = body["data"]
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result

    async def scalar(self, session: aiohttp.ClientSession, promql: str) -> float | None:
        """The value of a query that selects at most one series; None when it selects none."""
        result = await self.query(session, promql)
        if not result:
            return None
        assert len(result) == 1, result
        return float(result[0]["value"][1])

    async def target_health(self, session: aiohttp.ClientSession) -> list[dict[str, Any]]:
        """Health and last error of every active target (for failure messages)."""
        async with session.get(f"{self.url}/api/v1/targets") as resp:
            body = await resp.json()
        return [
            {k: t.get(k) for k in ("scrapeUrl", "health", "lastError")}
            for t in body.get("data", {}).get("activeTargets", [])
        ]


@contextlib.asynccontextmanager
async def running_prometheus(
    workdir: Path,
    targets: Sequence[str],
    session: aiohttp.ClientSession,
    *,
    bearer_token_file: Path | None = None,
) -> AsyncIterator[PrometheusServer]:
    server = PrometheusServer(workdir, targets, bearer_token_file=bearer_token_file)
    try:
        await server.start(session)
        yield server
    finally:
        await server.stop()
