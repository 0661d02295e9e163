"""Where a key lands: Kafka's default partitioner, so streamrec and every other client agree."""
from __future__ import annotations

from kafka.partitioner.default import murmur2


def partition_for(key: bytes | None, partitions: int) -> int:
    """Kafka's default partition for a key (murmur2, positive, modulo partitions)."""
    if key is None or partitions <= 1:
        return 0
    return (murmur2(key) & 0x7FFFFFFF) % partitions
