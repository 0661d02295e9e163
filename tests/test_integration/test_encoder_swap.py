"""The encoder path end to end: `streamrec trainer` learns from `events`, announces a version on
`model-updates`, and a running worker (with the blend) loads and serves it without a restart;
a broken announcement, a truncated, corrupted, incompatible or booby-trapped checkpoint (each
with a matching sha256 sidecar where that makes it harder) is rejected with a metric, and the
served version stays."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka import KafkaProducer

from stream.cli.datasets import generate
from stream.cli.scrape import scrape, total
from stream.kafka.clients import EventPublisher
from tests.test_integration.conftest import worker_process

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _wait_for(url, name, value, timeout=60.0, **labels):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if total(scrape(url), name, **labels) >= value:
            return True
        time.sleep(0.2)
    return False


class _Booby:
    """Unpickling this would create a folder: a checkpoint must never be unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def _with_checksum(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.with_name(path.name + ".sha256").write_text(f"{hashlib.sha256(data).hexdigest()}  {path.name}\n")
    return path


def _bad_checkpoints(good: Path, folder: Path, marker: Path) -> dict[str, Path]:
    """Version 2..6 of the encoder, each broken in its own way."""
    import torch

    data = good.read_bytes()
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0xFF
    copy_flipped = folder / "encoder-v00000003.pt"
    copy_flipped.write_bytes(bytes(flipped))
    shutil.copy(good.with_name(good.name + ".sha256"), copy_flipped.with_name(copy_flipped.name + ".sha256"))
    incompatible = torch.load(good, weights_only=True)
    incompatible["format_version"] = 99
    buffer, evil = io.BytesIO(), io.BytesIO()
    torch.save(incompatible, buffer)
    torch.save({"format_version": 1, "evil": _Booby(marker)}, evil)
    return {
        "truncated": _with_checksum(folder / "encoder-v00000002.pt", data[: len(data) // 2]),
        "corrupted": copy_flipped,
        "incompatible": _with_checksum(folder / "encoder-v00000004.pt", buffer.getvalue()),
        "pickle": _with_checksum(folder / "encoder-v00000005.pt", evil.getvalue()),
    }


def test_trainer_refreshes_the_encoder_and_the_worker_swaps_it_in(worker_settings, tmp_path):
    from stream.cli.processes import worker_environment
    from stream.kafka.broker import free_port

    tag = "-enc"
    settings = worker_settings.replace(
        blend="default", app_id=worker_settings.kafka.app_id + tag, metrics_port=free_port(), trainer_metrics_port=free_port(),
        topic_events=worker_settings.topics.events + tag, topic_model_updates=worker_settings.topics.model_updates + tag,
        topic_recommendations=worker_settings.topics.recommendations + tag,
        topic_requests=worker_settings.topics.requests + tag, topic_dlq=worker_settings.topics.dlq + tag,
        trainer_dir=str(tmp_path / "ckpt"), trainer_min_new_events=500, trainer_epochs=1, trainer_device="cpu")
    url = f"http://{settings.metrics.host}:{settings.metrics.port}/metrics"
    with worker_process(settings, tmp_path / "worker.log"):
        with EventPublisher(settings.kafka.bootstrap_servers, settings.topics.events) as publisher:
            publisher.replay(generate(1_500, n_users=100, n_items=200, seed=9))
        env = {**worker_environment(settings), "PATH": "/usr/bin:/bin"}
        trained = subprocess.run([sys.executable, "-m", "stream", "trainer", "--once"], env=env,
                                 capture_output=True, text=True, timeout=200)
        assert trained.returncode == 0, trained.stderr[-2000:]
        announcement = json.loads(trained.stdout.strip().splitlines()[-1])
        assert announcement["version"] == 1
        assert _wait_for(url, "streamrec_encoder_version", 1), "the worker did not load version 1"
        assert total(scrape(url), "streamrec_encoder_swaps_total", result="swapped") == 1

        producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
        broken = tmp_path / "broken.pt"
        broken.write_bytes(b"not a checkpoint")
        producer.send(settings.topics.model_updates, value=json.dumps({"version": 2, "path": str(broken)}).encode())
        producer.flush()
        producer.close()
        assert _wait_for(url, "streamrec_encoder_swaps_total", 1, result="rejected")
        assert total(scrape(url), "streamrec_encoder_version") == 1  # the old version keeps serving

        marker = tmp_path / "pwned"
        (tmp_path / "bad").mkdir()
        bad = _bad_checkpoints(Path(announcement["path"]), tmp_path / "bad", marker)
        producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
        for n, (why, path) in enumerate(bad.items(), start=2):
            rejected = total(scrape(url), "streamrec_encoder_swaps_total", result="rejected")
            producer.send(settings.topics.model_updates, value=json.dumps({"version": n, "path": str(path)}).encode())
            producer.flush()
            assert _wait_for(url, "streamrec_encoder_swaps_total", rejected + 1, result="rejected"), why
            assert total(scrape(url), "streamrec_encoder_version") == 1, why
        producer.close()
        assert not marker.exists(), "a checkpoint was unpickled"

        before = total(scrape(url), "streamrec_recommendations_published_total")
        with EventPublisher(settings.kafka.bootstrap_servers, settings.topics.events) as publisher:  # still serving
            publisher.publish({"user_id": "u1", "item_id": "i3", "type": "click", "ts": 5.0, "event_id": "after"})
        assert _wait_for(url, "streamrec_recommendations_published_total", before + 1, timeout=30)
