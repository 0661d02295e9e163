"""Every worker finds a newer encoder in the shared checkpoint directory, announced to it or not."""
from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from stream.app import EncoderHandover
from stream.datasets import generate
from stream.metrics import WorkerMetrics
from stream.processor import EventProcessor
from stream.settings import Settings


def test_a_worker_picks_up_the_newest_checkpoint_from_the_directory_and_serves_it(tmp_path):
    from models import EncoderConfig, TrainerConfig, train_offline

    registry = CollectorRegistry()
    metrics = WorkerMetrics.create(registry)
    processor = EventProcessor(Settings(blend="default"), metrics=metrics)
    handover = EncoderHandover(processor, metrics, weight=0.3)
    asyncio.run(handover.poll_directory(str(tmp_path)))  # empty directory: nothing happens, no torch needed
    assert handover.slot is None

    events = generate(600, n_users=30, n_items=60, seed=2)
    config = TrainerConfig(device="cpu", epochs=1, progress=False)
    for version in (1, 2):
        train_offline([e.user_id for e in events], [e.item_id for e in events], EncoderConfig.tiny(), config,
                      tmp_path, holdout=0, version=version)
    asyncio.run(handover.poll_directory(str(tmp_path)))
    assert registry.get_sample_value("streamrec_encoder_version") == 2
    assert "encoder" in processor.engine.blend.strategies
    asyncio.run(handover.poll_directory(str(tmp_path)))  # nothing newer: no second load
    assert registry.get_sample_value("streamrec_encoder_swaps_total", {"result": "swapped"}) == 1
