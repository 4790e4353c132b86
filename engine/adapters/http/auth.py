"""Bearer-token auth for the HTTP server.

When `http.auth_token_env` or `http.auth_token_file` is set, every route except
`/healthz` and `/readyz` (probes carry no credentials) needs
`Authorization: Bearer <token>`, `/metrics` included: SLO names, objectives and error
rates are not for anyone who can reach the port. Prometheus sends the token with

    scrape_configs:
      - job_name: burnrate
        authorization:
          type: Bearer
          credentials_file: /run/secrets/burnrate-token

Without it, or with another token, the answer is 401 with `WWW-Authenticate: Bearer`
and a JSON error; the attempt is logged with the remote address and the path, never a
token. Tokens are compared by SHA-256 digest in constant time, so neither the content
nor the length of the configured token leaks through response timing. The token is read
once at start; a configured source that is unset, empty or not a valid bearer token is
a ConfigError, never a silently open server.

A client hammering with bad tokens does not flood the log (`RefusalLimiter`): in each
minute the first 10 distinct refusals (address, method, path, reason) are logged in full
at WARNING, and the others are counted and summed up in one WARNING line when the minute
is over ("57 more unauthorized requests in the last 60s (invalid bearer token: 40,
missing bearer token: 17)").
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections import Counter
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from engine.adapters.http.api import json_error
from engine.adapters.http.tokens import TOKEN_RE as _TOKEN_RE
from engine.adapters.http.tokens import read_bearer_token
from engine.core.config import Http

__all__ = [
    "PUBLIC_PATHS",
    "PUBLIC_PREFIXES",
    "TOKEN_COOKIE",
    "BearerAuth",
    "RefusalLimiter",
    "RefusalSummary",
    "credential",
]

log = logging.getLogger("burnrate.adapters.http.auth")

PUBLIC_PATHS: Final = frozenset({"/healthz", "/readyz", "/login"})
"""Routes that never need the token: liveness and readiness probes, the web UI's login."""
PUBLIC_PREFIXES: Final = ("/static/",)
"""Paths under these never need the token either: the web UI's scripts and styles."""
TOKEN_COOKIE: Final = "burnrate_token"
"""The cookie the web UI's login sets (engine.adapters.http.ui)."""
REALM: Final = "burnrate"


REFUSAL_LOG_INTERVAL_S: Final = 60.0
REFUSAL_LOG_BURST: Final = 10


@dataclass(frozen=True, slots=True)
class RefusalSummary:
    """Refusals counted but not logged in full during one interval."""

    count: int
    by_reason: dict[str, int]
    interval_s: float

    def message(self) -> str:
        reasons = ", ".join(f"{reason}: {n}" for reason, n in self.by_reason.items())
        return (
            f"{self.count} more unauthorized requests in the last {self.interval_s:g}s ({reasons})"
        )


class RefusalLimiter:
    """Decides which 401s are logged in full; counts the others for one summary per interval.

    An interval starts with the first refusal after the previous one ended. In it, the
    first `burst` distinct keys are logged in full (`admit` is True); a key seen before
    in the interval, or any key once `burst` are used, is counted by reason. Once the
    interval is over, `take_summary` returns those counts (once). The clock is
    injectable; nothing here sleeps or logs.
    """

    def __init__(
        self,
        interval_s: float = REFUSAL_LOG_INTERVAL_S,
        burst: int = REFUSAL_LOG_BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not interval_s > 0:
            raise ValueError("interval_s must be > 0")
        if burst < 1:
            raise ValueError("burst must be >= 1")
        self.interval_s = interval_s
        self.burst = burst
        self._clock = clock
        self._ends_at: float | None = None
        self._logged: set[Hashable] = set()
        self._suppressed: Counter[str] = Counter()

    def admit(self, key: Hashable, reason: str) -> bool:
        """True when this refusal is to be logged in full; else it is counted.

        Take the summary of an ended interval first: counts of this call join the
        interval it starts."""
        now = self._clock()
        if self._ends_at is None or now >= self._ends_at:
            self._ends_at = now + self.interval_s
            self._logged.clear()
        if key not in self._logged and len(self._logged) < self.burst:
            self._logged.add(key)
            return True
        self._suppressed[reason] += 1
        return False

    def seconds_left(self) -> float:
        """Until the current interval ends (0 when none is running)."""
        if self._ends_at is None:
            return 0.0
        return max(0.0, self._ends_at - self._clock())

    def take_summary(self, *, force: bool = False) -> RefusalSummary | None:
        """The counted refusals once their interval is over (any time with `force`),
        then forgets them; None when there are none yet."""
        if not self._suppressed:
            return None
        if not force and self._ends_at is not None and self._clock() < self._ends_at:
            return None
        by_reason = dict(sorted(self._suppressed.items(), key=lambda item: (-item[1], item[0])))
        self._suppressed.clear()
        return RefusalSummary(sum(by_reason.values()), by_reason, self.interval_s)


# -- the credential of a request (the web UI's cookie) -------------------------------


def credential(request: web.Request) -> str | None:
    """The request's `Authorization` header; for GET and HEAD without one, the web UI's
    login cookie as a bearer credential. Only reads are taken from the cookie: a
    cross-site form cannot carry it (SameSite=Strict), and the write routes ask for the
    header anyway."""
    header = request.headers.get("Authorization")
    if header or request.method not in ("GET", "HEAD"):
        return header
    cookie = request.cookies.get(TOKEN_COOKIE)
    return f"Bearer {cookie}" if cookie else None


# ------------------------------------------------------------------------------------


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class BearerAuth:
    """Bearer-token check for every route outside PUBLIC_PATHS; disabled without a token."""

    def __init__(self, token: str | None, *, refusals: RefusalLimiter | None = None) -> None:
        if token is not None and not _TOKEN_RE.fullmatch(token):
            raise ValueError("a bearer token must be visible ASCII without spaces")
        self._digest = None if token is None else _digest(token)
        self.refusals = RefusalLimiter() if refusals is None else refusals
        self._summary_timer: asyncio.TimerHandle | None = None

    @property
    def enabled(self) -> bool:
        return self._digest is not None

    @classmethod
    def from_config(cls, http: Http, environ: Mapping[str, str] | None = None) -> BearerAuth:
        """The token named by `http.auth_token_env` or `http.auth_token_file`, if any.

        Raises ConfigError when both are set, or the one set yields no valid token
        (engine.adapters.http.tokens, which `burnrate check` runs too)."""
        return cls(read_bearer_token(http, environ))

    def check(self, authorization: str | None) -> str | None:
        """None when the header carries the token, else why not (never the token)."""
        if self._digest is None:
            return None
        if not authorization:
            return "missing bearer token"
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return "missing bearer token"
        if hmac.compare_digest(_digest(credentials.strip()), self._digest):
            return None
        return "invalid bearer token"

    def middleware(self) -> Middleware:
        @web.middleware
        async def bearer_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.path in PUBLIC_PATHS or request.path.startswith(PUBLIC_PREFIXES):
                return await handler(request)
            problem = self.check(credential(request))
            if problem is None:
                return await handler(request)
            path = request.rel_url.raw_path  # percent-encoded: no control characters in logs
            self._log_refusal(request.remote, request.method, path, problem)
            challenge = f'Bearer realm="{REALM}"'
            if problem == "invalid bearer token":
                challenge += ', error="invalid_token"'
            return json_error(401, problem, headers={"WWW-Authenticate": challenge})

        return bearer_auth

    def _log_refusal(self, remote: str | None, method: str, path: str, problem: str) -> None:
        self.log_refusal_summary()
        if self.refusals.admit((remote, method, path, problem), problem):
            data: dict[str, Any] = {
                "event": "unauthorized",
                "remote": remote,
                "method": method,
                "path": path,
                "reason": problem,
            }
            log.warning(
                "401 %s %s from %s: %s", method, path, remote, problem, extra={"data": data}
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
