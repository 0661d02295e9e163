"""Vocabulary, sequences, windows, splits and negatives."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models.data import (
    ItemVocab,
    SequenceBuffer,
    batch_order,
    build_sequences,
    leave_one_out,
    pad_right,
    sample_negatives,
    training_negatives,
    training_windows,
)


def test_vocab_ids_start_at_one_and_unknown_is_zero() -> None:
    vocab = ItemVocab(["x", "y"])
    assert vocab.id_of("x") == 1 and vocab.id_of("y") == 2 and vocab.id_of("z") == 0
    assert vocab.id_of(123) == 0
    assert ItemVocab(vocab.items).items == ["x", "y"]
    with pytest.raises(IndexError):
        vocab.item_of(0)


def test_build_sequences_groups_users_in_time_order() -> None:
    s = build_sequences(["a", "b", "a", "a"], [10, 11, 12, 10])
    assert s.users == ["a", "b"]
    assert [x.tolist() for x in s.seqs] == [[1, 3, 1], [2]]
    fixed = build_sequences(["c", "c"], ["10", "new"], s.vocab, grow=False)
    assert [x.tolist() for x in fixed.seqs] == [[1]] and len(s.vocab) == 3


def test_build_sequences_checks_lengths() -> None:
    with pytest.raises(ValueError):
        build_sequences(["a"], [])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.integers(1, 50), max_size=30), max_size=8), st.integers(1, 7))
def test_windows_hold_every_transition_exactly_once(seqs: list[list[int]], max_len: int) -> None:
    windows = training_windows([np.array(s, dtype=np.int64) for s in seqs], max_len)
    assert windows.shape[1] == max_len + 1
    pairs = sorted((int(a), int(b)) for row in windows for a, b in zip(row[:-1], row[1:]) if b)
    expected = sorted((a, b) for s in seqs for a, b in zip(s[:-1], s[1:]))
    assert pairs == expected
    for row in windows:  # right padding: no item after a zero
        nz = np.flatnonzero(row)
        assert len(nz) >= 2 and nz[-1] == len(nz) - 1


def test_leave_one_out_follows_the_papers() -> None:
    split = leave_one_out([np.arange(1, 6), np.array([7, 8])])
    assert split.train[0].tolist() == [1, 2, 3] and split.train[1].tolist() == [7, 8]
    assert (split.valid[0].target, split.valid[0].history.tolist()) == (4, [1, 2, 3])
    assert (split.test[0].target, split.test[0].history.tolist()) == (5, [1, 2, 3, 4])
    assert len(split.valid) == len(split.test) == 1


def test_pad_right_truncates_to_the_most_recent_items() -> None:
    out = pad_right([[1, 2, 3, 4], [5], []], max_len=3)
    assert out.tolist() == [[2, 3, 4], [5, 0, 0], [0, 0, 0]]


def test_batch_order_covers_every_row_once() -> None:
    lengths = np.random.default_rng(0).integers(2, 50, size=103)
    batches = batch_order(lengths, 8, np.random.default_rng(1))
    assert sorted(np.concatenate(batches).tolist()) == list(range(103))
    assert all(len(b) <= 8 for b in batches)


def test_sample_negatives_avoid_history_and_refuse_the_impossible() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        neg = sample_negatives(rng, 30, 20, exclude=range(1, 11))
        assert len(set(neg.tolist())) == 20 and min(neg) >= 11 and max(neg) <= 30
    with pytest.raises(ValueError, match="cannot sample"):
        sample_negatives(rng, 30, 21, exclude=range(1, 11))


def test_training_negatives_shape_range_and_mostly_avoid_the_window() -> None:
    gen = torch.Generator().manual_seed(0)
    window = torch.tensor([[1, 2, 3, 4, 0], [5, 6, 0, 0, 0]])
    neg = training_negatives(window, n_items=10, k=3, generator=gen)
    assert neg.shape == (2, 4, 3) and neg.min() >= 1 and neg.max() <= 10
    many = training_negatives(window.repeat(200, 1), n_items=10, k=3, generator=gen)
    clash = (many.unsqueeze(-1) == window.repeat(200, 1)[:, None, None, :]).any(-1).float().mean()
    assert clash < 0.1  # 40% of ids clash before resampling


def test_sequence_buffer_is_bounded() -> None:
    buf = SequenceBuffer(max_len=3, max_users=2)
    for user, item in [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("a", 0)]:
        buf.append(user, item)
    assert len(buf) == 2 and buf.get("b") == () and buf.get("a") == (1, 3)
    assert sorted(s.tolist() for s in buf.sequences()) == [[1, 3], [4]]
