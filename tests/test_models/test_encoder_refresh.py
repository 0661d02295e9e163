"""A refresh on the stream: vocabulary growth, warm start, early stopping, and what is kept from serving."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import models.refresh as refresh_module
from models.config import EncoderConfig, TrainerConfig
from models.data import ItemVocab
from models.refresh import Holdout, RefreshConfig, StreamLog, grow_model, holdout_hr, new_item_rows, refresh_encoder
from models.replay import Cadence, ReplayedTrainer
from tests.test_models.conftest import make_interactions

CPU = TrainerConfig(device="cpu", batch_size=16, progress=False, seed=0)


def log_of(users: list[str], items: list[str], max_len: int = 200) -> StreamLog:
    log = StreamLog(max_len=max_len)
    log.extend(zip(users, items))
    return log


def first_version(log: StreamLog, **changes):
    config = RefreshConfig(max_epochs=3, holdout=0.1, holdout_min=50, **changes)
    return refresh_encoder(log, None, EncoderConfig.tiny(), CPU, config, version=1)


def test_the_first_version_trains_from_scratch_and_is_served() -> None:
    users, items = make_interactions(n_users=30, n_items=60, length=15)
    result = first_version(log_of(users, items))
    assert result.serve and result.previous_hr is None
    assert result.candidate.model.config.n_items == len(set(items))
    assert result.candidate.position == len(items) - 50  # the newest 50 events were held out
    assert result.holdout_hr is not None and result.holdout_hr > 0.2  # the walk k -> k+1 is learnable


def test_new_items_join_the_vocabulary_after_the_old_ones_with_the_old_ids() -> None:
    users, items = make_interactions(n_users=30, n_items=60, length=15)
    log = log_of(users, items)
    first = first_version(log).candidate
    for n in range(60):  # two items nobody has seen, each right after a known one
        log.add(f"u{n % 30}", "new-a" if n % 2 else "new-b")
    second = refresh_encoder(log, first, EncoderConfig.tiny(), CPU, RefreshConfig(max_epochs=0),
                             version=2).candidate
    assert second.items[: len(first.items)] == first.items
    assert sorted(second.items[len(first.items):]) == ["new-a", "new-b"]
    assert second.model.config.n_items == len(first.items) + 2
    # with no training, the known items keep their embeddings exactly
    old = first.model.item_emb.weight.detach()
    assert torch.equal(second.model.item_emb.weight.detach()[: len(old)], old)


def test_a_new_items_embedding_starts_from_the_items_that_preceded_it() -> None:
    table = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # padding + 3 known items
    seqs = [np.array([1, 4]), np.array([2, 4]), np.array([3, 5]), np.array([6])]
    rows = new_item_rows(table, seqs, old_n=3, n_items=6)
    assert torch.allclose(rows, torch.tensor([[0.5, 0.5], [1.0, 1.0], [2 / 3, 2 / 3]]))  # 6: none before: mean


def test_growing_never_shrinks_and_keeps_every_other_weight() -> None:
    torch.manual_seed(0)
    from models.encoder import SequenceEncoder

    old = SequenceEncoder(EncoderConfig.tiny(n_items=5))
    new = grow_model(old, 8)
    for name, tensor in old.state_dict().items():
        if name != "item_emb.weight":
            assert torch.equal(tensor, new.state_dict()[name])
    with pytest.raises(Exception, match="cannot shrink"):
        grow_model(new, 4)


def test_holdout_hr_excludes_the_history_as_the_blend_does(tiny_model) -> None:
    vocab = ItemVocab([f"i{j}" for j in range(30)])
    seen_target = Holdout([["i1", "i2"]], ["i2"])  # the blend never serves an item the user touched
    assert holdout_hr(tiny_model, vocab, seen_target, k=30) == 0.0
    unseen = Holdout([["i1", "i2"]], ["i3"])
    assert holdout_hr(tiny_model, vocab, unseen, k=28) == 1.0  # 28 items remain: any k >= 28 hits


def test_a_version_worse_than_the_served_one_on_the_newest_events_is_kept_from_serving(monkeypatch) -> None:
    users, items = make_interactions(n_users=30, n_items=60, length=15)
    log = log_of(users, items)
    served = first_version(log).candidate
    log.extend(zip(users[:300], items[:300]))
    real = refresh_module.holdout_hr
    # the served model scores 0.5 on the held-out events; anything trained from it scores less
    monkeypatch.setattr(refresh_module, "holdout_hr",
                        lambda model, *a, **kw: 0.5 if model is served.model else min(real(model, *a, **kw), 0.2))
    result = refresh_encoder(log, served, EncoderConfig.tiny(), CPU, RefreshConfig(max_epochs=2), version=2)
    assert not result.serve and "kept from serving" in result.reason
    assert result.previous_hr == 0.5 and result.holdout_hr <= 0.2


def test_a_warm_started_version_at_least_as_good_is_served() -> None:
    users, items = make_interactions(n_users=30, n_items=60, length=30)
    half = len(users) // 2
    log = log_of(users[:half], items[:half])
    served = first_version(log).candidate
    log.extend(zip(users[half:], items[half:]))
    result = refresh_encoder(log, served, EncoderConfig.tiny(), CPU, RefreshConfig(max_epochs=3, holdout_min=50),
                             version=2)
    assert result.previous_hr is not None and result.holdout_hr >= result.previous_hr
    assert result.serve
    assert result.windows > 0


def test_the_replayed_trainer_serves_versions_from_the_event_they_would_reach_a_worker() -> None:
    users, items = make_interactions(n_users=20, n_items=15, length=30)  # 600 events
    trainer = ReplayedTrainer(EncoderConfig.tiny(), CPU, RefreshConfig(max_epochs=1, holdout_min=20),
                              Cadence(min_new_events=200, refresh_s=1.0, rate=100, train_seconds=0.5))
    delivered: list[tuple[int, int]] = []
    for start in range(0, len(users), 10):
        for version in trainer.observe(zip(users[start:start + 10], items[start:start + 10])):
            delivered.append((trainer.log.position, version.version))
    starts = [(r.started_at, r.ready_at) for r in trainer.records]
    # the first refresh at 200 new events; 0.5 s at 100 events/s = 50 events of training; the next one
    # at max(200 + 200 new events, 250 + 100 events of refresh_s)
    assert starts[:2] == [(200, 250), (400, 450)]
    served = [r for r in trainer.records if r.result.serve]
    assert [v for _, v in delivered] == [r.result.candidate.version for r in served if r.ready_at <= 600]
    assert all(at >= r.ready_at for (at, _), r in zip(delivered, served))


@pytest.mark.parametrize("device, train_seconds", [("cpu", 2.0), ("cuda", 5.0)])
def test_a_refresh_is_timed_by_cpu_seconds_on_a_cpu_and_by_wall_seconds_on_a_gpu(monkeypatch, device,
                                                                                train_seconds) -> None:
    """On a GPU the host's CPU time counts neither the kernels nor the waits for them."""
    import dataclasses

    import models.replay as replay_module

    refresh = replay_module.refresh_encoder
    monkeypatch.setattr(replay_module, "refresh_encoder",  # 2 CPU seconds in 5 wall seconds
                        lambda *args, **kwargs: dataclasses.replace(refresh(*args, **kwargs), cpu_s=2.0, seconds=5.0))
    monkeypatch.setattr(replay_module, "pick_device", lambda name: torch.device(device))  # training stays on CPU
    users, items = make_interactions(n_users=20, n_items=15, length=15)  # 300 events
    trainer = ReplayedTrainer(EncoderConfig.tiny(), CPU, RefreshConfig(max_epochs=1, holdout_min=20),
                              Cadence(min_new_events=200, refresh_s=0.0, rate=10))
    trainer.observe(zip(users, items))
    (record, *_) = trainer.records
    assert record.extra["train_seconds"] == train_seconds
    assert record.ready_at == record.started_at + train_seconds * 10


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_same_refresh_trains_the_large_config_on_a_gpu() -> None:
    users, items = make_interactions(n_users=60, n_items=40, length=30)
    half = len(users) // 2
    log = log_of(users[:half], items[:half])
    gpu = TrainerConfig(device="cuda", batch_size=32, progress=False)
    first = refresh_encoder(log, None, EncoderConfig.large(), gpu, RefreshConfig(max_epochs=2, holdout_min=50))
    log.extend(zip(users[half:], items[half:]))
    second = refresh_encoder(log, first.candidate, EncoderConfig.large(), gpu, RefreshConfig(max_epochs=2), version=2)
    assert second.candidate.model.config.hidden == 256 and second.holdout_hr is not None
    assert next(second.candidate.model.parameters()).device.type == "cpu"  # handed over ready to serve on CPU
