"""A Faust transport whose consumer long-polls for milliseconds, not 1.5 seconds.

faust-streaming's aiokafka driver hard-codes ``fetch_max_wait_ms=1500`` for the
worker consumer, and Tansu answers a waiting fetch only at its deadline, so every
hop cost ~400 ms at the median (notes/pipe-findings.md). This subclass sets the
wait from settings after Faust builds the consumer; everything else is Faust's.
"""
from __future__ import annotations

from typing import Any

import faust
from faust.tables.manager import TableManager
from faust.transport.drivers import aiokafka as faust_aiokafka


class FastFetchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = int(getattr(self.app, "fetch_max_wait_ms", 1500))
        return consumer


class FastFetchConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> FastFetchConsumerThread:
        return FastFetchConsumerThread(self, loop=self.loop, beacon=self.beacon)


class FastFetchTransport(faust_aiokafka.Transport):
    Consumer = FastFetchConsumer


class StreamrecFaustApp(faust.App):
    """``faust.App`` that builds :class:`FastFetchTransport` for its consumer."""

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
