"""`/v1/gates/{service}`: the release gate of a service, and its break-glass override.

`GET /v1/gates/{service}` answers 200 with

    {"service", "decision": "pass"|"warn"|"fail", "reasons": [str],
     "slos": [{"slo", "decision", "error_budget_remaining_ratio": float|null,
               "alerts_firing": ["page", ...], "group": "region=eu"}, ...],
     "override": null | {"reason", "ticket", "set_at", "expires_at"},
     "evaluated_at": epoch_s | null}

(`group` only for a grouped SLO, one entry per group in use), decided by
engine.core.governance from the evaluator's last evaluation (`evaluated_at`, event
time; null before the first). Argo Rollouts' web metric provider can use it as is
(`successCondition: result.decision != "fail"`). A service no SLO has: 404
`{"error": ..., "service": ...}`.

`POST /v1/gates/{service}/override` with `{"reason": str, "ttl": "2h", "ticket": str}`
(`reason` required; `ttl` at most `gate.override_max_ttl`, which it defaults to) puts
an override in force: the decision is `pass`, its first reason the override, until it
expires (wall clock: `set_at`/`expires_at` are epoch seconds of this process's clock)
or `DELETE /v1/gates/{service}/override` ends it. A bad body is 400 `{"error": "<every
problem, `; `-joined>", "errors": ["$.ttl: at most 1d, got 2d", ...]}`; a good one 201
with the gate as it now stands. DELETE answers 200 with the gate, or 404 when no
override is in force. Both are logged at INFO with every field and the client's
address (events `gate_override_set`, `gate_override_ended`), and recorded in the audit
log (`gate.override.created`, `gate.override.ended`) when `audit` is set. A GET by a
named token (the auth middleware's token name) is a `gate.decision` entry when its
answer changed since the last one recorded for that token and service, else at most
once per `ASKED_EVERY_S`; the engine's own record of each change of a decision is
engine.runtime.audit's.

The answer is read from the evaluator's arrays once per evaluation (`generation`
changes, or the evaluation time moves) and, for a service without an override in
force, encoded once: a gate polled by every rollout of a fleet costs a dictionary
look-up between evaluations. An override's answer is built per request, as its reason
says how long it has left.

Like every route, they need the bearer token when one is configured. Overrides are
kept in the state file (engine.adapters.store.state) when there is one; `on_change` is
called after each change so the runtime can save it at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import msgspec
from aiohttp import web

from engine.adapters.http.audit import ANONYMOUS, actor_of
from engine.adapters.http.bodies import (
    JSON_TYPE,
    BodyError,
    invalid,
    read_bounded,
    service_not_found,
)
from engine.adapters.store.audit import AuditSink, NullAudit
from engine.core.budget_policy import Decision
from engine.core.config import Severity
from engine.core.evaluator import Evaluator
from engine.core.governance import GateBook, Reading, ServiceGate
from engine.core.overrides import Override, Overrides, parse_override_request
from engine.errors import ConfigError

__all__ = ["MAX_BODY_BYTES", "GateView", "GatesApi", "OverrideView", "SloGateView"]

log = logging.getLogger("burnrate.adapters.http.gates")

MAX_BODY_BYTES = 16 * 1024
"""An override request is a few hundred bytes; a larger body is refused unread (413)."""
ASKED_EVERY_S = 60.0
"""A named token polling one gate gets one `gate.decision` entry per this (wall clock),
and one at each change of its answer."""


class SloGateView(msgspec.Struct, kw_only=True, omit_defaults=True):
    slo: str
    decision: Decision
    error_budget_remaining_ratio: float | None
    alerts_firing: list[Severity]
    group: str | None = None


class OverrideView(msgspec.Struct, kw_only=True):
    reason: str
    ticket: str | None
    set_at: float
    expires_at: float


class GateView(msgspec.Struct, kw_only=True):
    service: str
    decision: Decision
    reasons: list[str]
    slos: list[SloGateView]
    override: OverrideView | None
    evaluated_at: float | None


_encoder = msgspec.json.Encoder()


def override_view(o: Override) -> OverrideView:
    return OverrideView(
        reason=o.reason, ticket=o.ticket, set_at=o.set_at_s, expires_at=o.expires_at_s
    )


def gate_view(gate: ServiceGate) -> GateView:
    return GateView(
        service=gate.service,
        decision=gate.decision,
        reasons=list(gate.reasons),
        slos=[
            SloGateView(
                slo=g.slo,
                decision=g.decision,
                error_budget_remaining_ratio=g.error_budget_remaining_ratio,
                alerts_firing=list(g.alerts_firing),
                group=g.group,
            )
            for g in gate.slos
        ],
        override=None if gate.override is None else override_view(gate.override),
        evaluated_at=gate.evaluated_at,
    )


class GatesApi:
    """The gate routes over one evaluator and one set of overrides."""

    def __init__(
        self,
        evaluator: Evaluator,
        overrides: Overrides | None = None,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[], None] | None = None,
        generation: Callable[[], int] | None = None,
    ) -> None:
        self.evaluator = evaluator
        self.overrides = Overrides() if overrides is None else overrides
        self.clock = clock
        self.on_change = on_change
        self.generation = generation
        """Changes once per evaluation tick (and override change); None: the arrays are
        read per request."""
        self.before_override: Callable[[], None] | None = None
        """Called before an override is set or ended, while the decision it replaces is
        still in force (the runtime records that decision in the audit log)."""
        self.audit: AuditSink = NullAudit()
        """Where overrides and the decisions named tokens ask for are recorded."""
        self._asked: dict[tuple[str, str], tuple[Decision, float]] = {}
        """(actor, service) -> the decision last recorded for that actor and when."""
        self.use(evaluator)

    def use(self, evaluator: Evaluator) -> None:
        """Judge `evaluator`'s SLOs from now on (a config reload swaps it)."""
        self.evaluator = evaluator
        self.book = GateBook(evaluator)
        self._reading: tuple[object, Reading] | None = None
        self._bodies: dict[str, bytes] = {}
        """The encoded answer of each service without an override, for `_reading`."""

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/gates/{service}", self._get)
        app.router.add_post("/v1/gates/{service}/override", self._set)
        app.router.add_delete("/v1/gates/{service}/override", self._end)

    def reading(self) -> Reading:
        """The arrays of the last evaluation, read once per generation."""
        key = (
            None if self.generation is None else self.generation(),
            self.evaluator.evaluated_at_s,
        )
        if key[0] is None or self._reading is None or self._reading[0] != key:
            self._reading = (key, self.book.read())
            self._bodies.clear()
        return self._reading[1]

    def gate(self, service: str) -> ServiceGate | None:
        """The gate of `service` now (with its override, if one is in force)."""
        now = self.clock()
        override = self.overrides.active(service, now)
        return self.book.gate(service, self.reading(), override, now)

    def all(self) -> list[ServiceGate]:
        """The gate of every service now (for /metrics)."""
        now = self.clock()
        return self.book.all(self.reading(), lambda s: self.overrides.active(s, now), now)

    def body(self, service: str) -> bytes | None:
        """The encoded answer of `service` now; None when no SLO has that service."""
        self.reading()  # a new evaluation empties `_bodies`
        cached = self._bodies.get(service)
        if cached is not None and self.overrides.active(service, self.clock()) is None:
            return cached
        gate = self.gate(service)
        if gate is None:
            return None
        body = _encoder.encode(gate_view(gate))
        if gate.override is None:
            self._bodies[service] = body
        return body

    def _answer(self, gate: ServiceGate, status: int = 200) -> web.Response:
        body = _encoder.encode(gate_view(gate))
        return web.Response(status=status, body=body, content_type=JSON_TYPE)

    async def _get(self, request: web.Request) -> web.Response:
        service = request.match_info["service"]
        body = self.body(service)
        if body is None:
            return service_not_found(service)
        actor = actor_of(request)
        if actor != ANONYMOUS and self.audit.enabled:
            self._record_asked(actor, service, request.remote)
        return web.Response(body=body, content_type=JSON_TYPE)

    def _record_asked(self, actor: str, service: str, remote: str | None) -> None:
        """A `gate.decision` entry for a named token's request: when its answer differs
        from the one last recorded for that token and service, or `ASKED_EVERY_S` after
        it. Bounded by the configured tokens and services, however often a pipeline
        polls."""
        gate = self.gate(service)
        assert gate is not None
        now = self.clock()
        last = self._asked.get((actor, service))
        if last is not None and last[0] == gate.decision and now - last[1] < ASKED_EVERY_S:
            return
        self._asked[(actor, service)] = (gate.decision, now)
        self.audit.record(
            actor,
            "gate.decision",
            service,
            {
                "decision": gate.decision,
                "reasons": list(gate.reasons),
                "requested": True,
                "remote": remote,
                "evaluated_at": gate.evaluated_at,
            },
        )

    async def _set(self, request: web.Request) -> web.Response:
        service = request.match_info["service"]
        if service not in self.book:
            return service_not_found(service)
        try:
            data = await read_bounded(request, MAX_BODY_BYTES)
        except BodyError as exc:
            return invalid(exc.status, exc.errors)
        max_ttl_s = self.evaluator.config.gate.override_max_ttl_s
        try:
            override = parse_override_request(data, service, self.clock(), max_ttl_s)
        except ConfigError as exc:
            return invalid(400, exc.errors)
        if self.before_override is not None:
            self.before_override()
        replaced = self.overrides.set(override)
        self.audit.record(
            actor_of(request),
            "gate.override.created",
            service,
            {
                "reason": override.reason,
                "ticket": override.ticket,
                "set_at": override.set_at_s,
                "expires_at": override.expires_at_s,
                "replaced": replaced is not None,
                "remote": request.remote,
            },
        )
        log.info(
            "gate override of %s until %.0f: %s%s",
            service,
            override.expires_at_s,
            override.reason,
            "" if replaced is None else " (replaces the one before)",
            extra={
                "data": {
                    "event": "gate_override_set",
                    "remote": request.remote,
                    "replaced": replaced is not None,
                    **msgspec.structs.asdict(override),
                }
            },
        )
        self._changed()
        gate = self.gate(service)
        assert gate is not None
        return self._answer(gate, 201)

    async def _end(self, request: web.Request) -> web.Response:
        service = request.match_info["service"]
        if service not in self.book:
            return service_not_found(service)
        if self.overrides.active(service, self.clock()) is None:
            return service_not_found(service, "no override in force")
        if self.before_override is not None:
            self.before_override()
        ended = self.overrides.end(service, self.clock())
        if ended is None:
            return service_not_found(service, "no override in force")
        self.audit.record(
            actor_of(request),
            "gate.override.ended",
            service,
            {
                "why": "ended",
                "reason": ended.reason,
                "ticket": ended.ticket,
                "set_at": ended.set_at_s,
                "expires_at": ended.expires_at_s,
                "remote": request.remote,
            },
        )
        log.info(
            "gate override of %s ended early",
            service,
            extra={
                "data": {
                    "event": "gate_override_ended",
                    "remote": request.remote,
                    **msgspec.structs.asdict(ended),
                }
            },
        )
        self._changed()
        gate = self.gate(service)
        assert gate is not None
        return self._answer(gate)

    def _changed(self) -> None:
        self._bodies.clear()
        if self.on_change is not None:
            self.on_change()
