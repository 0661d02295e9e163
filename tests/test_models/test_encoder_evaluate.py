"""Offline metrics: an oracle scores 1, a constant model 0, and the protocol's bookkeeping holds."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models.config import EncoderConfig
from models.encoder import SequenceEncoder
from models.evaluate import evaluate


class _Oracle(SequenceEncoder):
    """Knows the data's rule: the next item is the last one + 1."""

    def _wanted(self, item_seq: torch.Tensor) -> torch.Tensor:
        last = item_seq.gather(1, ((item_seq != 0).sum(1, keepdim=True) - 1).clamp(min=0))
        return last + 1  # [B, 1]

    def predict(self, item_seq, candidates):
        return (candidates == self._wanted(item_seq)).float()

    def full_sort_predict(self, item_seq):
        ids = torch.arange(1, self.config.n_items + 1).expand(item_seq.shape[0], -1)
        return (ids == self._wanted(item_seq)).float()


class _Constant(_Oracle):
    def predict(self, item_seq, candidates):
        return torch.zeros(candidates.shape)

    def full_sort_predict(self, item_seq):
        return torch.zeros(item_seq.shape[0], self.config.n_items)


SEQS = [np.arange(1, 8) + 10 * u for u in range(12)] + [np.array([3, 4])]  # last user too short to evaluate


@pytest.mark.parametrize("protocol", ["sasrec", "full"])
@pytest.mark.parametrize("split", ["test", "valid"])
def test_oracle_is_perfect_and_constant_scores_zero(protocol: str, split: str) -> None:
    cfg = EncoderConfig.tiny(n_items=200)
    good = evaluate(_Oracle(cfg), SEQS, protocol, split=split)
    assert (good["ndcg@10"], good["hr@10"], good["users"], good["protocol"], good["split"]) == \
        (1.0, 1.0, 12, protocol, split)
    bad = evaluate(_Constant(cfg), SEQS, protocol, split=split)
    assert (bad["ndcg@10"], bad["hr@10"]) == (0.0, 0.0)


def test_random_model_lands_near_chance_and_is_seeded() -> None:
    torch.manual_seed(0)
    model = SequenceEncoder(EncoderConfig.tiny(n_items=500))
    seqs = [np.random.default_rng(u).choice(np.arange(1, 501), size=10, replace=False) for u in range(300)]
    a = evaluate(model, seqs, "sasrec", seed=3)
    assert a == {**evaluate(model, seqs, "sasrec", seed=3), "seconds": a["seconds"]}
    assert 0.03 < a["hr@10"] < 0.2  # chance is 10/101
    assert set(a) >= {"ndcg@10", "hr@10", "protocol", "users", "n_negatives"}


def test_other_cutoffs_and_user_cap() -> None:
    out = evaluate(_Oracle(EncoderConfig.tiny(n_items=200)), SEQS, "full", k=5, max_users=4)
    assert out["users"] == 4 and out["ndcg@5"] == out["ndcg@10"] == 1.0


def test_bad_arguments() -> None:
    model = _Oracle(EncoderConfig.tiny(n_items=200))
    with pytest.raises(ValueError, match="protocol"):
        evaluate(model, SEQS, "leave-two-out")
    with pytest.raises(ValueError, match="split"):
        evaluate(model, SEQS, split="train")
    with pytest.raises(ValueError, match="cannot sample"):
        evaluate(_Oracle(EncoderConfig.tiny(n_items=20)), SEQS[:1], "sasrec")
