"""A learned ranker over the blend's pool: a small neural network that orders candidates by what every
strategy said about them, trained on the stream pair by pair.

The blend's pool is the union of every strategy's best candidates, and on the streams we measure the
user's next item lies in it far more often than in the top ``k`` (ML-100K: 36% of events against an
HR@10 of 18%). A weighted sum of normalised scores ranks the pool one way for every user: it cannot
say "a candidate that two strategies put first beats one that a single strategy scored high", or "for a
short history, trust popularity more". This ranker can learn both. For each pool item it reads:

- the weighted sum the blend computed (so it starts as the blend and only has to learn the rest);
- per strategy: its min-max normalised score, the reciprocal of the item's rank by that strategy,
  whether the strategy scored it at all, and its standard score over the pool (how far the item stands
  out from the rest, which min-max hides when one item dwarfs the others);
- how long the user's history is (short histories want other signals than long ones).

A one-hidden-layer network (ReLU) plus a linear part scores each item. It is trained like
:class:`~online.rerank.LearnedWeights`: when the user's next event names an item of the pool last
served to them, that item is a positive and a few other pool items are negatives, and one step of the
pairwise logistic loss (BPR) per micro-batch moves the parameters, with river's Adam. The output
layer starts at zero and the linear part at the blend's sum, so an untrained ranker ranks exactly as
the blend does and moves away from it only as the stream shows it how.

Measured against the weighted sum on four streams (``benchmarks/ranker.py``, BENCHMARKS.md section 13).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from river import optim

from online.base import Interaction
from online.rerank import LearnsAtRate

#: Features per strategy: normalised score, reciprocal rank, scored at all, standard score.
PER_STRATEGY = 4
#: Features of the request and the blend: the blend's weighted sum, the user's history length.
SHARED = 2


def pool_features(columns: np.ndarray, blended: np.ndarray, history_length: int) -> np.ndarray:
    """``[pool, SHARED + PER_STRATEGY * strategies]`` features of one pool (``columns``: ``[strategies, pool]``
    raw scores; ``blended``: the blend's score per item). A strategy that scored an item 0 or less (did not
    propose it, or has nothing to say) gives it no rank; scores that are not finite count as 0."""
    raw = np.asarray(columns, dtype=float)
    if not np.isfinite(raw).all():
        raw = np.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0)
    n_strategies, n = raw.shape
    blended = np.asarray(blended, dtype=float)
    if not np.isfinite(blended).all():
        blended = np.nan_to_num(blended, nan=0.0, posinf=0.0, neginf=0.0)
    out = np.empty((n, SHARED + PER_STRATEGY * n_strategies))
    low, high = float(blended.min()), float(blended.max())
    out[:, 0] = (blended - low) / (high - low) if high > low else 0.0
    out[:, 1] = np.log1p(history_length) / 5.0
    positive = raw > 0
    lows = raw.min(1, keepdims=True)
    spans = raw.max(1, keepdims=True) - lows
    out[:, SHARED::PER_STRATEGY] = (np.divide(raw - lows, spans, out=np.zeros_like(raw), where=spans > 0)).T
    ranks = np.empty((n_strategies, n))
    ranks[np.arange(n_strategies)[:, None], np.argsort(-raw, axis=1, kind="stable")] = np.arange(1.0, n + 1.0)
    out[:, SHARED + 1::PER_STRATEGY] = (positive / ranks).T
    out[:, SHARED + 2::PER_STRATEGY] = positive.T
    spreads = raw.std(1, keepdims=True)
    standard = np.divide(raw - raw.mean(1, keepdims=True), spreads, out=np.zeros_like(raw), where=spreads > 0)
    out[:, SHARED + 3::PER_STRATEGY] = np.clip(standard, -6.0, 6.0).T / 3.0
    return out


class PoolRanker(LearnsAtRate):
    """Online pairwise neural ranker over the blend's pool.

    Parameters
    ----------
    hidden
        Width of the hidden layer.
    lr
        Adam's learning rate (river's ``optim.Adam``; mutable).
    negatives
        Pool items paired with each positive.
    max_users
        Users whose last served pool is remembered (least recently served evicted).
    seed
        Seed of the initial weights and of negative sampling.

    Examples
    --------
    >>> import numpy as np
    >>> from online.base import Interaction
    >>> ranker = PoolRanker(seed=0)
    >>> columns = np.array([[0.9, 0.1, 0.5], [0.0, 1.0, 0.2]])  # two strategies, three pool items
    >>> blended = np.array([0.6, 0.4, 0.5])
    >>> scores = ranker.score(["a", "b", "c"], columns, blended, history_length=3)
    >>> untrained = pool_features(columns, blended, 3)[:, 0]  # ranks as the blend before it learns
    >>> [float(s) for s in scores] == [float(s) for s in untrained]
    True
    >>> _ = ranker.score(["a", "b", "c"], columns, blended, 3, user_id="u")  # served to u, remembered
    >>> ranker.learn_many([Interaction("u", "b", 0.0)])
    True
    """

    def __init__(self, hidden: int = 16, lr: float = 0.003, negatives: int = 8, max_users: int = 100_000,
                 seed: int | None = 0) -> None:
        if min(hidden, negatives, max_users) < 1:
            raise ValueError("hidden, negatives and max_users must be >= 1")
        self.hidden = int(hidden)
        self.lr = float(lr)
        self.negatives = int(negatives)
        self.max_users = int(max_users)
        self.seed = seed
        self._check_mutation("lr", self.lr)
        self._rng = np.random.default_rng(seed)
        self._pools: OrderedDict[str, tuple[list[str], np.ndarray]] = OrderedDict()
        self._width = 0
        self._params: list[np.ndarray] = []
        self._adams: list[optim.Adam] = []
        self.steps = 0
        self.pairs = 0
        self.restarts = 0  # times a step left a parameter that is not finite and the ranker started again

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        yield {}
        yield {"hidden": 4, "lr": 0.05, "negatives": 2, "max_users": 3, "seed": 1}

    def _optimizers(self) -> list[optim.Adam]:
        return self._adams

    def _start(self, width: int) -> None:
        """Fresh parameters for ``width`` features: hidden weights small and random, the output layer at zero,
        the linear part on the blend's sum alone (so the first ranking is the blend's). A pool of another width
        (the blend's strategies changed) starts the ranker again."""
        w1 = self._rng.normal(0.0, 1.0 / np.sqrt(width), (width, self.hidden))
        linear = np.zeros(width)
        linear[0] = 1.0
        self._params = [w1, np.zeros(self.hidden), np.zeros(self.hidden), linear]
        self._adams = [optim.Adam(self.lr) for _ in self._params]
        self._width = width
        self._pools.clear()

    def _forward(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w1, b1, w2, linear = self._params
        hidden = np.maximum(features @ w1 + b1, 0.0)
        return hidden @ w2 + features @ linear, hidden

    def score(self, items: list[str], columns: Sequence[Sequence[float]], blended: np.ndarray,
              history_length: int, user_id: str | None = None) -> np.ndarray:
        """One score per pool item, higher is better. With ``user_id`` the pool is remembered as the one
        served to that user, to learn from the user's next event."""
        features = pool_features(np.asarray(columns, dtype=float), blended, history_length)
        if features.shape[1] != self._width:
            self._start(features.shape[1])
        if user_id is not None:
            pools = self._pools
            if user_id in pools:
                pools.move_to_end(user_id)
            elif len(pools) >= self.max_users:
                pools.popitem(last=False)
            pools[user_id] = (items, features)
        return self._forward(features)[0]

    def learn_many(self, interactions: Sequence[Interaction]) -> bool:
        """One step from the batch's events that name an item of their user's last pool; True if it moved."""
        positives, negatives = [], []
        m = self.negatives
        for event in interactions:
            pool = self._pools.get(event.user_id)
            if pool is None:
                continue
            items, features = pool
            try:
                row = items.index(event.item_id)
            except ValueError:
                continue
            if len(items) < 2:
                continue
            drawn = self._rng.integers(0, len(items) - 1, size=m)
            drawn += drawn >= row  # never the positive itself
            positives.append(np.repeat(features[row:row + 1], m, axis=0))
            negatives.append(features[drawn])
        if not positives:
            return False
        x_pos, x_neg = np.concatenate(positives), np.concatenate(negatives)
        f_pos, h_pos = self._forward(x_pos)
        f_neg, h_neg = self._forward(x_neg)
        # d/dmargin of log(1 + exp(-margin)), averaged over the pairs
        g = -1.0 / (1.0 + np.exp(np.clip(f_pos - f_neg, -30.0, 30.0))) / len(x_pos)
        w1, b1, w2, linear = self._params
        d_pos = np.outer(g, w2) * (h_pos > 0)
        d_neg = np.outer(-g, w2) * (h_neg > 0)
        grads = [x_pos.T @ d_pos + x_neg.T @ d_neg, d_pos.sum(0) + d_neg.sum(0),
                 h_pos.T @ g - h_neg.T @ g, x_pos.T @ g - x_neg.T @ g]
        self._params = [np.asarray(optimizer.step(param, grad), dtype=float)
                        for optimizer, param, grad in zip(self._adams, self._params, grads)]
        if not all(np.isfinite(param).all() for param in self._params):  # diverged: rank as the sum again
            self._start(self._width)
            self.restarts += 1
            return False
        self.steps += 1
        self.pairs += len(x_pos)
        return True
