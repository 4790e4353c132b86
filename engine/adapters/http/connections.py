"""The HTTP server's connections, one asyncio protocol each around aiohttp's: the count
against the cap, the header deadline, and the 503 of a connection over the cap
(engine.adapters.http.server says how they are used)."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from typing import Final

__all__ = ["Connection", "Connections", "Refused"]

log = logging.getLogger("burnrate.adapters.http.server")

_BUSY: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 20\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    b"too many connections"
)


def _abort(transport: asyncio.BaseTransport) -> None:
    # Duck-typed: uvloop's transports have abort() and write() but do not derive from
    # asyncio.WriteTransport.
    abort = getattr(transport, "abort", None)
    if callable(abort):
        abort()
    else:
        transport.close()


class Connections:
    """The open connections by transport, counting those accepted but not yet made.

    asyncio may accept a burst of connections (calling the protocol factory for each)
    before any of them is made; counting only made ones would let a burst past the
    cap. One accepted but never made (its transport failed) is weakly held: it drops
    out of the count once collected.
    """

    def __init__(self) -> None:
        self._open: dict[asyncio.BaseTransport, Connection] = {}
        self._accepted: weakref.WeakSet[Connection] = weakref.WeakSet()

    def __len__(self) -> int:
        return len(self._open) + len(self._accepted)

    def get(self, transport: asyncio.BaseTransport) -> Connection | None:
        return self._open.get(transport)

    def accepted(self, conn: Connection) -> None:
        self._accepted.add(conn)

    def made(self, transport: asyncio.BaseTransport, conn: Connection) -> None:
        self._accepted.discard(conn)
        self._open[transport] = conn

    def lost(self, transport: asyncio.BaseTransport) -> None:
        self._open.pop(transport, None)

    def idle(self) -> int:
        return sum(not c.in_request for c in self._open.values())

    def idlest(self) -> Connection | None:
        """The open connection without a request in progress that has been so longest."""
        idle = [c for c in self._open.values() if not c.in_request]
        return min(idle, key=lambda c: c.idle_since, default=None)

    def close_all(self) -> None:
        for conn in list(self._open.values()):
            conn.close()


class Refused(asyncio.Protocol):
    """Answers 503 and closes: the connection cap is reached (or the server is stopping)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        write = getattr(transport, "write", None)  # uvloop's is no asyncio.WriteTransport
        if callable(write):
            write(_BUSY)
        transport.close()


class Connection(asyncio.Protocol):
    """aiohttp's protocol for one connection, plus the header deadline and the count.

    The deadline starts with the first byte that arrives while no request is in
    progress and ends when the request reaches the application (`request_started`,
    called by HttpServer's first middleware); if it passes first, the connection is
    closed. Everything else is aiohttp's: this class only forwards.
    """

    def __init__(
        self,
        inner: asyncio.Protocol,
        header_timeout_s: float,
        registry: Connections,
        on_closed: Callable[[], None],
    ) -> None:
        self._inner = inner
        self._header_timeout_s = header_timeout_s
        self._registry = registry
        self._on_closed = on_closed
        self._transport: asyncio.BaseTransport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._in_request = 0
        self.idle_since = 0.0
        """Loop time the connection was made or last finished a request."""

    @property
    def in_request(self) -> bool:
        return self._in_request > 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self.idle_since = asyncio.get_running_loop().time()
        self._registry.made(transport, self)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if data and not self._in_request and self._deadline is None and self._transport is not None:
            loop = asyncio.get_running_loop()
            self._deadline = loop.call_later(self._header_timeout_s, self._headers_too_slow)
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        transport, self._transport = self._transport, None
        if transport is not None:
            self._registry.lost(transport)
            self._on_closed()
        self._inner.connection_lost(exc)

    def request_started(self) -> None:
        self._in_request += 1
        self._cancel_deadline()

    def request_finished(self) -> None:
        self._in_request -= 1
        self.idle_since = asyncio.get_running_loop().time()

    def abort(self) -> None:
        """Drop the connection at once: no TLS close_notify exchange to wait for (an
        idle connection has nothing in flight), so its descriptor is freed now."""
        if self._transport is not None:
            self._registry.lost(self._transport)
            _abort(self._transport)

    def close(self) -> None:
        """Close now; the connection leaves the count at once (its socket goes with the
        loop's next turn)."""
        if self._transport is not None:
            self._registry.lost(self._transport)
            self._transport.close()

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_too_slow(self) -> None:
        self._deadline = None
        if self._in_request or self._transport is None:
            return
        log.debug(
            "closing an HTTP connection whose request headers took over %gs",
            self._header_timeout_s,
            extra={"data": {"event": "http_header_timeout"}},
        )
        _abort(self._transport)
