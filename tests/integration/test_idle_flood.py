"""500 idle TCP connections held open for 30 s do not stop `/metrics` from answering.

The server runs with its default limits (at most 256 connections, 15 s idle timeout).
500 sockets connect and send nothing; whenever the server closes one (to make room, or
once idle too long) it is opened again at the next round, so the server sits at its
connection cap for the whole 30 s. Meanwhile a real client scrapes `/metrics` once a
second with a token: every scrape is answered 200 with the SLO series.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp
import pytest

from engine.adapters.http.metrics import EngineMetrics
from engine.adapters.http.server import HttpLimits, HttpServer
from engine.adapters.http.tokens import token_digest
from engine.core.config import parse_config
from engine.core.evaluator import Evaluator

IDLE_SOCKETS = 500
HOLD_S = 30.0
TOKEN = "flood-Scrape-Token"
CONFIG = (
    "slos: [{name: checkout-availability, service: checkout, sli: availability, objective: 99}]\n"
    "http:\n"
    f"  tokens: [{{name: prometheus, scopes: [read], sha256: {token_digest(TOKEN).hex()}}}]\n"
)

Socket = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def open_idle(port: int) -> Socket | None:
    try:
        return await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return None


@pytest.mark.slow
@pytest.mark.asyncio
async def test_idle_sockets_at_the_cap_do_not_lock_out_the_scrape() -> None:
    ev = Evaluator(parse_config(CONFIG))
    server = HttpServer("127.0.0.1:0", EngineMetrics(ev, lambda: None), lambda: None)
    assert server.limits == HttpLimits()  # the defaults: a cap of 256 < 500
    await server.start()
    held: list[Socket | None] = [None] * IDLE_SOCKETS
    reopened = 0
    scrapes: list[int] = []

    async def hold() -> None:
        nonlocal reopened
        while True:
            for i, sock in enumerate(held):
                if sock is None or sock[0].at_eof():
                    if sock is not None:
                        sock[1].close()
                        reopened += 1
                    held[i] = await open_idle(server.port)
            await asyncio.sleep(1.0)

    holder = asyncio.create_task(hold())
    try:
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=10),
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as session:
            await asyncio.sleep(2.0)  # the first round of sockets is in
            assert server.connections == server.limits.max_connections
            end = time.monotonic() + HOLD_S
            while time.monotonic() < end:
                async with session.get(
                    f"{server.url}/metrics", headers={"Connection": "close"}
                ) as resp:
                    body = await resp.text()
                    scrapes.append(resp.status)
                    assert resp.status == 200, body[:200]
                    assert "burnrate_slo_objective_ratio" in body
                await asyncio.sleep(1.0)
        assert len(scrapes) >= 20
        assert reopened >= IDLE_SOCKETS - server.limits.max_connections
    finally:
        holder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await holder
        for sock in held:
            if sock is not None:
                sock[1].close()
        await server.stop()
