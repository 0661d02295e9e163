"""The clients run on kafka-python or on librdkafka: settings in kafka-python's names work on both, and
what librdkafka cannot do is said at once, never swallowed."""
from __future__ import annotations

import pytest

from stream.kafka import librdkafka
from stream.kafka.broker import free_port
from stream.kafka.clients import EventPublisher, RecommendationConsumer, RequestPublisher

needs_librdkafka = pytest.mark.skipif(not librdkafka.available(), reason="confluent-kafka is not installed")


def test_kafka_python_names_become_librdkafka_properties():
    config = librdkafka.librdkafka_config({
        "bootstrap_servers": ["h1:9092", "h2:9092"], "acks": 1, "linger_ms": 0, "client_id": "me",
        "max_request_size": 4_194_304, "fetch_max_wait_ms": 10, "security_protocol": "SASL_SSL",
        "sasl_mechanism": "PLAIN", "sasl_plain_username": "u", "sasl_plain_password": "p", "ssl_cafile": "/ca.pem",
        "group_id": None, "enable_auto_commit": False, "queue.buffering.max.messages": 1000})
    assert config == {"bootstrap.servers": "h1:9092,h2:9092", "acks": 1, "linger.ms": 0, "client.id": "me",
                      "message.max.bytes": 4_194_304, "fetch.wait.max.ms": 10, "security.protocol": "SASL_SSL",
                      "sasl.mechanism": "PLAIN", "sasl.username": "u", "sasl.password": "p",
                      "ssl.ca.location": "/ca.pem", "queue.buffering.max.messages": 1000}


def test_a_setting_without_a_librdkafka_name_is_refused_with_the_name_to_use():
    with pytest.raises(ValueError, match="'retry_backoff_ms'.*'retry.backoff.ms'"):
        librdkafka.librdkafka_config({"retry_backoff_ms": 100})


@pytest.mark.parametrize("client", [EventPublisher, RecommendationConsumer, RequestPublisher])
def test_an_unknown_library_is_refused_when_the_client_is_built(client):
    with pytest.raises(ValueError, match="unknown Kafka client library 'java'"):
        client("localhost:9092", library="java")


def test_the_demo_and_benchmarks_prefer_librdkafka_where_it_is_installed():
    assert librdkafka.preferred() == ("librdkafka" if librdkafka.available() else "kafka-python")


@needs_librdkafka
def test_a_message_the_broker_never_took_fails_the_flush_by_name():
    """Nothing listens on the port: librdkafka gives up after message.timeout.ms and the flush says so,
    where a silent flush would let a caller believe the events were published."""
    producer = librdkafka.Producer({"bootstrap_servers": f"127.0.0.1:{free_port()}", "message.timeout.ms": 500})
    producer.send("events", value=b"{}", key=b"u", partition=0)
    with pytest.raises(librdkafka.DeliveryFailed, match=r"1 message\(s\) not delivered; first: events\[0\]"):
        producer.flush(10)
