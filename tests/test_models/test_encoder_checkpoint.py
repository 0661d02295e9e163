"""Checkpoints: round trip, and every kind of bad file is refused with a typed error."""
from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import (
    FORMAT_VERSION,
    build_model,
    checkpoint_path,
    checksum_path,
    latest_checkpoint,
    load_checkpoint,
    next_version,
    save_checkpoint,
)
from models.config import EncoderConfig
from models.encoder import SequenceEncoder
from models.errors import CheckpointError, IncompatibleCheckpoint


def _write_raw(path: Path, payload: object) -> Path:
    """Any payload, with a *valid* checksum, to test the checks after the checksum."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path.write_bytes(buffer.getvalue())
    checksum_path(path).write_text(f"{hashlib.sha256(buffer.getvalue()).hexdigest()}  {path.name}\n")
    return path


def _payload(tmp_path: Path, write_checkpoint) -> dict:
    return torch.load(write_checkpoint(1), weights_only=True)


def test_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = EncoderConfig.tiny(n_items=4)
    model = SequenceEncoder(cfg)
    path = save_checkpoint(checkpoint_path(tmp_path, 7), state_dict=model.state_dict(), config=cfg,
                           items=["a", "b", "c", "d"], version=7,
                           metrics={"ndcg@10": np.float64(0.5), "nested": {"n": np.int64(3)}})
    ckpt = load_checkpoint(path)
    assert (ckpt.version, ckpt.items, ckpt.config, ckpt.format_version) == (7, ["a", "b", "c", "d"], cfg,
                                                                           FORMAT_VERSION)
    assert ckpt.metrics == {"ndcg@10": 0.5, "nested": {"n": 3}}
    assert ckpt.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    restored = build_model(ckpt)
    seq = torch.tensor([[1, 2, 3]])
    model.eval()
    torch.testing.assert_close(restored.full_sort_predict(seq), model.full_sort_predict(seq))
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, path.name + ".sha256"]  # no temp files


def test_versions_and_latest(tmp_path: Path, write_checkpoint) -> None:
    assert next_version(tmp_path) == 1 and latest_checkpoint(tmp_path) is None
    write_checkpoint(1)
    newest = write_checkpoint(3)
    assert next_version(tmp_path) == 4 and latest_checkpoint(tmp_path) == newest
    checksum_path(newest).unlink()  # a file whose checksum is not there yet is not "latest"
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 1)


def test_corrupted_file_fails_the_checksum(write_checkpoint) -> None:
    path = write_checkpoint(1)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(path)


def test_truncated_file_is_refused_even_with_a_matching_checksum(tmp_path: Path, write_checkpoint) -> None:
    path = write_checkpoint(1)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(path)
    data = path.read_bytes()
    checksum_path(path).write_text(f"{hashlib.sha256(data).hexdigest()}  {path.name}\n")
    with pytest.raises(CheckpointError, match="cannot decode"):
        load_checkpoint(path)


def test_missing_file_or_checksum(tmp_path: Path, write_checkpoint) -> None:
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "nope.pt")
    path = write_checkpoint(1)
    checksum_path(path).unlink()
    with pytest.raises(CheckpointError, match="no checksum"):
        load_checkpoint(path)
    assert load_checkpoint(path, verify=False).version == 1
    checksum_path(path).write_text("not-a-hash\n")
    with pytest.raises(CheckpointError, match="malformed"):
        load_checkpoint(path)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def test_pickled_objects_are_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = _write_raw(tmp_path / "encoder-v00000001.pt", {"format_version": 1, "evil": _Evil(marker)})
    with pytest.raises(CheckpointError, match="cannot decode"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("change", [
    {"format_version": 99},
    {"config": {"hidden": 32, "colour": "red"}},
    {"items": '["only-one"]'},
    {"items": json.dumps(list(range(30)))},
    {"items": [f"i{j}" for j in range(30)]},
    {"items": "not json"},
    {"version": "seven"},
    {"state_dict": [1, 2]},
])
def test_incompatible_contents(tmp_path: Path, write_checkpoint, change: dict) -> None:
    payload = _payload(tmp_path, write_checkpoint)
    payload.update(change)
    path = _write_raw(tmp_path / "encoder-v00000002.pt", payload)
    with pytest.raises(IncompatibleCheckpoint):
        load_checkpoint(path)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(IncompatibleCheckpoint):
        load_checkpoint(_write_raw(tmp_path / "a.pt", [1, 2, 3]))
    with pytest.raises(IncompatibleCheckpoint, match="missing"):
        load_checkpoint(_write_raw(tmp_path / "b.pt", {"version": 1}))


def test_weights_that_do_not_fit_the_config(tmp_path: Path, write_checkpoint) -> None:
    payload = _payload(tmp_path, write_checkpoint)
    payload["config"] = dict(payload["config"], hidden=64)
    ckpt = load_checkpoint(_write_raw(tmp_path / "encoder-v00000002.pt", payload))
    with pytest.raises(IncompatibleCheckpoint, match="do not fit"):
        build_model(ckpt)


def test_save_refuses_a_vocabulary_of_the_wrong_size(tmp_path: Path) -> None:
    cfg = EncoderConfig.tiny(n_items=3)
    with pytest.raises(ValueError, match="vocabulary"):
        save_checkpoint(tmp_path / "x.pt", state_dict={}, config=cfg, items=["a"], version=1)
