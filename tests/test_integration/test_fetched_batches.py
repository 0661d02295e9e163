"""The worker takes whole fetched batches (``stream.kafka.transport.FetchedBatch``) and still commits
exactly what it processed: every offset a batch covers, and the offsets the fetch skipped between
batches (a transaction's commit markers), so the group's committed position reaches the end of what
was published. Each list carries when its event was received (``received_ts``), for the worker's share
of the latency."""
from __future__ import annotations

import json
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as CkTopicPartition

from stream.kafka.broker import free_port
from tests.test_integration.conftest import isolated_settings, read_topic, worker_process

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TRANSACTIONS = 4
EVENTS_PER_TRANSACTION = 25


def _committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        [position] = consumer.committed([CkTopicPartition(topic, 0)], timeout=10)
        return position.offset
    finally:
        consumer.close()


def test_a_worker_commits_past_every_offset_of_its_fetched_batches_transaction_markers_included(
        kafka_bootstrap, tmp_path):
    tag = uuid.uuid4().hex[:8]
    settings = isolated_settings(kafka_bootstrap, "fetched", partitions=1, metrics_port=free_port(),
        data_dir=str(tmp_path / "worker"), snapshot_interval_s=0.5, encoder_poll_s=3600.0)
    users = [f"fb-{tag}-{n}" for n in range(TRANSACTIONS * EVENTS_PER_TRANSACTION)]
    with worker_process(settings, tmp_path / "worker.log"):
        producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": f"fb-{tag}"})
        producer.init_transactions(15)
        offsets: list[int] = []
        for t in range(TRANSACTIONS):  # each transaction ends in a commit marker that takes an offset
            producer.begin_transaction()
            for user in users[t * EVENTS_PER_TRANSACTION:(t + 1) * EVENTS_PER_TRANSACTION]:
                value = json.dumps({"user_id": user, "item_id": f"i{t}", "type": "click", "ts": 1.0})
                producer.produce(settings.topics.events, key=user.encode(), value=value.encode(), partition=0,
                                 on_delivery=lambda err, msg: offsets.append(msg.offset()) if err is None else None)
            producer.flush(15)
            producer.commit_transaction(15)
        assert len(offsets) == len(users)

        lists = read_topic(kafka_bootstrap, settings.topics.recommendations,
                           lambda got: set(users) <= {value["user_id"] for _, value in got}, timeout=60)
        assert set(users) <= {value["user_id"] for _, value in lists}, "not every event got its list"
        for _, value in lists:
            assert value["source_ts"] <= value["received_ts"] + 1.0 and value["received_ts"] <= value["ts"], value

        deadline = time.monotonic() + 30
        committed = -1
        while committed < max(offsets) + 1 and time.monotonic() < deadline:
            time.sleep(0.5)
            committed = _committed(kafka_bootstrap, settings.kafka.app_id, settings.topics.events)
        assert committed >= max(offsets) + 1, (
            f"committed {committed}, last event at {max(offsets)}: acking whole batches left offsets behind "
            f"(event offsets {sorted(offsets)[:5]}...{sorted(offsets)[-5:]})")
