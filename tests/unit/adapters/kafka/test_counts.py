"""The ingest side's counts placement (engine.adapters.kafka.counts.partition_of)."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from engine.adapters.kafka.counts import partition_of


@given(st.text(min_size=1, max_size=80), st.integers(1, 500))
def test_a_key_goes_where_the_default_partitioner_puts_it(key: str, partitions: int) -> None:
    """Deltas are sent with their partition given (heartbeats go to the partitions no
    delta went to), and evaluate workers place SLOs with the default partitioner: both
    must agree, or a partition would get a heartbeat and miss its delta's."""
    all_partitions = list(range(partitions))
    expected = DefaultPartitioner()(key.encode(), all_partitions, all_partitions)
    assert partition_of(key, partitions) == expected
