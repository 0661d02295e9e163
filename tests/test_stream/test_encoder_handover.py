"""Every worker finds a newer encoder in the shared checkpoint directory, announced to it or not."""
from __future__ import annotations

import asyncio
import json
import time

import pytest
from prometheus_client import CollectorRegistry

from stream.cli.datasets import generate
from stream.settings import Settings
from stream.worker.encoder_handover import EncoderHandover
from stream.worker.metrics import WorkerMetrics
from stream.worker.processor import EventProcessor


def test_a_worker_picks_up_the_newest_checkpoint_from_the_directory_and_serves_it(tmp_path):
    from models import EncoderConfig, TrainerConfig, train_offline

    registry = CollectorRegistry()
    metrics = WorkerMetrics.create(registry)
    processor = EventProcessor(Settings.of(blend="default"), metrics=metrics)
    handover = EncoderHandover(processor, metrics, weight=0.3)
    asyncio.run(handover.poll_directory(str(tmp_path)))  # empty directory: nothing happens, no torch needed
    assert handover.loader is None

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


def test_the_served_version_keeps_users_states_within_the_configured_memory(tmp_path):
    settings = Settings.of(blend="default", encoder_cache_mb=0.2)
    metrics = WorkerMetrics.create(CollectorRegistry())
    processor = EventProcessor(settings, metrics=metrics)
    handover = EncoderHandover(processor, metrics, settings.encoder.weight, settings.encoder.cache_mb)
    _train(tmp_path, 1, generate(600, n_users=30, n_items=60, seed=2))
    asyncio.run(handover.poll_directory(str(tmp_path)))
    scorer = processor.engine.blend.strategies["encoder"].strategy
    config = scorer.model.config  # tiny: 2 x blocks x L x hidden float32 keys and values per user
    assert scorer.states.capacity == int(0.2 * 2**20 // (2 * config.n_blocks * config.max_len * config.hidden * 4))


def _train(folder, version, events):
    from models import EncoderConfig, TrainerConfig, train_offline

    train_offline([e.user_id for e in events], [e.item_id for e in events], EncoderConfig.tiny(),
                  TrainerConfig(device="cpu", epochs=1, progress=False), folder, holdout=0, version=version)


def _served_to(processor, user_id):
    from stream.wire.messages import RawMessage

    raw = json.dumps({"user_id": user_id, "request_id": "r", "k": 10}).encode()
    (listing,) = [json.loads(o.value) for o in processor.process_requests([RawMessage(raw, user_id.encode())]).recommendations]
    return listing


@pytest.mark.parametrize("blend", ["popularity=0.2,cooccurrence=1,next_item=0.3,encoder=1", "default"],
                         ids=["declared", "not-declared"])
def test_the_trainers_versions_fill_the_one_encoder_slot_and_each_list_names_the_version_it_served(tmp_path, blend):
    registry = CollectorRegistry()
    metrics = WorkerMetrics.create(registry)
    processor = EventProcessor(Settings.of(blend=blend, encoder_weight=0.3), metrics=metrics)
    declared = processor.engine.blend.strategies.get("encoder")
    events = generate(600, n_users=30, n_items=60, seed=2)
    processor.engine.learn_many(events)
    user = events[-1].user_id
    assert _served_to(processor, user)["model_version"] == "online"  # nothing trained yet
    weights = processor.engine.blend.weights

    started = time.time()
    _train(tmp_path, 1, events)
    handover = EncoderHandover(processor, metrics, weight=0.3)
    asyncio.run(handover.poll_directory(str(tmp_path)))
    slot = processor.engine.blend.strategies["encoder"]
    assert declared is None or slot is declared  # the declared slot is the one filled: no second slot
    assert slot.strategy is not None
    if declared is not None:
        assert processor.engine.blend.weights == pytest.approx(weights)  # served with the weight it was declared with
    else:
        assert processor.engine.blend.weights["encoder"] > 0  # added with STREAMREC_ENCODER_WEIGHT, as before
    assert _served_to(processor, user)["model_version"] == "encoder-v1"
    assert 0 <= registry.get_sample_value("streamrec_encoder_age_seconds") <= time.time() - started

    _train(tmp_path, 2, events)
    asyncio.run(handover.poll_directory(str(tmp_path)))
    assert processor.engine.blend.strategies["encoder"] is slot
    assert _served_to(processor, user)["model_version"] == "encoder-v2"


def test_a_worker_on_the_fixed_mix_loads_a_version_but_does_not_serve_it(tmp_path, caplog):
    registry = CollectorRegistry()
    metrics = WorkerMetrics.create(registry)
    processor = EventProcessor(Settings(), metrics=metrics)  # no STREAMREC_BLEND: popularity + next-item
    events = generate(600, n_users=30, n_items=60, seed=2)
    processor.engine.learn_many(events)
    _train(tmp_path, 1, events)
    asyncio.run(EncoderHandover(processor, metrics, weight=0.3).poll_directory(str(tmp_path)))
    assert list(processor.engine.blend.strategies) == ["next_item", "popularity"]  # its mix is unchanged
    assert _served_to(processor, events[-1].user_id)["model_version"] == "online"
    assert "not served" in caplog.text and "STREAMREC_BLEND" in caplog.text


def test_a_prepared_handover_serves_its_first_version_with_the_loader_it_prepared(tmp_path, caplog):
    """A worker serving a learned blend prepares the encoder's path in a thread while it starts; the first
    version is then loaded by that loader (not a second one made on the event loop's time)."""
    metrics = WorkerMetrics.create(CollectorRegistry())
    processor = EventProcessor(Settings.of(blend="default"), metrics=metrics)
    handover = EncoderHandover(processor, metrics, weight=0.3)
    handover.start_preparing()
    with caplog.at_level("INFO", logger="stream.worker.encoder_handover"):
        asyncio.run(handover.prepared())
    prepared = handover.loader
    assert prepared is not None and prepared.version is None  # ready, and nothing loaded or served yet
    assert "encoder" not in processor.engine.blend.strategies or \
        processor.engine.blend.strategies["encoder"].strategy is None
    assert any("prepared in" in record.getMessage() for record in caplog.records)
    _train(tmp_path, 1, generate(600, n_users=30, n_items=60, seed=2))
    asyncio.run(handover.poll_directory(str(tmp_path)))
    assert handover.loader is prepared and prepared.version == 1
    assert processor.engine.blend.strategies["encoder"].strategy is not None


def test_a_preparation_that_fails_is_said_and_the_first_version_still_loads(tmp_path, caplog, monkeypatch):
    metrics = WorkerMetrics.create(CollectorRegistry())
    processor = EventProcessor(Settings.of(blend="default"), metrics=metrics)
    handover = EncoderHandover(processor, metrics, weight=0.3)
    make = handover._new_loader

    def broken(prepare: bool):
        if prepare:
            raise OSError("no room for a temporary checkpoint")
        return make(prepare)

    monkeypatch.setattr(handover, "_new_loader", broken)
    handover.start_preparing()
    with caplog.at_level("WARNING", logger="stream.worker.encoder_handover"):
        asyncio.run(handover.prepared())
    assert handover.loader is None
    assert any("no room for a temporary checkpoint" in record.getMessage() for record in caplog.records)
    _train(tmp_path, 1, generate(600, n_users=30, n_items=60, seed=2))
    asyncio.run(handover.poll_directory(str(tmp_path)))
    assert handover.loader is not None and handover.loader.version == 1
