"""Item knowledge shared through Kafka: every worker applies what the others' partitions taught.

``STREAMREC_LEARN_SCOPE=shared``. After learning a micro-batch, the processor publishes, per
source partition, one merged :class:`online.sharing.ItemDeltas` (popularity counts, next-item
and co-occurrence pairs) to ``item-deltas``, keyed by the source partition so that one
partition's deltas stay in order; they go out with the batch's lists, so Faust's
flush-before-commit covers them (``stream.worker.durability``). This reader, a group-less
consumer over every partition of ``item-deltas``, applies them to the engine's item-level
models under the state lock (never to any user).

Exactly once: a delta names its source partition and the offsets of the first and last
events it summarises; the engine takes it only if it lies past what its item-level state
holds for that partition (``StreamingRecommender.item_positions``, inside every snapshot).
That covers a re-read after a restart (skipped), a worker's own deltas coming back
(skipped), and deltas a killed worker published after its last snapshot: its restarted self
applies them from here and then learns those events again for their users only.

A worker that gains a partition (start, restart, rebalance) waits until this reader has read
``item-deltas`` to its end before it learns that partition's events: otherwise it could
publish a second delta, cut at other batch boundaries, for events the previous owner (or its
own previous life) already published (:meth:`DeltaReader.wait_caught_up`).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from stream.kafka.readers import assign_every_partition, group_less_consumer
from stream.settings import Settings
from stream.worker.processor import EventProcessor

log = logging.getLogger(__name__)


class DeltaReader:
    """A group-less aiokafka consumer over ``item-deltas`` feeding :meth:`EventProcessor.apply_deltas`."""

    def __init__(self, settings: Settings, processor: EventProcessor, lock: asyncio.Lock,
                 consumer_kwargs: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self.processor = processor
        self.lock = lock
        self.consumer_kwargs = consumer_kwargs or {}
        self.caught_up = asyncio.Event()
        self.read = 0
        self.applied = 0
        self.lag_s: float | None = None  # produce-to-apply time of the last applied batch (broker timestamps)
        self.lag_sum_s = 0.0
        self.lag_count = 0

    async def run(self) -> None:
        """Read from the start of the topic until cancelled (deltas already held are skipped);
        connection problems are logged and retried."""
        while True:
            consumer = group_less_consumer(self.settings, "deltas", self.consumer_kwargs)
            try:
                await consumer.start()
                await assign_every_partition(consumer, self.settings.topics.item_deltas)
                await self._loop(consumer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("item-delta reader failed, retrying in 2 s: %r", exc)
                await asyncio.sleep(2.0)
            finally:
                await consumer.stop()

    async def _loop(self, consumer: Any) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=1_000)
            if not batches:
                self.caught_up.set()  # an empty fetch: nothing more was there to read
                continue
            values = [r.value for records in batches.values() for r in records if r.value]
            oldest = min((r.timestamp for records in batches.values() for r in records if r.timestamp), default=None)
            self.read += len(values)
            async with self.lock:
                applied = self.processor.apply_deltas(values)
            self.applied += applied
            if applied and oldest is not None:
                self.lag_s = max(0.0, time.time() - oldest / 1000.0)
                self.lag_sum_s += self.lag_s
                self.lag_count += 1

    def on_assigned(self) -> None:
        """The group gave this worker partitions: its next learning waits until the reader caught up."""
        self.caught_up.clear()

    async def wait_caught_up(self, timeout: float) -> None:
        """Until the reader has read to the end once since the last assignment (or ``timeout`` seconds:
        then go on, logging it; a delta may then be published twice, which the engines' positions
        skip when cut at the same boundaries)."""
        if self.caught_up.is_set():
            return
        try:
            await asyncio.wait_for(self.caught_up.wait(), timeout)
        except TimeoutError:
            log.warning("the item-delta reader did not catch up within %.0f s; learning goes on", timeout)
            self.caught_up.set()
