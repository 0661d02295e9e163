"""Group-less aiokafka readers: every worker reads a topic whole, on its own.

The replica reader (learn scope ``all``), the item-delta reader (learn scope ``shared``) and the
config handover each need a consumer that joins no group (so every worker gets every record),
commits nothing (the worker's snapshot holds the positions), reads from the earliest offset and
only committed records. One factory builds them alike.
"""
from __future__ import annotations

from typing import Any

from stream.settings import Settings


def group_less_consumer(settings: Settings, role: str, consumer_kwargs: dict[str, Any] | None = None) -> Any:
    """A not yet started ``AIOKafkaConsumer`` with no group, client id ``<app_id>-<role>``;
    ``consumer_kwargs`` adds security options (``stream.kafka.security.aiokafka_security``)."""
    from aiokafka import AIOKafkaConsumer

    kafka = settings.kafka
    return AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, group_id=None, enable_auto_commit=False,
                            auto_offset_reset="earliest", isolation_level="read_committed",
                            fetch_max_wait_ms=kafka.fetch_max_wait_ms, client_id=f"{kafka.app_id}-{role}",
                            **(consumer_kwargs or {}))


async def assign_every_partition(consumer: Any, topic: str) -> list[Any]:
    """Assign ``consumer`` (started) every partition of ``topic``; returns them in partition order."""
    from aiokafka import TopicPartition

    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    consumer.assign(partitions)
    return partitions
