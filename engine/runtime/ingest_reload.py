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

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from engine.core.config import Config
from engine.core.reload import Reloaded
from engine.runtime.worker_reload import NotNow, WorkerReloader

if TYPE_CHECKING:
    from engine.runtime.ingest_role import IngestWorker

__all__ = ["NOT_RUNNING", "IngestReloader"]

NOT_RUNNING = "the worker is starting or stopping; reload once it runs"


class IngestReloader(WorkerReloader):
    """Reloads `worker`'s config from `path`; `overrides` is what `burnrate run` applies
    to a config read from the file (the environment's); `sha256` of the file running."""

    def __init__(
        self,
        worker: IngestWorker,
        path: str,
        overrides: Callable[[Config], Config],
        sha256: str,
    ) -> None:
        super().__init__(path, overrides, sha256)
        self.worker = worker

    def running_config(self) -> Config:
        return self.worker.config

    async def apply(self, config: Config) -> Sequence[Reloaded]:
        if not self.worker.accepting:
            raise NotNow(NOT_RUNNING)
        # ConfigError (its tokens), ValueError (nothing changed), IngestFailed (it stops)
        result = await self.worker.reconfigure(config)
        if result is None:
            raise NotNow(NOT_RUNNING)
        return [result]
