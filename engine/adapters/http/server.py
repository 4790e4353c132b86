"""The HTTP server: liveness, readiness from consumption progress, `/metrics`, the JSON API.

`/healthz` answers 200 while the event loop runs. `/readyz` answers 200 only when the
consumer has partitions assigned and the broker answered a fetch recently (a member can
sit in its group with no error and fetch nothing; progress is the only honest signal),
else 503 with the reason as JSON. `/metrics` serves the cached Prometheus body;
`/v1/slos` and `/v1/slos/{name}` the JSON views (engine.adapters.http.api).

Auth: with `http.auth_token_env` or `http.auth_token_file` set, every route but
`/healthz` and `/readyz` needs `Authorization: Bearer <token>`, `/metrics` included
(scrape it with `authorization: {type: Bearer, credentials_file: ...}` in the
Prometheus job); see engine.adapters.http.api for the details.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from aiohttp import web

from engine.adapters.http.api import SloApi
from engine.adapters.http.auth import BearerAuth
from engine.adapters.http.metrics import CONTENT_TYPE, EngineMetrics
from engine.adapters.kafka.status import SourceStatus
from engine.core.evaluator import Evaluator

__all__ = ["READY_FETCH_AGE_S", "HttpServer", "Readiness", "parse_listen", "readiness"]

READY_FETCH_AGE_S = 15.0


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


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::1]:PORT`) into host and port; ValueError when malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class HttpServer:
    """aiohttp application on `listen`; `port` holds the bound port (listen on port 0 in tests).

    `evaluator` defaults to the one the metrics read; `auth` to the token configured in
    that evaluator's `config.http` (raises ConfigError when it is configured but unusable).
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
    ) -> None:
        self.host, self._port = parse_listen(listen)
        self.metrics = metrics
        self.status = status
        self.max_fetch_age_s = max_fetch_age_s
        ev = metrics.collector.evaluator if evaluator is None else evaluator
        self.auth = BearerAuth.from_config(ev.config.http) if auth is None else auth
        self.api = SloApi(ev, generation=lambda: metrics.generation)
        self.app = web.Application(
            middlewares=[self.auth.middleware()] if self.auth.enabled else []
        )
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/readyz", self._readyz)
        self.app.router.add_get("/metrics", self._metrics)
        self.api.add_routes(self.app)
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    async def start(self) -> None:
        runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._port)
        await site.start()
        self._runner = runner
        for addr in runner.addresses:
            if isinstance(addr, tuple) and len(addr) >= 2:
                self._port = int(addr[1])
                break

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

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
