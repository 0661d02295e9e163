"""Blend weights learned from the stream: a pairwise linear re-ranker over strategy scores.

Every list the blend serves is a pool of candidates with one normalised score
per strategy (a feature vector). When the user's next event names an item of
that pool, the item is a positive and a few other pool items are negatives;
one step of pairwise logistic regression (``log(1 + exp(-w . (x_pos - x_neg)))``,
the BPR loss over strategy scores) moves the weights towards the strategies
that ranked the chosen item higher. The step is vectorised over the micro-batch
and taken by a river optimiser (``river.optim.SGD`` / ``Adam`` / ``RMSProp``,
which accept numpy vectors), so learning rates and schedules are river's.

Weights stay non-negative and above ``floor`` of the total, so every strategy
keeps proposing candidates and can win weight back when it improves (the heavy
encoder after a refresh); they are exported as normalised plain data.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from river import optim

from online.base import Interaction, Tunable

OPTIMIZERS = ("sgd", "adam", "rmsprop")


def make_optimizer(name: str, lr: float) -> optim.base.Optimizer:
    """A river optimiser by name with a constant learning rate."""
    if name == "sgd":
        return optim.SGD(lr)
    if name == "adam":
        return optim.Adam(lr)
    if name == "rmsprop":
        return optim.RMSProp(lr)
    raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)} (got {name!r})")


class LearnsAtRate(Tunable):
    """A learner whose mutable ``lr`` is the learning rate of its river optimisers (:meth:`_optimizers`)."""

    _mutable_attributes = frozenset({"lr"})

    def _optimizers(self) -> list[optim.base.Optimizer]:
        raise NotImplementedError

    def _check_mutation(self, key: str, value: Any) -> None:
        super()._check_mutation(key, value)
        if key == "lr" and not value > 0:
            raise ValueError("lr must be positive")

    def mutate(self, new_attrs: dict[str, Any]) -> None:
        super().mutate(new_attrs)
        if "lr" in new_attrs:
            for optimizer in self._optimizers():
                optimizer.mutate({"lr": optim.schedulers.Constant(float(new_attrs["lr"]))})


class LearnedWeights(LearnsAtRate):
    """Online pairwise re-ranker that learns the blend's strategy weights.

    Parameters
    ----------
    lr
        Learning rate of the river optimiser (mutable).
    optimizer
        ``"sgd"``, ``"adam"`` or ``"rmsprop"``.
    negatives
        Pool items paired with each positive.
    floor
        Smallest share of the total weight any strategy keeps.
    max_users
        Users whose last served pool is remembered (least recently served evicted).
    seed
        Seed of negative sampling.

    Examples
    --------
    >>> import numpy as np
    >>> from online.base import Interaction
    >>> lw = LearnedWeights(lr=0.5, seed=0)
    >>> lw.reset(["a_strategy", "b_strategy"], [0.5, 0.5])
    >>> # strategy b ranked the chosen item ("y") above the others; strategy a did not
    >>> lw.observe("u", ["x", "y", "z"], np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.2]]))
    >>> lw.learn_many([Interaction("u", "y", 0.0)])
    True
    >>> w = lw.weights(); w["b_strategy"] > w["a_strategy"]
    True
    """

    def __init__(self, lr: float = 0.02, optimizer: str = "sgd", negatives: int = 4, floor: float = 0.02,
                 max_users: int = 100_000, seed: int | None = 0) -> None:
        if negatives < 1 or max_users < 1:
            raise ValueError("negatives and max_users must be >= 1")
        if not 0.0 <= floor < 1.0:
            raise ValueError("floor must be in [0, 1)")
        self.lr = float(lr)
        self.optimizer = optimizer
        self.negatives = int(negatives)
        self.floor = float(floor)
        self.max_users = int(max_users)
        self.seed = seed
        self._check_mutation("lr", self.lr)
        self._optimizer = make_optimizer(optimizer, self.lr)
        self._rng = np.random.default_rng(seed)
        self._pools: OrderedDict[str, tuple[list[str], np.ndarray]] = OrderedDict()
        self.names: list[str] = []
        self._w = np.zeros(0)
        self.steps = 0
        self.pairs = 0

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        yield {}
        yield {"optimizer": "adam", "negatives": 2, "max_users": 3}

    def _optimizers(self) -> list[optim.base.Optimizer]:
        return [self._optimizer]

    def reset(self, names: Sequence[str], weights: Sequence[float]) -> None:
        """Start from these strategies and weights; forgets remembered pools."""
        w = np.asarray(weights, dtype=float)
        if len(names) != len(w):
            raise ValueError("one weight per strategy")
        self.names = list(names)
        self._w = w / w.sum() if w.sum() > 0 else np.full(len(w), 1.0 / max(len(w), 1))
        self._project()
        self._pools.clear()

    def assign(self, weights: Sequence[float]) -> None:
        """Overwrite the weights (same strategies, same order), keeping remembered pools."""
        w = np.asarray(weights, dtype=float)
        if len(w) != len(self.names):
            raise ValueError("one weight per strategy")
        self._w = w
        self._project()

    def weights(self) -> dict[str, float]:
        """Current weights, normalised to sum to 1."""
        total = self._w.sum()
        return {name: float(v / total) for name, v in zip(self.names, self._w)}

    def vector(self) -> np.ndarray:
        return self._w / self._w.sum()

    def observe(self, user_id: str, items: list[str], features: np.ndarray,
                lows: np.ndarray | None = None, inverse_spans: np.ndarray | None = None) -> None:
        """Remember the pool just served to ``user_id`` (rows of ``features`` follow ``items``).

        With ``lows`` and ``inverse_spans``, ``features`` are raw scores normalised
        only when an event needs them: ``(features[row] - lows) * inverse_spans``.
        """
        pools = self._pools
        if user_id in pools:
            pools.move_to_end(user_id)
        elif len(pools) >= self.max_users:
            pools.popitem(last=False)
        pools[user_id] = (items, features, lows, inverse_spans)

    def learn_many(self, interactions: Sequence[Interaction]) -> bool:
        """One optimiser step from the batch's events that hit their pool; True if weights moved."""
        pools = self._pools
        diffs = []
        m = self.negatives
        for event in interactions:
            pool = pools.get(event.user_id)
            if pool is None:
                continue
            items, features, lows, inverse_spans = pool
            try:
                row = items.index(event.item_id)
            except ValueError:
                continue
            n = len(items)
            if n < 2:
                continue
            negatives = self._rng.integers(0, n - 1, size=m)
            negatives += negatives >= row  # skip the positive row
            diff = features[row] - features[negatives]
            diffs.append(diff if inverse_spans is None else diff * inverse_spans)
        if not diffs:
            return False
        d = np.concatenate(diffs)  # [pairs, strategies]
        margin = d @ self._w
        grad = -(d * (1.0 / (1.0 + np.exp(np.clip(margin, -30, 30))))[:, None]).mean(axis=0)
        self._w = np.asarray(self._optimizer.step(self._w, grad), dtype=float)
        self._project()
        self.steps += 1
        self.pairs += len(d)
        return True

    def _project(self) -> None:
        """Non-negative, summing to 1, every weight at least ``floor``."""
        w = np.nan_to_num(self._w, nan=0.0, posinf=1.0, neginf=0.0)
        w = np.maximum(w, 0.0)
        total = w.sum()
        n = len(w)
        if n == 0:
            self._w = w
            return
        w = w / total if total > 0 else np.full(n, 1.0 / n)
        floor = min(self.floor, 1.0 / n)
        pinned = np.zeros(n, dtype=bool)
        for _ in range(n):  # pin weights below the floor to it, rescale the others to fill the rest
            low = (w < floor) & ~pinned
            if not low.any():
                break
            pinned |= low
            w[pinned] = floor
            free = ~pinned
            rest = 1.0 - floor * pinned.sum()
            mass = w[free].sum()
            w[free] = w[free] * (rest / mass) if mass > 0 else rest / max(free.sum(), 1)
        self._w = w
