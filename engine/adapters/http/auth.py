"""Token auth for the HTTP server: who may call which route.

When any token is configured (`http.tokens`, or `http.auth_token_env` /
`http.auth_token_file`, engine.adapters.http.tokens), every route except `/healthz` and
`/readyz` (probes carry no credentials) needs `Authorization: Bearer <token>`,
`/metrics` included: SLO names, objectives and error rates are not for anyone who can
reach the port. The token must then carry the scope the route needs
(engine.adapters.http.scopes): without a valid token the answer is 401, with a valid
token that lacks the scope 403 (`WWW-Authenticate: Bearer ..., error="insufficient_scope"`).
Requests to no route (404, 405) need a valid token but no scope, so an unauthenticated
client cannot map the API. The authenticated token's name is stored on the request as
`request["burnrate.token_name"]` for whoever records who did what (absent while no
token is configured, and on the open probes).

A GET or HEAD may carry the token in the cookie `burnrate_token` instead (a browser
that logged in); a cookie never authorises any other method, so a page on another site
cannot make a browser change state with it (CSRF). `Authorization` wins over the cookie.
Prometheus sends the token with

    scrape_configs:
      - job_name: burnrate
        authorization:
          type: Bearer
          credentials_file: /run/secrets/burnrate-token

Refusals are JSON errors, logged with the remote address, the path and the token's
name (never a token), and handed to `on_denied` (an audit trail) before any log rate
limiting. Tokens are compared by SHA-256 digest in constant time against every
configured digest, so neither the content nor the length of a token leaks through
response timing. Tokens are read once at start; a configured source that is unset,
empty or not a valid bearer token is a ConfigError, never a silently open server.

A client hammering with bad tokens does not flood the log (`RefusalLimiter`): in each
minute the first 10 distinct refusals (address, method, path, reason) are logged in full
at WARNING, and the others are counted and summed up in one WARNING line when the minute
is over ("57 more unauthorized requests in the last 60s (invalid bearer token: 40,
missing bearer token: 17)").
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from engine.adapters.http.api import json_error
from engine.adapters.http.refusals import RefusalLimiter, RefusalSummary
from engine.adapters.http.scopes import ROUTE_SCOPES, UNKNOWN, required_scope
from engine.adapters.http.tokens import (
    DEFAULT_TOKEN_NAME,
    SCOPES,
    TOKEN_RE,
    ApiToken,
    load_tokens,
    token_digest,
)
from engine.core.config import Http

__all__ = [
    "COOKIE_NAME",
    "PUBLIC_PATHS",
    "TOKEN_NAME_KEY",
    "BearerAuth",
    "OnDenied",
    "RefusalLimiter",
    "RefusalSummary",
]

log = logging.getLogger("burnrate.adapters.http.auth")

PUBLIC_PATHS: Final = frozenset(
    path for path, methods in ROUTE_SCOPES.items() if all(s is None for s in methods.values())
)
"""Routes that never need the token: liveness and readiness probes."""
REALM: Final = "burnrate"
COOKIE_NAME: Final = "burnrate_token"
"""The cookie a browser may carry the token in; it authorises GET and HEAD only."""
TOKEN_NAME_KEY: Final = "burnrate.token_name"
"""`request[TOKEN_NAME_KEY]`: the name of the token that authenticated the request."""
COOKIE_METHODS: Final = frozenset({"GET", "HEAD"})
MISSING: Final = "missing bearer token"
INVALID: Final = "invalid bearer token"


class OnDenied(Protocol):
    """Told of every 401 and 403 (an audit trail), before the log's rate limiting."""

    def __call__(
        self,
        remote: str,
        method: str,
        path: str,
        status: int,
        reason: str,
        token_name: str | None,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class _Refusal:
    status: int
    reason: str
    token_name: str | None = None
    scope: str | None = None


class BearerAuth:
    """Token and scope check for every route; disabled (every route open) without tokens.

    `tokens` are the accepted tokens; a plain string is one token named `default` with
    every scope (tests, and the form of `auth_token_env`)."""

    def __init__(
        self,
        tokens: Sequence[ApiToken] | str | None = None,
        *,
        refusals: RefusalLimiter | None = None,
        on_denied: OnDenied | None = None,
    ) -> None:
        if isinstance(tokens, str):
            if not TOKEN_RE.fullmatch(tokens):
                raise ValueError("a bearer token must be visible ASCII without spaces")
            tokens = [ApiToken(DEFAULT_TOKEN_NAME, token_digest(tokens), frozenset(SCOPES))]
        self.tokens: tuple[ApiToken, ...] = tuple(tokens or ())
        self.refusals = RefusalLimiter() if refusals is None else refusals
        self.on_denied = on_denied
        """Called on every 401 and 403 (see OnDenied); settable after construction."""
        self._summary_timer: asyncio.TimerHandle | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.tokens)

    @classmethod
    def from_config(cls, http: Http, environ: Mapping[str, str] | None = None) -> BearerAuth:
        """The tokens of `http.tokens` and `http.auth_token_env` / `auth_token_file`.

        Raises ConfigError with every problem (engine.adapters.http.tokens, which
        `burnrate check` runs too)."""
        return cls(load_tokens(http, environ))

    def authenticate(self, credentials: str) -> ApiToken | None:
        """The token whose digest is that of `credentials`, in time independent of which
        one (every digest is compared)."""
        digest = token_digest(credentials)
        found = None
        for token in self.tokens:
            if hmac.compare_digest(digest, token.digest):
                found = token
        return found

    def identify(
        self, authorization: str | None, cookie: str | None = None, method: str = "GET"
    ) -> ApiToken | str:
        """The token the request carries, else why not (never the token). The cookie
        counts for GET and HEAD only, and only without an Authorization header."""
        if authorization and authorization.strip():
            scheme, _, credentials = authorization.strip().partition(" ")
            if scheme.lower() != "bearer" or not credentials.strip():
                return MISSING
            credentials = credentials.strip()
        elif cookie:
            if method not in COOKIE_METHODS:
                return "the token cookie authorises GET and HEAD only: send Authorization: Bearer"
            credentials = cookie
        else:
            return MISSING
        token = self.authenticate(credentials)
        return INVALID if token is None else token

    def check(self, authorization: str | None) -> str | None:
        """None when the header carries a configured token (or auth is disabled), else
        why not."""
        if not self.enabled:
            return None
        found = self.identify(authorization)
        return found if isinstance(found, str) else None

    def decide(self, request: web.Request) -> _Refusal | None:
        """None to let the request through (noting the token's name on it), else the
        refusal."""
        if not self.tokens:
            return None
        match = request.match_info
        resource = match.route.resource
        routed = match.http_exception is None and resource is not None
        needed = (
            required_scope(resource.canonical, request.method)
            if routed and resource is not None
            else None
        )
        if routed and needed is None:
            return None  # an open route: the probes
        found = self.identify(
            request.headers.get("Authorization"), request.cookies.get(COOKIE_NAME), request.method
        )
        if isinstance(found, str):
            return _Refusal(401, found)
        with warnings.catch_warnings():
            # The key is a plain string by contract (other modules read it by name);
            # aiohttp would rather have a RequestKey object.
            warnings.simplefilter("ignore", web.NotAppKeyWarning)
            request[TOKEN_NAME_KEY] = found.name
        if not routed:
            return None  # 404 / 405 to an authenticated client
        if needed == UNKNOWN:
            return _Refusal(403, "this route has no scope: refused to every token", found.name)
        if needed not in found.scopes:
            return _Refusal(
                403, f"the token {found.name!r} lacks the scope {needed!r}", found.name, needed
            )
        return None

    def middleware(self) -> Middleware:
        @web.middleware
        async def bearer_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
            refusal = self.decide(request)
            if refusal is None:
                return await handler(request)
            path = request.rel_url.raw_path  # percent-encoded: no control characters in logs
            remote = request.remote or ""
            if self.on_denied is not None:
                self.on_denied(
                    remote, request.method, path, refusal.status, refusal.reason, refusal.token_name
                )
            self._log_refusal(request.remote, request.method, path, refusal)
            challenge = f'Bearer realm="{REALM}"'
            if refusal.status == 403:
                challenge += f', error="insufficient_scope", scope="{refusal.scope or ""}"'
            elif refusal.reason == INVALID:
                challenge += ', error="invalid_token"'
            return json_error(
                refusal.status, refusal.reason, headers={"WWW-Authenticate": challenge}
            )

        return bearer_auth

    def _log_refusal(self, remote: str | None, method: str, path: str, refusal: _Refusal) -> None:
        self.log_refusal_summary()
        problem = refusal.reason
        if self.refusals.admit((remote, method, path, problem), problem):
            data: dict[str, Any] = {
                "event": "unauthorized" if refusal.status == 401 else "forbidden",
                "remote": remote,
                "method": method,
                "path": path,
                "reason": problem,
            }
            if refusal.token_name is not None:
                data["token"] = refusal.token_name
            log.warning(
                "%d %s %s from %s: %s",
                refusal.status,
                method,
                path,
                remote,
                problem,
                extra={"data": data},
            )
        elif self._summary_timer is None:
            # The summary is due when the interval ends, even if no refusal follows.
            self._summary_timer = asyncio.get_running_loop().call_later(
                self.refusals.seconds_left(), self._summary_due
            )

    def _summary_due(self) -> None:
        self._summary_timer = None
        self.log_refusal_summary(force=True)

    def log_refusal_summary(self, *, force: bool = False) -> None:
        """Log the summary of the refusals not logged in full, if their interval is over
        (or at once with `force`)."""
        summary = self.refusals.take_summary(force=force)
        if summary is None:
            return
        log.warning(
            "%s",
            summary.message(),
            extra={
                "data": {
                    "event": "unauthorized_summary",
                    "count": summary.count,
                    "by_reason": summary.by_reason,
                    "interval_s": summary.interval_s,
                }
            },
        )
