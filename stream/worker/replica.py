"""Every worker learns the whole stream; each answers only for its own partitions.

``STREAMREC_LEARN_SCOPE=all``. Item-level state (popularity, co-occurrence, item
factors) wants every event, but a consumer group gives each worker only its
partitions. With this scope each worker also runs a group-less reader over the
*other* partitions of ``events`` and learns those events too, without building
lists or dead letters for them (their owner does). Every worker is then a full
replica of the model (the quality of one worker, ``benchmarks/scale_out.py``),
while the expensive part, building lists, stays split by partition.

Ownership moves with rebalances: a partition this worker owns is paused here
(its agent learns it); one it loses is resumed from the agent's next offset; one
it gains is answered by the agent from the group's committed offset, but the
messages this reader already learned are only answered, not learned again
(``PartitionProgress.answer_only_below``). Learning is serialised with the agent's
micro-batches and with snapshots by the shared lock, and the reader's positions
are the processor's next offsets (``EventProcessor.progress``), so snapshots cover both.

Cost: learning every event on every worker (~20 µs/event for the default engine)
caps the cluster's learning rate at one worker's, while list building (~55 µs per
list) scales out. Past that point, exchange merged item deltas instead (README).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from stream.kafka.readers import assign_every_partition, group_less_consumer
from stream.settings import Settings
from stream.wire.messages import RawMessage
from stream.worker.processor import EventProcessor
from stream.worker.progress import TopicPartition

log = logging.getLogger(__name__)


class ReplicaReader:
    """A group-less aiokafka consumer over ``events`` feeding :meth:`EventProcessor.learn_replica`."""

    def __init__(self, settings: Settings, processor: EventProcessor, lock: asyncio.Lock,
                 consumer_kwargs: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self.processor = processor
        self.lock = lock
        self.consumer_kwargs = consumer_kwargs or {}
        self.owned: set[int] = set()
        self.consumer: Any = None
        self._partitions: list[Any] = []

    async def run(self) -> None:
        """Read until cancelled; connection problems are logged and retried."""
        while True:
            consumer = group_less_consumer(self.settings, "replica", self.consumer_kwargs)
            try:
                await consumer.start()
                self._partitions = await assign_every_partition(consumer, self.settings.topics.events)
                async with self.lock:
                    for tp in self._partitions:
                        self._seek_to_next(consumer, tp)
                    self._pause_owned(consumer)
                self.consumer = consumer
                await self._loop(consumer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("replica reader failed, retrying in 2 s: %r", exc)
                await asyncio.sleep(2.0)
            finally:
                self.consumer = None
                await consumer.stop()

    async def _loop(self, consumer: Any) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=self.settings.serving.batch_max)
            if not batches:
                continue
            async with self.lock:
                for tp, records in batches.items():
                    if tp.partition in self.owned:
                        continue  # fetched before it was paused; its owner (this worker's agent) learns it
                    self.processor.learn_replica([
                        RawMessage(r.value, r.key, r.topic, r.partition, r.offset,
                                   r.timestamp / 1000.0 if r.timestamp is not None else None)
                        for r in records])

    def _seek_to_next(self, consumer: Any, tp: Any) -> None:
        nxt = self.processor.progress.next_offset(TopicPartition(tp.topic, tp.partition))
        if nxt is not None:
            consumer.seek(tp, nxt)

    def _pause_owned(self, consumer: Any) -> None:
        owned = [tp for tp in self._partitions if tp.partition in self.owned]
        others = [tp for tp in self._partitions if tp.partition not in self.owned]
        if owned:
            consumer.pause(*owned)
        if others:
            consumer.resume(*others)

    def on_assigned(self, partitions: Iterable[int]) -> None:
        """The group gave this worker ``partitions`` (call under the lock)."""
        partitions = set(partitions)
        topic = self.settings.topics.events
        progress = self.processor.progress
        for p in partitions - self.owned:
            where = TopicPartition(topic, p)
            learned = progress.next_offset(where)
            if learned is not None:
                progress.answer_only_below(where, learned)
        consumer = self.consumer
        lost = self.owned - partitions
        self.owned = partitions
        if consumer is not None:
            for tp in self._partitions:
                if tp.partition in lost:
                    self._seek_to_next(consumer, tp)
            self._pause_owned(consumer)
