"""Evaluators of several counts partitions, each over the SLOs mapped to it, fed the same
events as one evaluator of all those SLOs (shared by the metrics and HTTP tests of the
evaluate role)."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable

import msgspec

from engine.adapters.http.partitions import OwnedPartitions
from engine.core.config import Config, parse_config
from engine.core.decode import Event
from engine.core.deltas import partition_keys
from engine.core.evaluator import Evaluator
from engine.core.history import History

T0 = 1_700_000_000.0
"""The last evaluation time (on the 10 s grid)."""
PARTITIONS = 4

CONFIG = """\
slos:
  - {name: api-avail, service: api, sli: availability, objective: 99, period: 1h}
  - {name: web-lat, service: web, sli: latency, threshold_ms: 100, objective: 90, period: 1h}
  - {name: idle-avail, service: idle, sli: availability, objective: 99, period: 1h}
  - name: shop-avail
    service: shop
    sli: availability
    objective: 95
    period: 1h
    group_by: [region]
  - {name: cal-avail, service: api, sli: availability, objective: 99,
     period: {calendar: week, time_zone: UTC}}
  - name: front
    composite: [{slo: api-avail, weight: 2}, {slo: web-lat}]
    objective: 99
    period: 1h
  - {name: db-avail, service: db, sli: availability, objective: 99.9, period: 1h}
  - {name: queue-avail, service: queue, sli: availability, objective: 99, period: 1h}
policy:
  - {severity: page, long: 5m, short: 1m, burn_rate: 10}
  - {severity: ticket, long: 30m, short: 5m, burn_rate: 1}
evaluation: {tick: 10s}
http:
  listen: 127.0.0.1:0
"""


def events() -> list[Event]:
    """Traffic for every service but idle: some failing, some slow, two regions, and one
    event no SLO selects."""
    out = [
        Event(service="api", ts=T0 - 50 + i * 0.5, status=503 if i % 5 == 0 else 200)
        for i in range(100)
    ]
    out += [
        Event(service="web", ts=T0 - 1200 + i, status=200, latency_ms=500.0 if i == 3 else 20.0)
        for i in range(20)
    ]
    out += [
        Event(
            service="shop",
            ts=T0 - 100 + i,
            status=500 if i % 7 == 0 else 200,
            labels={"region": "eu" if i % 2 else "us"},
        )
        for i in range(60)
    ]
    out += [Event(service="db", ts=T0 - 30 + i, status=500) for i in range(10)]
    out += [Event(service="queue", ts=T0 - 300 + i, status=200) for i in range(30)]
    out.append(Event(service="nobody", ts=T0 - 1, status=200))
    return sorted(out, key=lambda e: e.ts or 0.0)  # in event time: none is too late


def config() -> Config:
    return parse_config(CONFIG)


PLACED = {"api": 0, "idle": 1, "queue": 1, "shop": 2, "db": 3}
"""Where the stand-in partitioner puts the sample's partition keys (its services): two
services share partition 1, and every partition holds some."""


def partition_of(config: Config, n: int = PARTITIONS) -> Callable[[str], int]:
    """A stand-in for the Kafka partitioner: the SLO's partition key, placed by `PLACED`
    (hashed when not there)."""
    keys = partition_keys(config)

    def of(slo: str) -> int:
        key = keys.get(slo, slo)
        return PLACED[key] % n if key in PLACED else zlib.crc32(key.encode()) % n

    return of


def subset(config: Config, names: Iterable[str]) -> Config:
    """The config with only the SLOs `names` (config order kept)."""
    keep = set(names)
    return msgspec.structs.replace(config, slos=[s for s in config.slos if s.name in keep])


def fed(config: Config, batch: list[Event] | None = None) -> Evaluator:
    ev = Evaluator(config)
    ev.ingest(ev.classifier.columns(events() if batch is None else batch))
    ev.advance(T0 + 1)
    assert ev.evaluated_at_s == T0
    return ev


def partition_evaluators(
    config: Config, owned: Iterable[int], n: int = PARTITIONS
) -> dict[int, Evaluator]:
    """An evaluator for each partition of `owned` that holds SLOs, over those SLOs."""
    of = partition_of(config, n)
    out: dict[int, Evaluator] = {}
    for p in owned:
        names = [s.name for s in config.slos if of(s.name) == p]
        if names:
            out[p] = fed(subset(config, names))
    return out


def owned_partitions(
    owned: Iterable[int], owners: dict[int, str] | None = None
) -> tuple[OwnedPartitions, dict[int, Evaluator]]:
    cfg = config()
    engines = partition_evaluators(cfg, owned)
    parts = OwnedPartitions(
        config=cfg,
        partition_of=partition_of(cfg),
        owned={p: (ev, History(ev)) for p, ev in engines.items()},
        owners=dict(owners or {}),
        partitions=PARTITIONS,
    )
    return parts, engines


def names_in(engines: dict[int, Evaluator]) -> list[str]:
    return [s.name for ev in engines.values() for s in ev.config_slos]
