"""The client library under :mod:`stream.kafka.clients`: kafka-python, or librdkafka through confluent-kafka.

Both libraries are real outside clients; they differ in what they cost the machine they run on.
kafka-python is pure Python: at 1,000 single-event messages a second, producing them and reading
their lists took ~80% of a core on the 2-vCPU VM (``benchmarks/pipeline.py``'s harness), the
same cores the worker serves on. librdkafka does the same work in C threads. So the demo and the
latency benchmarks use it where it is installed (``pip install confluent-kafka``), and every
application can choose (``library="librdkafka"``).

The two adapters here give librdkafka the small interface the clients use of kafka-python's
``KafkaProducer`` (``send``, ``flush``, ``close``, ``partitions_for``) and ``KafkaConsumer``
(``poll`` returning records by partition), so the clients' own logic (batching per partition, the
pacing, decoding) is one code path for both. Configuration is given in kafka-python's names
(``linger_ms``, ``security_protocol``, ``ssl_cafile``, ...) and translated; librdkafka's own dotted
names pass through unchanged. A name neither knows is refused at once, not ignored.
"""
from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, NamedTuple

#: The two libraries a client can run on.
LIBRARIES = ("kafka-python", "librdkafka")

#: kafka-python keyword -> librdkafka property, for the settings the clients and their callers use.
_NAMES = {
    "bootstrap_servers": "bootstrap.servers",
    "client_id": "client.id",
    "acks": "acks",
    "linger_ms": "linger.ms",
    "max_request_size": "message.max.bytes",
    "compression_type": "compression.type",
    "enable_idempotence": "enable.idempotence",
    "fetch_max_wait_ms": "fetch.wait.max.ms",
    "fetch_min_bytes": "fetch.min.bytes",
    "security_protocol": "security.protocol",
    "sasl_mechanism": "sasl.mechanism",
    "sasl_plain_username": "sasl.username",
    "sasl_plain_password": "sasl.password",
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
}
#: kafka-python settings that have no meaning here (the consumer never joins a group, never commits).
_DROPPED = frozenset({"group_id", "enable_auto_commit"})


def available() -> bool:
    """Whether confluent-kafka (librdkafka) can be imported."""
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        return False
    return True


def preferred() -> str:
    """librdkafka where it is installed, else kafka-python: what the demo and benchmarks run."""
    return "librdkafka" if available() else "kafka-python"


def check_library(library: str) -> str:
    """``library`` if it names one of :data:`LIBRARIES` and is installed; a clear error otherwise."""
    if library not in LIBRARIES:
        raise ValueError(f"unknown Kafka client library {library!r}; choose one of {', '.join(LIBRARIES)}")
    if library == "librdkafka" and not available():
        raise ValueError("library='librdkafka' needs confluent-kafka: pip install confluent-kafka")
    return library


def librdkafka_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` in librdkafka's names.

    >>> librdkafka_config({"bootstrap_servers": ["a:1", "b:2"], "linger_ms": 0, "queue.buffering.max.ms": 1})
    {'bootstrap.servers': 'a:1,b:2', 'linger.ms': 0, 'queue.buffering.max.ms': 1}
    >>> librdkafka_config({"retry_backoff_ms": 10})
    Traceback (most recent call last):
    ...
    ValueError: Kafka client setting 'retry_backoff_ms' has no librdkafka equivalent here; ... 'retry.backoff.ms')
    """
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key in _DROPPED:
            continue
        if "." in key:
            out[key] = value
            continue
        name = _NAMES.get(key)
        if name is None:
            raise ValueError(f"Kafka client setting {key!r} has no librdkafka equivalent here; give librdkafka's "
                             f"own name (e.g. {key.replace('_', '.')!r})")
        if key == "bootstrap_servers" and not isinstance(value, str):
            value = ",".join(value)
        out[name] = value
    return out


class DeliveryFailed(RuntimeError):
    """Messages the broker did not take (librdkafka reports them after the send; :meth:`Producer.flush` raises)."""


class Producer:
    """librdkafka's producer behind the part of ``kafka.KafkaProducer`` the clients use."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        from confluent_kafka import Producer as _Producer

        # murmur2 on the key, as kafka-python and Java pick (librdkafka's own default is CRC32): a keyed message
        # without a partition (a request) lands where its user's events and state are
        self._producer = _Producer({"partitioner": "murmur2_random", **librdkafka_config(config)})
        self._lock = threading.Lock()
        self._failed: list[str] = []

    def _report(self, err: Any, msg: Any) -> None:
        if err is not None:
            with self._lock:
                self._failed.append(f"{msg.topic()}[{msg.partition()}]: {err}")

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             partition: int | None = None) -> None:
        """Queue one message; while librdkafka's queue is full, serve its deliveries and retry."""
        kwargs: dict[str, Any] = {"value": value, "key": key, "on_delivery": self._report}
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                self._producer.produce(topic, **kwargs)
                break
            except BufferError:
                self._producer.poll(0.05)
        self._producer.poll(0)  # delivery reports of earlier sends

    def partitions_for(self, topic: str, timeout: float = 10.0) -> set[int] | None:
        found = self._producer.list_topics(topic, timeout=timeout).topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            return None
        return set(found.partitions)

    def flush(self, timeout: float | None = 30.0) -> None:
        """Wait until the broker acknowledged everything sent; :class:`DeliveryFailed` names what it refused."""
        left = self._producer.flush(-1 if timeout is None else timeout)
        with self._lock:
            failed, self._failed = self._failed, []
        if failed:
            raise DeliveryFailed(f"{len(failed)} message(s) not delivered; first: {failed[0]}")
        if left:
            raise DeliveryFailed(f"{left} message(s) still unacknowledged after {timeout} s")

    def close(self) -> None:
        self._producer.flush(10)


class Record(NamedTuple):
    """The fields of a kafka-python ``ConsumerRecord`` the clients read."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Consumer:
    """librdkafka's consumer, assigned every partition of one topic (no group), polled like
    ``kafka.KafkaConsumer``: ``{partition: [records]}``."""

    def __init__(self, config: Mapping[str, Any], topic: str, from_beginning: bool, timeout: float = 10.0) -> None:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition
        from confluent_kafka import Consumer as _Consumer

        # librdkafka wants a group id even for a consumer that only assigns; it never joins or commits here
        settings = {"group.id": "streamrec-unjoined", "enable.auto.commit": False, "enable.partition.eof": False,
                    **librdkafka_config(config)}
        self._consumer = _Consumer(settings)
        self.errors = 0  # error events librdkafka delivered in place of records (a corrupt batch, a broker error)
        found = self._consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            self._consumer.close()
            raise RuntimeError(f"topic {topic!r} does not exist on {settings.get('bootstrap.servers')}")
        def start(partition: int) -> int:  # "end" resolved now, so that nothing published after this call is missed
            if from_beginning:
                return OFFSET_BEGINNING
            return self._consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)[1]

        self._consumer.assign([TopicPartition(topic, p, start(p)) for p in sorted(found.partitions)])

    def poll(self, timeout_ms: int = 100, max_records: int = 1_000) -> dict[int, list[Record]]:
        """What arrived within ``timeout_ms``: returns once one record is there, with every record already
        fetched (up to ``max_records``). librdkafka's own ``consume(n, timeout)`` would wait for all ``n``
        or the whole timeout, which a list reader would see as latency."""
        out: dict[int, list[Record]] = {}
        first = self._consumer.poll(timeout_ms / 1000)
        if first is None:
            return out
        for message in [first, *self._consumer.consume(max_records - 1, 0)]:
            if message.error() is not None:  # counted, never raised: librdkafka retries what can be retried
                self.errors += 1
                continue
            out.setdefault(message.partition(), []).append(
                Record(message.topic(), message.partition(), message.offset(), message.key(), message.value()))
        return out

    def close(self) -> None:
        self._consumer.close()
