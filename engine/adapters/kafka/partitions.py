"""Which counts partition holds an SLO: one function for both scale-out roles.

Ingest workers key each count delta by the SLO's partition key
(`engine.core.deltas.partition_keys`) and let the producer's default partitioner place
it; evaluate workers must know, without reading a record, which SLOs a partition they
are given holds (to build its evaluator before the first record, and to say where an
SLO they do not own lives). Both use `partition_of`, the placement of aiokafka's default
partitioner (murmur2 of the key bytes, the Java client's too), so the two sides cannot
drift apart.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2

from engine.core.config import Config
from engine.core.deltas import partition_keys

__all__ = ["key_bytes", "partition_of", "slo_partitions", "slos_of_partition"]


def key_bytes(key: str) -> bytes:
    """The record key of a partition key (UTF-8)."""
    return key.encode()


def partition_of(key: str, partitions: int) -> int:
    """The partition the default partitioner gives a record keyed `key` among
    `partitions` (positive murmur2 of the key bytes, modulo the count)."""
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, not {partitions}")
    return int(murmur2(key_bytes(key)) & 0x7FFFFFFF) % partitions


def slo_partitions(config: Config, partitions: int) -> dict[str, int]:
    """Each SLO's counts partition (a composite's family shares one)."""
    return {slo: partition_of(key, partitions) for slo, key in partition_keys(config).items()}


def slos_of_partition(config: Config, partitions: int, partition: int) -> list[str]:
    """The names of the SLOs partition `partition` holds, in config order."""
    where = slo_partitions(config, partitions)
    return [s.name for s in config.slos if where[s.name] == partition]
