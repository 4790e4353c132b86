"""The HTTP server: liveness, readiness from consumption progress, `/metrics`, the JSON API.

`/healthz` answers 200 while the event loop runs. `/readyz` answers 200 only when the
consumer has partitions assigned and the broker answered a fetch recently (a member can
sit in its group with no error and fetch nothing; progress is the only honest signal),
else 503 with the reason as JSON. `/metrics` serves the cached Prometheus body;
`/v1/slos` and `/v1/slos/{name}` the JSON views (engine.adapters.http.api),
`/v1/corrections` the corrections (engine.adapters.http.corrections), `/v1/gates/{service}`
the release gate and its overrides (engine.adapters.http.gates), `/v1/changes` the
changes and the budget each consumed (engine.adapters.http.changes), `/v1/incidents`
the incidents and their acknowledgement (engine.adapters.http.incidents),
`/v1/slos/{name}/history` the downsampled history of one SLO
(engine.adapters.http.history), `/v1/summary` the SLO list in brief
(engine.adapters.http.summary), and the web UI at `/` (engine.adapters.http.ui).

Auth: with `http.auth_token_env` or `http.auth_token_file` set, every route but
`/healthz`, `/readyz` and the web UI's `/login` and `/static/` needs
`Authorization: Bearer <token>`, `/metrics` included (scrape it with
`authorization: {type: Bearer, credentials_file: ...}` in the Prometheus job);
see engine.adapters.http.auth for the details.

Connections (`HttpLimits`, defaults in brackets). aiohttp's own keep-alive timer closes
a connection that has no request in progress [15 s] after it opened or after its last
response, whether the client sent nothing or only part of a request. A request that has
started to arrive must complete its headers within [10 s] of its first byte, however
slowly its bytes trickle in (slowloris); aiohttp has no such deadline, so `_Connection`,
a thin asyncio protocol around aiohttp's, keeps it. At most [256] connections are open
at once: one more is answered 503 and closed, so a flood of sockets cannot use up the
process's file descriptors (Kafka and the state file need them too).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler

from engine.adapters.http.api import SloApi
from engine.adapters.http.auth import BearerAuth
from engine.adapters.http.changes import ChangesApi
from engine.adapters.http.corrections import CorrectionsApi
from engine.adapters.http.gates import GatesApi
from engine.adapters.http.history import HistoryApi
from engine.adapters.http.incidents import IncidentsApi, IncidentSource
from engine.adapters.http.listen import parse_listen
from engine.adapters.http.metrics import CONTENT_TYPE, EngineMetrics
from engine.adapters.http.summary import SummaryApi
from engine.adapters.http.ui import Ui
from engine.adapters.kafka.status import SourceStatus
from engine.core.changes import ChangeLog
from engine.core.evaluator import Evaluator
from engine.core.history import History
from engine.core.overrides import Overrides

__all__ = [
    "READY_FETCH_AGE_S",
    "HttpLimits",
    "HttpServer",
    "Readiness",
    "parse_listen",
    "readiness",
]

log = logging.getLogger("burnrate.adapters.http.server")

READY_FETCH_AGE_S = 15.0


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """How long a connection may idle or take over its headers, and how many may be open."""

    idle_timeout_s: float = 15.0
    """Close a connection with no request in progress this long after it opened or after
    its last response (aiohttp's keep-alive timeout; it also ends a request still
    incomplete by then)."""
    header_timeout_s: float = 10.0
    """Close a connection whose request has not completed its headers this long after
    the request's first byte arrived."""
    max_connections: int = 256
    """Open connections at most; one more is answered 503 and closed at once."""

    def __post_init__(self) -> None:
        if not (self.idle_timeout_s > 0 and self.header_timeout_s > 0):
            raise ValueError("HTTP timeouts must be > 0 seconds")
        if self.max_connections < 1:
            raise ValueError("max_connections must be >= 1")


_BUSY: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 20\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    b"too many connections"
)


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reason: str


def readiness(status: SourceStatus | None, max_fetch_age_s: float = READY_FETCH_AGE_S) -> Readiness:
    if status is None or not status.running:
        return Readiness(False, "not consuming")
    if not status.assigned:
        return Readiness(False, "no partitions assigned")
    age = status.last_fetch_age_s
    if age is None:
        return Readiness(False, "no fetch response from the broker yet")
    if age > max_fetch_age_s:
        return Readiness(False, f"broker unreachable: no fetch response for {age:.0f}s")
    return Readiness(True, "ok")


class HttpServer:
    """aiohttp application on `listen`; `port` holds the bound port (listen on port 0 in tests).

    `evaluator` defaults to the one the metrics read; `auth` to the token configured in
    that evaluator's `config.http` (raises ConfigError when it is configured but unusable);
    `history` to an empty one, which its owner feeds (`history.observe` after each
    evaluation: engine.runtime.service does).
    """

    def __init__(
        self,
        listen: str,
        metrics: EngineMetrics,
        status: Callable[[], SourceStatus | None],
        *,
        max_fetch_age_s: float = READY_FETCH_AGE_S,
        evaluator: Evaluator | None = None,
        auth: BearerAuth | None = None,
        limits: HttpLimits | None = None,
        overrides: Overrides | None = None,
        changes: ChangeLog | None = None,
        incidents: IncidentSource | None = None,
        history: History | None = None,
    ) -> None:
        self.host, self._port = parse_listen(listen)
        self.limits = HttpLimits() if limits is None else limits
        self.metrics = metrics
        self.status = status
        self.max_fetch_age_s = max_fetch_age_s
        ev = metrics.collector.evaluator if evaluator is None else evaluator
        self.auth = BearerAuth.from_config(ev.config.http) if auth is None else auth
        self.api = SloApi(ev, generation=lambda: metrics.generation)
        self.history = History(ev) if history is None else history
        self.summary = SummaryApi(ev, generation=lambda: metrics.generation)
        self.ui = Ui(self.api, self.summary, self.auth)
        self.app = web.Application(
            middlewares=[self._track_requests, self.ui.middleware()]
            + ([self.auth.middleware()] if self.auth.enabled else [])
        )
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/readyz", self._readyz)
        self.app.router.add_get("/metrics", self._metrics)
        self.api.add_routes(self.app)
        self.corrections = CorrectionsApi(ev)
        self.corrections.add_routes(self.app)
        self.gates = GatesApi(
            ev,
            overrides,
            metrics.collector.clock,
            on_change=metrics.invalidate,
            generation=lambda: metrics.generation,
        )
        self.gates.add_routes(self.app)
        metrics.collector.gates = self.gates.all
        self.changes = ChangesApi(
            ev, changes, metrics.collector.clock, on_change=metrics.invalidate
        )
        self.changes.add_routes(self.app)
        metrics.collector.changes = self.changes.changes.counts
        self.incidents = IncidentsApi(incidents)
        self.incidents.add_routes(self.app)
        HistoryApi(self.api, self.history).add_routes(self.app)
        self.summary.add_routes(self.app)
        self.ui.add_routes(self.app)
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._connections = _Connections()
        self._full = False

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self._connections)

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    async def start(self) -> None:
        runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=1.0,
            keepalive_timeout=self.limits.idle_timeout_s,
        )
        await runner.setup()
        self._runner = runner
        # Our own listener rather than a web.TCPSite: every connection goes through
        # _accept, which keeps the header deadline and the connection cap.
        try:
            listener = await asyncio.get_running_loop().create_server(
                self._accept, self.host, self._port
            )
        except BaseException:
            self._runner = None
            await runner.cleanup()
            raise
        self._listener = listener
        for sock in listener.sockets:
            addr = sock.getsockname()
            if isinstance(addr, tuple) and len(addr) >= 2:
                self._port = int(addr[1])
                break

    async def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self._connections.close_all()

    def _accept(self) -> asyncio.Protocol:
        """A protocol for a new connection: aiohttp's inside a `_Connection`, or a 503."""
        runner = self._runner
        if runner is None or runner.server is None:
            return _Refused()
        if len(self._connections) >= self.limits.max_connections:
            if not self._full:  # once per episode: a flood of refusals is no flood of logs
                self._full = True
                log.warning(
                    "%d HTTP connections open, the most allowed: refusing more until one closes",
                    len(self._connections),
                    extra={
                        "data": {
                            "event": "http_connections_full",
                            "max_connections": self.limits.max_connections,
                        }
                    },
                )
            return _Refused()
        conn = _Connection(
            runner.server(), self.limits.header_timeout_s, self._connections, self._closed
        )
        self._connections.accepted(conn)
        return conn

    def _closed(self) -> None:
        if len(self._connections) < self.limits.max_connections:
            self._full = False

    @web.middleware
    async def _track_requests(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Tell the connection a request's headers are in: its header deadline is met."""
        transport = request.transport
        conn = None if transport is None else self._connections.get(transport)
        if conn is None:
            return await handler(request)
        conn.request_started()
        try:
            return await handler(request)
        finally:
            conn.request_finished()

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        status = self.status()
        r = readiness(status, self.max_fetch_age_s)
        body: dict[str, object] = {"ready": r.ready, "reason": r.reason}
        if status is not None:
            body["partitions"] = [f"{t}:{p}" for t, p in status.assigned]
            body["last_fetch_age_s"] = status.last_fetch_age_s
        return web.Response(
            body=msgspec.json.encode(body),
            status=200 if r.ready else 503,
            content_type="application/json",
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})


class _Connections:
    """The open connections by transport, counting those accepted but not yet made.

    asyncio may accept a burst of connections (calling the protocol factory for each)
    before any of them is made; counting only made ones would let a burst past the
    cap. One accepted but never made (its transport failed) is weakly held: it drops
    out of the count once collected.
    """

    def __init__(self) -> None:
        self._open: dict[asyncio.BaseTransport, _Connection] = {}
        self._accepted: weakref.WeakSet[_Connection] = weakref.WeakSet()

    def __len__(self) -> int:
        return len(self._open) + len(self._accepted)

    def get(self, transport: asyncio.BaseTransport) -> _Connection | None:
        return self._open.get(transport)

    def accepted(self, conn: _Connection) -> None:
        self._accepted.add(conn)

    def made(self, transport: asyncio.BaseTransport, conn: _Connection) -> None:
        self._accepted.discard(conn)
        self._open[transport] = conn

    def lost(self, transport: asyncio.BaseTransport) -> None:
        self._open.pop(transport, None)

    def close_all(self) -> None:
        for conn in list(self._open.values()):
            conn.close()


class _Refused(asyncio.Protocol):
    """Answers 503 and closes: the connection cap is reached (or the server is stopping)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.WriteTransport):
            transport.write(_BUSY)
        transport.close()


class _Connection(asyncio.Protocol):
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
        registry: _Connections,
        on_closed: Callable[[], None],
    ) -> None:
        self._inner = inner
        self._header_timeout_s = header_timeout_s
        self._registry = registry
        self._on_closed = on_closed
        self._transport: asyncio.BaseTransport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._in_request = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
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

    def close(self) -> None:
        if self._transport is not None:
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
        self._transport.close()
