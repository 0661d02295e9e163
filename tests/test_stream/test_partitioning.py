"""Our partition choice is Kafka's default partitioner's (checked against aiokafka's implementation), so per-user state stays on one partition."""
from __future__ import annotations

from hypothesis import given, strategies as st
from aiokafka.partitioner import DefaultPartitioner

from stream.sender import partition_for


@given(st.text(min_size=1, max_size=40), st.integers(min_value=1, max_value=64))
def test_partition_for_matches_kafka_default_partitioner(user_id, partitions):
    key = user_id.encode()
    everything = list(range(partitions))
    assert partition_for(key, partitions) == DefaultPartitioner()(key, everything, everything)
