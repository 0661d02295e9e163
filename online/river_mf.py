"""river's matrix factorisation as a streamrec strategy (``river.reco.BiasedMF`` or ``FunkMF``).

river learns one ``(user, item, y)`` at a time; implicit feedback gives only
positives, so every event is learned as ``y=1`` together with ``negatives``
items drawn uniformly from the known catalogue as ``y=0`` (the protocol of the
FunkMF baseline in ``benchmarks/quality.py``). Learning is per event (river's
own loop, so this strategy is optional and slow: a few thousand events/s);
scoring is vectorised: the item factors are mirrored in a numpy matrix that is
updated for exactly the rows river touched.

Learning rates are river optimisers (``optim.SGD`` / ``Adam`` / ``RMSProp``,
optionally with a river schedule); :meth:`RiverMF.mutate` changes ``lr`` on
every optimiser of the model, the way ``river.base.Base.mutate`` would if the
model exposed them. Users and items are bounded: the least recently active are
dropped from river's tables.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from river import optim, reco

from online.base import Interaction, Tunable
from online.mf import FactorScorer
from online.rerank import make_optimizer

MODELS = ("biased", "funk")


class RiverMF(Tunable):
    """``river.reco.BiasedMF`` (default) or ``FunkMF`` learned from positives and sampled negatives.

    Parameters
    ----------
    n_factors
        Latent dimension.
    lr
        Learning rate of every river optimiser in the model (mutable).
    l2
        L2 regularisation of the latent factors (and biases for ``biased``).
    negatives
        Negative items learned with ``y=0`` per event.
    optimizer
        ``"sgd"``, ``"adam"`` or ``"rmsprop"``.
    model
        ``"biased"`` (``reco.BiasedMF``) or ``"funk"`` (``reco.FunkMF``).
    max_users, max_items
        Capacity; the least recently active users / items are forgotten.
    seed
        Seed of the latent initialisation and of negative sampling.

    Examples
    --------
    >>> from online.base import Interaction
    >>> mf = RiverMF(n_factors=4, seed=3)
    >>> mf.learn_many([Interaction("u1", "a", 0.0), Interaction("u2", "b", 1.0)])
    >>> len(mf.score("u1", [], ["a", "b", "unknown"])), mf.score("nobody", [], ["a"])
    (3, [0.0])
    >>> mf.mutate({"lr": 0.01}); mf.lr
    0.01
    """

    name = "river_mf"
    _mutable_attributes = frozenset({"lr"})

    def __init__(self, n_factors: int = 10, lr: float = 0.05, l2: float = 0.001, negatives: int = 4,
                 optimizer: str = "sgd", model: str = "biased", max_users: int = 1_000_000,
                 max_items: int = 1_000_000, seed: int | None = 0) -> None:
        if model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}")
        if n_factors < 1 or negatives < 0 or max_users < 1 or max_items < 1:
            raise ValueError("n_factors, max_users and max_items must be >= 1, negatives >= 0")
        self.n_factors = int(n_factors)
        self.lr = float(lr)
        self.l2 = float(l2)
        self.negatives = int(negatives)
        self.optimizer = optimizer
        self.model = model
        self.max_users = int(max_users)
        self.max_items = int(max_items)
        self.seed = seed
        self._check_mutation("lr", self.lr)
        init = optim.initializers.Normal(mu=0.0, sigma=0.1, seed=seed)
        if model == "biased":
            self._model = reco.BiasedMF(n_factors=self.n_factors, bias_optimizer=make_optimizer(optimizer, lr),
                                        latent_optimizer=make_optimizer(optimizer, lr), l2_bias=self.l2,
                                        l2_latent=self.l2, latent_initializer=init, seed=seed)
        else:
            self._model = reco.FunkMF(n_factors=self.n_factors, optimizer=make_optimizer(optimizer, lr),
                                      l2=self.l2, initializer=init, seed=seed)
        self._rng = np.random.default_rng(seed)
        self._users: OrderedDict[str, None] = OrderedDict()
        self._items: OrderedDict[str, int] = OrderedDict()  # item -> row of the mirrors
        self._ids: list[str] = []
        self._free: list[int] = []
        self._Q = np.zeros((0, self.n_factors))  # mirror of river's item latents
        self._b = np.zeros(0)  # mirror of river's item biases (0 for FunkMF)

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        yield {"n_factors": 4}
        yield {"n_factors": 3, "model": "funk", "optimizer": "adam", "negatives": 1, "max_users": 4,
               "max_items": 6}

    def _check_mutation(self, key: str, value: Any) -> None:
        super()._check_mutation(key, value)
        if key == "lr" and not value > 0:
            raise ValueError("lr must be positive")

    def _optimizers(self) -> list[optim.base.Optimizer]:
        m = self._model
        if isinstance(m, reco.BiasedMF):
            return [m.u_bias_optimizer, m.i_bias_optimizer, m.u_latent_optimizer, m.i_latent_optimizer]
        return [m.u_optimizer, m.i_optimizer]

    def mutate(self, new_attrs: dict[str, Any]) -> None:
        super().mutate(new_attrs)
        if "lr" in new_attrs:
            for opt in self._optimizers():
                opt.mutate({"lr": optim.schedulers.Constant(float(new_attrs["lr"]))})

    def _forget_user(self, user: str) -> None:
        m = self._model
        m.u_latents.pop(user, None)
        if isinstance(m, reco.BiasedMF):
            m.u_biases.pop(user, None)

    def _item_row(self, item: str) -> int:
        items = self._items
        row = items.get(item)
        if row is not None:
            items.move_to_end(item)
            return row
        if len(items) >= self.max_items:
            old, row = items.popitem(last=False)
            m = self._model
            m.i_latents.pop(old, None)
            if isinstance(m, reco.BiasedMF):
                m.i_biases.pop(old, None)
            self._ids[row] = item
        else:
            row = len(self._ids)
            self._ids.append(item)
            if row >= len(self._Q):
                size = max(64, 2 * len(self._Q))
                self._Q = np.concatenate([self._Q, np.zeros((size - len(self._Q), self.n_factors))])
                self._b = np.concatenate([self._b, np.zeros(size - len(self._b))])
        items[item] = row
        return row

    def _mirror(self, item: str) -> None:
        row = self._items[item]
        m = self._model
        self._Q[row] = m.i_latents[item]
        if isinstance(m, reco.BiasedMF):
            self._b[row] = m.i_biases[item]

    def learn_many(self, interactions: Sequence[Interaction]) -> None:
        m = self._model
        users = self._users
        for event in interactions:
            user, item = event.user_id, event.item_id
            if user in users:
                users.move_to_end(user)
            else:
                if len(users) >= self.max_users:
                    self._forget_user(users.popitem(last=False)[0])
                users[user] = None
            self._item_row(item)
            m.learn_one(user, item, 1.0)
            self._mirror(item)
            count = len(self._ids)
            if self.negatives and count > 1:
                for row in self._rng.integers(0, count, size=self.negatives).tolist():
                    negative = self._ids[row]
                    if negative != item:
                        m.learn_one(user, negative, 0.0)
                        self._mirror(negative)

    def scorer(self, user_id: str, history: Sequence[str]) -> FactorScorer:
        m = self._model
        count = len(self._ids)
        latent = m.u_latents.get(user_id) if user_id in self._users else None
        if latent is None or count == 0:
            return FactorScorer(np.zeros(count), self._items, self._ids)
        scores = self._Q[:count] @ np.asarray(latent)
        if isinstance(m, reco.BiasedMF):
            scores += self._b[:count] + m.u_biases.get(user_id, 0.0)
        return FactorScorer(scores, self._items, self._ids)

    def candidates(self, user_id: str, history: Sequence[str], n: int) -> list[str]:
        return self.scorer(user_id, history).candidates(n)

    def score(self, user_id: str, history: Sequence[str], items: Sequence[str]) -> list[float]:
        return self.scorer(user_id, history).score(items)
