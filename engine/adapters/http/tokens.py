"""The API tokens of the HTTP server, read and checked from `http:`: no aiohttp here, so
`burnrate check` builds and checks them the way `burnrate run` does (see
engine.adapters.http.auth for how they are used, engine.adapters.http.scopes for what
each scope allows).

Two sources, both allowed at once:

- `http.tokens: [{name, scopes, sha256}]`: named tokens with scopes, each given by the
  SHA-256 of the token (lowercase or uppercase hex; `burnrate token hash` prints it),
  never by the token, so the config file holds nothing that opens the API.
- `http.auth_token_env` / `http.auth_token_file`: one token read at start (the form
  before named tokens), which becomes the token `default` with every scope.

Every problem is reported at once with its `$.http.tokens[i].field` path; a value that
may be a secret (a token pasted where its digest belongs) is never echoed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, get_args

from engine.adapters.secrets import read_secret
from engine.core.config_io import Http
from engine.errors import ConfigError

__all__ = [
    "DEFAULT_TOKEN_NAME",
    "SCOPES",
    "TOKEN_RE",
    "ApiToken",
    "Scope",
    "load_tokens",
    "read_bearer_token",
    "token_digest",
]

TOKEN_RE: Final = re.compile(r"[\x21-\x7e]+")
"""Visible ASCII: what fits in an Authorization header without quoting."""
NAME_RE: Final = re.compile(r"[a-z0-9_.-]{1,64}")
DIGEST_RE: Final = re.compile(r"[0-9a-fA-F]{64}")
DEFAULT_TOKEN_NAME: Final = "default"
"""The name of the token of `auth_token_env` / `auth_token_file`."""

Scope = Literal["read", "operate", "admin"]
SCOPES: Final[tuple[Scope, ...]] = get_args(Scope)


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A token the server accepts: its name, SHA-256 digest and scopes."""

    name: str
    digest: bytes
    scopes: frozenset[Scope]

    def __repr__(self) -> str:  # the digest stays out of reprs and tracebacks
        return f"ApiToken(name={self.name!r}, scopes={sorted(self.scopes)!r})"


def token_digest(token: str) -> bytes:
    """SHA-256 of the token's bytes, as configured in `http.tokens[].sha256`."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


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


def load_tokens(http: Http, environ: Mapping[str, str] | None = None) -> list[ApiToken]:
    """Every token `http:` configures (empty: the API is open); ConfigError with every
    problem, one `$.http...: message` line each."""
    errors: list[str] = []
    tokens: list[ApiToken] = []
    first_name: dict[str, str] = {}
    first_digest: dict[bytes, str] = {}

    def note(name: str, digest: bytes | None, path: str, name_path: str, digest_path: str) -> None:
        if name in first_name:
            errors.append(
                f"{name_path}: duplicate token name {name!r} (first at {first_name[name]})"
            )
        if digest is not None and digest in first_digest:
            errors.append(
                f"{digest_path}: the same token as {first_digest[digest]} (one token, one name)"
            )
        first_name.setdefault(name, path)
        if digest is not None:
            first_digest.setdefault(digest, path)

    try:
        legacy = read_bearer_token(http, environ)
    except ConfigError as exc:
        errors += exc.errors
        legacy = None
    if legacy is not None:
        path = "$.http.auth_token_env" if http.auth_token_env else "$.http.auth_token_file"
        token = ApiToken(DEFAULT_TOKEN_NAME, token_digest(legacy), frozenset(SCOPES))
        note(token.name, token.digest, path, path, path)
        tokens.append(token)
    for i, entry in enumerate(http.tokens):
        path = f"$.http.tokens[{i}]"
        problems = _entry_errors(path, entry.name, entry.scopes, entry.sha256)
        digest = bytes.fromhex(entry.sha256) if DIGEST_RE.fullmatch(entry.sha256) else None
        errors += problems
        note(entry.name, digest, path, f"{path}.name", f"{path}.sha256")
        if not problems and digest is not None:
            scopes = frozenset(s for s in SCOPES if s in entry.scopes)
            tokens.append(ApiToken(entry.name, digest, scopes))
    if errors:
        raise ConfigError(errors)
    return tokens


def _entry_errors(path: str, name: str, scopes: Sequence[str], sha256: str) -> list[str]:
    errors: list[str] = []
    if not NAME_RE.fullmatch(name):
        errors.append(
            f"{path}.name: 1 to 64 lowercase letters, digits, '.', '_' or '-', got {name!r}"
        )
    if not scopes:
        errors.append(f"{path}.scopes: give at least one of {', '.join(SCOPES)}")
    seen: set[str] = set()
    for j, scope in enumerate(scopes):
        if scope not in SCOPES:
            errors.append(
                f"{path}.scopes[{j}]: unknown scope {scope!r} (expected {', '.join(SCOPES)})"
            )
        elif scope in seen:
            errors.append(f"{path}.scopes[{j}]: {scope!r} is listed twice")
        seen.add(scope)
    if not DIGEST_RE.fullmatch(sha256):
        # Not echoed: a token pasted here by mistake must not reach a log.
        errors.append(
            f"{path}.sha256: must be the 64 hex digits of the token's SHA-256 "
            f"(`burnrate token hash` prints it), got {len(sha256)} characters"
        )
    return errors
