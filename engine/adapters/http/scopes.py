"""Which scope each route needs: one table for the whole API, read by the auth middleware
(engine.adapters.http.auth).

- `read`: `/metrics` and every GET (and HEAD);
- `operate`: the writes of running a service: gate overrides, changes, incident
  acknowledgement, corrections;
- `admin`: the engine itself (`POST /-/reload`).
- None: open to anyone: the probes `/healthz` and `/readyz`, and the web UI's login form
  and static files (scripts, styles; no data).

Scopes do not imply each other: a token that should read and write lists both. A
route the table does not name is refused to every token (403), so a route added without
a decision about its scope fails closed; a test enumerates the app's router against
this table. A catch-all route (method `*`) takes its scope per method, with `*` for
every method not listed.
"""

from __future__ import annotations

from typing import Final

from engine.adapters.http.tokens import Scope

__all__ = ["ROUTE_SCOPES", "UNKNOWN", "required_scope"]

UNKNOWN: Final = "unknown"
"""`required_scope` of a route the table does not name."""

ROUTE_SCOPES: Final[dict[str, dict[str, Scope | None]]] = {
    "/healthz": {"GET": None},
    "/readyz": {"GET": None},
    "/metrics": {"GET": "read"},
    "/": {"GET": "read"},  # the web UI (engine.adapters.http.ui)
    "/slo/{name}": {"GET": "read"},
    "/login": {"GET": None, "POST": None},
    "/static/{path}": {"GET": None},
    "/v1/summary": {"GET": "read"},
    "/v1/slos/{name}/history": {"GET": "read"},
    "/v1/slos": {"GET": "read"},
    "/v1/slos/{name}": {"GET": "read"},
    "/v1/corrections": {"GET": "read", "POST": "operate"},
    "/v1/gates/{service}": {"GET": "read"},
    "/v1/gates/{service}/override": {"POST": "operate", "DELETE": "operate"},
    "/v1/changes": {"GET": "read", "POST": "operate"},
    "/v1/incidents": {"GET": "read", "*": "operate"},
    "/v1/incidents/{id}": {"GET": "read"},
    "/v1/incidents/{id}/postmortem": {"GET": "read"},
    "/v1/incidents/{id}/acknowledge": {"POST": "operate"},
    "/v1/incidents/{tail}": {"GET": "read", "*": "operate"},  # incidents not configured
    "/-/reload": {"POST": "admin"},
}
"""Route (aiohttp's canonical path) -> method -> scope (None: open)."""


def required_scope(canonical: str, method: str) -> Scope | str | None:
    """The scope a request needs: a Scope, None (open), or UNKNOWN (refuse)."""
    methods = ROUTE_SCOPES.get(canonical)
    if methods is None:
        return UNKNOWN
    if method == "HEAD":
        method = "GET"
    if method in methods:
        return methods[method]
    return methods.get("*", UNKNOWN)
