"""A Faust transport whose consumer long-polls for milliseconds, not 1.5 seconds,
reads only committed transactions, and survives any record batch.

faust-streaming's aiokafka driver hard-codes ``fetch_max_wait_ms=1500`` for the
worker consumer, and Tansu answers a waiting fetch only at its deadline, so every
hop cost ~400 ms at the median (notes/pipe-findings.md). This subclass sets the
wait from settings after Faust builds the consumer, and ``read_committed`` (Faust
asks for it only in its exactly-once mode): events from a producer whose
transaction aborted are never learned. Undecodable batches are turned into
dead-letter markers by ``stream.kafka.batch_guard`` (installed by ``stream.app``).
Everything else is Faust's.
"""
from __future__ import annotations

from typing import Any

import faust
from faust.sensors.prometheus import PrometheusMonitor
from faust.tables.manager import TableManager
from faust.transport.drivers import aiokafka as faust_aiokafka


class FastFetchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = int(getattr(self.app, "fetch_max_wait_ms", 1500))
        consumer._isolation_level = "read_committed"  # read by aiokafka's fetcher when the consumer starts
        return consumer


class FastFetchConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> FastFetchConsumerThread:
        return FastFetchConsumerThread(self, loop=self.loop, beacon=self.beacon)

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
