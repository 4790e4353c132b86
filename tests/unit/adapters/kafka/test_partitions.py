"""The SLO -> counts partition placement both scale-out roles use."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from engine.adapters.kafka.partitions import (
    key_bytes,
    partition_of,
    slo_partitions,
    slos_of_partition,
)
from engine.core.config import parse_config


@given(st.text(min_size=1, max_size=40), st.integers(1, 500))
def test_partition_of_is_the_producers_default_placement(key: str, partitions: int) -> None:
    everyone = list(range(partitions))
    assert partition_of(key, partitions) == DefaultPartitioner()(key_bytes(key), everyone, everyone)


JAVA_MURMUR2 = {
    "21": -973932308,
    "foobar": -790332482,
    "a-little-bit-long-string": -985981536,
    "a-little-bit-longer-string": -1486304829,
    "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    "abc": 479470107,
}
"""murmur2 of these keys as Kafka's Java client computes it (its own test vectors), so
producers in Java place the same keys in the same partitions."""


def test_placements_agree_with_the_java_client() -> None:
    for key, h in JAVA_MURMUR2.items():
        for n in (1, 7, 12, 100):
            assert partition_of(key, n) == (h & 0x7FFFFFFF) % n, (key, n)


def test_a_composite_family_shares_the_partition_of_its_first_service() -> None:
    cfg = parse_config(
        b"""
slos:
  - {name: a, service: x, sli: availability, objective: 99}
  - {name: b, service: y, sli: availability, objective: 99}
  - {name: c, service: z, sli: availability, objective: 99}
  - name: ab
    objective: 99
    composite: [{slo: a, weight: 1}, {slo: b, weight: 1}]
"""
    )
    where = slo_partitions(cfg, 64)
    # keyed by the family's first service (engine.core.deltas)
    assert where["a"] == where["b"] == where["ab"] == partition_of("x", 64)
    assert where["c"] == partition_of("z", 64)
    every = [name for p in range(64) for name in slos_of_partition(cfg, 64, p)]
    assert sorted(every) == ["a", "ab", "b", "c"]
