"""`WorkerPartitions`: the `Partitions` the HTTP layer reads over an evaluate worker's
partition engines (no broker: the worker's engines and owner records set by hand, as
its rebalance listener and changelog reader set them)."""

from __future__ import annotations

from engine.adapters.kafka.partitions import slo_partitions
from engine.core.config import parse_config
from engine.core.deltas import encode_delta
from engine.runtime.evaluate_role import EvaluateWorker
from engine.runtime.partition_engine import PartitionEngine

T0 = 1_700_000_000
PARTITIONS = 4
CONFIG = parse_config(
    b"""
kafka: {bootstrap_servers: '127.0.0.1:9', topics: [t]}
http: {listen: '127.0.0.1:0'}
slos:
"""
    + b"".join(
        f"  - {{name: s{k}, service: v{k}, sli: availability, objective: 99, "
        f"period: 1h}}\n".encode()
        for k in range(8)
    )
)


def worker_owning(partitions: set[int]) -> tuple[EvaluateWorker, dict[str, int]]:
    worker = EvaluateWorker(CONFIG, listen="127.0.0.1:0", sinks=lambda c, u: [])
    where = slo_partitions(CONFIG, PARTITIONS)
    worker._where = where
    for p in partitions:
        slos = [s for s, q in where.items() if q == p]
        if slos:
            worker.owned[p] = PartitionEngine(p, CONFIG, slos, [])
    return worker, where


def feed(engine: PartitionEngine, slos: list[str], seconds: range) -> None:
    engine.apply_batch(
        [
            (engine.offset + i, encode_delta(slo, T0 + s, [T0 + s], [10], [1]))
            for i, (s, slo) in enumerate((s, slo) for s in seconds for slo in slos)
        ]
    )


def test_the_owned_engines_their_owners_and_the_others_owners() -> None:
    worker, where = worker_owning(set(range(PARTITIONS)))
    mine = min(worker.owned)
    for p in [p for p in worker.owned if p != mine]:
        del worker.owned[p]
        worker.owners[p] = f"http://other-{p}:8080"
    worker.url = "http://me:8080"
    parts = worker.served
    assert dict(parts.engines()) == {mine: worker.owned[mine].evaluator}
    assert parts.config is CONFIG
    for slo, p in where.items():
        if p == mine:
            assert parts.evaluator_of(slo) is worker.owned[mine].evaluator
            assert parts.owner_of(slo) is None  # the protocol's "owned here"
            assert worker.owner_of(slo) == worker.url  # the worker's own says itself
        else:
            assert parts.evaluator_of(slo) is None
            assert parts.owner_of(slo) == f"http://other-{p}:8080"
            assert parts.history_of(slo) is None
    assert parts.owner_of("no-such-slo") is None
    assert parts.evaluator_of("no-such-slo") is None


def test_a_history_per_partition_follows_its_engine() -> None:
    worker, where = worker_owning(set(range(PARTITIONS)))
    p = min(worker.owned)
    slos = [s for s, q in where.items() if q == p]
    parts = worker.served
    assert parts.history_of(slos[0]) is None  # nothing sampled yet
    feed(worker.owned[p], slos, range(0, 300, 10))
    parts.observe(p)
    first = parts.history_of(slos[0])
    assert first is not None
    assert all(parts.history_of(s) is first for s in slos)
    series = first.series(worker.owned[p].evaluator.names.index(slos[0]))[0]
    assert sum(series.good) + sum(series.bad) > 0
    # the partition went and came back: a new engine, a new history
    worker.owned[p] = PartitionEngine(p, CONFIG, slos, [])
    assert parts.history_of(slos[0]) is None
    feed(worker.owned[p], slos, range(300, 600, 10))
    parts.observe(p)
    second = parts.history_of(slos[0])
    assert second is not None
    assert second is not first
    # a partition no longer owned: its history is forgotten at the next sample
    gone = max(worker.owned)
    gone_slos = [s for s, q in where.items() if q == gone]
    feed(worker.owned[gone], gone_slos, range(0, 300, 10))
    parts.observe(gone)
    assert parts.history_of(gone_slos[0]) is not None
    del worker.owned[gone]
    parts.observe(p)
    assert parts.history_of(gone_slos[0]) is None
    assert gone not in parts._histories
