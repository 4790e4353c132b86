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
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from engine.adapters.http.api import json_error
from engine.adapters.secrets import read_secret
from engine.core.config import Http
from engine.errors import ConfigError

__all__ = ["PUBLIC_PATHS", "BearerAuth"]

log = logging.getLogger("burnrate.adapters.http.auth")

PUBLIC_PATHS: Final = frozenset({"/healthz", "/readyz"})
"""Routes that never need the token: liveness and readiness probes."""
REALM: Final = "burnrate"
_TOKEN_RE: Final = re.compile(r"[\x21-\x7e]+")
"""Visible ASCII: what fits in an Authorization header without quoting."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class BearerAuth:
    """Bearer-token check for every route outside PUBLIC_PATHS; disabled without a token."""

    def __init__(self, token: str | None) -> None:
        if token is not None and not _TOKEN_RE.fullmatch(token):
            raise ValueError("a bearer token must be visible ASCII without spaces")
        self._digest = None if token is None else _digest(token)

    @property
    def enabled(self) -> bool:
        return self._digest is not None

    @classmethod
    def from_config(cls, http: Http, environ: Mapping[str, str] | None = None) -> BearerAuth:
        """The token named by `http.auth_token_env` or `http.auth_token_file`, if any.

        Raises ConfigError when both are set, or the one set yields no valid token."""
        if http.auth_token_env and http.auth_token_file:
            raise ConfigError(["$.http: give at most one of auth_token_env or auth_token_file"])
        if http.auth_token_env:
            path = "$.http.auth_token_env"
            token = read_secret(path, env=http.auth_token_env, environ=environ)
        elif http.auth_token_file:
            path = "$.http.auth_token_file"
            token = read_secret(path, file=http.auth_token_file)
        else:
            return cls(None)
        if not _TOKEN_RE.fullmatch(token):
            raise ConfigError([f"{path}: the token must be visible ASCII without spaces"])
        return cls(token)

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
            if request.path in PUBLIC_PATHS:
                return await handler(request)
            problem = self.check(request.headers.get("Authorization"))
            if problem is None:
                return await handler(request)
            path = request.rel_url.raw_path  # percent-encoded: no control characters in logs
            data: dict[str, Any] = {
                "event": "unauthorized",
                "remote": request.remote,
                "method": request.method,
                "path": path,
                "reason": problem,
            }
            log.warning(
                "401 %s %s from %s: %s",
                request.method,
                path,
                request.remote,
                problem,
                extra={"data": data},
            )
            challenge = f'Bearer realm="{REALM}"'
            if problem == "invalid bearer token":
                challenge += ', error="invalid_token"'
            return json_error(401, problem, headers={"WWW-Authenticate": challenge})

        return bearer_auth
