"""End to end on the embedded Tansu broker: outside kafka-python clients in, lists out, bad input in the DLQ."""
from __future__ import annotations

import json
import time

import pytest
from kafka import KafkaProducer

from stream.cli.datasets import generate
from stream.cli.scrape import scrape, total
from stream.kafka.clients import EventPublisher, RecommendationConsumer, RequestPublisher
from stream.kafka.librdkafka import LIBRARIES
from stream.wire.partitioner import partition_for
from tests.test_integration.conftest import read_topic

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

LIST_KEYS = {"rec_id", "request_id", "user_id", "items", "k", "strategy", "arm", "model_version", "event_ts", "ts"}


def read_all(bootstrap, topic, want, timeout=30.0, match=lambda value: True):
    """``want`` matching ``(key, value)`` pairs of ``topic`` read from the beginning (or fewer when time is up)."""
    found = read_topic(bootstrap, topic, lambda got: sum(1 for _, v in got if match(v)) >= want, timeout)
    return [(key, value) for key, value in found if match(value)]


def test_an_outside_kafka_python_producer_gets_valid_lists_back(running_worker):
    settings = running_worker
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    events = [{"user_id": f"ext{n % 5}", "item_id": f"i{n % 20}", "type": "click", "ts": 1_700_000_000 + n,
               "event_id": f"x{n}"} for n in range(40)]
    for event in events:  # one single-event message per event, keyed by user, as any producer would
        producer.send(settings.topics.events, key=event["user_id"].encode(), value=json.dumps(event).encode())
    producer.flush()
    producer.close()
    lists = read_all(settings.kafka.bootstrap_servers, settings.topics.recommendations, want=1, timeout=30,
                     match=lambda v: v["event_id"] == "x39")
    assert lists, "no list answered the last event"
    key, listing = lists[0]
    assert LIST_KEYS <= set(listing)
    assert key == b"ext4" and listing["user_id"] == "ext4" and listing["k"] == settings.serving.k
    touched = {e["item_id"] for e in events if e["user_id"] == "ext4"}
    items = [entry["item_id"] for entry in listing["items"]]
    assert items and not touched & set(items) and len(items) <= settings.serving.k
    scores = [entry["score"] for entry in listing["items"]]
    assert scores == sorted(scores, reverse=True)


def test_batched_publishing_is_processed_in_full(running_worker):
    settings = running_worker
    url = f"http://{settings.metrics.host}:{settings.metrics.port}/metrics"
    before = total(scrape(url), "streamrec_events_processed_total")
    events = [e._replace(user_id="b" + e.user_id) for e in generate(3_000, seed=11)]
    with EventPublisher(settings.kafka.bootstrap_servers, settings.topics.events, batch_events=100) as publisher:
        publisher.replay(events)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if total(scrape(url), "streamrec_events_processed_total") - before >= len(events):
            break
        time.sleep(0.2)
    assert total(scrape(url), "streamrec_events_processed_total") - before == len(events)


def test_malformed_input_lands_in_the_dlq_with_reasons_and_the_worker_keeps_serving(running_worker):
    settings = running_worker
    bad = {
        b"not json at all": "not_json",
        b'{"user_id": "u1", "item_id": "i1", "type": "teleport", "ts": 1}': "unknown_type",
        b'{"user_id": "u1", "item_id": "i1", "type": "click", "ts": NaN}': "invalid_ts",
        b'{"item_id": "i1", "type": "click", "ts": 1}': "missing_field",
        b'{"user_id": {"a": 1}, "item_id": "i1", "type": "click", "ts": 1}': "wrong_type",
        b"\xff\xfe\xfd": "not_utf8",
        b"x" * 1_500_000: "oversized_message",
    }
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, max_request_size=4_000_000)
    for raw in bad:
        producer.send(settings.topics.events, key=b"dlq-user", value=raw)
    producer.send(settings.topics.events, key=b"dlq-user", value=json.dumps(
        {"user_id": "dlq-user", "item_id": "i1", "type": "click", "ts": 5, "event_id": "after-bad"}).encode())
    producer.flush()
    producer.close()
    letters = read_all(settings.kafka.bootstrap_servers, settings.topics.dlq, want=len(bad), timeout=30)
    reasons = sorted(value["reason"] for _, value in letters)
    assert reasons == sorted(bad.values())
    for _, letter in letters:
        assert letter["topic"] == settings.topics.events and isinstance(letter["offset"], int) and letter["error"]
    served = read_all(settings.kafka.bootstrap_servers, settings.topics.recommendations, want=1, timeout=30,
                      match=lambda v: v["event_id"] == "after-bad")
    assert served, "the worker stopped serving after bad input"
    samples = scrape(f"http://{settings.metrics.host}:{settings.metrics.port}/metrics")
    for reason in set(bad.values()):
        assert total(samples, "streamrec_events_dlq_total", reason=reason) >= 1


@pytest.mark.parametrize("library", LIBRARIES)
def test_every_event_a_client_library_publishes_is_answered_and_read_back_by_it(running_worker, library):
    """The clients on either library: single-event messages paced (as the latency benchmarks send them)
    and arrays, a list for each user of each message, read by the consumer of the same library,
    positioned at the end when it connected."""
    settings = running_worker
    consumer = RecommendationConsumer(settings.kafka.bootstrap_servers, settings.topics.recommendations,
                                      library=library)
    consumer.connect()
    tag = f"{library[:2]}{time.monotonic_ns() % 10**6}"
    singles = [e._replace(user_id=f"{tag}s{e.user_id}", event_id=f"{tag}-s{n}")
               for n, e in enumerate(generate(60, n_users=60, seed=3))]
    arrays = [e._replace(user_id=f"{tag}a{e.user_id}", event_id=f"{tag}-a{n}")
              for n, e in enumerate(generate(300, n_users=300, seed=4))]
    with EventPublisher(settings.kafka.bootstrap_servers, settings.topics.events, batch_events=1,
                        library=library, extra_config={"linger_ms": 0}) as publisher:
        assert publisher.replay(singles, rate=300) == len(singles)
    with EventPublisher(settings.kafka.bootstrap_servers, settings.topics.events, batch_events=50,
                        library=library) as publisher:
        publisher.replay(arrays)
        assert publisher.events_sent == len(arrays) and publisher.messages_sent < len(arrays)
    answered: set[str] = set()
    deadline = time.monotonic() + 60
    while len(answered) < len(singles) + len(arrays) and time.monotonic() < deadline:
        answered |= {value["user_id"] for value, _ in consumer.poll(0.2) if value["user_id"].startswith(tag)}
    consumer.close()
    assert answered == {e.user_id for e in singles + arrays}


@pytest.mark.parametrize("library", LIBRARIES)
def test_a_request_lands_on_the_partition_of_its_users_events(running_worker, library):
    """A request carries no partition: the producer's partitioner picks it from the user key, and it must be
    the one every client family shares (murmur2; librdkafka's own default is CRC32), or in a group of workers
    it would reach one that holds none of the user's history."""
    from kafka import KafkaConsumer, TopicPartition

    settings = running_worker
    bootstrap, topic, partitions = settings.kafka.bootstrap_servers, settings.topics.requests, settings.kafka.partitions
    users = [f"route-{library}-{n}" for n in range(16)]
    requests = RequestPublisher(bootstrap, topic, library=library)
    user_of = {requests.request(user): user for user in users}
    requests.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)
    assigned = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(assigned)
    consumer.seek_to_beginning(*assigned)
    landed: dict[str, int] = {}
    deadline = time.monotonic() + 30
    while len(landed) < len(users) and time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=200).items():
            for record in records:
                user = user_of.get(json.loads(record.value).get("request_id"))
                if user is not None:
                    landed[user] = tp.partition
    consumer.close()
    assert landed == {user: partition_for(user.encode(), partitions) for user in users}
    assert len(set(landed.values())) > 1  # the users spread over the partitions: the check has teeth


@pytest.mark.parametrize("library", LIBRARIES)
def test_an_explicit_request_is_answered_with_its_request_id(running_worker, library):
    settings = running_worker
    consumer = RecommendationConsumer(settings.kafka.bootstrap_servers, settings.topics.recommendations,
                                      library=library)
    consumer.connect()
    requests = RequestPublisher(settings.kafka.bootstrap_servers, settings.topics.requests, library=library)
    request_id = requests.request("someone-new", k=3)
    requests.close()
    deadline = time.monotonic() + 30
    answer = None
    while answer is None and time.monotonic() < deadline:
        answer = next((v for v, _ in consumer.poll(0.2) if v.get("request_id") == request_id), None)
    consumer.close()
    assert answer is not None and answer["user_id"] == "someone-new" and answer["k"] == 3
    assert len(answer["items"]) == 3  # a new user gets the popular items


def test_metrics_and_health_endpoints(running_worker):
    settings = running_worker
    samples = scrape(f"http://{settings.metrics.host}:{settings.metrics.port}/metrics")
    for name in ("streamrec_events_processed_total", "streamrec_recommendations_published_total",
                 "streamrec_event_to_recommendation_seconds_count"):
        assert total(samples, name) > 0, name
    assert any(name.startswith("streamrec_faust_") for name, _ in samples)  # faust's own sensor
    import urllib.request

    with urllib.request.urlopen(f"http://{settings.metrics.host}:{settings.metrics.port}/health/live") as r:
        assert json.loads(r.read())["status"] == "live"


def test_a_worker_started_with_the_blend_serves_it(worker_settings, tmp_path):
    from stream.kafka.broker import free_port
    from tests.test_integration.conftest import worker_process

    settings = worker_settings.replace(
        blend="default", app_id=worker_settings.kafka.app_id + "-blend", metrics_port=free_port(),
        topic_events=worker_settings.topics.events + "-blend",
        topic_recommendations=worker_settings.topics.recommendations + "-blend",
        topic_requests=worker_settings.topics.requests + "-blend", topic_dlq=worker_settings.topics.dlq + "-blend")
    with worker_process(settings, tmp_path / "worker.log"):
        with EventPublisher(settings.kafka.bootstrap_servers, settings.topics.events) as publisher:
            publisher.replay([e._replace(event_id=f"bl{n}") for n, e in enumerate(generate(500, seed=4))])
        lists = read_all(settings.kafka.bootstrap_servers, settings.topics.recommendations, want=1, timeout=30,
                         match=lambda v: v["event_id"] == "bl499")
    assert lists and lists[0][1]["strategy"] == "blend" and lists[0][1]["items"]
