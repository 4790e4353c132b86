"""A scriptable HTTP receiver on loopback for the sink tests (real HTTP, never a mock of
our client), and what the sink tests share around it.

    async with serve(Receiver()) as rcv:       # rcv.url is http://127.0.0.1:<port>/hook
        rcv.script.extend([Reply(503), HANG])   # the next answers, then `rcv.default`
        rcv.outage = Reply(503)                  # every answer, until set to None
        ...
        await rcv.wait_for(2)                    # the requests, once two came

A subclass answers what is not scripted in its own way (`answer`): the fake PagerDuty
Events API in tests/integration/pagerduty.py validates each event as the API does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from engine.adapters.alerts.http_sink import RetryPolicy
from engine.adapters.alerts.sinks import Sink
from tests.integration.alertmanager import eventually

__all__ = ["FAST", "HANG", "Received", "Receiver", "Reply", "counts", "serve", "started"]

FAST = RetryPolicy(initial_backoff_s=0.01, max_backoff_s=0.05)
"""Backoff short enough for tests (Retry-After is still honoured)."""
HANG = "hang"
"""A scripted answer: hold the request until `Receiver.release` is set."""

S = TypeVar("S", bound=Sink)


@dataclass
class Reply:
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float
    """Event-loop time of arrival."""

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """An HTTP receiver on 127.0.0.1: records every POST, answers from a script."""

    def __init__(self) -> None:
        self.url = ""
        self.requests: list[Received] = []
        self.script: deque[Reply | str] = deque()
        self.default = Reply()
        self.outage: Reply | None = None
        """When set, the answer to every request, before the script: the receiver is down."""
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        loop = asyncio.get_running_loop()
        received = Received(dict(request.headers), body, loop.time())
        self.requests.append(received)
        if self.outage is not None:
            return _response(self.outage)
        if not self.script:
            return self.answer(received)
        action = self.script.popleft()
        if action == HANG:
            await self.release.wait()
            return web.Response(status=204)
        assert isinstance(action, Reply)
        return _response(action)

    def answer(self, received: Received) -> web.Response:
        """The answer to a request nothing was scripted for: `default`."""
        return _response(self.default)

    async def wait_for(self, n: int, timeout_s: float = 15.0) -> list[Received]:
        await eventually(lambda: len(self.requests) >= n, timeout_s=timeout_s, what=f"{n} requests")
        return self.requests

    async def quiet(self, for_s: float = 0.5) -> list[Received]:
        """Wait until no request has come for `for_s`: a request a closed sink abandoned
        mid-flight may still reach the server just after the close."""
        while True:
            n = len(self.requests)
            await asyncio.sleep(for_s)
            if len(self.requests) == n:
                return self.requests


def _response(reply: Reply) -> web.Response:
    return web.Response(status=reply.status, headers=reply.headers, body=reply.body or None)


@contextlib.asynccontextmanager
async def serve(receiver: Receiver, port: int = 0, path: str = "/hook") -> AsyncIterator[Receiver]:
    """Serve `receiver` on 127.0.0.1:`port` (0: any free one); its URL ends in `path`."""
    app = web.Application()
    app.router.add_post("/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        host, bound = runner.addresses[0][:2]
        receiver.url = f"http://{host}:{bound}{path}"
        yield receiver
    finally:
        receiver.release.set()
        await runner.cleanup()


@contextlib.asynccontextmanager
async def started(sink: S) -> AsyncIterator[S]:
    await sink.start()
    try:
        yield sink
    finally:
        await sink.close(timeout_s=1.0)


def counts(sink: Sink) -> dict[str, int]:
    """The sink's deliveries by outcome."""
    return {outcome: n for (_receiver, outcome), n in sink.stats().items()}
