"""Helpers of the live tests (a Runtime on a real broker, its API over HTTP): shared by
the gate and change tests rather than copied into each."""

from __future__ import annotations

from typing import Any

import aiohttp


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
