"""The bearer token of the HTTP server, read from where `http:` says: no aiohttp here, so
`burnrate check` reads and checks the token the way `burnrate run` does (see
engine.adapters.http.auth for how the token is used)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from engine.adapters.secrets import read_secret
from engine.core.config import Http
from engine.errors import ConfigError

__all__ = ["TOKEN_RE", "read_bearer_token"]

TOKEN_RE: Final = re.compile(r"[\x21-\x7e]+")
"""Visible ASCII: what fits in an Authorization header without quoting."""


def read_bearer_token(http: Http, environ: Mapping[str, str] | None = None) -> str | None:
    """The token named by `http.auth_token_env` or `http.auth_token_file`; None when
    neither is set.

    Raises ConfigError when both are set, or the one set yields no valid token (unset,
    unreadable, empty, or not visible ASCII). `environ` replaces os.environ (tests)."""
    if http.auth_token_env and http.auth_token_file:
        raise ConfigError(["$.http: give at most one of auth_token_env or auth_token_file"])
    if http.auth_token_env:
        path = "$.http.auth_token_env"
        token = read_secret(path, env=http.auth_token_env, environ=environ)
    elif http.auth_token_file:
        path = "$.http.auth_token_file"
        token = read_secret(path, file=http.auth_token_file)
    else:
        return None
    if not TOKEN_RE.fullmatch(token):
        raise ConfigError([f"{path}: the token must be visible ASCII without spaces"])
    return token
