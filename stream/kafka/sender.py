"""Publishing many small messages from inside a Faust agent, fast.

One awaited ``topic.send`` per message costs ~460 µs in Faust on these machines
(notes/pipe-findings.md); aiokafka's ``create_batch``/``send_batch`` path costs
~7 µs. :class:`BatchSender` groups a micro-batch's outputs per (topic, partition),
picks partitions the way Kafka's default partitioner does for the key (murmur2,
``stream.wire.partitioner``), so lists keyed by user land where any Kafka client would put them.

Delivery is pipelined: :meth:`BatchSender.send` hands batches to the producer and
returns; the agent goes on with the next micro-batch while the broker acknowledges.
At-least-once still holds because Faust flushes its producer (the one we send
through) before it commits input offsets, so an offset is never committed before
the lists it caused are acknowledged. A delivery that finally fails (after
aiokafka's retries) is counted and re-raised on the next :meth:`send`, which
crashes the agent instead of committing past lost output.
"""
from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any

from stream.wire.messages import Output
from stream.wire.partitioner import partition_for


class BatchSender:
    """Sends :class:`Output` messages through an ``aiokafka.AIOKafkaProducer`` in batches."""

    def __init__(self, producer_getter: Any, max_in_flight: int = 10_000,
                 on_error: Any = None, partition_cache: int = 100_000) -> None:
        self._producer_getter = producer_getter
        self._partitions: dict[str, int] = {}
        # key -> partition (murmur2 in Python costs a few µs). Emptied when full: at a million
        # entries it held ~150 MB, which the soak benchmark showed as RSS creeping past the user cap.
        self._partition_cache: dict[tuple[bytes, int], int] = {}
        self.partition_cache_size = partition_cache
        self._in_flight: deque = deque()
        self.max_in_flight = max_in_flight
        self._on_error = on_error
        self.failure: BaseException | None = None

    def _delivered(self, future: asyncio.Future) -> None:
        if not future.cancelled() and future.exception() is not None and self.failure is None:
            self.failure = future.exception()
            if self._on_error is not None:
                self._on_error(self.failure)

    async def _partition_count(self, producer: Any, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            count = len(await producer.partitions_for(topic)) or 1
            self._partitions[topic] = count
        return count

    def _partition(self, key: bytes | None, count: int) -> int:
        if key is None or count <= 1:
            return 0
        cache = self._partition_cache
        found = cache.get((key, count))
        if found is None:
            if len(cache) >= self.partition_cache_size:
                cache.clear()
            found = cache[(key, count)] = partition_for(key, count)
        return found

    async def send(self, outputs: Sequence[Output]) -> None:
        """Hand ``outputs`` to the producer in per-partition batches (does not wait for acks)."""
        if self.failure is not None:
            raise RuntimeError(f"publishing failed: {self.failure!r}") from self.failure
        if not outputs:
            return
        producer = self._producer_getter()
        batches: dict[tuple[str, int], Any] = {}
        for out in outputs:
            count = await self._partition_count(producer, out.topic)
            where = (out.topic, self._partition(out.key, count))
            batch = batches.get(where)
            if batch is None:
                batch = batches[where] = producer.create_batch()
            if batch.append(key=out.key, value=out.value, timestamp=None) is None:
                await self._submit(producer, batch, where)
                batch = batches[where] = producer.create_batch()
                if batch.append(key=out.key, value=out.value, timestamp=None) is None:
                    raise ValueError(f"a {len(out.value)}-byte message does not fit in an empty batch")
        for where, batch in batches.items():
            if batch.record_count():
                await self._submit(producer, batch, where)

    async def _submit(self, producer: Any, batch: Any, where: tuple[str, int]) -> None:
        batch.close()
        future = await producer.send_batch(batch, where[0], partition=where[1])
        future.add_done_callback(self._delivered)
        in_flight = self._in_flight
        in_flight.append(future)
        while in_flight and in_flight[0].done():
            in_flight.popleft()
        if len(in_flight) > self.max_in_flight:  # bound memory if the broker falls behind
            await asyncio.wait([in_flight.popleft()])

    async def drain(self) -> None:
        """Wait until everything handed over so far is acknowledged (or failed)."""
        while self._in_flight:
            await asyncio.wait([self._in_flight.popleft()])
        if self.failure is not None:
            raise RuntimeError(f"publishing failed: {self.failure!r}") from self.failure
