"""Live config reload for an ingest worker (`burnrate run --role ingest`): SIGHUP and
`POST /-/reload` (admin scope).

The file `--config` named is read again with the environment overrides `burnrate run`
applies, and checked as the single process checks it (engine.runtime.reload
`read_config_file`: every `$.path` error, and no change to a field that needs a restart,
such as `$.kafka.group_id`). A refused file changes nothing: the old config keeps
counting. An accepted one is handed to the worker (`IngestWorker.reconfigure`), which
flushes what the old config counted under the old SLOs and their keys and counts the
next fetch with the new one; the answer is the single process's `ReloadOutcome`, with
what became of each SLO.

What an ingest worker takes from a reload is what classifying and counting read: the
SLOs (which events each counts, their columns, their partition keys), the taxonomy,
and the evaluation settings of the ingest path (future limit, allowed lateness), plus
the HTTP tokens. Corrections are not applied here (the evaluate workers apply them).
An ingest worker keeps no audit log: reloads are logged (`config_reloaded`,
`config_reload_rejected`) and counted in `burnrate_config_reloads_total{result}`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec

from engine.core.config import Config
from engine.errors import BurnrateError, ConfigError
from engine.runtime.reload import SIGNAL_ACTOR, ReloadOutcome, read_config_file

if TYPE_CHECKING:
    from engine.runtime.ingest_role import IngestWorker

__all__ = ["IngestReloader"]

log = logging.getLogger("burnrate.runtime.reload")

NOT_RUNNING = "the worker is starting or stopping; reload once it runs"


class IngestReloader:
    """Reloads `worker`'s config from `path`; `overrides` is what `burnrate run` applies
    to a config read from the file (the environment's); `sha256` of the file running."""

    def __init__(
        self,
        worker: IngestWorker,
        path: str,
        overrides: Callable[[Config], Config],
        sha256: str,
    ) -> None:
        self.worker = worker
        self.path = path
        self.overrides = overrides
        self.sha256 = sha256
        self.counts: Counter[str] = Counter({"ok": 0, "rejected": 0})
        """Reloads by result, for `burnrate_config_reloads_total`."""
        self._lock = asyncio.Lock()  # one reload at a time: each checks against the last
        self._pending: set[asyncio.Task[ReloadOutcome]] = set()

    async def reload(self, actor: str) -> ReloadOutcome:
        """Reload (see the module docstring); never raises for a bad file."""
        async with self._lock:
            return await self._reload(actor)

    def reload_soon(self) -> None:
        """Reload as `signal` in a task of its own (the SIGHUP handler); it logs."""
        task = asyncio.ensure_future(self.reload(SIGNAL_ACTOR))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def metrics(self) -> tuple[str, dict[str, int]]:
        """(SHA-256 of the config running, reloads by result) for /metrics."""
        return self.sha256, dict(self.counts)

    async def _reload(self, actor: str) -> ReloadOutcome:
        worker = self.worker
        if not worker.accepting:
            return self._rejected(actor, [NOT_RUNNING])
        try:
            config, digest = read_config_file(self.path, self.overrides, previous=worker.config)
        except ConfigError as exc:
            return self._rejected(actor, exc.errors)
        try:
            result = await worker.reconfigure(config)
        except ConfigError as exc:  # its tokens went unreadable since the file was read
            return self._rejected(actor, exc.errors)
        except ValueError as exc:  # a state that does not fit: the old config stays
            log.exception("cannot carry the state over to the new config")
            return self._rejected(actor, [f"cannot carry the state over: {exc}"])
        except BurnrateError as exc:  # IngestFailed: the old counts' transaction failed
            return self._rejected(actor, [f"the worker stops: {exc}"])
        if result is None:
            return self._rejected(actor, [NOT_RUNNING])
        old_digest, self.sha256 = self.sha256, digest
        self.counts["ok"] += 1
        outcome = ReloadOutcome(
            result="ok",
            sha256=digest,
            previous_sha256=old_digest,
            kept=list(result.kept),
            added=list(result.added),
            removed=list(result.removed),
            reset=list(result.reset),
            reset_reason=result.reason,
        )
        details = msgspec.structs.asdict(outcome)
        del details["result"], details["errors"]
        log.info(
            "config reloaded by %s: %d SLOs kept, %d added, %d removed, %d reset%s",
            actor,
            len(result.kept),
            len(result.added),
            len(result.removed),
            len(result.reset),
            f" ({result.reason})" if result.reason else "",
            extra={"data": {"event": "config_reloaded", "actor": actor, **details}},
        )
        return outcome

    def _rejected(self, actor: str, errors: list[str]) -> ReloadOutcome:
        self.counts["rejected"] += 1
        log.error(
            "config reload by %s refused, the running config stays: %s",
            actor,
            "; ".join(errors),
            extra={"data": {"event": "config_reload_rejected", "actor": actor, "errors": errors}},
        )
        return ReloadOutcome(result="rejected", sha256=self.sha256, errors=errors)
