"""No record batch is a poison pill: a worker that cannot decode a batch dead-letters it and moves on.

The field report: a confluent-kafka producer with ``compression.type=lz4`` killed a worker
that lacked the lz4 library, and the restarted worker died on the same committed offset,
for good. Here the worker runs where *no* snappy/lz4/zstd library can be imported (a
``cramjam`` that fails to import shadows the real one), the worst case of a codec the
process cannot decode, and the topic also holds batches no machine can decode (a corrupt
zstd or snappy payload under a valid CRC, a CRC mismatch; Tansu stores these as sent, while it
rejects a codec id Kafka does not define, so that case is covered in the unit tests only). The
worker must serve the gzip users, dead-letter each bad batch once with its offset range
and raw bytes, count them, and survive ``kill -9`` and a restart on the same offsets,
while a ``streamrec trainer`` process beside it reads the same log (kafka-python: it has its
own lz4 library, but its snappy needs cramjam too), skips and counts the bad batches and
keeps running. Hostile payloads
ride in the readable batches.
"""
from __future__ import annotations

import asyncio
import base64
import json
import signal
import time
import uuid

import pytest

from stream.cli.processes import spawn_process, spawn_worker, stop_process, wait_until_ready
from stream.cli.scrape import scrape, total
from stream.kafka.broker import create_topics, free_port
from stream.settings import Settings
from tests.forged_batches import (
    SNAPPY,
    ZSTD,
    corrupt_payload,
    flip_last_byte,
    produce_raw_batch,
    record_batch,
)
from tests.test_integration.conftest import isolated_settings, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def _events(prefix: str, users: int, per_user: int = 3) -> list[dict]:
    return [{"user_id": f"{prefix}{u}", "item_id": f"i{(u * 5 + n) % 40}", "type": "click",
             "ts": 1_700_000_000 + u * 10 + n} for u in range(users) for n in range(per_user)]


def _confluent_send(bootstrap: str, topic: str, events: list[dict], codec: str, partition: int) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 50,
                         "enable.idempotence": False})
    for event in events:  # one partition, so the lot goes out as a batch or a few
        producer.produce(topic, json.dumps(event).encode(), key=event["user_id"].encode(), partition=partition)
    assert producer.flush(30) == 0


def _confluent_send_raw(bootstrap: str, topic: str, values: list[bytes | None], codec: str, partition: int) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 50})
    for value in values:
        producer.produce(topic, value, partition=partition)
    assert producer.flush(30) == 0


HOSTILE = [b'{"user_id": {"$gt": ""}, "item_id": "i1", "type": "click", "ts": 1}', None, b'"just a string"',
           b'{"user_id": "h", "item_id": "i1", "type": "click", "ts": 1e400}', b"[" * 5000 + b"]" * 5000]


def _forged_batches() -> list[tuple[str, bytes]]:
    good = [json.dumps(e).encode() for e in _events("never", 2)]
    return [("zstd", bytes(corrupt_payload(record_batch(0, good, ZSTD)))),
            ("snappy", bytes(corrupt_payload(record_batch(0, good, SNAPPY)))),
            ("none", bytes(flip_last_byte(record_batch(0, good))))]


def _undecodable_letters(settings: Settings, expected: int, timeout: float = 40.0) -> list[dict]:
    found = read_topic(settings.kafka.bootstrap_servers, settings.topics.dlq,
                       lambda got: sum(v["reason"] == "undecodable_batch" for _, v in got) >= expected, timeout)
    return [value for _, value in found if value["reason"] == "undecodable_batch"]


def _served(settings: Settings, users: set[str], timeout: float = 40.0) -> set[str]:
    found = read_topic(settings.kafka.bootstrap_servers, settings.topics.recommendations,
                       lambda got: users <= {v["user_id"] for _, v in got}, timeout)
    return {value["user_id"] for _, value in found} & users


@pytest.fixture
def codec_less_environment(tmp_path, monkeypatch):
    """A worker environment where aiokafka finds no snappy/lz4/zstd library."""
    shadow = tmp_path / "no-codecs"
    shadow.mkdir()
    (shadow / "cramjam.py").write_text("raise ImportError('streamrec test: no codec library here')\n")
    monkeypatch.setenv("PYTHONPATH", str(shadow))


def test_undecodable_batches_go_to_the_dlq_once_each_and_the_worker_survives_a_restart_on_them(
        kafka_bootstrap, tmp_path, codec_less_environment):
    # snapshot_interval_s=3600: no snapshot, so no commit, before the kill: the restart re-reads it all
    settings = isolated_settings(kafka_bootstrap, "poison", partitions=2, metrics_port=free_port(),
        data_dir=str(tmp_path / "worker"), snapshot_interval_s=3600.0, encoder_poll_s=3600.0,
        trainer_metrics_port=free_port(), trainer_refresh_s=3600.0, trainer_min_new_events=1_000_000,
        trainer_dir=str(tmp_path / "ckpt"))
    create_topics(settings.kafka.bootstrap_servers, settings.topic_specs())
    log_path = tmp_path / "worker.log"

    # the log: gzip users, an lz4 batch this worker cannot decode, three batches nobody can, gzip users
    _confluent_send(kafka_bootstrap, settings.topics.events, _events("before", 10), "gzip", partition=0)
    _confluent_send(kafka_bootstrap, settings.topics.events, _events("lz4-", 10), "lz4", partition=0)
    forged = _forged_batches()
    offsets = [asyncio.run(produce_raw_batch(kafka_bootstrap, settings.topics.events, 1, raw)) for _, raw in forged]
    _confluent_send(kafka_bootstrap, settings.topics.events, _events("after", 10), "gzip", partition=1)
    _confluent_send_raw(kafka_bootstrap, settings.topics.events, HOSTILE, "gzip", partition=1)

    with open(log_path, "ab") as log, open(tmp_path / "trainer.log", "ab") as trainer_log:
        trainer = spawn_process(["trainer"], settings, trainer_log)
        worker = spawn_worker(settings, log)
        try:
            wait_until_ready(settings, worker, log_path)
            served = {f"before{u}" for u in range(10)} | {f"after{u}" for u in range(10)}
            assert _served(settings, served) == served, "the gzip users around the bad batches are served"
            letters = _undecodable_letters(settings, expected=1 + len(forged))
            assert worker.poll() is None, log_path.read_text()[-2000:]

            by_partition = sorted((letter["partition"], letter["offset"]) for letter in letters)
            assert len(letters) == 1 + len(forged), letters  # once each
            lz4 = next(letter for letter in letters if letter["partition"] == 0)
            assert "lz4" in lz4["error"] and lz4["last_offset"] >= lz4["offset"]
            assert [offset for partition, offset in by_partition if partition == 1] == offsets
            for letter, (codec, raw) in zip(sorted((dl for dl in letters if dl["partition"] == 1),
                                                   key=lambda dl: dl["offset"]), forged):
                assert letter["topic"] == settings.topics.events and f"codec {codec}" in letter["error"]
                assert letter["last_offset"] == letter["offset"] + 5  # the batch's six records
                # the raw batch as the broker stored it (it sets the base offset, the rest is the producer's)
                assert base64.b64decode(letter["original"])[12:] == raw[12:]
            metrics = scrape(f"http://{settings.metrics.host}:{settings.metrics.port}/metrics")
            assert total(metrics, "streamrec_events_dlq_total", reason="undecodable_batch") == len(letters)

            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
            worker = spawn_worker(settings, log)  # same group, same offsets, same data dir
            wait_until_ready(settings, worker, log_path)
            _confluent_send(kafka_bootstrap, settings.topics.events, _events("restarted", 5), "gzip", partition=0)
            restarted = {f"restarted{u}" for u in range(5)}
            assert _served(settings, restarted) == restarted, log_path.read_text()[-3000:]
            assert worker.poll() is None, "the restarted worker did not crash on the same offsets"
            # at-least-once: nothing was committed, so each bad batch is dead-lettered again, identically
            again = _undecodable_letters(settings, expected=2 * len(letters))
            assert sorted((dl["partition"], dl["offset"], dl["last_offset"]) for dl in again) == \
                sorted(2 * [(dl["partition"], dl["offset"], dl["last_offset"]) for dl in letters])
            assert "We experienced a crash" not in log_path.read_text()
            hostile = read_topic(settings.kafka.bootstrap_servers, settings.topics.dlq,
                                 lambda got: sum(v["reason"] != "undecodable_batch" for _, v in got) >= len(HOSTILE))
            assert sum(v["reason"] != "undecodable_batch" for _, v in hostile) >= len(HOSTILE)

            trainer_url = f"http://{settings.metrics.host}:{settings.metrics.trainer_port}/metrics"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    trained = scrape(trainer_url)
                except OSError:
                    trained = {}
                if total(trained, "streamrec_trainer_events_consumed_total") >= 105:
                    break
                time.sleep(0.5)
            assert trainer.poll() is None, (tmp_path / "trainer.log").read_text()[-2000:]
            # before/lz4/after (90) and restarted (15): the trainer decodes lz4; the forged are skipped
            assert total(trained, "streamrec_trainer_events_consumed_total") == 105
            assert total(trained, "streamrec_trainer_undecodable_batches_total") == len(forged)
        finally:
            stop_process(worker)
            stop_process(trainer)


def test_the_trainer_decodes_every_codec_and_skips_and_counts_undecodable_batches(kafka_bootstrap, tmp_path):
    from stream.trainer.trainer import StreamTrainer

    tag = uuid.uuid4().hex[:8]
    settings = Settings.of(bootstrap_servers=kafka_bootstrap, app_id=f"poison-trainer-{tag}",
                        topic_events=f"events-{tag}", partitions=1, trainer_dir=str(tmp_path / "ckpt"))
    create_topics(settings.kafka.bootstrap_servers, settings.topic_specs())
    _confluent_send(kafka_bootstrap, settings.topics.events, _events("a", 4), "lz4", partition=0)
    # snappy's raw blocks carry no checksum: a corrupted one can decode into garbage records, which
    # the trainer then drops as invalid events; only the detectable faults are counted here
    forged = [(codec, raw) for codec, raw in _forged_batches() if codec != "snappy"]
    for _, raw in forged:
        asyncio.run(produce_raw_batch(kafka_bootstrap, settings.topics.events, 0, raw))
    for prefix, codec in (("b", "zstd"), ("c", "snappy"), ("d", "gzip")):
        _confluent_send(kafka_bootstrap, settings.topics.events, _events(prefix, 4), codec, partition=0)

    trainer = StreamTrainer(settings)
    try:
        deadline, added = time.monotonic() + 30, 0
        while added < 48 and time.monotonic() < deadline:
            added += trainer.poll(0.5)
        assert added == 48  # every event of the lz4, zstd, snappy and gzip batches around the bad ones
        assert trainer.registry.get_sample_value("streamrec_trainer_undecodable_batches_total") == len(forged)
    finally:
        trainer.close()
