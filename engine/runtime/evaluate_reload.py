"""Live config reload for an evaluate worker (`burnrate run --role evaluate`): SIGHUP and
`POST /-/reload` (admin scope), as the single process reloads (engine.runtime.reload).

The file the worker started with is read and checked again
(`engine.runtime.reload.read_config_file`): an invalid file, or one that changes a
field only a restart applies (`$.kafka.scale.counts_partitions: changed; needs a
restart`), is refused whole with its `$.path` errors and the running config stays.
Otherwise `EvaluateWorker.reconfigure` moves every owned partition to the new config:

- a partition's SLOs whose definition did not change keep their windows, counts and
  alert state (engine.core.reload, per partition); added and changed ones start empty;
  the alerts of removed and changed ones end with a `resolved`, delivered like any
  other and told to the incident book;
- SLOs are placed by service (engine.core.deltas): an SLO added to a service lives in
  that service's partition, at the worker that owns it. A new service may map to a
  partition this worker holds but did not read (no SLO lived there): it is taken up;
  one whose SLOs are all gone is paused;
- every owned partition's snapshot is written at once, so the next owner, after a
  rebalance or a kill, restores the new config's state.

Reload every worker with the same file: evaluate workers first, then ingest workers
(an ingest worker reloaded first sends the deltas of a new SLO to a partition whose
evaluate worker does not know it yet: they are counted as rejected there). A partition
restored by a worker still on the old config does not fit its SLOs: it is counted again
from the start of the counts partition (docs/scaling.md).

The answer is the single process's `ReloadOutcome`, over the SLOs of the partitions
this worker owns (`kept`, `added`, `removed`, `reset`). `burnrate_config_info{sha256}`
and `burnrate_config_reloads_total{result}` are exported as one process exports them.
There is no audit log in this role.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from engine.adapters.http.auth import BearerAuth
from engine.core.config import Config
from engine.errors import ConfigError
from engine.runtime.reload import ReloadOutcome, read_config_file

if TYPE_CHECKING:
    from engine.runtime.evaluate_role import EvaluateWorker

__all__ = ["EvaluateReloader"]

log = logging.getLogger("burnrate.runtime.evaluate_reload")


class EvaluateReloader:
    """Reloads `worker`'s config from `path`; `overrides` is what `burnrate run` applies
    to a config read from the file (the environment's)."""

    def __init__(
        self, worker: EvaluateWorker, path: str, overrides: Callable[[Config], Config]
    ) -> None:
        self.worker = worker
        self.path = path
        self.overrides = overrides
        try:
            self.sha256 = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError:
            self.sha256 = ""  # read again at the first reload, which reports why not
        self.counts: Counter[str] = Counter({"ok": 0, "rejected": 0})
        self._lock = asyncio.Lock()

    def metrics(self) -> tuple[str, dict[str, int]]:
        """(SHA-256 of the config running, reloads by result) for /metrics."""
        return self.sha256, dict(self.counts)

    def reload_soon(self) -> None:
        """SIGHUP: reload in a task of its own (the outcome is logged)."""
        task = asyncio.ensure_future(self.reload("signal"))
        self.worker.background(task)

    async def reload(self, actor: str) -> ReloadOutcome:
        """Reload (module docstring); never raises for a bad file."""
        async with self._lock:
            worker = self.worker
            if not worker.ready.is_set() or worker.stopping:
                return self._rejected(
                    actor, ["the worker is starting or stopping; reload once it serves"]
                )
            try:
                config, digest = read_config_file(self.path, self.overrides, worker.config)
            except ConfigError as exc:
                return self._rejected(actor, exc.errors)
            async with worker.rebalancing:  # not while partitions move
                try:
                    results = await worker.reconfigure(config)
                except ValueError as exc:  # a state that does not fit: nothing changed
                    log.exception("cannot carry the state over to the new config")
                    return self._rejected(actor, [f"cannot carry the state over: {exc}"])
            worker.http.auth.tokens = BearerAuth.from_config(config.http).tokens
            previous, self.sha256 = self.sha256, digest
            self.counts["ok"] += 1
            reasons = sorted({r.reason for r in results if r.reason is not None})
            outcome = ReloadOutcome(
                result="ok",
                sha256=digest,
                previous_sha256=previous or None,
                kept=[n for r in results for n in r.kept],
                added=[n for r in results for n in r.added],
                removed=[n for r in results for n in r.removed],
                reset=[n for r in results for n in r.reset],
                reset_reason="; ".join(reasons) or None,
            )
            details = msgspec.structs.asdict(outcome)
            del details["result"], details["errors"]
            log.info(
                "config reloaded by %s: over the owned partitions, %d SLOs kept, %d added, "
                "%d removed, %d reset",
                actor,
                len(outcome.kept),
                len(outcome.added),
                len(outcome.removed),
                len(outcome.reset),
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
