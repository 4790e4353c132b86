"""Live config reload for `burnrate run`: SIGHUP and `POST /-/reload` (admin scope).

A reload reads the config file the engine was started with again (with the same
environment overrides as at start), checks it like `burnrate check` does for the parts
a reload takes, and refuses it whole, changing nothing, when it is invalid or changes
a field that needs a restart (engine.core.reload_settings): the old config keeps
running. Otherwise `engine.core.reload` builds the new evaluator, carrying the state of
every SLO whose definition is unchanged; the alerts of removed and reset SLOs end with
a `resolved` transition, delivered like any other; then every part that reads the
evaluator is pointed at the new one, in one step of the event loop, so no request or
batch sees half of each. The state file is saved at once, so a restart continues from
the new config.

The HTTP views were built over the old evaluator and are reached through routes bound
when the server started, so each is told to `use` the new one rather than replaced.

With `audit:` each reload is a `config.reloaded` entry (actor: the token's name over
HTTP, `signal` for SIGHUP; old and new SHA-256; SLOs kept, added, removed and reset),
and each refused one `config.reload_rejected` with the errors.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import msgspec

from engine.adapters.http.auth import BearerAuth
from engine.core.config import Config, config_errors, decode_config
from engine.core.evaluator import Evaluator
from engine.core.reload import Reloaded, reload
from engine.core.reload_settings import restart_fields
from engine.errors import ConfigError

if TYPE_CHECKING:
    from engine.runtime.service import Runtime

__all__ = [
    "SIGNAL_ACTOR",
    "ConfigReloader",
    "ReloadOutcome",
    "log_rejected",
    "log_reloaded",
    "read_config_file",
    "reloaded",
]

log = logging.getLogger("burnrate.runtime.reload")

SIGNAL_ACTOR = "signal"
"""Who reloads on SIGHUP, in the audit log."""


def read_config_file(
    path: str, overrides: Callable[[Config], Config], previous: Config | None = None
) -> tuple[Config, str]:
    """The config file at `path` checked as a reload takes it (every `$.path` error, the
    tokens readable; with `previous`, no field changed that needs a restart), with
    `overrides` applied, and its bytes' SHA-256. ConfigError listing every problem. Used
    by every role that reloads."""
    file = Path(path)
    try:
        source = file.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    # the bytes hashed are the bytes decoded, whatever writes the file meanwhile
    config = decode_config(source, fmt="toml" if file.suffix == ".toml" else "yaml")
    errors = config_errors(config)
    try:
        BearerAuth.from_config(config.http)
    except ConfigError as exc:
        errors += exc.errors
    if errors:
        raise ConfigError(list(dict.fromkeys(errors)))
    config = overrides(config)
    if previous is not None:
        errors = restart_fields(previous, config)
        if errors:
            raise ConfigError(errors)
    return config, hashlib.sha256(source).hexdigest()


class ReloadOutcome(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a reload did: the body of `POST /-/reload`'s answer."""

    result: Literal["ok", "rejected"]
    sha256: str
    """Of the config file now running (the old one when rejected)."""
    errors: list[str] = []
    """Rejected: one `$.path: message` per problem."""
    previous_sha256: str | None = None
    kept: list[str] = []
    added: list[str] = []
    removed: list[str] = []
    reset: list[str] = []
    reset_reason: str | None = None
    """Why no SLO kept its state (a global setting changed), if so."""


def reloaded(digest: str, previous: str | None, results: Sequence[Reloaded]) -> ReloadOutcome:
    """The answer to a reload that went through: what became of each SLO, over every
    evaluator it touched (one per owned partition in the evaluate role)."""
    reasons = sorted({r.reason for r in results if r.reason is not None})
    return ReloadOutcome(
        result="ok",
        sha256=digest,
        previous_sha256=previous or None,
        kept=[n for r in results for n in r.kept],
        added=[n for r in results for n in r.added],
        removed=[n for r in results for n in r.removed],
        reset=[n for r in results for n in r.reset],
        reset_reason="; ".join(reasons) or None,
    )


def log_reloaded(actor: str, outcome: ReloadOutcome) -> dict[str, object]:
    """Log a reload that went through (event `config_reloaded`); its details (for the
    audit log)."""
    details = msgspec.structs.asdict(outcome)
    del details["result"], details["errors"]
    log.info(
        "config reloaded by %s: %d SLOs kept, %d added, %d removed, %d reset%s",
        actor,
        len(outcome.kept),
        len(outcome.added),
        len(outcome.removed),
        len(outcome.reset),
        f" ({outcome.reset_reason})" if outcome.reset_reason else "",
        extra={"data": {"event": "config_reloaded", "actor": actor, **details}},
    )
    return details


def log_rejected(actor: str, errors: list[str]) -> None:
    """Log a refused reload (event `config_reload_rejected`)."""
    log.error(
        "config reload by %s refused, the running config stays: %s",
        actor,
        "; ".join(errors),
        extra={"data": {"event": "config_reload_rejected", "actor": actor, "errors": errors}},
    )


class ConfigReloader:
    """Reloads `runtime`'s config from `path`; `overrides` is what `burnrate run` applies
    to a config read from the file (the environment's)."""

    def __init__(self, runtime: Runtime, path: str, overrides: Callable[[Config], Config]) -> None:
        self.runtime = runtime
        self.path = path
        self.overrides = overrides
        self.counts: Counter[str] = Counter({"ok": 0, "rejected": 0})
        """Reloads by result, for `burnrate_config_reloads_total`."""
        self.accepting = False
        """Set by the runtime while it serves: not before the saved state is restored
        (it is of the config started with), nor once shutdown began (the audit log
        closes)."""

    def read(self) -> tuple[Config, str]:
        """The file's config (overrides applied) and its bytes' SHA-256; ConfigError."""
        return read_config_file(self.path, self.overrides)

    async def reload(self, actor: str) -> ReloadOutcome:
        """Reload between two batches (see the module docstring); never raises for a bad
        file. Between batches: transitions a batch computed with the old evaluator are
        delivered before those the reload ends."""
        async with self.runtime.source.settled():
            return self._reload(actor)

    def _reload(self, actor: str) -> ReloadOutcome:
        rt = self.runtime
        old_digest = rt.config_sha256
        if not self.accepting:
            self.counts["rejected"] += 1
            log.warning(
                "config reload by %s refused: the engine is starting or stopping",
                actor,
                extra={"data": {"event": "config_reload_rejected", "actor": actor}},
            )
            return ReloadOutcome(
                result="rejected",
                sha256=old_digest,
                errors=["the engine is starting or stopping; reload once it serves"],
            )
        try:
            config, digest = self.read()
            errors = restart_fields(rt.config, config)
            if errors:
                raise ConfigError(errors)
        except ConfigError as exc:
            return self._rejected(actor, old_digest, exc.errors)
        try:
            result = reload(rt.evaluator, config)
        except ValueError as exc:  # a state that does not fit: nothing was changed
            log.exception("cannot carry the state over to the new config")
            return self._rejected(actor, old_digest, [f"cannot carry the state over: {exc}"])
        if result.ended:  # told with the old evaluator in place: their SLOs are its
            rt._on_transitions(list(result.ended))
        _rebind(rt, result.evaluator)
        rt.config_sha256 = digest
        self.counts["ok"] += 1
        outcome = reloaded(digest, old_digest, [result])
        details = log_reloaded(actor, outcome)
        rt.audit.log.record(actor, "config.reloaded", self.path, details)
        rt._save_soon("reload")
        return outcome

    def _rejected(self, actor: str, digest: str, errors: list[str]) -> ReloadOutcome:
        self.counts["rejected"] += 1
        log_rejected(actor, errors)
        self.runtime.audit.log.record(
            actor, "config.reload_rejected", self.path, {"sha256": digest, "errors": errors}
        )
        return ReloadOutcome(result="rejected", sha256=digest, errors=errors)

    def metrics(self) -> tuple[str, dict[str, int]]:
        """(SHA-256 of the config running, reloads by result) for /metrics."""
        return self.runtime.config_sha256, dict(self.counts)


def _rebind(rt: Runtime, ev: Evaluator) -> None:
    """Point every reader of the evaluator at `ev`, and every view derived from its
    config at the new one (all synchronous: one step of the event loop)."""
    config = ev.config
    rt.evaluator = ev
    rt.config = config
    rt._service_of = {s.name: s.service for s in config.slos}
    rt.source.evaluator = ev
    rt.source.ingestor.evaluator = ev
    rt.source.config = config
    rt.checkpoint.evaluator = ev
    if rt.change_consumer is not None:
        rt.change_consumer.evaluator = ev
    if rt.incidents is not None:
        rt.incidents.use(ev)
    rt.metrics.use(ev)
    http = rt.http
    http.auth.tokens = BearerAuth.from_config(config.http).tokens
    http.api.use(ev)
    http.summary.use(ev)
    http.history.use(ev)
    http.history.rebase(ev)
    http.corrections.evaluator = ev
    http.changes.evaluator = ev
    http.gates.use(ev)
