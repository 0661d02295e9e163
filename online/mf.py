"""Incremental matrix factorisation for implicit feedback (ISGD with sampled negatives).

Every event ``(user, item)`` is a positive (target 1); ``negatives`` sampled
items are targets 0 (drawn uniformly from the known items, or with
``sampling="recent"`` from the recent event stream, i.e. by popularity). One SGD
step on the squared loss per micro-batch, vectorised with numpy over the batch:
with a batch of one event this is ISGD (Vinagre et al., 2014) with negative
feedback; with larger batches a user's or an item's updates within the batch
are computed from the same starting factors and summed.

State is bounded: users and items live in least-recently-used tables of fixed
capacity whose rows are reused on eviction.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from online.base import Interaction, Tunable


class _RowTable:
    """Ids to rows of a factor matrix, least recently used first; rows reused on eviction."""

    __slots__ = ("rows", "ids", "capacity")

    def __init__(self, capacity: int) -> None:
        self.rows: OrderedDict[str, int] = OrderedDict()
        self.ids: list[str] = []
        self.capacity = capacity

    def __len__(self) -> int:
        return len(self.ids)

    def touch(self, key: str) -> tuple[int, bool]:
        """(row, is_new) for ``key``, marking it most recently used."""
        rows = self.rows
        row = rows.get(key)
        if row is not None:
            rows.move_to_end(key)
            return row, False
        if len(self.ids) >= self.capacity:
            _, row = rows.popitem(last=False)
            self.ids[row] = key
        else:
            row = len(self.ids)
            self.ids.append(key)
        rows[key] = row
        return row, True

    def touch_all(self, keys: Sequence[str]) -> tuple[np.ndarray, list[int]]:
        """Rows for ``keys`` (each marked most recently used), and the rows allocated just now."""
        out = np.empty(len(keys), dtype=np.intp)
        fresh: list[int] = []
        touch = self.touch
        for n, key in enumerate(keys):
            row, new = touch(key)
            out[n] = row
            if new:
                fresh.append(row)
        return out, fresh


class ImplicitMF(Tunable):
    """Matrix factorisation learned online from positives and sampled negatives.

    Parameters
    ----------
    n_factors
        Latent dimension.
    lr
        SGD learning rate (mutable).
    l2
        L2 regularisation of the factors touched by an update (mutable).
    negatives
        Sampled negative items per positive event (mutable).
    init_std
        Standard deviation of the initial factors.
    negative_pool
        Number of recent events the ``"recent"`` negatives are drawn from.
    clip
        Bound on each residual, a guard against divergence at large learning rates.
    max_users, max_items
        Capacity of the user and item tables.
    seed
        Seed of the initialisation and of negative sampling.
    sampling
        ``"uniform"``: negatives drawn uniformly from the known items (the default,
        best on ML-100K); ``"recent"``: drawn from the last ``negative_pool`` events,
        i.e. in proportion to recent popularity.

    Examples
    --------
    >>> from online.base import Interaction
    >>> mf = ImplicitMF(n_factors=4, seed=1)
    >>> mf.learn_many([Interaction("u1", "a", 0.0), Interaction("u1", "b", 1.0)])
    >>> len(mf.score("u1", [], ["a", "b", "never-seen"]))
    3
    >>> mf.score("nobody", [], ["a"])
    [0.0]
    >>> mf.mutate({"lr": 0.1}); mf.lr
    0.1
    """

    name = "mf"
    _mutable_attributes = frozenset({"lr", "l2", "negatives"})

    def __init__(self, n_factors: int = 32, lr: float = 0.05, l2: float = 0.01, negatives: int = 4,
                 init_std: float = 0.1, negative_pool: int = 4096, clip: float = 10.0,
                 max_users: int = 1_000_000, max_items: int = 1_000_000, seed: int | None = 0,
                 sampling: str = "uniform") -> None:
        if n_factors < 1 or negative_pool < 1 or max_users < 1 or max_items < 1:
            raise ValueError("n_factors, negative_pool, max_users and max_items must be >= 1")
        self.n_factors = int(n_factors)
        self.lr = float(lr)
        self.l2 = float(l2)
        self.negatives = int(negatives)
        self.init_std = float(init_std)
        self.negative_pool = int(negative_pool)
        self.clip = float(clip)
        self.max_users = int(max_users)
        self.max_items = int(max_items)
        self.seed = seed
        if sampling not in ("uniform", "recent"):
            raise ValueError("sampling must be 'uniform' or 'recent'")
        self.sampling = sampling
        for key in ("lr", "l2", "negatives"):
            self._check_mutation(key, getattr(self, key))
        self._rng = np.random.default_rng(seed)
        self._users = _RowTable(self.max_users)
        self._items = _RowTable(self.max_items)
        self._P = np.empty((0, self.n_factors))
        self._Q = np.empty((0, self.n_factors))
        self._pool = np.zeros(self.negative_pool, dtype=np.intp)  # item rows of recent events
        self._pool_size = 0
        self._pool_pos = 0

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        yield {"n_factors": 8}
        yield {"n_factors": 4, "negatives": 0, "max_users": 5, "max_items": 7, "negative_pool": 3}

    def _check_mutation(self, key: str, value: Any) -> None:
        super()._check_mutation(key, value)
        if key == "lr" and not value > 0:
            raise ValueError("lr must be positive")
        if key == "l2" and not value >= 0:
            raise ValueError("l2 must be >= 0")
        if key == "negatives" and (int(value) != value or value < 0):
            raise ValueError("negatives must be an integer >= 0")

    @property
    def n_users(self) -> int:
        return len(self._users)

    @property
    def n_items(self) -> int:
        return len(self._items)

    def _rows(self, table: _RowTable, keys: Sequence[str], matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows for ``keys`` (allocated and initialised as needed); returns (rows, grown matrix)."""
        out, fresh = table.touch_all(keys)
        if fresh:
            need = len(table)
            if need > len(matrix):
                grown = np.empty((min(max(2 * len(matrix), need, 64), table.capacity), self.n_factors))
                grown[: len(matrix)] = matrix
                matrix = grown
            matrix[fresh] = self._rng.normal(0.0, self.init_std, (len(fresh), self.n_factors))
        return out, matrix

    def learn_many(self, interactions: Sequence[Interaction]) -> None:
        if not interactions:
            return
        users, self._P = self._rows(self._users, [e.user_id for e in interactions], self._P)
        items, self._Q = self._rows(self._items, [e.item_id for e in interactions], self._Q)
        P, Q, lr, l2, clip = self._P, self._Q, self.lr, self.l2, self.clip
        pu, qi = P[users], Q[items]
        err = np.clip(1.0 - np.einsum("nd,nd->n", pu, qi), -clip, clip)
        grad_u = err[:, None] * qi - l2 * pu
        grad_i = err[:, None] * pu - l2 * qi
        m = self.negatives if self._pool_size else 0
        if m:
            if self.sampling == "uniform":
                neg = self._rng.integers(0, len(self._items), size=(len(items), m))
            else:
                neg = self._pool[self._rng.integers(0, self._pool_size, size=(len(items), m))]
            qn = Q[neg]  # [n, m, d]
            err_n = np.clip(-np.einsum("nd,nmd->nm", pu, qn), -clip, clip)
            err_n[neg == items[:, None]] = 0.0  # the positive itself is never a negative
            grad_u += np.einsum("nm,nmd->nd", err_n, qn)
            grad_n = err_n[:, :, None] * pu[:, None, :] - l2 * qn
            np.add.at(Q, neg.ravel(), lr * grad_n.reshape(-1, self.n_factors))
        np.add.at(P, users, lr * grad_u)
        np.add.at(Q, items, lr * grad_i)
        self._remember(items)

    def _remember(self, items: np.ndarray) -> None:
        """Push the batch's item rows into the ring buffer negatives are drawn from."""
        size = self.negative_pool
        items = items[-size:]
        start = self._pool_pos
        end = start + len(items)
        if end <= size:
            self._pool[start:end] = items
        else:
            split = size - start
            self._pool[start:] = items[:split]
            self._pool[: end - size] = items[split:]
        self._pool_pos = end % size
        self._pool_size = min(self._pool_size + len(items), size)

    def user_vector(self, user_id: str, history: Sequence[str] = ()) -> np.ndarray | None:
        """The user's factors; for a user we don't know, the mean of their known items' factors."""
        row = self._users.rows.get(user_id)
        if row is not None:
            return self._P[row]
        rows = [r for r in map(self._items.rows.get, history) if r is not None]
        if rows:
            return self._Q[rows].mean(axis=0)
        return None

    def scorer(self, user_id: str, history: Sequence[str]) -> FactorScorer:
        vector = self.user_vector(user_id, history)
        n = len(self._items)
        table = self._items
        if vector is None or n == 0:
            return FactorScorer(np.zeros(n), table.rows, table.ids)
        return FactorScorer(self._Q[:n] @ vector, table.rows, table.ids)

    def candidates(self, user_id: str, history: Sequence[str], n: int) -> list[str]:
        return self.scorer(user_id, history).candidates(n)

    def score(self, user_id: str, history: Sequence[str], items: Sequence[str]) -> list[float]:
        return self.scorer(user_id, history).score(items)


class FactorScorer:
    """A :class:`~online.base.Scorer` over a dense score per row (``rows``: id -> row, ``ids``: row -> id)."""

    __slots__ = ("scores", "rows", "ids")

    def __init__(self, scores: np.ndarray, rows: Mapping[str, int], ids: Sequence[str]) -> None:
        self.scores, self.rows, self.ids = scores, rows, ids

    def candidates(self, n: int, exclude: Collection[str] = ()) -> list[str]:
        scores = self.scores
        count = len(scores)
        want = min(count, n + min(len(exclude), 4 * n))
        if want <= 0:
            return []
        top = np.argpartition(-scores, want - 1)[:want] if want < count else np.arange(count)
        top = top[np.argsort(-scores[top], kind="stable")]
        ids = self.ids
        out = [ids[row] for row in top.tolist()]
        if exclude:
            out = [item for item in out if item not in exclude]
        return out[:n]

    def score(self, items: Sequence[str]) -> list[float]:
        if not items:
            return []
        if not len(self.scores):
            return [0.0] * len(items)
        get = self.rows.get
        rows = np.array([get(i, -1) for i in items], dtype=np.intp)
        values = self.scores[rows]
        values[rows < 0] = 0.0
        return values.tolist()


# --- aligned copies learned in one pass: the tuner's arms of one ImplicitMF ---------------------
#
# These live beside ImplicitMF because they share its factor arrays: the arms' ``_P``/``_Q`` are
# views into one stacked array. That is the model's own storage, so it stays inside this module.
#
# Champion and shadows of :class:`~online.mf.ImplicitMF` learned in one vectorised pass.
#
# A shadow learns every event the champion learns, so learning three copies
# separately would triple the model's cost (each ``learn_many`` of one event is a
# few dozen tiny numpy calls). The copies here are *aligned*: they share the
# user/item row tables, the random generator and the negative pool, so a batch
# needs one row look-up and one negative draw, and their factors live in one
# ``[arms, rows, factors]`` array, so every numpy call serves all arms at once.
# Each arm keeps its own ``lr`` and ``l2`` (``negatives`` is shared: a different
# count cannot share the draw, so it is tuned with separate copies instead).
#
# Each arm is still a plain ``ImplicitMF`` whose ``_P``/``_Q`` are views into the
# stack (re-linked after a pickle round trip, which copies views): the blend serves the champion as
# before, and a promoted shadow is a normal model. :func:`stackable` says when this applies.


def _clip(x: np.ndarray, bound: float) -> np.ndarray:
    """``np.clip(x, -bound, bound)`` in place, without its Python wrapper (this runs per event)."""
    np.minimum(x, bound, out=x)
    return np.maximum(x, -bound, out=x)


def stackable(model: object, param: str) -> bool:
    """Exactly ``ImplicitMF`` and a parameter the stack can hold per arm."""
    return type(model) is ImplicitMF and param in ("lr", "l2")


class StackedMF:
    """Owner of the shared factor arrays of aligned ``ImplicitMF`` copies.

    ``models`` are built from ``champion`` (which becomes slot ``champion_slot``);
    the other slots start as exact copies of its state.

    Examples
    --------
    >>> from online.base import Interaction
    >>> champion = ImplicitMF(n_factors=4, lr=0.1, seed=0)
    >>> stack = StackedMF(champion, [0.05, 0.1, 0.2], champion_slot=1)
    >>> stack.learn_many([Interaction("u", "a", 0.0), Interaction("u", "b", 1.0)])
    >>> [m.lr for m in stack.models], stack.models[1] is champion
    ([0.05, 0.1, 0.2], True)
    >>> alone = ImplicitMF(n_factors=4, lr=0.2, seed=0)   # the same events learned alone
    >>> alone.learn_many([Interaction("u", "a", 0.0), Interaction("u", "b", 1.0)])
    >>> bool(np.allclose(alone.score("u", [], ["a", "b"]), stack.models[2].score("u", [], ["a", "b"])))
    True
    """

    def __init__(self, champion: ImplicitMF, lrs: Sequence[float], champion_slot: int = 1,
                 param: str = "lr") -> None:
        self.param = param
        k = len(lrs)
        self._SP = np.repeat(champion._P[None], k, axis=0)
        self._SQ = np.repeat(champion._Q[None], k, axis=0)
        self.models: list[ImplicitMF] = []
        for slot in range(k):
            model = champion if slot == champion_slot else copy.copy(champion)  # shares tables, rng, pool
            self.models.append(model)
        self._views()
        for model, value in zip(self.models, lrs):
            model.mutate({param: value})
        self._rates: tuple = ()

    def score_pool(self, user_id: str, history: Sequence[str], items: Sequence[str]) -> np.ndarray:
        """``[arms, len(items)]`` scores, as each arm's ``score`` would give them, in one product."""
        self._linked()
        lead = self.models[0]
        rows = np.fromiter((lead._items.rows.get(item, -1) for item in items), dtype=np.intp, count=len(items))
        out = np.zeros((len(self.models), len(items)))
        known = rows >= 0
        if not known.any():
            return out
        row = lead._users.rows.get(user_id)
        if row is not None:
            vectors = self._SP[:, row]  # [k, d]
        else:
            seen = [r for r in map(lead._items.rows.get, history) if r is not None]
            if not seen:
                return out
            vectors = self._SQ[:, seen].mean(axis=1)
        out[:, known] = np.einsum("kpd,kd->kp", self._SQ[:, rows[known]], vectors)
        return out

    def _linked(self) -> None:
        """Re-link the arms to the stack if they hold copies (after a pickle round trip)."""
        if self.models[0]._Q.base is not self._SQ or self.models[0]._P.base is not self._SP:
            self._views()

    def _views(self) -> None:
        for slot, model in enumerate(self.models):
            model._P, model._Q = self._SP[slot], self._SQ[slot]

    def reset_slot(self, slot: int, source_slot: int) -> None:
        """Slot ``slot`` restarts from a copy of ``source_slot``'s factors (its own rate kept)."""
        self._SP[slot] = self._SP[source_slot]
        self._SQ[slot] = self._SQ[source_slot]

    def _grow(self, stack: np.ndarray, need: int, capacity: int) -> np.ndarray:
        if need <= stack.shape[1]:
            return stack
        size = min(max(2 * stack.shape[1], need, 64), capacity)
        grown = np.empty((stack.shape[0], size, stack.shape[2]))
        grown[:, : stack.shape[1]] = stack
        return grown

    def _rows(self, table, keys: Sequence[str], which: str) -> np.ndarray:
        lead = self.models[0]
        out, fresh = table.touch_all(keys)
        if fresh:
            attr = "_SP" if which == "P" else "_SQ"
            stack = self._grow(getattr(self, attr), len(table), table.capacity)
            stack[:, fresh] = lead._rng.normal(0.0, lead.init_std, (len(fresh), lead.n_factors))[None]
            setattr(self, attr, stack)
            self._views()
        return out

    def learn_many(self, interactions: Sequence[Interaction]) -> None:
        """One SGD step for every arm on the batch (``ImplicitMF.learn_many``, with an arm axis)."""
        if not interactions:
            return
        self._linked()
        lead = self.models[0]
        users = self._rows(lead._users, [e.user_id for e in interactions], "P")
        items = self._rows(lead._items, [e.item_id for e in interactions], "Q")
        SP, SQ, clip = self._SP, self._SQ, lead.clip
        k, cap, d = SQ.shape
        rates = tuple((m.lr, m.l2) for m in self.models)
        if rates != self._rates:
            self._rates = rates
            self._lr = np.array([r[0] for r in rates])[:, None, None]
            self._l2 = np.array([r[1] for r in rates])[:, None, None]
        lr, l2 = self._lr, self._l2
        pu, qi = SP[:, users], SQ[:, items]  # [k, n, d]
        err = _clip(1.0 - np.einsum("knd,knd->kn", pu, qi), clip)
        grad_u = err[:, :, None] * qi - l2 * pu
        grad_i = err[:, :, None] * pu - l2 * qi
        m = lead.negatives if lead._pool_size else 0
        offsets = (np.arange(k) * cap)[:, None]
        flatQ = SQ.reshape(k * cap, d)
        if m:
            if lead.sampling == "uniform":
                neg = lead._rng.integers(0, len(lead._items), size=(len(items), m))
            else:
                neg = lead._pool[lead._rng.integers(0, lead._pool_size, size=(len(items), m))]
            qn = SQ[:, neg]  # [k, n, m, d]
            err_n = _clip(-np.einsum("knd,knmd->knm", pu, qn), clip)
            err_n[:, neg == items[:, None]] = 0.0
            grad_u += np.einsum("knm,knmd->knd", err_n, qn)
            grad_n = err_n[..., None] * pu[:, :, None, :] - l2[..., None] * qn
            np.add.at(flatQ, (offsets + neg.ravel()[None]).ravel(), (lr[..., None] * grad_n).reshape(-1, d))
        if len(items) == 1:  # one event (the prequential replay, a quiet stream): plain indexing, no add.at
            SP[:, users[0]] += (lr * grad_u)[:, 0]
            SQ[:, items[0]] += (lr * grad_i)[:, 0]
        else:  # a user or an item may repeat within the batch: add.at sums every update
            np.add.at(SP.reshape(k * SP.shape[1], d), ((np.arange(k) * SP.shape[1])[:, None] + users[None]).ravel(),
                      (lr * grad_u).reshape(-1, d))
            np.add.at(flatQ, (offsets + items[None]).ravel(), (lr * grad_i).reshape(-1, d))
        lead._remember(items)
        for model in self.models[1:]:
            model._pool_size, model._pool_pos = lead._pool_size, lead._pool_pos
