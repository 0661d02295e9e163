"""A Faust transport whose consumer long-polls for milliseconds, not 1.5 seconds,
reads only committed transactions, survives any record batch, and hands the agents
whole fetched batches.

faust-streaming's aiokafka driver hard-codes ``fetch_max_wait_ms=1500`` for the
worker consumer, and Tansu answers a waiting fetch only at its deadline, so every
hop cost ~400 ms at the median (notes/pipe-findings.md). This subclass sets the
wait from settings after Faust builds the consumer, and ``read_committed`` (Faust
asks for it only in its exactly-once mode): events from a producer whose
transaction aborted are never learned. Undecodable batches are turned into
dead-letter markers by ``stream.kafka.batch_guard`` (installed by ``stream.app``).

Whole fetched batches: Faust turns every record into a message, routes it through its
conductor, a channel queue and a stream event, and acks it, one at a time (~150-250 µs
per record on these machines, the whole budget of a single-event message). For the
topics named in ``app.whole_batch_topics`` this consumer yields one :class:`FetchedBatch`
per fetch and topic instead: a Faust message whose value is the fetch's records as
:class:`~stream.wire.messages.RawMessage`, stamped with the moment they were received.
Faust's machinery runs once per fetch; acking the batch acks every offset it covers. The
fetch's long poll (``fetch_max_wait_ms``) is what gathers a micro-batch: no second wait.
Everything else is Faust's.
"""
from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import faust
from faust.sensors.prometheus import PrometheusMonitor
from faust.tables.manager import TableManager
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import ConsumerMessage, ack_lock

from stream.wire.messages import RawMessage


class FetchedBatch(ConsumerMessage):
    """What one fetch returned for one topic, delivered to a stream as one Faust message.

    ``value`` is the records as :class:`RawMessage` (partition by partition, each in offset
    order). ``parts`` says, per partition, the offsets acking the batch accounts for: from the
    first record's (or the one after the partition's previous batch, when the fetch skipped
    offsets in between: transaction markers, aborted or compacted records) to the last
    record's. ``tp`` and ``offset`` are the first part's partition and last offset, for Faust's
    own bookkeeping. ``received`` is the epoch time the fetch returned: where the worker's own
    share of the latency starts.
    """

    __slots__ = ("parts", "received")

    @classmethod
    def of(cls, parts: list[tuple[TP, int, list[Any]]], received: float, generation_id: int | None) -> FetchedBatch:
        """``parts``: ``(partition, first offset accounted for, records)`` per partition, records not empty."""
        value = tuple(RawMessage(r.value, r.key, tp.topic, tp.partition, r.offset,
                                 r.timestamp / 1000.0 if r.timestamp is not None else None)
                      for tp, _, records in parts for r in records)
        tp, _, records = parts[0]
        last = records[-1]
        # (sizes 0: Faust's per-message sensors, the only readers, are off: PerBatchPrometheusMonitor)
        batch = cls(tp.topic, tp.partition, last.offset, value[-1].timestamp, last.timestamp_type, [], None,
                    value, None, 0, 0, tp, generation_id=generation_id)  # type: ignore[arg-type]
        batch.parts = tuple((tp, min(first, records[0].offset), records[-1].offset) for tp, first, records in parts)
        batch.received = received
        return batch


class FastFetchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = int(getattr(self.app, "fetch_max_wait_ms", 1500))
        consumer._isolation_level = "read_committed"  # read by aiokafka's fetcher when the consumer starts
        return consumer


class FastFetchConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> FastFetchConsumerThread:
        return FastFetchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Any]]:
        """Faust's ``getmany`` (same partition checks, same generation check), except that the
        records of each whole-batch topic come out as one :class:`FetchedBatch`, before the other
        topics' records one by one in Faust's round-robin."""
        whole = self.app.whole_batch_topics
        if not whole:
            async for item in super().getmany(timeout):
                yield item
            return
        records, active_partitions = await self._wait_next_records(timeout)
        received = time.time()
        generation_id = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return
        if not self.flow_active:
            try:
                await self.perform_seek()
            except Exception as exc:
                self.log.warning(f"exception performing seek when flow not active {exc}")
            return

        def current(tp: TP) -> bool:
            return active_partitions is None or tp in active_partitions or tp in self._buffered_partitions

        by_topic: dict[str, list[tuple[TP, int, list[Any]]]] = {}
        singles = {}
        read_offsets = self._read_offset
        for tp, batch in records.items():
            if tp.topic not in whole:
                singles[tp] = batch
                continue
            if not batch or not current(tp):
                continue
            read = read_offsets[tp]
            if read is not None and batch[0].offset < read:  # Faust drops what lies below its read position
                batch = [record for record in batch if record.offset >= read]
                if not batch:
                    continue
            first = read + 1 if read is not None and read < batch[0].offset else batch[0].offset
            by_topic.setdefault(tp.topic, []).append((tp, first, batch))
        for parts in by_topic.values():
            if not self.flow_active or self.app.consumer_generation_id != generation_id:
                return
            for tp, _, batch in parts:
                self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                read_offsets[tp] = batch[-1].offset  # Faust's drain loop moves only the first part's
            fetched = FetchedBatch.of(parts, received, generation_id)
            yield fetched.tp, fetched
        to_message = self._to_message
        for tp, record in self.scheduler.iterate(singles):
            if not self.flow_active or self.app.consumer_generation_id != generation_id:
                return
            if current(tp):
                self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                yield tp, to_message(tp, record)

    def ack(self, message: Any) -> bool:
        """Faust's ack; a :class:`FetchedBatch` acks every offset it accounts for, in every partition."""
        if not isinstance(message, FetchedBatch):
            return super().ack(message)
        with ack_lock:
            if message.acked:
                return False
            acked = super().ack(message)  # the first part's last offset, and Faust's bookkeeping of the message
            for tp, first, last in message.parts:
                committed = self._committed_offset[tp]
                index, acked_offsets = self._acked_index[tp], self._acked[tp]
                for offset in range(first, last + 1):
                    if (committed is None or offset >= committed) and offset not in index:
                        index.add(offset)
                        acked_offsets.append(offset)
                        self._n_acked += 1
            return acked

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Faust records skipped offsets as a gap to commit past; a :class:`FetchedBatch` accounts
        for its own (and the skipped ones before it), so its topics keep no gaps."""
        if tp.topic in self.app.whole_batch_topics:
            return
        await super()._add_gap(tp, offset_from, offset_to)

    async def _commit_offsets(self, offsets: Any, start_new_transaction: bool = True) -> bool:
        """Commit only what the app's ``before_commit`` hook made durable (``stream.worker.durability``)."""
        hook = getattr(self.app, "before_commit", None)
        if hook is not None:
            offsets = await hook(offsets)
            if not offsets:
                return False
        return await super()._commit_offsets(offsets, start_new_transaction=start_new_transaction)


class FastFetchTransport(faust_aiokafka.Transport):
    Consumer = FastFetchConsumer


class StreamrecFaustApp(faust.App):
    """``faust.App`` that builds :class:`FastFetchTransport` for its consumer.

    ``before_commit``, when set, is awaited with the offsets about to be committed and
    returns the offsets that may be (or None to skip the commit).
    """

    before_commit: Any = None
    #: topics whose records reach their agents as one :class:`FetchedBatch` per fetch (set by ``stream.app``)
    whole_batch_topics: frozenset[str] = frozenset()

    def _new_transport(self) -> FastFetchTransport:
        return FastFetchTransport(self.conf.broker_consumer, self)


class PromptTableManager(TableManager):
    """Faust's table manager sleeps 1 s at start-up so that late tables can register.

    streamrec keeps its state outside Faust tables (design.md, "State"), so the sleep
    only delays the first recommendation; this manager starts without it.
    """

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


class PerBatchPrometheusMonitor(PrometheusMonitor):
    """Faust's Prometheus sensor without its per-event bookkeeping.

    Faust's monitor does several counter and label look-ups for every message and
    every stream event (~20 µs each on these machines); streamrec counts events,
    messages and batches itself, once per micro-batch (``stream.worker.metrics``). The
    sensor keeps everything else Faust reports: commits, sends, send errors,
    rebalances, assignment, committed offsets, web requests.
    """

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        return None

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None
