"""Kafka clients: the small Python API applications use, and what the CLI runs.

* :class:`EventPublisher` sends events to ``events``. By default it batches: one
  message carries a JSON array of events, all for users that Kafka's default
  partitioner puts on the same partition, so per-user order and per-user state
  stay on one partition. ``batch_events=1`` sends one event object per message.
* :class:`RecommendationConsumer` reads lists from ``recommendations`` with manual
  partition assignment (no group join, which Tansu makes slow) and yields dicts.
* :class:`RequestPublisher` asks for a list explicitly on ``rec-requests``.

Each runs on kafka-python (the default) or on librdkafka (``library="librdkafka"``), which
costs the machine far less CPU per message (:mod:`stream.kafka.librdkafka`). Neither opens a
connection in ``__init__``; the first send/poll does. Build them with
``from_settings(settings, ...)`` to get the topic and the Kafka security settings
(``stream.kafka.security``) of a :class:`~stream.settings.Settings`; ``extra_config`` given
there wins over both. What they send and read is encoded and decoded by ``stream.wire.schema``,
the codec the worker uses.
"""
from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from online.base import Interaction
from stream.kafka import batch_guard, librdkafka
from stream.kafka.security import kafka_python_security
from stream.wire import schema
from stream.wire.partitioner import partition_for

if TYPE_CHECKING:  # pragma: no cover
    from stream.settings import Settings


def _client_config(settings: Settings, extra_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The security kwargs of ``settings``, then ``extra_config`` on top."""
    return {**kafka_python_security(settings), **(extra_config or {})}


def _producer(library: str, config: dict[str, Any]) -> Any:
    """A producer of ``library`` with ``config`` (kafka-python's names)."""
    if library == "librdkafka":
        return librdkafka.Producer(config)
    from kafka import KafkaProducer

    return KafkaProducer(**config)


class EventPublisher:
    """Publish events, batched per partition.

    Parameters
    ----------
    bootstrap_servers
        ``host:port[,host:port]``.
    batch_events
        Events per message; 1 sends single-event objects, more sends JSON arrays.
    linger_s
        In paced replay, the longest a partial batch waits before it is sent.
    extra_config
        Passed through to the producer (security settings, acks, ...), in kafka-python's names; with
        librdkafka they are translated, and librdkafka's own dotted names are taken as they are.
    library
        ``"kafka-python"`` or ``"librdkafka"`` (:mod:`stream.kafka.librdkafka`).
    """

    def __init__(self, bootstrap_servers: str, topic: str = "events", batch_events: int = 200,
                 linger_s: float = 0.005, extra_config: Mapping[str, Any] | None = None,
                 library: str = "kafka-python") -> None:
        self.library = librdkafka.check_library(library)
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.batch_events = max(1, int(batch_events))
        self.linger_s = float(linger_s)
        self.extra_config = dict(extra_config or {})
        self._producer: Any = None
        self._partitions = 0
        self._buffers: dict[int, list[dict[str, Any]]] = {}
        self._partition_of: dict[str, int] = {}
        self.events_sent = 0
        self.messages_sent = 0

    @classmethod
    def from_settings(cls, settings: Settings, *, extra_config: Mapping[str, Any] | None = None,
                      **kwargs: Any) -> EventPublisher:
        """A publisher to ``settings.topics.events`` with the security settings applied."""
        kwargs.setdefault("topic", settings.topics.events)
        return cls(settings.kafka.bootstrap_servers, extra_config=_client_config(settings, extra_config), **kwargs)

    def connect(self) -> None:
        """Connect now rather than at the first send."""
        _ = self.producer

    @property
    def producer(self) -> Any:
        if self._producer is None:
            config = {"bootstrap_servers": self.bootstrap_servers.split(","), "acks": 1, "linger_ms": 2,
                      "max_request_size": 4_194_304, "client_id": "streamrec-publisher"}
            config.update(self.extra_config)
            self._producer = _producer(self.library, config)
            partitions = self._producer.partitions_for(self.topic)
            self._partitions = len(partitions) if partitions else 1
        return self._producer

    def partition(self, user_id: str) -> int:
        found = self._partition_of.get(user_id)
        if found is None:
            if self._producer is None:
                self.connect()  # which also learns the topic's partition count
            found = self._partition_of[user_id] = partition_for(user_id.encode(), self._partitions)
        return found

    def publish(self, event: Interaction | Mapping[str, Any]) -> None:
        """Queue one event; it is sent when its partition's batch is full or on :meth:`flush`."""
        payload = schema.event_payload(event)
        user_id = str(payload["user_id"])
        if self.batch_events == 1:
            self._send(self.partition(user_id), user_id.encode(), schema.encode(payload), 1)
            return
        partition = self.partition(user_id)
        buffer = self._buffers.setdefault(partition, [])
        buffer.append(payload)
        if len(buffer) >= self.batch_events:
            self._flush_partition(partition)

    def _send(self, partition: int, key: bytes | None, value: bytes, events: int) -> None:
        self.producer.send(self.topic, value=value, key=key, partition=partition)
        self.events_sent += events
        self.messages_sent += 1

    def _flush_partition(self, partition: int) -> None:
        buffer = self._buffers.pop(partition, None)
        if buffer:
            # The key is the first user's id: every user in the array maps to this partition.
            self._send(partition, str(buffer[0]["user_id"]).encode(), schema.encode(buffer), len(buffer))

    def flush(self, timeout: float | None = 30.0) -> None:
        """Send every buffered event and wait until the broker has them."""
        for partition in list(self._buffers):
            self._flush_partition(partition)
        if self._producer is not None:
            self._producer.flush(timeout)

    def replay(self, events: Iterable[Interaction | Mapping[str, Any]],
               rate: float | Callable[[], float] | None = None, limit: int | None = None,
               on_progress: Callable[[int], None] | None = None,
               should_stop: Callable[[], bool] | None = None) -> int:
        """Publish events in order; returns how many.

        ``rate`` paces them: events/s, or a callable asked for the rate before each event (an adaptive
        pacer such as :class:`stream.cli.pacing.LatencyPacer`); None or 0 sends as fast as possible.
        A fixed rate keeps to its schedule (a late event is followed by the next ones at once); a
        callable's rate applies from now on, so a pause does not come out as a burst."""
        started = last_flush = due = time.perf_counter()
        count = 0
        rate_of = rate if callable(rate) else None
        for event in itertools.islice(events, limit):
            if rate:
                # Paced: a partial batch waits at most linger_s before it is handed over.
                now = time.perf_counter()
                if rate_of is None:
                    due = started + count / rate
                else:
                    due = max(due, now - self.linger_s) + 1.0 / max(1e-9, rate_of())
                while True:
                    if now - last_flush >= self.linger_s:
                        self.flush_buffers()
                        last_flush = now
                    wait = due - now
                    if wait <= 0:
                        break
                    time.sleep(min(wait, self.linger_s))
                    now = time.perf_counter()
            self.publish(event)
            count += 1
            if on_progress is not None and count % 500 == 0:
                on_progress(500)
            if should_stop is not None and count % 500 == 0 and should_stop():
                break
        self.flush()
        if on_progress is not None:
            on_progress(count % 500)
        return count

    def flush_buffers(self) -> None:
        """Hand buffered events to the producer without waiting for acknowledgements."""
        for partition in list(self._buffers):
            self._flush_partition(partition)

    def close(self) -> None:
        if self._producer is not None:
            self.flush()
            self._producer.close()
            self._producer = None

    def __enter__(self) -> EventPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RequestPublisher:
    """Ask the workers for a list: publishes to ``rec-requests`` and returns the request id."""

    def __init__(self, bootstrap_servers: str, topic: str = "rec-requests",
                 extra_config: Mapping[str, Any] | None = None, library: str = "kafka-python") -> None:
        self.library = librdkafka.check_library(library)
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.extra_config = dict(extra_config or {})
        self._producer: Any = None

    @classmethod
    def from_settings(cls, settings: Settings, *, extra_config: Mapping[str, Any] | None = None,
                      **kwargs: Any) -> RequestPublisher:
        """A publisher to ``settings.topics.requests`` with the security settings applied."""
        kwargs.setdefault("topic", settings.topics.requests)
        return cls(settings.kafka.bootstrap_servers, extra_config=_client_config(settings, extra_config), **kwargs)

    def request(self, user_id: str, k: int = 10, exclude: Iterable[str] = (),
                request_id: str | None = None) -> str:
        if self._producer is None:
            config = {"bootstrap_servers": self.bootstrap_servers.split(","), "linger_ms": 0,
                      "client_id": "streamrec-requests"}
            config.update(self.extra_config)
            self._producer = _producer(self.library, config)
        request_id = request_id or uuid.uuid4().hex
        value = schema.encode_request(request_id=request_id, user_id=user_id, k=k, exclude=exclude)
        self._producer.send(self.topic, key=user_id.encode(), value=value)
        self._producer.flush()
        return request_id

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
            self._producer = None


class RecommendationConsumer:
    """Read recommendation lists (dicts) from every partition of ``recommendations``."""

    def __init__(self, bootstrap_servers: str, topic: str = "recommendations", from_beginning: bool = False,
                 fetch_max_wait_ms: int = 10, extra_config: Mapping[str, Any] | None = None,
                 library: str = "kafka-python") -> None:
        self.library = librdkafka.check_library(library)
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.from_beginning = from_beginning
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.extra_config = dict(extra_config or {})
        self._consumer: Any = None
        self.bad_messages = 0

    @classmethod
    def from_settings(cls, settings: Settings, *, extra_config: Mapping[str, Any] | None = None,
                      **kwargs: Any) -> RecommendationConsumer:
        """A consumer of ``settings.topics.recommendations`` with the security settings applied."""
        kwargs.setdefault("topic", settings.topics.recommendations)
        return cls(settings.kafka.bootstrap_servers, extra_config=_client_config(settings, extra_config), **kwargs)

    def connect(self) -> None:
        """Connect and assign now (positioned at the end unless ``from_beginning``), so that nothing
        published after this call is missed."""
        _ = self.consumer

    @property
    def consumer(self) -> Any:
        if self._consumer is None:
            config = {"bootstrap_servers": self.bootstrap_servers.split(","), "group_id": None,
                      "enable_auto_commit": False, "fetch_max_wait_ms": self.fetch_max_wait_ms,
                      "client_id": "streamrec-consumer"}
            config.update(self.extra_config)
            if self.library == "librdkafka":
                self._consumer = librdkafka.Consumer(config, self.topic, self.from_beginning)
                return self._consumer
            from kafka import KafkaConsumer, TopicPartition

            batch_guard.install()  # an undecodable batch counts as a bad message, never a crash
            consumer = KafkaConsumer(**config)
            partitions = None
            deadline = time.monotonic() + 10
            while not partitions and time.monotonic() < deadline:
                partitions = consumer.partitions_for_topic(self.topic)
                if not partitions:
                    time.sleep(0.1)
            if not partitions:
                consumer.close()
                raise RuntimeError(f"topic {self.topic!r} does not exist on {self.bootstrap_servers}")
            assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            if self.from_beginning:
                consumer.seek_to_beginning(*assigned)
            else:
                consumer.seek_to_end(*assigned)
                for tp in assigned:
                    consumer.position(tp)  # resolve "end" now, not at the first poll
            self._consumer = consumer
        return self._consumer

    def poll(self, timeout: float = 0.1) -> list[tuple[dict[str, Any], float]]:
        """Lists that arrived within ``timeout`` seconds, each with its arrival time."""
        records = self.consumer.poll(timeout_ms=int(timeout * 1000))
        now = time.time()
        out = []
        for batch in records.values():
            for record in batch:
                try:  # an undecodable record batch (stream.kafka.batch_guard) is one bad message too
                    out.append((schema.decode_recommendation(record.value), now))
                except Exception:
                    self.bad_messages += 1
        return out

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            for value, _ in self.poll(1.0):
                yield value

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
