"""What the config reloads of the scale-out workers share (`--role ingest` and
`--role evaluate`): one reload at a time, each checked against the config the last one
left; the file read and checked as the single process reads it
(engine.runtime.reload.read_config_file); the answer, the log lines and
`burnrate_config_reloads_total`. The workers keep no audit log. What a reload does to a
worker is its subclass's `apply`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence

from engine.core.config import Config
from engine.core.reload import Reloaded
from engine.errors import BurnrateError, ConfigError
from engine.runtime.reload import (
    SIGNAL_ACTOR,
    ReloadOutcome,
    log_rejected,
    log_reloaded,
    read_config_file,
    reloaded,
)

__all__ = ["NotNow", "WorkerReloader"]

log = logging.getLogger("burnrate.runtime.reload")


class NotNow(BurnrateError):
    """The worker cannot take a reload now (starting or stopping); the message says so."""


class WorkerReloader:
    """Reloads a worker's config from `path`; `overrides` is what `burnrate run` applies
    to a config read from the file (the environment's); `sha256` of the file running."""

    def __init__(self, path: str, overrides: Callable[[Config], Config], sha256: str) -> None:
        self.path = path
        self.overrides = overrides
        self.sha256 = sha256
        self.counts: Counter[str] = Counter({"ok": 0, "rejected": 0})
        """Reloads by result, for `burnrate_config_reloads_total`."""
        self._lock = asyncio.Lock()  # one reload at a time: each checks against the last
        self._pending: set[asyncio.Task[ReloadOutcome]] = set()

    def running_config(self) -> Config:
        """The config the worker runs now (what a reload is checked against)."""
        raise NotImplementedError

    async def apply(self, config: Config) -> Sequence[Reloaded]:
        """Run `config` from now on; what became of each evaluator's SLOs. Raises
        NotNow, ConfigError or ValueError (nothing changed), or another BurnrateError
        (the worker stops)."""
        raise NotImplementedError

    def metrics(self) -> tuple[str, dict[str, int]]:
        """(SHA-256 of the config running, reloads by result) for /metrics."""
        return self.sha256, dict(self.counts)

    def reload_soon(self) -> None:
        """Reload as `signal` in a task of its own (the SIGHUP handler); it logs."""
        task = asyncio.ensure_future(self.reload(SIGNAL_ACTOR))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def reload(self, actor: str) -> ReloadOutcome:
        """Reload; never raises for a bad file (the answer says why it was refused)."""
        async with self._lock:
            try:
                config, digest = read_config_file(
                    self.path, self.overrides, previous=self.running_config()
                )
                results = await self.apply(config)
            except ConfigError as exc:
                return self._rejected(actor, exc.errors)
            except NotNow as exc:
                return self._rejected(actor, [str(exc)])
            except ValueError as exc:  # a state that does not fit: the old config stays
                log.exception("cannot carry the state over to the new config")
                return self._rejected(actor, [f"cannot carry the state over: {exc}"])
            except BurnrateError as exc:  # the worker stops (e.g. a failed transaction)
                return self._rejected(actor, [f"the worker stops: {exc}"])
            previous, self.sha256 = self.sha256, digest
            self.counts["ok"] += 1
            outcome = reloaded(digest, previous, results)
            log_reloaded(actor, outcome)
            return outcome

    def _rejected(self, actor: str, errors: list[str]) -> ReloadOutcome:
        self.counts["rejected"] += 1
        log_rejected(actor, errors)
        return ReloadOutcome(result="rejected", sha256=self.sha256, errors=errors)
