"""The encoder's shortlists (``models.kernels.shortlists``): each row's best ids as a whole sort ranks them."""
from __future__ import annotations

import numpy as np
import pytest

from models.kernels import shortlists


def by_sorting(scores: np.ndarray, history: list[int], m: int) -> list[int]:
    """The specification: every id but 0, the history's and non-finite scores, best first, equal scores
    lower id first, the first ``m``."""
    left_out = set(history) | {0}
    kept = [(-float(scores[i]), i) for i in range(len(scores)) if i not in left_out and np.isfinite(scores[i])]
    return [i for _, i in sorted(kept)][:m]


def run(scores: np.ndarray, histories: list[list[int]], m: int) -> list[list[int]]:
    bounds = np.zeros(len(histories) + 1, np.int64)
    np.cumsum([len(h) for h in histories], out=bounds[1:])
    flat = np.array([i for h in histories for i in h], np.int64)
    top, kept = np.empty((len(histories), m), np.int64), np.empty(len(histories), np.int64)
    shortlists(scores, flat, bounds, top, kept)
    return [row[:n] for row, n in zip(top.tolist(), kept.tolist())]


@pytest.mark.parametrize("seed", range(20))
def test_each_row_is_the_head_of_a_whole_sort(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows, width, m = int(rng.integers(1, 6)), int(rng.integers(2, 300)), int(rng.integers(1, 80))
    m = min(m, width)
    scores = rng.random((rows, width)).astype(np.float32)
    if seed % 2:  # many equal scores: ties go to the lower id
        scores = np.round(scores * 4).astype(np.float32)
    if seed % 3 == 0:  # scores that are not finite are never listed
        scores[rng.random((rows, width)) < 0.2] = -np.inf
        scores[0, -1] = np.nan
    histories = [rng.integers(0, width, size=int(rng.integers(0, 12))).tolist() for _ in range(rows)]
    got = run(scores, histories, m)
    assert got == [by_sorting(scores[r], histories[r], m) for r in range(rows)]


def test_a_row_with_fewer_items_left_than_the_list_holds_them_all() -> None:
    scores = np.array([[0.0, 0.3, 0.1, 0.2]], np.float32)
    assert run(scores, [[2]], 3) == [[1, 3]]
    assert run(scores, [[1, 2, 3]], 3) == [[]]


def test_one_rows_history_does_not_leave_items_out_of_the_next_row() -> None:
    scores = np.array([[0.0, 0.3, 0.2, 0.1], [0.0, 0.3, 0.2, 0.1]], np.float32)
    assert run(scores, [[1], []], 2) == [[2, 3], [1, 2]]
