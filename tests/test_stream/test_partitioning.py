"""Our partition choice is Kafka's default partitioner's (checked against aiokafka's implementation), so per-user state stays on one partition."""
from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from stream.wire.partitioner import partition_for


@given(st.text(min_size=1, max_size=40), st.integers(min_value=1, max_value=64))
def test_partition_for_matches_kafka_default_partitioner(user_id, partitions):
    key = user_id.encode()
    everything = list(range(partitions))
    assert partition_for(key, partitions) == DefaultPartitioner()(key, everything, everything)


def test_the_sender_s_partition_cache_is_bounded_and_stays_right():
    from stream.kafka.sender import BatchSender

    sender = BatchSender(producer_getter=None, partition_cache=100)
    for n in range(1_000):
        key = f"user-{n}".encode()
        assert sender._partition(key, 8) == partition_for(key, 8)
        assert len(sender._partition_cache) <= 100
