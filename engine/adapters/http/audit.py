"""Who did it: the actor of an HTTP action for the audit log, and the hook that records
requests the auth middleware denies.

The auth middleware puts the name of the token a request authenticated with under
`TOKEN_NAME_KEY` in the request; a request without one (no tokens configured) is
`anonymous`. Tokens themselves never reach the audit log: only their configured names.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from engine.adapters.http.auth import TOKEN_NAME_KEY, OnDenied
from engine.adapters.store.audit import AuditSink

__all__ = ["ANONYMOUS", "TOKEN_NAME_KEY", "OnDenied", "actor_of", "auth_denied_hook"]

ANONYMOUS: Final = "anonymous"


def actor_of(request: web.BaseRequest) -> str:
    """The token name the request authenticated with, else `anonymous`."""
    name = request.get(TOKEN_NAME_KEY)
    return name if isinstance(name, str) and name else ANONYMOUS


def auth_denied_hook(sink: AuditSink) -> OnDenied:
    """The auth middleware's `on_denied`: an `auth.denied` entry per request it refuses
    (401 without a valid token, 403 without the scope). The actor is the token's name
    when one was recognised (a 403), else `anonymous`; the subject is the path; the
    details hold the method, status, reason and client address, never the token."""

    def on_denied(
        remote: str, method: str, path: str, status: int, reason: str, token_name: str | None
    ) -> None:
        sink.record(
            token_name or ANONYMOUS,
            "auth.denied",
            path,
            {"method": method, "status": status, "reason": reason, "remote": remote},
        )

    return on_denied
