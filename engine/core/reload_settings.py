"""Which config changes a running engine takes on reload, and which need a restart.

Taken live (`RELOADABLE`): the SLOs, policies, evaluation and taxonomy (what
`engine.core.reload` carries or resets SLO by SLO), corrections, the budget policy,
gate settings, budget alerts, and the HTTP tokens (`http.tokens`, `auth_token_env`,
`auth_token_file`) while some token stays configured: the auth check is part of the
HTTP server from its start, so turning it on or off needs a restart.

Everything else needs a restart, and a reload that changes it is refused naming the
field rather than half applied: the Kafka client and group (a consumer cannot change
bootstrap servers, topics or group while it holds partitions), the HTTP listener and
TLS (a bound socket), the state file, the receivers (their queues hold alerts not yet
delivered and what each receiver was told, kept per receiver in the state file), the
incident store, the audit log and the change settings.
"""

from __future__ import annotations

from typing import Final

import msgspec

from engine.core.config import Config

__all__ = ["RELOADABLE", "restart_fields"]

RELOADABLE: Final = frozenset(
    {
        "slos",
        "policy",
        "evaluation",
        "taxonomy",
        "corrections",
        "budget_policy",
        "gate",
        "budget_alerts",
    }
)
"""Top-level fields a reload takes as they are (plus the HTTP tokens)."""

_TOKEN_FIELDS: Final = frozenset({"tokens", "auth_token_env", "auth_token_file"})


def restart_fields(old: Config, new: Config) -> list[str]:
    """One `$.path: changed; needs a restart` line per field `new` changes that a reload
    cannot take (empty: the reload may go ahead)."""
    out: list[str] = []
    for name in old.__struct_fields__:
        if name in RELOADABLE:
            continue
        a, b = getattr(old, name), getattr(new, name)
        if a == b:
            continue
        if name == "http":
            out += [
                f"$.http.{f}: changed; needs a restart"
                for f in a.__struct_fields__
                if f not in _TOKEN_FIELDS and getattr(a, f) != getattr(b, f)
            ]
            if _guarded(a) != _guarded(b):
                out.append(
                    "$.http.tokens: turning token auth on or off needs a restart "
                    "(changing tokens does not)"
                )
        elif isinstance(a, msgspec.Struct) and isinstance(b, msgspec.Struct):
            out += [
                f"$.{name}.{f}: changed; needs a restart"
                for f in a.__struct_fields__
                if getattr(a, f) != getattr(b, f)
            ]
        else:
            out.append(f"$.{name}: changed; needs a restart")
    return out


def _guarded(http: object) -> bool:
    return bool(
        getattr(http, "tokens", None)
        or getattr(http, "auth_token_env", None)
        or getattr(http, "auth_token_file", None)
    )
