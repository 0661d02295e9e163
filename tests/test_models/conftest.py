"""Fixtures for the encoder tests: tiny learnable data and ready-made checkpoints (CPU only)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import checkpoint_path, save_checkpoint
from models.config import EncoderConfig
from models.encoder import SequenceEncoder

ML100K = Path(__file__).resolve().parents[2].parent / "shared/data/ml-100k/u.data"


def make_interactions(n_users: int = 40, n_items: int = 30, length: int = 20,
                      seed: int = 0) -> tuple[list[str], list[str]]:
    """Interleaved (user, item) events in time order; each user mostly walks item k -> k+1.

    The walk makes the next item predictable from the last one, so a tiny
    model's loss falls within an epoch.
    """
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(n_users):
        start = int(rng.integers(0, n_items))
        walk = [(start + step) % n_items for step in range(length)]
        noise = rng.random(length) < 0.1
        walk = [int(rng.integers(0, n_items)) if flip else item for item, flip in zip(walk, noise)]
        seqs.append(walk)
    users, items = [], []
    for pos in range(length):  # interleave users, as a stream would
        for u, seq in enumerate(seqs):
            users.append(f"u{u}")
            items.append(f"i{seq[pos]}")
    return users, items


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread: on a shared 2-core box two OpenMP threads that lose a core to
    another process spin at every barrier, and a 4 s test takes 50 s (measured here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def interactions() -> tuple[list[str], list[str]]:
    return make_interactions()


@pytest.fixture
def tiny_model() -> SequenceEncoder:
    torch.manual_seed(0)
    return SequenceEncoder(EncoderConfig.tiny(n_items=30)).eval()


@pytest.fixture
def write_checkpoint(tmp_path: Path) -> Callable[..., Path]:
    """``write_checkpoint(version, seed=..., n_items=...)`` -> path of a valid tiny checkpoint."""

    def write(version: int, seed: int = 0, n_items: int = 30, directory: Path | None = None) -> Path:
        torch.manual_seed(seed)
        cfg = EncoderConfig.tiny(n_items=n_items)
        model = SequenceEncoder(cfg)
        return save_checkpoint(checkpoint_path(directory or tmp_path, version), state_dict=model.state_dict(),
                               config=cfg, items=[f"i{j}" for j in range(n_items)], version=version,
                               metrics={"seed": seed})

    return write
