"""What the HTTP layer of an evaluate worker reads: the partitions it owns now.

An evaluate worker (`burnrate run --role evaluate`) owns some partitions of the counts
topic, each with its own evaluator over the SLOs mapped to it; a rebalance adds and
takes away partitions between two requests, and a reload replaces evaluators. The HTTP
layer (engine.adapters.http.partitioned, engine.adapters.http.partitioned_metrics)
asks `Partitions` afresh on every request and never keeps an evaluator longer than the
worker does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

import msgspec
from aiohttp import web

from engine.adapters.http.bodies import JSON_TYPE
from engine.core.changes import ChangeLog
from engine.core.config import Config
from engine.core.evaluator import Evaluator
from engine.core.history import History
from engine.core.overrides import Overrides

__all__ = ["OwnedPartitions", "Partitions", "ServiceSlos", "elsewhere", "ownership"]

_encoder: Final = msgspec.json.Encoder()


class Partitions(Protocol):
    """The partitions a worker owns now, and where the others live.

    Contract: each SLO of `config` is in at most one of `engines()`' evaluators, the
    one `evaluator_of` answers (the SLOs of a composite's family share a partition,
    engine.core.deltas); `owner_of` is None for an SLO this worker owns.
    """

    @property
    def config(self) -> Config:
        """The whole config (every SLO, owned here or not)."""
        ...

    def engines(self) -> Mapping[int, Evaluator]:
        """Owned counts partition -> its evaluator."""
        ...

    def partition_of(self, slo: str) -> int:
        """The counts partition of the SLO named `slo` (owned here or not)."""
        ...

    def evaluator_of(self, slo: str) -> Evaluator | None:
        """The evaluator of the SLO named `slo`; None when this worker does not own it
        (or no SLO has that name)."""
        ...

    def history_of(self, slo: str) -> History | None:
        """The history (engine.core.history) the worker keeps for the SLO's evaluator;
        None when it keeps none."""
        ...

    def owner_of(self, slo: str) -> str | None:
        """The base URL (`http://host:port`) of the worker that owns the SLO, when
        another worker owns it and says where it listens; else None."""
        ...

    def overrides_of(self, slo: str) -> Overrides | None:
        """The gate overrides kept with the SLO's partition (those of its service);
        None when this worker does not own it."""
        ...

    def changes_of(self, slo: str) -> ChangeLog | None:
        """The change log kept with the SLO's partition (its service's changes); None
        when this worker does not own it."""
        ...

    async def keep(self, slo: str) -> bool:
        """An override of the SLO's service was set or ended, or a change taken: keep it
        (the worker writes the partition's snapshot before the route answers). False
        when it could not be kept (in force, but only in this worker's memory)."""
        ...


def elsewhere(request: web.Request, owner: str | None, what: str, **ids: object) -> web.Response:
    """The answer about what another worker keeps (`what`: "another worker evaluates
    this SLO"): 307 to the same path and query at `owner`, with `{"error": what, **ids,
    "owner": <the Location>}`; while the owner is not known, 404 with `"owner": null`
    and an error that says so (a client may retry)."""
    if owner is None:
        error = (
            f"{what}, and which one is not known now (its partition is moving, or its "
            "owner did not say where it listens)"
        )
        body = _encoder.encode({"error": error, **ids, "owner": None})
        return web.Response(status=404, body=body, content_type=JSON_TYPE)
    location = owner.rstrip("/") + request.raw_path
    return web.Response(
        status=307,
        body=_encoder.encode({"error": what, **ids, "owner": location}),
        content_type=JSON_TYPE,
        headers={"Location": location},
    )


class ServiceSlos:
    """The first SLO of each service in `partitions`' config: a service's SLOs share a
    partition (engine.core.deltas), so that SLO says where the service lives. Made again
    when the config is replaced (a reload)."""

    def __init__(self, partitions: Partitions) -> None:
        self.partitions = partitions
        self._made: tuple[Config, dict[str, str]] | None = None

    def __call__(self, service: str) -> str | None:
        """The first SLO of `service`; None when no SLO of the config has it."""
        config = self.partitions.config
        if self._made is None or self._made[0] is not config:
            first: dict[str, str] = {}
            for slo in config.slos:
                if slo.service is not None:
                    first.setdefault(slo.service, slo.name)
            self._made = (config, first)
        return self._made[1].get(service)


def ownership(engines: Mapping[int, Evaluator]) -> tuple[tuple[int, int], ...]:
    """What changes when partitions move or evaluators are replaced: a cache key."""
    return tuple(sorted((p, id(ev)) for p, ev in engines.items()))


@dataclass
class OwnedPartitions:
    """A plain `Partitions`: the owner changes `owned` (and `owners`) as partitions
    move. `partition_of` maps an SLO name to its counts partition."""

    config: Config
    partition_of: Callable[[str], int]
    owned: dict[int, tuple[Evaluator, History | None]] = field(default_factory=dict)
    """Owned partition -> its evaluator and history."""
    owners: dict[int, str] = field(default_factory=dict)
    """Partition owned by another worker -> that worker's base URL, when known."""
    overrides: dict[int, Overrides] = field(default_factory=dict)
    """Owned partition -> its gate overrides (made on first use)."""
    partitions: int = 1
    """Partitions of the counts topic: a partition's change ids are numbered apart
    (engine.runtime.partition_engine)."""
    changes: dict[int, ChangeLog] = field(default_factory=dict)
    """Owned partition -> its change log (made on first use)."""
    kept: list[int] = field(default_factory=list)
    """The partitions whose overrides changed, in order (`keep`)."""

    def engines(self) -> Mapping[int, Evaluator]:
        return {p: ev for p, (ev, _) in self.owned.items()}

    def evaluator_of(self, slo: str) -> Evaluator | None:
        held = self.owned.get(self.partition_of(slo))
        return None if held is None else held[0]

    def history_of(self, slo: str) -> History | None:
        held = self.owned.get(self.partition_of(slo))
        return None if held is None else held[1]

    def owner_of(self, slo: str) -> str | None:
        p = self.partition_of(slo)
        return None if p in self.owned else self.owners.get(p)

    def overrides_of(self, slo: str) -> Overrides | None:
        p = self.partition_of(slo)
        return self.overrides.setdefault(p, Overrides()) if p in self.owned else None

    def changes_of(self, slo: str) -> ChangeLog | None:
        p = self.partition_of(slo)
        if p not in self.owned:
            return None
        settings = self.config.changes
        if p not in self.changes:
            self.changes[p] = ChangeLog(
                settings.attribution_window_s,
                settings.max_kept,
                first_id=p + 1,
                id_step=max(self.partitions, p + 1),
            )
        return self.changes[p]

    async def keep(self, slo: str) -> bool:
        self.kept.append(self.partition_of(slo))
        return True
