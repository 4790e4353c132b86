"""Break-glass overrides of a service's gate: the request, the override, the set in force.

An override makes a service's gate decision `pass` until it expires or is ended. Its
time is the **wall clock**, passed in by the caller (`now_s`), not event time: it is a
promise made to people ("for the next 2 hours"), and event time stands still while no
events arrive or the consumer lags, which would keep an override alive for as long as
the stream is quiet. The core never reads the clock: the API passes the time of the
request, /metrics the time of the scrape.

A TTL is bounded by `gate.override_max_ttl` (default 24h), which is also the TTL of a
request that names none. One override per service: a new one replaces the old.

The set is kept in the state file (`encode`/`decode`, MessagePack), so overrides
survive a restart; expired ones are dropped when read back and whenever the set is
asked for one (`active`).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from engine.core.config import _path_first
from engine.core.durations import DURATION_PATTERN, format_duration, parse_duration_s
from engine.errors import ConfigError

__all__ = ["Override", "OverrideRequest", "Overrides", "parse_override_request"]

MAX_REASON_CHARS = 1024
MAX_TICKET_CHARS = 256


class OverrideRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The body of `POST /v1/gates/{service}/override`."""

    reason: Annotated[str, msgspec.Meta(max_length=MAX_REASON_CHARS)] | None = None
    ttl: Annotated[str, msgspec.Meta(pattern=DURATION_PATTERN)] | None = None
    ticket: Annotated[str, msgspec.Meta(max_length=MAX_TICKET_CHARS)] | None = None


class Override(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One service's override: `pass` from `set_at_s` until `expires_at_s` (wall clock,
    epoch seconds)."""

    service: str
    reason: str
    ticket: str | None = None
    set_at_s: float
    expires_at_s: float

    def in_force(self, now_s: float) -> bool:
        return now_s < self.expires_at_s

    def describe(self, now_s: float | None = None) -> str:
        """`override: <reason> (ticket OPS-1), expires in 1h59m`."""
        ticket = "" if self.ticket is None else f" (ticket {self.ticket})"
        left = "" if now_s is None else f", expires in {_left(self.expires_at_s - now_s)}"
        return f"override: {self.reason}{ticket}{left}"


def _left(seconds: float) -> str:
    return format_duration(max(round(seconds), 1))


def parse_override_request(data: bytes, service: str, now_s: float, max_ttl_s: float) -> Override:
    """An override of `service` from a JSON request body, set at `now_s`; raises
    ConfigError with `$.path` messages (every problem, or the decoder's first)."""
    try:
        req = msgspec.json.decode(data, type=OverrideRequest)
    except msgspec.ValidationError as exc:
        raise ConfigError([_path_first(str(exc))]) from None
    except msgspec.DecodeError as exc:
        raise ConfigError([f"$: not valid JSON: {exc}"]) from None
    errors: list[str] = []
    reason = (req.reason or "").strip()
    if not reason:
        errors.append("$.reason: required (why the gate is overridden)")
    ttl_s = max_ttl_s
    if req.ttl is not None:
        ttl_s = parse_duration_s(req.ttl)
        if not ttl_s > 0:
            errors.append(f"$.ttl: must be longer than 0s, got {req.ttl}")
        elif ttl_s > max_ttl_s:
            errors.append(f"$.ttl: at most {format_duration(max_ttl_s)}, got {req.ttl}")
    ticket = None if req.ticket is None else req.ticket.strip() or None
    if errors:
        raise ConfigError(errors)
    return Override(
        service=service, reason=reason, ticket=ticket, set_at_s=now_s, expires_at_s=now_s + ttl_s
    )


_DECODER = msgspec.msgpack.Decoder(list[Override])


class Overrides:
    """The overrides of every service, at most one each."""

    def __init__(self) -> None:
        self._by_service: dict[str, Override] = {}

    def set(self, override: Override) -> Override | None:
        """Put `override` in force; returns the one it replaces, if any."""
        old = self._by_service.get(override.service)
        self._by_service[override.service] = override
        return old

    def end(self, service: str, now_s: float) -> Override | None:
        """End the override of `service` now; returns it (None: none was in force)."""
        old = self._by_service.pop(service, None)
        return old if old is not None and old.in_force(now_s) else None

    def active(self, service: str, now_s: float) -> Override | None:
        """The override of `service` in force at `now_s` (an expired one is dropped)."""
        o = self._by_service.get(service)
        if o is not None and not o.in_force(now_s):
            del self._by_service[service]
            return None
        return o

    def all(self, now_s: float) -> list[Override]:
        """Every override in force at `now_s`, by service."""
        return [o for s in sorted(self._by_service) if (o := self.active(s, now_s)) is not None]

    def encode(self) -> bytes:
        """For the state file; empty when there are none (the file stays as before)."""
        if not self._by_service:
            return b""
        return msgspec.msgpack.encode([self._by_service[s] for s in sorted(self._by_service)])

    def load(self, data: bytes, now_s: float) -> int:
        """Replace the set with `encode`d overrides still in force at `now_s`; returns
        how many. Raises ValueError (changing nothing) when `data` is not such a list."""
        if not data:
            loaded: list[Override] = []
        else:
            try:
                loaded = _DECODER.decode(data)
            except msgspec.DecodeError as exc:
                raise ValueError(f"overrides: {exc}") from None
        self._by_service = {o.service: o for o in loaded if o.in_force(now_s)}
        return len(self._by_service)
