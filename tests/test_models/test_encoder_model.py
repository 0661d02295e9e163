"""Encoder shapes, causality, padding and losses."""
from __future__ import annotations

import pytest
import torch

from models.config import EncoderConfig
from models.encoder import SequenceEncoder


def test_shapes(tiny_model: SequenceEncoder) -> None:
    seq = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0], [6, 0, 0, 0]])
    assert tiny_model(seq).shape == (3, 4, 32)
    assert tiny_model.last_hidden(seq).shape == (3, 32)
    assert tiny_model.full_sort_predict(seq).shape == (3, 30)
    assert tiny_model.predict(seq, torch.tensor([[1, 2], [3, 4], [5, 6]])).shape == (3, 2)


def test_future_items_do_not_change_earlier_outputs(tiny_model: SequenceEncoder) -> None:
    a = torch.tensor([[1, 2, 3, 4, 5]])
    b = torch.tensor([[1, 2, 3, 9, 7]])
    out_a, out_b = tiny_model(a), tiny_model(b)
    torch.testing.assert_close(out_a[:, :3], out_b[:, :3])
    assert not torch.allclose(out_a[:, 3], out_b[:, 3])


def test_padding_is_ignored(tiny_model: SequenceEncoder) -> None:
    short = torch.tensor([[3, 4, 5]])
    padded = torch.tensor([[3, 4, 5, 0, 0, 0, 0]])
    torch.testing.assert_close(tiny_model(short), tiny_model(padded)[:, :3])
    torch.testing.assert_close(tiny_model.full_sort_predict(short), tiny_model.full_sort_predict(padded))
    batch = torch.tensor([[3, 4, 5, 0], [7, 8, 9, 10]])  # each row alone == inside a ragged batch
    alone = torch.cat([tiny_model.full_sort_predict(torch.tensor([[3, 4, 5]])),
                       tiny_model.full_sort_predict(torch.tensor([[7, 8, 9, 10]]))])
    torch.testing.assert_close(tiny_model.full_sort_predict(batch), alone)


def test_padding_embedding_is_zero_and_scores_zero(tiny_model: SequenceEncoder) -> None:
    assert torch.count_nonzero(tiny_model.item_emb.weight[0]) == 0
    scores = tiny_model.predict(torch.tensor([[1, 2]]), torch.tensor([[0, 3]]))
    assert scores[0, 0] == 0.0


def test_predict_agrees_with_full_sort(tiny_model: SequenceEncoder) -> None:
    seq = torch.tensor([[1, 2, 3, 0], [4, 5, 6, 7]])
    cands = torch.tensor([[5, 9, 30], [1, 2, 3]])
    full = tiny_model.full_sort_predict(seq)
    torch.testing.assert_close(tiny_model.predict(seq, cands), torch.gather(full, 1, cands - 1))


def test_too_long_input_is_refused(tiny_model: SequenceEncoder) -> None:
    with pytest.raises(ValueError, match="max_len"):
        tiny_model(torch.ones((1, 51), dtype=torch.long))


def test_unset_catalogue_is_refused() -> None:
    with pytest.raises(ValueError, match="n_items"):
        SequenceEncoder(EncoderConfig.tiny())


@pytest.mark.parametrize("loss,negatives", [("ce", None), ("ce", torch.tensor([1, 2, 3, 4])),
                                            ("bce", torch.randint(1, 31, (2, 4, 1)))])
def test_losses_are_finite_and_ignore_padded_targets(tiny_model: SequenceEncoder, loss: str,
                                                     negatives: torch.Tensor | None) -> None:
    inp = torch.tensor([[1, 2, 3, 0], [4, 5, 6, 7]])
    target = torch.tensor([[2, 3, 4, 0], [5, 6, 7, 8]])
    batch = {"input": inp, "target": target}
    if negatives is not None:
        batch["negatives"] = negatives
    value = tiny_model.calculate_loss(batch, loss)
    assert torch.isfinite(value) and value > 0
    # changing what sits at a padded target position changes nothing
    batch2 = dict(batch, input=torch.tensor([[1, 2, 3, 29], [4, 5, 6, 7]]))
    torch.testing.assert_close(tiny_model.calculate_loss(batch2, loss), value)


def test_bce_needs_negatives(tiny_model: SequenceEncoder) -> None:
    batch = {"input": torch.tensor([[1, 2]]), "target": torch.tensor([[2, 3]])}
    with pytest.raises(ValueError, match="negatives"):
        tiny_model.calculate_loss(batch, "bce")
    with pytest.raises(ValueError, match="unknown loss"):
        tiny_model.calculate_loss(batch, "hinge")
