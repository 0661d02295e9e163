"""The trainer: one tiny CPU epoch learns, NaN stops the run, train_offline writes a checkpoint."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint
from models.config import EncoderConfig, TrainerConfig
from models.data import build_sequences, training_windows
from models.encoder import SequenceEncoder
from models.errors import ModelError, NonFiniteLoss
from models.trainer import Trainer, pick_device, train_offline

CPU = TrainerConfig(device="cpu", batch_size=16, lr=3e-3, progress=False, epochs=1)


def _windows(interactions: tuple[list[str], list[str]], max_len: int = 50) -> tuple[np.ndarray, int]:
    seqs = build_sequences(*interactions)
    return training_windows(seqs.seqs, max_len), len(seqs.vocab)


def _fit(interactions, cfg: TrainerConfig, device: str = "cpu", n_users: int = 1):
    windows, n_items = _windows(interactions, max_len=5)  # short windows: many steps per epoch
    torch.manual_seed(0)
    model = SequenceEncoder(EncoderConfig.tiny(n_items=n_items))
    return Trainer(model, cfg.copy(device=device)).fit(windows), len(windows)


@pytest.mark.parametrize("loss,extra", [("ce", {}), ("ce", {"ce_negatives": 8}), ("bce", {})])
def test_one_epoch_on_tiny_data_loss_is_finite_and_falls(interactions, loss: str, extra: dict) -> None:
    (report,), n_windows = _fit(interactions, CPU.copy(loss=loss, **extra))
    assert np.isfinite(report.loss) and report.steps >= 10
    assert report.last_loss < report.first_loss
    assert report.sequences == n_windows and report.sequences_per_s > 0 and report.mfu is None


def test_nan_loss_raises_a_model_error(interactions) -> None:
    windows, n_items = _windows(interactions)
    model = SequenceEncoder(EncoderConfig.tiny(n_items=n_items))
    with torch.no_grad():
        model.item_emb.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLoss) as info:
        Trainer(model, CPU).fit(windows)
    assert isinstance(info.value, ModelError)


def test_ids_outside_the_catalogue_are_refused(interactions) -> None:
    windows, n_items = _windows(interactions)
    model = SequenceEncoder(EncoderConfig.tiny(n_items=n_items - 1))
    with pytest.raises(ModelError, match="outside"):
        Trainer(model, CPU).fit(windows)


def test_early_stop_from_the_epoch_callback(interactions) -> None:
    windows, n_items = _windows(interactions)
    model = SequenceEncoder(EncoderConfig.tiny(n_items=n_items))
    reports = Trainer(model, CPU.copy(epochs=5)).fit(windows, on_epoch_end=lambda r: r.epoch >= 2)
    assert [r.epoch for r in reports] == [1, 2]


def test_train_offline_writes_versioned_checkpoints(interactions, tmp_path: Path) -> None:
    hooks: list[int] = []
    cfg = CPU.copy(checkpoint_every_steps=2)
    first = train_offline(*interactions, EncoderConfig.tiny(), cfg, tmp_path,
                          on_epoch_end=lambda r: hooks.append(r.epoch))
    ckpt = load_checkpoint(first)
    assert hooks == [1]
    assert ckpt.config.n_items == 30 and len(ckpt.items) == 30
    assert 0.0 <= ckpt.metrics["valid_hr@10"] <= 1.0 and ckpt.metrics["valid_users"] == 40
    assert ckpt.version > 1  # mid-training checkpoints took the earlier versions
    second = train_offline(*interactions, EncoderConfig.tiny(), CPU, tmp_path)
    assert load_checkpoint(second).version == ckpt.version + 1


def test_train_offline_refuses_data_without_transitions(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not enough"):
        train_offline(["a", "b"], ["x", "y"], EncoderConfig.tiny(), CPU, tmp_path)
    with pytest.raises(ModelError, match="no interactions"):
        train_offline([], [], EncoderConfig.tiny(), CPU, tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
def test_cuda_without_cuda_is_a_clear_error() -> None:
    assert pick_device("auto").type == "cpu"
    with pytest.raises(ModelError, match="CUDA is not available"):
        pick_device("cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("compile_model", [False, True])
def test_one_epoch_on_gpu_with_bf16(interactions, compile_model: bool) -> None:
    (report,), _ = _fit(interactions, CPU.copy(amp=True, compile=compile_model), device="cuda")
    assert np.isfinite(report.loss) and report.last_loss < report.first_loss
    assert report.mfu is None or report.mfu > 0
