"""The audit log in `burnrate run`: what the engine itself records, and when.

The HTTP routes record what people and pipelines do (overrides, changes, corrections,
acknowledgements, denied requests: engine.adapters.http), with the token's name as
actor. This module records what the engine decides, as actor `burnrate`:

- `config.loaded` once the log is open at start: the config file's path and SHA-256
  (of its bytes, so `sha256sum` on the file matches), the SLOs and the version;
- `alert.firing` / `alert.resolved` for every alert transition (burn-rate and budget
  alerts, escalations), with the window pair, burn rates and budget left;
- `gate.decision` for each **change** of a service's gate decision, looked for at
  each evaluation tick (once a second), after every alert transition (a page
  evaluated from a batch, between ticks) and just before an override is set or ended
  (so the decision it hides is on record), and each service's decision at the first
  tick after a start (`initial`). A gate may be asked thousands of times a second; its
  answer is a function of the engine's state, so the record of each change tells what
  every request got in between, in a few entries a day rather than millions. (Budget
  rows move with every batch; such a change is recorded at the next tick, at most a
  second late.) Requests by a named token add an entry
  of who asked (engine.adapters.http.gates), bounded per token and service;
- `gate.override.ended` with `why: expired` when an override's TTL runs out (one
  ended through the API is recorded by the route);
- `incident.opened` / `incident.closed` (engine.runtime.incidents).

Every entry's `at` is the wall clock of the runtime's clock; event times are in the
details.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

import msgspec

from engine import __version__
from engine.adapters.http.gates import GatesApi
from engine.adapters.store.audit import AuditSink, FileAudit, NullAudit
from engine.core.audit import canonical
from engine.core.budget_policy import Decision
from engine.core.config import Config
from engine.core.overrides import Override, Overrides
from engine.core.transitions import Transition

__all__ = ["ENGINE_ACTOR", "RuntimeAudit", "config_digest"]

ENGINE_ACTOR = "burnrate"


def config_digest(config: Config, source: bytes | None) -> str:
    """SHA-256 hex of the config file's bytes, or (no file: a config built in code) of
    the canonical JSON of the decoded config."""
    if source is None:
        source = canonical(msgspec.to_builtins(config))
    return hashlib.sha256(source).hexdigest()


def alert_details(tr: Transition) -> dict[str, object]:
    d: dict[str, object] = {
        "severity": tr.severity,
        "kind": tr.kind,
        "event_at": tr.at,
        "long_window_s": tr.long_window_s,
        "short_window_s": tr.short_window_s,
        "burn_rate_long": tr.burn_rate_long,
        "burn_rate_short": tr.burn_rate_short,
        "factor": tr.factor,
        "error_budget_remaining_ratio": tr.error_budget_remaining_ratio,
    }
    if tr.group is not None:
        d["group"] = tr.group
    if tr.kind == "escalation":
        d.update(policy_row=tr.policy_row, decision=tr.decision, reason=tr.reason)
    return d


class RuntimeAudit:
    """The engine's own entries (module docstring) into `sink`."""

    def __init__(
        self,
        sink: NullAudit | FileAudit,
        gates: GatesApi,
        overrides: Overrides,
        clock: Callable[[], float],
    ) -> None:
        self.sink = sink
        self.gates = gates
        self.overrides = overrides
        self.clock = clock
        self._decisions: dict[str, Decision] = {}
        self._overrides: dict[str, Override] = {}

    @property
    def enabled(self) -> bool:
        return self.sink.enabled

    @property
    def log(self) -> AuditSink:
        return self.sink

    def start(self, config: Config, path: str | None, digest: str) -> None:
        """Open the log (AuditLogError: `burnrate run` exits 2) and record the config."""
        if not isinstance(self.sink, FileAudit):
            return
        self.sink.open()
        self.sink.record(
            ENGINE_ACTOR,
            "config.loaded",
            path or "(config)",
            {
                "sha256": digest,
                "path": path,
                "slos": len(config.slos),
                "version": __version__,
            },
        )

    def metrics(self) -> tuple[int, str, int]:
        """(entries, head hash, write errors) for /metrics."""
        assert isinstance(self.sink, FileAudit)
        head = self.sink.head
        return head.seq, head.hash, self.sink.write_errors

    def transitions(self, transitions: Iterable[Transition]) -> None:
        if not self.enabled:
            return
        for tr in transitions:
            self.sink.record(ENGINE_ACTOR, f"alert.{tr.state}", tr.slo, alert_details(tr))

    def tick(self) -> None:
        """After an evaluation: decisions that changed, overrides that expired, and the
        batch fsync when due."""
        if not isinstance(self.sink, FileAudit):
            return
        now = self.clock()
        in_force = {o.service: o for o in self.overrides.all(now)}
        for service, o in self._overrides.items():
            if service not in in_force and not o.in_force(now):
                self.sink.record(
                    ENGINE_ACTOR,
                    "gate.override.ended",
                    service,
                    {
                        "why": "expired",
                        "reason": o.reason,
                        "ticket": o.ticket,
                        "set_at": o.set_at_s,
                        "expires_at": o.expires_at_s,
                    },
                )
        self._overrides = in_force
        self.decisions()
        self.sink.tick(now)

    def decisions(self) -> None:
        """A `gate.decision` entry for each service whose decision changed since the
        last one recorded. Called at each tick, after alert transitions (a page from a
        batch changes a decision between ticks) and just before an override is set or
        ended (so the decision it hides is recorded first)."""
        if not isinstance(self.sink, FileAudit):
            return
        for gate in self.gates.all():
            last = self._decisions.get(gate.service)
            if last == gate.decision:
                continue
            self._decisions[gate.service] = gate.decision
            details: dict[str, object] = {
                "decision": gate.decision,
                "previous": last,
                "reasons": list(gate.reasons),
                "evaluated_at": gate.evaluated_at,
            }
            if last is None:
                details["initial"] = True
            self.sink.record(ENGINE_ACTOR, "gate.decision", gate.service, details)

    def close(self) -> None:
        if isinstance(self.sink, FileAudit):
            self.sink.close()
