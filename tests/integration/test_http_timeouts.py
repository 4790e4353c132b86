"""The HTTP server lets no connection hang on: idle sockets, slow headers, too many sockets.

A real server on 127.0.0.1 (port 0) with small limits, raw TCP sockets that send nothing
or trickle a request byte by byte, and a real aiohttp client beside them: the server must
close the sockets within a bounded time while normal requests keep being answered.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
import pytest_asyncio

from engine.adapters.http import bodies
from engine.adapters.http.metrics import EngineMetrics
from engine.adapters.http.server import (
    MAX_HEADER_LINE_BYTES,
    MAX_HEADERS,
    HttpLimits,
    HttpServer,
)
from engine.core.config import parse_config
from engine.core.evaluator import Evaluator

CONFIG = (
    "slos:\n"
    "  - {name: checkout-availability, service: checkout, sli: availability, objective: 99}\n"
)
CLOSE_DEADLINE_S = 15.0
"""Bound for any wait on the server to close a socket (limits in these tests are <= 0.5 s)."""
SILENT_SOCKETS = 50
REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
ENDLESS_HEAD = b"GET /healthz HTTP/1.1\r\n" + b"X-Slow: y\r\n" * 100
"""Headers that never end (a slowloris), at 0.05 s a byte longer than any wait here."""

Sockets = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Serve = Callable[[HttpLimits], Awaitable[HttpServer]]


@pytest_asyncio.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[HttpServer] = []

    async def start(limits: HttpLimits) -> HttpServer:
        ev = Evaluator(parse_config(CONFIG))
        server = HttpServer(
            "127.0.0.1:0", EngineMetrics(ev, lambda: None), lambda: None, limits=limits
        )
        await server.start()
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            await server.stop()


@pytest_asyncio.fixture
async def sockets() -> AsyncIterator[list[Sockets]]:
    opened: list[Sockets] = []
    try:
        yield opened
    finally:
        for _, writer in opened:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def connect(server: HttpServer, opened: list[Sockets]) -> Sockets:
    pair = await asyncio.open_connection("127.0.0.1", server.port)
    opened.append(pair)
    return pair


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the socket (bounded wait)."""
    async with asyncio.timeout(CLOSE_DEADLINE_S):
        try:
            return await reader.read()
        except ConnectionResetError:
            return b""


async def still_open(reader: asyncio.StreamReader) -> bool:
    """True when the server has neither sent anything nor closed the socket in 0.2 s."""
    try:
        async with asyncio.timeout(0.2):
            await reader.read(1)
    except TimeoutError:
        return True
    return False


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """The status line and the body of one response (bounded wait)."""
    async with asyncio.timeout(CLOSE_DEADLINE_S):
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await reader.readexactly(length)
    return head.split(b"\r\n", 1)[0], body


async def trickle(writer: asyncio.StreamWriter, data: bytes, pause_s: float) -> None:
    with contextlib.suppress(ConnectionError):
        for i in range(len(data)):
            writer.write(data[i : i + 1])
            await writer.drain()
            await asyncio.sleep(pause_s)


async def until(condition: Callable[[], bool]) -> None:
    """Wait (bounded) until `condition()` holds; the server has no event to wait on."""
    async with asyncio.timeout(CLOSE_DEADLINE_S):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def healthz(server: HttpServer) -> int:
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"{server.url}/healthz") as resp,
    ):
        return resp.status


def test_the_defaults_are_documented_values() -> None:
    assert HttpLimits() == HttpLimits(
        idle_timeout_s=15.0, header_timeout_s=10.0, max_connections=256
    )
    with pytest.raises(ValueError, match="timeouts must be > 0"):
        HttpLimits(idle_timeout_s=0.0)
    with pytest.raises(ValueError, match="timeouts must be > 0"):
        HttpLimits(header_timeout_s=-1.0)
    with pytest.raises(ValueError, match="max_connections must be >= 1"):
        HttpLimits(max_connections=0)


@pytest.mark.asyncio
async def test_silent_and_slow_sockets_are_closed_while_requests_are_answered(
    serve: Serve, sockets: list[Sockets]
) -> None:
    server = await serve(HttpLimits(idle_timeout_s=0.5, header_timeout_s=0.5))
    silent = [await connect(server, sockets) for _ in range(SILENT_SOCKETS)]
    slow_reader, slow_writer = await connect(server, sockets)
    sender = asyncio.create_task(trickle(slow_writer, ENDLESS_HEAD, 0.05))
    try:
        assert server.connections == SILENT_SOCKETS + 1
        assert await healthz(server) == 200  # served beside the idle sockets
        assert await closed_by_server(slow_reader) == b""
        for reader, _ in silent:
            assert await closed_by_server(reader) == b""
        assert await healthz(server) == 200
    finally:
        sender.cancel()
    await until(lambda: server.connections == 0)


@pytest.mark.asyncio
async def test_slow_headers_are_cut_off_by_their_own_deadline_not_the_idle_one(
    serve: Serve, sockets: list[Sockets]
) -> None:
    server = await serve(HttpLimits(idle_timeout_s=60.0, header_timeout_s=0.5))
    quiet_reader, _ = await connect(server, sockets)
    slow_reader, slow_writer = await connect(server, sockets)
    sender = asyncio.create_task(trickle(slow_writer, ENDLESS_HEAD, 0.05))
    try:
        assert await closed_by_server(slow_reader) == b""
    finally:
        sender.cancel()
    assert await still_open(quiet_reader), "the idle timeout is 60 s: only the slow one goes"


@pytest.mark.asyncio
async def test_a_slow_request_within_the_header_deadline_is_answered(
    serve: Serve, sockets: list[Sockets]
) -> None:
    server = await serve(HttpLimits(idle_timeout_s=60.0, header_timeout_s=5.0))
    reader, writer = await connect(server, sockets)
    await trickle(writer, REQUEST, 0.005)
    assert await read_response(reader) == (b"HTTP/1.1 200 OK", b'{"status": "ok"}')
    # The same connection serves a second request: the deadline was per request.
    await trickle(writer, REQUEST, 0.005)
    assert await read_response(reader) == (b"HTTP/1.1 200 OK", b'{"status": "ok"}')


@pytest.mark.asyncio
async def test_a_keep_alive_connection_is_closed_once_idle(
    serve: Serve, sockets: list[Sockets]
) -> None:
    server = await serve(HttpLimits(idle_timeout_s=0.5, header_timeout_s=60.0))
    reader, writer = await connect(server, sockets)
    writer.write(REQUEST)
    assert await read_response(reader) == (b"HTTP/1.1 200 OK", b'{"status": "ok"}')
    assert await closed_by_server(reader) == b""


@pytest.mark.asyncio
async def test_at_the_cap_the_connection_idle_longest_makes_room(
    serve: Serve, sockets: list[Sockets]
) -> None:
    server = await serve(HttpLimits(idle_timeout_s=60.0, header_timeout_s=60.0, max_connections=3))
    held = [await connect(server, sockets) for _ in range(3)]
    await until(lambda: server.connections == 3)
    held[0][1].write(REQUEST)  # the first one answers a request: now it is the freshest
    assert await read_response(held[0][0]) == (b"HTTP/1.1 200 OK", b'{"status": "ok"}')
    assert await healthz(server) == 200  # beside three idle sockets, at the cap
    assert await closed_by_server(held[1][0]) == b"", "the one idle longest was closed"
    assert await still_open(held[0][0])
    assert server.connections <= 3


BUSY_REQUEST = (
    b"POST /v1/changes HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 100\r\n\r\n"
)
"""A request whose handler waits for a body that never comes: a connection in use."""


@pytest.mark.asyncio
async def test_at_the_cap_with_every_connection_busy_the_newcomer_gets_503(
    serve: Serve,
    sockets: list[Sockets],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bodies, "BODY_TIMEOUT_S", 300.0)  # the bodies stay pending
    server = await serve(HttpLimits(idle_timeout_s=60.0, header_timeout_s=60.0, max_connections=3))
    busy = [await connect(server, sockets) for _ in range(3)]
    for _, writer in busy:
        writer.write(BUSY_REQUEST)
    await until(lambda: server.connections == 3 and server.idle_connections == 0)
    refused = []
    for _ in range(2):
        reader, _ = await connect(server, sockets)
        refused.append(await closed_by_server(reader))
    for answer in refused:
        assert answer == b"" or answer.startswith(b"HTTP/1.1 503 Service Unavailable"), answer
    full = [r for r in caplog.records if r.name == "burnrate.adapters.http.server"]
    assert len(full) == 1, "one warning when the cap is reached, not one per refusal"
    for reader, _ in busy:
        assert await still_open(reader)

    # One closes: a new connection gets through.
    busy[0][1].close()
    await until(lambda: server.connections < 3)
    assert await healthz(server) == 200


@pytest.mark.asyncio
async def test_a_burst_of_connections_does_not_slip_past_the_cap(
    serve: Serve, sockets: list[Sockets]
) -> None:
    server = await serve(HttpLimits(idle_timeout_s=60.0, header_timeout_s=60.0, max_connections=5))
    burst = await asyncio.gather(*(connect(server, sockets) for _ in range(20)))
    open_now = await asyncio.gather(*(still_open(reader) for reader, _ in burst))
    assert sum(open_now) == 5
    assert server.connections == 5


@pytest.mark.asyncio
async def test_a_body_that_stalls_gets_408_and_frees_the_connection(
    serve: Serve, sockets: list[Sockets], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bodies, "BODY_TIMEOUT_S", 0.5)
    server = await serve(HttpLimits(idle_timeout_s=60.0, header_timeout_s=60.0))
    reader, writer = await connect(server, sockets)
    writer.write(BUSY_REQUEST + b'{"service": ')  # 12 of the 100 bytes announced
    status, body = await read_response(reader)
    assert status == b"HTTP/1.1 408 Request Timeout", body
    assert b"the body did not arrive within 0.5s" in body


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("extra", "answered"),
    [
        (b"".join(b"X-H%d: v\r\n" % i for i in range(MAX_HEADERS - 1)), b"200"),
        (b"".join(b"X-H%d: v\r\n" % i for i in range(MAX_HEADERS + 1)), b"400"),
        (b"X-Long: " + b"v" * (MAX_HEADER_LINE_BYTES - 20) + b"\r\n", b"200"),
        (b"X-Long: " + b"v" * (MAX_HEADER_LINE_BYTES + 1) + b"\r\n", b"400"),
    ],
    ids=["63 headers", "65 headers", "a line within the bound", "a line over it"],
)
async def test_header_count_and_line_length_are_bounded(
    serve: Serve, sockets: list[Sockets], extra: bytes, answered: bytes
) -> None:
    server = await serve(HttpLimits())
    reader, writer = await connect(server, sockets)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra + b"\r\n")
    async with asyncio.timeout(CLOSE_DEADLINE_S):
        status = await reader.readline()
    assert status.split()[1] == answered, status
