"""Helpers of the live tests (a Runtime on a real broker, its API over HTTP, the console
command as a process of its own): shared by the gate, change and incident tests rather
than copied into each."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    """The JSON body of a GET that must answer 200."""
    async with session.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def post_json(
    session: aiohttp.ClientSession, url: str, body: object, status: int = 201
) -> Any:
    """The JSON answer of a POST of `body` that must answer `status`."""
    async with session.post(url, json=body) as resp:
        assert resp.status == status, await resp.text()
        return await resp.json()


async def burnrate(*argv: str) -> tuple[int, str]:
    """`python -m engine ARGV` in a process of its own: its exit status, and its stdout
    followed by its stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "engine",
        *argv,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()
