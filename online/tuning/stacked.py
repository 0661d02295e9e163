"""Champion and shadows of :class:`~online.mf.ImplicitMF` learned in one vectorised pass.

A shadow learns every event the champion learns, so learning three copies
separately would triple the model's cost (each ``learn_many`` of one event is a
few dozen tiny numpy calls). The copies here are *aligned*: they share the
user/item row tables, the random generator and the negative pool, so a batch
needs one row look-up and one negative draw, and their factors live in one
``[arms, rows, factors]`` array, so every numpy call serves all arms at once.
Each arm keeps its own ``lr`` and ``l2`` (``negatives`` is shared: a different
count cannot share the draw, so it is tuned with separate copies instead).

Each arm is still a plain ``ImplicitMF`` whose ``_P``/``_Q`` are views into the
stack (re-linked after a pickle round trip, which copies views): the blend serves the champion as
before, and a promoted shadow is a normal model. :func:`stackable` says when this applies.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np

from online.base import Interaction
from online.mf import ImplicitMF


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
