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

Auth: with tokens configured (`http.tokens`, `http.auth_token_env` or
`http.auth_token_file`), every route but `/healthz`, `/readyz` and the web UI's `/login`
and `/static/` needs `Authorization: Bearer <token>` of a token with the route's scope,
`/metrics` included (scrape it with `authorization: {type: Bearer, credentials_file: ...}` in the
Prometheus job); see engine.adapters.http.auth and engine.adapters.http.scopes.
HTTPS with `http.tls` (engine.adapters.http.tls), mutual TLS with its `client_ca_file`.

Connections (`HttpLimits`, from `http.max_connections`, `idle_timeout` and
`header_timeout`; defaults in brackets). aiohttp's own keep-alive timer closes a
connection that has no request in progress [15 s] after it opened or after its last
response, whether the client sent nothing or only part of a request. A request that has
started to arrive must complete its headers within [10 s] of its first byte, however
slowly its bytes trickle in (slowloris); aiohttp has no such deadline, so `Connection`
(engine.adapters.http.connections), a thin asyncio protocol around aiohttp's, keeps it;
a TLS handshake must end within the same time. At most [256] connections are open at
once, so a flood of sockets cannot use up the process's file descriptors (Kafka and the
state file need them too). When one more arrives, the connection that has waited
longest without a request in progress is closed to make room, so sockets held open idle
cannot lock Prometheus out; only when every connection is in the middle of a request is
the newcomer answered 503 and closed. A request head has at most [64] header lines of
at most [8190] bytes each, and a body at most [64 KiB] (each route reads less, within
10 s: engine.adapters.http.bodies); more is a 4xx.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Protocol

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler, Middleware

from engine.adapters.http.api import SloApi, json_error
from engine.adapters.http.audit import actor_of
from engine.adapters.http.auth import BearerAuth
from engine.adapters.http.bodies import invalid
from engine.adapters.http.changes import ChangesApi
from engine.adapters.http.connections import Connection, Connections, Refused
from engine.adapters.http.corrections import CorrectionsApi
from engine.adapters.http.gates import GatesApi
from engine.adapters.http.history import HistoryApi
from engine.adapters.http.incidents import IncidentsApi, IncidentSource
from engine.adapters.http.listen import parse_listen
from engine.adapters.http.metrics import CONTENT_TYPE, EngineMetrics
from engine.adapters.http.partitioned import PartitionedApi
from engine.adapters.http.partitioned_changes import PartitionedChanges
from engine.adapters.http.partitioned_corrections import PartitionedCorrections
from engine.adapters.http.partitioned_gates import PartitionedGates
from engine.adapters.http.partitioned_ui import PartitionedUi
from engine.adapters.http.partitions import Partitions
from engine.adapters.http.summary import SummaryApi
from engine.adapters.http.tls import server_ssl_context
from engine.adapters.http.ui import Ui
from engine.adapters.kafka.status import SourceStatus
from engine.core.changes import ChangeLog
from engine.core.config_io import Http
from engine.core.durations import parse_duration_s
from engine.core.evaluator import Evaluator
from engine.core.history import History
from engine.core.overrides import Overrides

__all__ = [
    "READY_FETCH_AGE_S",
    "HttpLimits",
    "HttpServer",
    "Readiness",
    "ReloadAnswer",
    "parse_listen",
    "readiness",
    "reload_response",
]

log = logging.getLogger("burnrate.adapters.http.server")

READY_FETCH_AGE_S = 15.0
MAX_HEADERS: Final = 64
MAX_HEADER_LINE_BYTES: Final = 8190
MAX_BODY_BYTES: Final = 64 * 1024
"""The largest body any route takes (corrections); each route reads its own bound."""


def _not_a_client_error(record: logging.LogRecord) -> bool:
    """Drops aiohttp's ERROR with traceback for a request it could not parse (answered
    400): the client's fault, and one line per malformed request would let anyone flood
    the log. Errors of handlers still come through."""
    exc = record.exc_info[1] if record.exc_info else None
    return not isinstance(exc, HttpProcessingError)


_protocol_log = logging.getLogger("burnrate.adapters.http.protocol")
_protocol_log.addFilter(_not_a_client_error)


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

    @classmethod
    def from_config(cls, http: Http) -> HttpLimits:
        """`http.idle_timeout`, `http.header_timeout` and `http.max_connections`."""
        return cls(
            idle_timeout_s=parse_duration_s(http.idle_timeout),
            header_timeout_s=parse_duration_s(http.header_timeout),
            max_connections=http.max_connections,
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


class ReloadAnswer(Protocol):
    """What a config reload answers (engine.runtime.reload.ReloadOutcome, a msgspec
    Struct: encoded as the body of a 200)."""

    @property
    def result(self) -> str: ...
    @property
    def errors(self) -> list[str]: ...


async def reload_response(
    on_reload: Callable[[str], Awaitable[ReloadAnswer]] | None, request: web.Request
) -> web.Response:
    """`POST /-/reload` in every role: 200 with what the reload did, 400 with the
    `$.path` errors of a config it refused (the running one stays), 404 without a
    config file to reload."""
    if on_reload is None:
        return json_error(404, "no config file to reload")
    outcome = await on_reload(actor_of(request))
    if outcome.result != "ok":
        return invalid(400, outcome.errors)
    return web.Response(body=msgspec.json.encode(outcome), content_type="application/json")


class HttpServer:
    """aiohttp application on `listen`; `port` holds the bound port (listen on port 0 in tests).

    `evaluator` defaults to the one the metrics read; `auth`, `limits` and `tls` to what
    that evaluator's `config.http` configures (raises ConfigError when it is configured
    but unusable); `tls=False` serves plain HTTP whatever the config says.
    `history` defaults to an empty one, which its owner feeds (`history.observe` after
    each evaluation: engine.runtime.service does).

    With `partitions` (an evaluate worker, `burnrate run --role evaluate`) it serves the
    SLOs of the partitions owned at each request instead of one evaluator's
    (engine.adapters.http.partitioned; `metrics` a `PartitionedMetrics`); `evaluator`,
    `overrides`, `changes` and `history` are then unused (`incidents` is the worker's,
    engine.runtime.evaluate_incidents).
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
        tls: ssl.SSLContext | bool | None = None,
        history: History | None = None,
        partitions: Partitions | None = None,
    ) -> None:
        self.host, self._port = parse_listen(listen)
        if partitions is not None:
            http = partitions.config.http
        else:
            ev = metrics.collector.evaluator if evaluator is None else evaluator
            http = ev.config.http
        self.limits = HttpLimits.from_config(http) if limits is None else limits
        self.metrics = metrics
        self.status = status
        self.max_fetch_age_s = max_fetch_age_s
        self.auth = BearerAuth.from_config(http) if auth is None else auth
        if tls is None or tls is True:
            tls = None if http.tls is None else server_ssl_context(http.tls)
        self.tls: ssl.SSLContext | None = tls or None
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._connections = Connections()
        self._full = False
        if partitions is not None:
            self._serve_partitions(partitions, incidents)
            return
        self.api = SloApi(ev, generation=lambda: metrics.generation)
        self.history = History(ev) if history is None else history
        self.summary = SummaryApi(ev, generation=lambda: metrics.generation)
        self.ui = Ui(self.api, self.summary, self.auth)
        self.app = self._app(self.ui.middleware())
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
        self.on_reload: Callable[[str], Awaitable[ReloadAnswer]] | None = None
        """Reloads the config for `POST /-/reload` (admin), given who asked; None: the
        route answers 404 (no config file to reload)."""
        self.app.router.add_post("/-/reload", self._reload)

    def _app(self, ui_middleware: Middleware) -> web.Application:
        """The application with the middlewares (requests tracked, the UI's login, the
        bearer tokens) and the routes of every role: the probes and `/metrics`."""
        app = web.Application(
            middlewares=[self._track_requests, ui_middleware]
            + ([self.auth.middleware()] if self.auth.enabled else []),
            client_max_size=MAX_BODY_BYTES,
        )
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        return app

    def _serve_partitions(
        self, partitions: Partitions, incidents: IncidentSource | None = None
    ) -> None:
        """The evaluate role's routes: the SLOs of the partitions owned now
        (engine.adapters.http.partitioned); the probes, auth and limits as above."""
        self.partitioned = PartitionedApi(partitions, generation=lambda: self.metrics.generation)
        self.partitioned_gates = PartitionedGates(
            partitions,
            self.metrics.collector.clock,
            on_change=self.metrics.invalidate,
            generation=lambda: self.metrics.generation,
        )
        self.metrics.collector.gates = self.partitioned_gates.all
        self.partitioned_changes = PartitionedChanges(
            partitions, self.metrics.collector.clock, on_change=self.metrics.invalidate
        )
        self.metrics.collector.changes = self.partitioned_changes.counts
        self.partitioned_corrections = PartitionedCorrections(partitions)
        self.ui = PartitionedUi(self.partitioned, self.auth)
        self.app = self._app(self.ui.middleware())
        self.partitioned.add_routes(self.app)
        self.partitioned_gates.add_routes(self.app)
        self.partitioned_changes.add_routes(self.app)
        self.partitioned_corrections.add_routes(self.app)
        self.incidents = IncidentsApi(incidents)
        self.incidents.add_routes(self.app)
        self.ui.add_routes(self.app)
        self.on_reload = None  # set by the worker (engine.runtime.evaluate_reload)
        self.app.router.add_post("/-/reload", self._reload)

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self._connections)

    @property
    def idle_connections(self) -> int:
        """Connections open now without a request in progress."""
        return self._connections.idle()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "http" if self.tls is None else "https"
        return f"{scheme}://{host}:{self._port}"

    async def start(self) -> None:
        runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=1.0,
            keepalive_timeout=self.limits.idle_timeout_s,
            max_headers=MAX_HEADERS,
            max_line_size=MAX_HEADER_LINE_BYTES,
            max_field_size=MAX_HEADER_LINE_BYTES,
            logger=_protocol_log,
        )
        await runner.setup()
        self._runner = runner
        # Our own listener rather than a web.TCPSite: every connection goes through
        # _accept, which keeps the header deadline and the connection cap.
        try:
            listener = await asyncio.get_running_loop().create_server(
                self._accept,
                self.host,
                self._port,
                ssl=self.tls,
                ssl_handshake_timeout=None if self.tls is None else self.limits.header_timeout_s,
                ssl_shutdown_timeout=None if self.tls is None else self.limits.header_timeout_s,
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

    def warn_if_open(self) -> bool:
        """Log a warning (once; True when it did) if no token guards the API while it
        listens on an address other hosts can reach."""
        if self.auth.enabled or _loopback(self.host):
            return False
        log.warning(
            "no API token configured (http.tokens): every route on %s is open to anyone "
            "who can reach it, including the writes",
            self.url,
            extra={"data": {"event": "http_open", "url": self.url}},
        )
        return True

    async def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self._connections.close_all()

    def _accept(self) -> asyncio.Protocol:
        """A protocol for a new connection: aiohttp's inside a `Connection`, or a 503."""
        runner = self._runner
        if runner is None or runner.server is None:
            return Refused()
        if len(self._connections) >= self.limits.max_connections and not self._evict_idle():
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
            return Refused()
        conn = Connection(
            runner.server(), self.limits.header_timeout_s, self._connections, self._closed
        )
        self._connections.accepted(conn)
        return conn

    def _evict_idle(self) -> bool:
        """Close the connection idle longest (no request in progress) to make room;
        False when every connection is busy."""
        conn = self._connections.idlest()
        if conn is None:
            return False
        log.debug(
            "closing the HTTP connection idle longest to make room for a new one",
            extra={"data": {"event": "http_connection_evicted"}},
        )
        conn.abort()
        return True

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

    async def _reload(self, request: web.Request) -> web.Response:
        return await reload_response(self.on_reload, request)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False
