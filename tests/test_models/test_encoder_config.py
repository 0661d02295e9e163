"""Encoder/trainer configs: presets valid, frozen, validated, round-trip as plain dicts."""
from __future__ import annotations

import dataclasses

import pytest

from models.config import EncoderConfig, TrainerConfig


@pytest.mark.parametrize("name", ["tiny", "paper", "large"])
def test_presets_are_valid_and_round_trip(name: str) -> None:
    cfg = EncoderConfig.preset(name, n_items=10)
    assert cfg.n_items == 10 and cfg.hidden % cfg.n_heads == 0
    assert EncoderConfig.from_dict(cfg.to_dict()) == cfg


def test_large_is_gpu_sized() -> None:
    cfg = EncoderConfig.large()
    assert cfg.hidden >= 256 and cfg.n_blocks >= 3 and cfg.max_len >= 200


def test_configs_are_frozen_and_copy_revalidates() -> None:
    cfg = EncoderConfig.tiny()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.hidden = 8  # type: ignore[misc]
    with pytest.raises(ValueError, match="divisible"):
        cfg.copy(n_heads=3)


@pytest.mark.parametrize("bad", [{"hidden": 0}, {"dropout": 1.0}, {"n_items": -1}, {"max_len": 2.5}])
def test_encoder_config_rejects_bad_values(bad: dict) -> None:
    with pytest.raises(ValueError):
        EncoderConfig(**bad)


@pytest.mark.parametrize("bad", [{"loss": "mse"}, {"device": "tpu"}, {"lr": 0}, {"batch_size": 0},
                                 {"bce_negatives": 0}, {"nan_check_every": 0}])
def test_trainer_config_rejects_bad_values(bad: dict) -> None:
    with pytest.raises(ValueError):
        TrainerConfig(**bad)


def test_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown"):
        EncoderConfig.from_dict({"hidden": 8, "colour": "red"})
    assert TrainerConfig.from_dict(TrainerConfig().to_dict()) == TrainerConfig()
