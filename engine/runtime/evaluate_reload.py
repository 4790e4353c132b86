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

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from engine.adapters.http.auth import BearerAuth
from engine.core.config import Config
from engine.core.reload import Reloaded
from engine.runtime.worker_reload import NotNow, WorkerReloader

if TYPE_CHECKING:
    from engine.runtime.evaluate_role import EvaluateWorker

__all__ = ["EvaluateReloader"]


class EvaluateReloader(WorkerReloader):
    """Reloads `worker`'s config from `path`; `overrides` is what `burnrate run` applies
    to a config read from the file (the environment's)."""

    def __init__(
        self, worker: EvaluateWorker, path: str, overrides: Callable[[Config], Config]
    ) -> None:
        try:
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError:
            digest = ""  # read again at the first reload, which reports why not
        super().__init__(path, overrides, digest)
        self.worker = worker

    def running_config(self) -> Config:
        return self.worker.config

    async def apply(self, config: Config) -> Sequence[Reloaded]:
        worker = self.worker
        if not worker.ready.is_set() or worker.stopping:
            raise NotNow("the worker is starting or stopping; reload once it serves")
        tokens = BearerAuth.from_config(config.http).tokens  # ConfigError: nothing changed
        async with worker.rebalancing:  # not while partitions move
            results = await worker.reconfigure(config)  # ValueError: nothing changed
        worker.http.auth.tokens = tokens
        return results
