"""A real worker process (``python -m stream worker``) on fresh topics of the test broker."""
from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from stream.cli.processes import spawn_worker, stop_process, wait_until_ready
from stream.kafka.broker import create_topics, free_port
from stream.settings import Settings


def read_topic(bootstrap: str, topic: str, until: Callable[[list], bool], timeout: float = 30.0) -> list:
    """``(key, JSON value)`` of every message of ``topic`` from the beginning, until ``until(found)``
    holds or ``timeout`` seconds pass (Tansu's end offsets undercount, so we cannot read "to the end")."""
    import json

    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [0])]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    found: list = []
    deadline = time.monotonic() + timeout
    try:
        while not until(found) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                found.extend((record.key, json.loads(record.value)) for record in records)
    finally:
        consumer.close()
    return found


@contextmanager
def worker_process(settings: Settings, log_path: Path, ready_timeout: float = 60.0) -> Iterator[subprocess.Popen]:
    """Start a worker and wait until /health/ready says its partitions are assigned."""
    create_topics(settings.kafka.bootstrap_servers, settings.topic_specs())
    log = open(log_path, "ab")
    process = spawn_worker(settings, log)
    try:
        wait_until_ready(settings, process, log_path, ready_timeout)
        yield process
    finally:
        stop_process(process)
        log.close()


def isolated_settings(kafka_bootstrap: str, name: str, **changes: Any) -> Settings:
    """Settings whose consumer group (``name-<tag>``) and every topic (``<default name>-<tag>``) belong to
    the caller alone, a fresh tag per call; ``changes`` as in :meth:`Settings.of`."""
    import uuid

    tag = uuid.uuid4().hex[:8]
    defaults = Settings().topics
    topics = {f"topic_{f.name}": f"{getattr(defaults, f.name)}-{tag}" for f in fields(defaults)}
    return Settings.of(bootstrap_servers=kafka_bootstrap, app_id=f"{name}-{tag}", **topics, **changes)


@pytest.fixture(scope="module")
def worker_settings(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings with topics and group unique to the test module."""
    return isolated_settings(kafka_bootstrap, "streamrec", partitions=4, metrics_port=free_port(),
                             data_dir=str(tmp_path_factory.mktemp("worker")))


@pytest.fixture(scope="module")
def running_worker(worker_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with worker_process(worker_settings, tmp_path_factory.mktemp("logs") / "worker.log"):
        yield worker_settings
