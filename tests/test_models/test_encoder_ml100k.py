"""The tiny encoder on real MovieLens 100K, read in place from ../shared (never copied here)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

ML100K = Path(__file__).resolve().parents[2].parent / "shared/data/ml-100k/u.data"


@pytest.mark.data
@pytest.mark.slow
def test_tiny_encoder_learns_ml100k_on_cpu() -> None:
    if not ML100K.is_file():
        pytest.skip(f"MovieLens 100K not found at {ML100K}; it is read in place and never bundled "
                    "(see ../shared/data/README.md)")
    from models.config import EncoderConfig, TrainerConfig
    from models.data import build_sequences, leave_one_out, training_windows
    from models.encoder import SequenceEncoder
    from models.evaluate import evaluate
    from models.trainer import Trainer
    from stream.cli.datasets import load

    events = load(ML100K, "movielens")
    seqs = build_sequences([e.user_id for e in events], [e.item_id for e in events])
    assert (len(seqs), len(seqs.vocab)) == (943, 1682)
    cfg = EncoderConfig.tiny(n_items=len(seqs.vocab))
    torch.manual_seed(0)
    model = SequenceEncoder(cfg)
    windows = training_windows(leave_one_out(seqs.seqs).train, cfg.max_len)
    (report,) = Trainer(model, TrainerConfig(device="cpu", batch_size=64, epochs=1, progress=False)).fit(windows)
    assert report.last_loss < report.first_loss
    quality = evaluate(model, seqs.seqs, "sasrec", split="valid")
    assert quality["users"] == 943
    assert quality["hr@10"] > 0.3  # chance is 10/101 ~ 0.10
