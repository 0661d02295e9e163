"""Outside Kafka clients against one real worker: no producer can kill a worker (client matrix).

Applications will not all use our kafka-python publisher. This file drives a real
``streamrec worker`` process with the clients people actually use, on the real
embedded broker (Tansu), and specifies what each may rely on:

* a confluent-kafka (librdkafka) producer with every ``compression.type``, idempotent
  or not, with null keys and message headers: every valid event is processed, every
  user is served a list, and the worker stays the same live process;
* kafka-python's ``KafkaProducer`` with every codec it supports: the same;
* hostile payloads through confluent-kafka (gzip), mixed with valid events: each bad
  message (and the one bad element of an array) is dead-lettered once, with a fitting
  reason and its source topic/partition/offset, nothing valid is, and the counters agree;
* consumers of ``recommendations`` in a consumer group (confluent-kafka, kafka-python):
  with a short ``session.timeout.ms`` the first list arrives within seconds;
* Debian's kcat (librdkafka 2.0.2) can read lists only with
  ``api.version.request=false broker.version.fallback=0.9.0`` and absolute offsets;
* a transactional producer: an aborted transaction is never learned (skipped, with the
  reason, on a broker that does not isolate aborted records; Tansu 0.6.0 does not).

Every test uses its own users, and measures the worker's counters as differences, so the
tests share one worker (start-up costs seconds) and still read independently.
Set ``STREAMREC_TEST_BROKER=host:port`` to run the same specification against a real Kafka.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka import TopicPartition as CkTopicPartition
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from stream.cli.scrape import scrape, total
from stream.kafka.broker import create_topics
from stream.settings import Settings
from stream.wire.schema import DLQ_REASONS
from stream.wire.topics import TopicSpec
from tests.test_integration.conftest import worker_process

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

#: Group settings that make a consumer's first join quick. Tansu 0.6.0 holds the first JoinGroup of a
#: new group for about half the *session* timeout (measured: 45 s -> 23 s, 10 s -> 5 s, 6 s -> 3 s,
#: <= 2 s -> 1 s); ``max.poll.interval.ms`` (the rebalance timeout) makes no difference there. 6 s
#: keeps heartbeats (every 2 s, from the clients' background threads) safe on a loaded machine.
CONFLUENT_GROUP_SETTINGS: dict[str, Any] = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 2000}
KAFKA_PYTHON_GROUP_SETTINGS: dict[str, Any] = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 2000}
#: The tuned join takes ~3 s; the client defaults (45 s session timeout) take ~23 s on Tansu. The bound
#: sits between the two, generous for a loaded CI machine and still failing if the settings stop working.
FIRST_MESSAGE_BOUND_S = 15.0
#: kcat 1.7.1 (librdkafka 2.0.2) cannot parse Tansu 0.6.0's ApiVersions v3 answer ("Read underflow").
#: Any fallback >= 0.10.0 makes librdkafka ask for ApiVersions anyway; 0.9.0 skips the request.
KCAT_TANSU_FLAGS = ["-X", "api.version.request=false", "-X", "broker.version.fallback=0.9.0"]
CONFLUENT_CODECS = [("none", False), ("gzip", True), ("snappy", False), ("lz4", True), ("zstd", True)]
KAFKA_PYTHON_CODECS = ["gzip", "snappy", "lz4", "zstd"]


# -- the worker and what it publishes ------------------------------------------------------------

@dataclass
class Worker:
    """The module's one worker process, and what is needed to tell that it never died."""

    settings: Settings
    process: subprocess.Popen
    pid: int
    log_path: Path

    def url(self, path: str = "/metrics") -> str:
        return f"http://{self.settings.metrics.host}:{self.settings.metrics.port}{path}"

    def counter(self, name: str) -> float:
        return total(scrape(self.url()), name)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def assert_alive(self) -> None:
        """Same process, still running, answering /health/live, no traceback in its log: a codec or
        payload that kills the worker (even one that a supervisor would restart) fails here."""
        assert self.process.poll() is None and self.process.pid == self.pid, \
            f"the worker exited ({self.process.returncode}):\n{self.log_tail()}"
        with urllib.request.urlopen(self.url("/health/live"), timeout=5) as response:
            assert json.loads(response.read())["status"] == "live"
        log = self.log_path.read_text(errors="replace")
        assert "Traceback" not in log and "crashed" not in log.lower(), log[-4000:]


@dataclass
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: dict


@dataclass
class TopicTail:
    """Everything on a topic since the beginning, read with manual assignment across calls.

    Manual assignment starts at once (a group join on Tansu takes seconds), and reading "until"
    a condition holds avoids Tansu's undercounting end offsets."""

    consumer: KafkaConsumer
    records: list[Record] = field(default_factory=list)

    @classmethod
    def open(cls, bootstrap: str, topic: str) -> TopicTail:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [0])]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        return cls(consumer)

    def wait_for(self, done: Callable[[list[Record]], bool], timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while not done(self.records) and time.monotonic() < deadline:
            for batch in self.consumer.poll(timeout_ms=100).values():
                self.records += [Record(r.partition, r.offset, r.key, json.loads(r.value)) for r in batch]
        return done(self.records)

    def users(self) -> set[str]:
        return {r.value["user_id"] for r in self.records}


@pytest.fixture(scope="module")
def worker(worker_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    log_path = tmp_path_factory.mktemp("outside-clients") / "worker.log"
    with worker_process(worker_settings, log_path) as process:
        yield Worker(worker_settings, process, process.pid, log_path)


@pytest.fixture(scope="module")
def lists(worker: Worker) -> Iterator[TopicTail]:
    tail = TopicTail.open(worker.settings.kafka.bootstrap_servers, worker.settings.topics.recommendations)
    yield tail
    tail.consumer.close()


@pytest.fixture(scope="module")
def dlq(worker: Worker) -> Iterator[TopicTail]:
    tail = TopicTail.open(worker.settings.kafka.bootstrap_servers, worker.settings.topics.dlq)
    yield tail
    tail.consumer.close()


# -- small helpers ---------------------------------------------------------------------------------

def new_users(prefix: str, n: int) -> list[str]:
    """Users no other test touches, so each test's lists are its own."""
    tag = uuid.uuid4().hex[:6]
    return [f"{prefix}-{tag}-{i}" for i in range(n)]


def event(user: str, item: str, ts: float = 1_700_000_000.0, kind: str = "click") -> dict:
    return {"user_id": user, "item_id": item, "type": kind, "ts": ts}


def dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def wait_counter(worker: Worker, name: str, before: float, want: float, timeout: float = 20.0) -> float:
    """How far ``name`` grew past ``before``: waits until it reached ``want``, then a moment more
    so that an over-count (an event learned twice) would show."""
    deadline = time.monotonic() + timeout
    while worker.counter(name) - before < want and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    return worker.counter(name) - before


def confluent_producer(bootstrap: str, **conf: Any) -> Producer:
    """``murmur2_random`` puts a key on the partition Java and kafka-python pick (librdkafka's own
    default, ``consistent_random``, is CRC32): one user's events stay on one partition whoever
    publishes them, which per-partition user state relies on."""
    return Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "linger.ms": 5, **conf})


def produce_all(producer: Producer, topic: str, messages: list[tuple[bytes | None, bytes | None, list | None]],
                timeout: float = 20.0) -> list[tuple[int, int]]:
    """Send ``(key, value, headers)`` in order; ``(partition, offset)`` of each as the broker acked it."""
    acked: list[Any] = [None] * len(messages)
    errors: list[str] = []

    def on_delivery(n: int) -> Callable[[Any, Any], None]:
        def report(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(str(err))
            else:
                acked[n] = (msg.partition(), msg.offset())
        return report

    for n, (key, value, headers) in enumerate(messages):
        producer.produce(topic, key=key, value=value, headers=headers, on_delivery=on_delivery(n))
        producer.poll(0)
    left = producer.flush(timeout)
    assert not errors and left == 0 and None not in acked, f"delivery failed: {errors[:3]}, {left} unflushed"
    return acked


def spread_events(users: list[str], per_user: int) -> list[tuple[bytes | None, bytes | None, list | None]]:
    """``per_user`` events per user; every 4th message without a key (the worker reads the user from
    the value), every 3rd with headers (which the worker must ignore)."""
    messages = []
    for n in range(per_user * len(users)):
        user = users[n % len(users)]
        key = None if n % 4 == 3 else user.encode()
        headers = [("trace-id", uuid.uuid4().hex.encode()), ("source", b"outside-client")] if n % 3 == 0 else None
        messages.append((key, dumps(event(user, f"item-{n % 7}", 1_700_000_000.0 + n)), headers))
    return messages


def ensure_a_list(worker: Worker, lists: TopicTail) -> Record:
    """Publish one event for a fresh user and return the list the worker pushed for it, so a
    consumer test has something to read whatever ran before it."""
    user = new_users("seed", 1)[0]
    producer = KafkaProducer(bootstrap_servers=worker.settings.kafka.bootstrap_servers)
    producer.send(worker.settings.topics.events, key=user.encode(), value=dumps(event(user, "item-seed")))
    producer.flush(10)
    producer.close()
    assert lists.wait_for(lambda found: user in {r.value["user_id"] for r in found}), "no list for the seed user"
    return next(r for r in lists.records if r.value["user_id"] == user)


# -- 1, 2: producers and codecs ----------------------------------------------------------------------

@pytest.mark.parametrize("codec, idempotent", CONFLUENT_CODECS,
                         ids=[f"{c}{'-idempotent' if i else ''}" for c, i in CONFLUENT_CODECS])
def test_a_confluent_producer_with_any_codec_is_processed(worker: Worker, lists: TopicTail, codec: str,
                                                          idempotent: bool) -> None:
    users = new_users(f"ck-{codec}", 8)
    messages = spread_events(users, per_user=3)
    before = worker.counter("streamrec_events_processed_total")
    producer = confluent_producer(worker.settings.kafka.bootstrap_servers, **{
        "compression.type": codec, "enable.idempotence": idempotent, "acks": "all"})
    produce_all(producer, worker.settings.topics.events, messages)

    processed = wait_counter(worker, "streamrec_events_processed_total", before, len(messages))

    assert processed == len(messages), f"{codec}: processed {processed} of {len(messages)}\n{worker.log_tail()}"
    assert lists.wait_for(lambda _: set(users) <= lists.users()), f"{codec}: users without a list"
    worker.assert_alive()


@pytest.mark.parametrize("codec", KAFKA_PYTHON_CODECS)
def test_a_kafka_python_producer_with_any_codec_is_processed(worker: Worker, lists: TopicTail, codec: str) -> None:
    users = new_users(f"kp-{codec}", 8)
    messages = spread_events(users, per_user=3)
    before = worker.counter("streamrec_events_processed_total")
    producer = KafkaProducer(bootstrap_servers=worker.settings.kafka.bootstrap_servers, compression_type=codec,
                             linger_ms=5)
    for key, value, headers in messages:
        producer.send(worker.settings.topics.events, key=key, value=value,
                      headers=[(name, raw) for name, raw in headers or []])
    producer.flush(20)
    producer.close()

    processed = wait_counter(worker, "streamrec_events_processed_total", before, len(messages))

    assert processed == len(messages), f"{codec}: processed {processed} of {len(messages)}\n{worker.log_tail()}"
    assert lists.wait_for(lambda _: set(users) <= lists.users()), f"{codec}: users without a list"
    worker.assert_alive()


def test_confluent_with_murmur2_random_partitions_users_like_kafka_python(worker: Worker) -> None:
    """A user's events must land on one partition whichever client publishes them."""
    users = new_users("part", 24)
    before = worker.counter("streamrec_events_processed_total")
    producer = confluent_producer(worker.settings.kafka.bootstrap_servers)
    confluent_at = produce_all(producer, worker.settings.topics.events,
                               [(u.encode(), dumps(event(u, "item-p")), None) for u in users])
    kp = KafkaProducer(bootstrap_servers=worker.settings.kafka.bootstrap_servers)
    futures = [kp.send(worker.settings.topics.events, key=u.encode(), value=dumps(event(u, "item-p"))) for u in users]
    kp.flush(10)
    kafka_python_at = [f.get(10).partition for f in futures]
    kp.close()
    assert [p for p, _ in confluent_at] == kafka_python_at
    assert wait_counter(worker, "streamrec_events_processed_total", before, 2 * len(users)) == 2 * len(users)


# -- 3: hostile payloads ------------------------------------------------------------------------------

@dataclass
class Hostile:
    """One bad message: its raw value and the reasons that fit it (per array index; None: whole)."""

    name: str
    value: bytes | None
    reasons: dict[int | None, frozenset[str]]
    good: int = 0  # valid events it carries alongside the bad one


def hostile_payloads(user: str) -> list[Hostile]:
    base = dumps({"user_id": user, "item_id": "item-h", "type": "click"})[:-1]  # raw: json.dumps never writes 1e400
    return [
        Hostile("bad ISO date", dumps({**event(user, "item-h"), "ts": "2024-13-45T25:61:00Z"}),
                {None: frozenset({"invalid_ts"})}),
        Hostile("query object as user_id", dumps({**event(user, "item-h"), "user_id": {"$gt": ""}}),
                {None: frozenset({"wrong_type"})}),
        Hostile("1e400 as ts", base + b', "ts": 1e400}', {None: frozenset({"invalid_ts"})}),
        Hostile("1e400 as value", base + b', "ts": 1, "value": 1e400}', {None: frozenset({"invalid_value"})}),
        Hostile("bare JSON string", b'"click"', {None: frozenset({"not_an_object"})}),
        Hostile("tombstone (NULL value)", None, {None: frozenset({"not_json"})}),
        Hostile("5,000-deep arrays", b"[" * 5_000 + b"]" * 5_000, {None: frozenset({"not_json"})}),
        Hostile("5,000-deep objects", b'{"a":' * 5_000 + b"1" + b"}" * 5_000, {None: frozenset({"not_json"})}),
        Hostile("array with one bad element",
                dumps([event(user, "item-a1"), {**event(user, "item-a2"), "type": "teleport"},
                       event(user, "item-a3", kind="view")]),
                {1: frozenset({"unknown_type"})}, good=2),
    ]


def test_hostile_payloads_are_dead_lettered_and_valid_users_are_served(worker: Worker, lists: TopicTail,
                                                                        dlq: TopicTail) -> None:
    users = new_users("hostile", 40)
    tag = uuid.uuid4().hex[:8]
    hostile = hostile_payloads(users[0])
    valid = [(u.encode(), dumps(event(u, f"item-{i % 5}", 1_700_000_100.0 + i)), None)
             for i, u in enumerate(users + users)]
    bad = [(f"hostile|{tag}-{n}".encode(), h.value, None) for n, h in enumerate(hostile)]
    messages = [m for pair in zip(valid, bad + [None] * len(valid)) for m in pair if m is not None]
    want_processed = len(valid) + sum(h.good for h in hostile)
    want_letters = {(n, index): reasons for n, h in enumerate(hostile) for index, reasons in h.reasons.items()}
    processed_before = worker.counter("streamrec_events_processed_total")
    dlq_before = worker.counter("streamrec_events_dlq_total")

    acked = produce_all(confluent_producer(worker.settings.kafka.bootstrap_servers, **{"compression.type": "gzip"}),
                        worker.settings.topics.events, messages)

    sent_at = {m[0]: at for m, at in zip(messages, acked) if m[0] and m[0].startswith(b"hostile|")}
    processed = wait_counter(worker, "streamrec_events_processed_total", processed_before, want_processed)
    dead = wait_counter(worker, "streamrec_events_dlq_total", dlq_before, len(want_letters))

    def ours(found: list[Record]) -> list[dict]:
        return [r.value for r in found if (r.value.get("key") or "").startswith(f"hostile|{tag}-")]
    dlq.wait_for(lambda found: len(ours(found)) >= len(want_letters))
    dlq.wait_for(lambda _: False, timeout=0.5)  # a letter sent twice would arrive now
    letters = ours(dlq.records)
    got = {(int(letter["key"].rsplit("-", 1)[1]), letter["index"]): letter for letter in letters}

    assert len(letters) == len(got), "a bad message was dead-lettered more than once"
    assert set(got) == set(want_letters), \
        f"missing: {[hostile[n].name for n, _ in set(want_letters) - set(got)]}, extra: {set(got) - set(want_letters)}"
    for (n, index), letter in got.items():
        assert letter["reason"] in DLQ_REASONS and letter["reason"] in want_letters[(n, index)], \
            f"{hostile[n].name}: reason {letter['reason']!r}, want one of {sorted(want_letters[(n, index)])}"
        assert letter["error"], hostile[n].name
        assert (letter["topic"], letter["partition"], letter["offset"]) == \
            (worker.settings.topics.events, *sent_at[f"hostile|{tag}-{n}".encode()]), hostile[n].name
    assert dead == len(want_letters), \
        f"the DLQ counter grew by {dead} for {len(want_letters)} bad inputs (valid input dead-lettered?)"
    assert processed == want_processed, f"processed {processed} of {want_processed} valid events"
    assert lists.wait_for(lambda _: set(users) <= lists.users()), \
        f"{len(set(users) - lists.users())} valid users were not served a list"
    worker.assert_alive()


# -- 4: consumers in a group ----------------------------------------------------------------------------

def test_a_confluent_group_consumer_gets_its_first_list_within_seconds(worker: Worker, lists: TopicTail) -> None:
    ensure_a_list(worker, lists)
    consumer = Consumer({"bootstrap.servers": worker.settings.kafka.bootstrap_servers, "group.id": f"ck-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", **CONFLUENT_GROUP_SETTINGS})
    started = time.monotonic()
    consumer.subscribe([worker.settings.topics.recommendations])
    try:
        message = None
        while message is None and time.monotonic() - started < 2 * FIRST_MESSAGE_BOUND_S:
            candidate = consumer.poll(0.2)
            if candidate is not None:
                assert candidate.error() is None, candidate.error()
                message = candidate
        waited = time.monotonic() - started
    finally:
        consumer.close()
    assert message is not None and waited < FIRST_MESSAGE_BOUND_S, f"first list after {waited:.1f} s"
    assert {"user_id", "items", "rec_id"} <= set(json.loads(message.value()))
    print(f"confluent-kafka group consumer: first list after {waited:.2f} s")


def test_a_kafka_python_group_consumer_gets_its_first_list_within_seconds(worker: Worker, lists: TopicTail) -> None:
    ensure_a_list(worker, lists)
    started = time.monotonic()
    consumer = KafkaConsumer(worker.settings.topics.recommendations, bootstrap_servers=worker.settings.kafka.bootstrap_servers,
                             group_id=f"kp-{uuid.uuid4().hex}", auto_offset_reset="earliest",
                             **KAFKA_PYTHON_GROUP_SETTINGS)
    try:
        records: list = []
        while not records and time.monotonic() - started < 2 * FIRST_MESSAGE_BOUND_S:
            records = [r for batch in consumer.poll(timeout_ms=200).values() for r in batch]
        waited = time.monotonic() - started
    finally:
        consumer.close()
    assert records and waited < FIRST_MESSAGE_BOUND_S, f"first list after {waited:.1f} s"
    assert {"user_id", "items", "rec_id"} <= set(json.loads(records[0].value))
    print(f"kafka-python group consumer: first list after {waited:.2f} s")


# -- 5: kcat -----------------------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not on PATH (Debian: apt-get install -y kcat)")
def test_kcat_reads_a_list_from_an_absolute_offset(worker: Worker, lists: TopicTail) -> None:
    """kcat 1.7.1 (librdkafka 2.0.2) reads from Tansu only without ApiVersions and only from an
    absolute offset: with fallback 0.9.0 its ListOffsets v0 answer underflows too, so ``-o
    beginning``/``end`` and group mode (``-G``) fail, and producing (``-P``, message format v0)
    is rejected by the broker. Against a real Kafka plain ``kcat -b HOST -C -t TOPIC`` works."""
    record = ensure_a_list(worker, lists)
    flags = [] if os.environ.get("STREAMREC_TEST_BROKER") else KCAT_TANSU_FLAGS
    result = subprocess.run(
        ["kcat", *flags, "-b", worker.settings.kafka.bootstrap_servers, "-C", "-t", worker.settings.topics.recommendations,
         "-p", str(record.partition), "-o", str(record.offset), "-c", "1", "-q", "-f", "%k\t%s\n"],
        check=False, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    key, value = result.stdout.rstrip("\n").split("\t", 1)
    assert key == record.value["user_id"] and json.loads(value) == record.value


# -- 6: transactions -----------------------------------------------------------------------------------------

def broker_isolation_problem(bootstrap: str) -> str | None:
    """Why this broker cannot keep an aborted transaction from a ``read_committed`` consumer, or
    None when it can. Probed on a scratch topic: abort one record, commit a marker, read back."""
    topic = f"txn-probe-{uuid.uuid4().hex[:8]}"
    create_topics(bootstrap, [TopicSpec(topic, 1)])
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"probe-{uuid.uuid4().hex}"})
    try:
        producer.init_transactions(15)
        for payload, finish in ((b"aborted", producer.abort_transaction), (b"committed", producer.commit_transaction)):
            producer.begin_transaction()
            produce_all(producer, topic, [(None, payload, None)])  # in the log before the abort, not purged
            finish(15)
    except (KafkaException, AssertionError) as exc:  # AssertionError: produce_all's failed delivery
        return f"the broker refused a transactional producer: {exc.args[0]}"
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False,
                         "isolation.level": "read_committed"})
    consumer.assign([CkTopicPartition(topic, 0, 0)])
    seen: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + 10
    while b"committed" not in [v for _, v in seen] and time.monotonic() < deadline:
        message = consumer.poll(0.2)
        if message is not None and message.error() is None:
            seen.append((message.offset(), message.value()))
    consumer.close()
    if b"aborted" in [v for _, v in seen]:
        return (f"init_transactions/abort_transaction/commit_transaction succeed, but a read_committed consumer "
                f"still receives the aborted record (offset, value) = {seen}: the broker's Fetch responses list no "
                f"aborted transactions (as with Tansu 0.6.0, memory storage), so no client can filter them")
    return None


def test_an_aborted_transaction_is_never_learned(worker: Worker, lists: TopicTail) -> None:
    problem = broker_isolation_problem(worker.settings.kafka.bootstrap_servers)
    if problem:
        pytest.skip(problem)
    aborted_users, committed_users = new_users("txn-aborted", 6), new_users("txn-committed", 6)
    aborted_item = f"aborted-item-{uuid.uuid4().hex[:6]}"
    before = worker.counter("streamrec_events_processed_total")
    producer = Producer({"bootstrap.servers": worker.settings.kafka.bootstrap_servers, "partitioner": "murmur2_random",
                         "transactional.id": f"txn-{uuid.uuid4().hex}"})
    producer.init_transactions(15)
    for users, item, finish in ((aborted_users, aborted_item, producer.abort_transaction),
                                (committed_users, "item-committed", producer.commit_transaction)):
        producer.begin_transaction()
        # flushed and acknowledged first: librdkafka purges unsent messages on abort, and an aborted
        # transaction that never reached the broker would prove nothing
        produce_all(producer, worker.settings.topics.events,
                    [(user.encode(), dumps(event(user, item)), None) for user in users])
        finish(15)

    processed = wait_counter(worker, "streamrec_events_processed_total", before, len(committed_users))

    assert processed == len(committed_users), f"processed {processed}; the aborted events were learned?"
    assert lists.wait_for(lambda _: set(committed_users) <= lists.users())
    assert not set(aborted_users) & lists.users(), "an aborted event's user was served a list"
    served = {entry["item_id"] for r in lists.records for entry in r.value["items"]}
    assert aborted_item not in served, "an aborted event's item is recommended"
    worker.assert_alive()
