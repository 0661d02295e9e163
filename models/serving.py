"""The encoder as a blend strategy: scores candidates on CPU from a user's recent items.

:class:`EncoderScorer` has the attributes and methods of ``online.base.Strategy``
(``name``, ``learn_many``, ``candidates``, ``score``) without importing
``online``: the protocol is structural, and ``models`` must not depend on
``online``. It learns nothing online (the trainer refreshes it; the worker
hot-swaps it), reads the user's history as item-id strings, and never raises:
unknown items score 0.0, a history with no known item gives all zeros or no
candidates, and any unexpected error is logged and answered the same way.

Scores are probabilities of being the next item (a softmax over the whole
catalogue) by default, so they sit in ``[0, 1]`` like the other strategies'
scores and an unknown item's 0.0 means "no evidence". That costs one
``hidden x catalogue`` product per request with the item table kept as one
matrix, which ``candidates`` needs anyway. The forward pass that turns a history
into the user's state was the expensive part; now each user's state is kept up to
date one new item at a time (:class:`models.incremental.IncrementalStates`: keys and
values cached per user, the blocks run in numpy), :meth:`EncoderScorer.prepare` does
that for all the users of a micro-batch at once, and a request's
:meth:`EncoderScorer.scorer` computes its scores once for ``candidates`` and ``score``.
"""
from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from models.data import ItemVocab
from models.encoder import SequenceEncoder
from models.incremental import IncrementalStates

log = logging.getLogger(__name__)


def serve_on_one_thread() -> None:
    """One thread for torch's intra-op pool and for numpy's BLAS, process-wide, as a worker serves.

    Serving shares a core with the agent. A BLAS or OpenMP pool of two threads on a box whose other
    core is busy spins at every barrier: on the worker's path with the encoder (the scores are a
    ``[users, hidden] x [hidden, items]`` product per micro-batch), OpenBLAS's default pool took 1,508 CPU µs
    per event against 903 with one thread in one profiled run (``benchmarks/results/encoder_in_stream.md`` 3c).
    """
    torch.set_num_threads(1)
    threadpool_limits(limits=1, user_api="blas")


class EncoderScorer:
    """Serve a trained :class:`SequenceEncoder` (moved to CPU, eval mode).

    Parameters
    ----------
    model
        The encoder; it is put in eval mode on CPU and must not be trained further.
    items
        The checkpoint's vocabulary: ``items[i]`` is item id ``i + 1``.
    version
        The checkpoint version, for metrics and logs.
    normalize
        ``True``: softmax probabilities over the catalogue; ``False``: raw dot products.
    cache_mb, max_users
        Memory for the users' cached keys and values, and the most users kept
        (:class:`~models.incremental.IncrementalStates`).

    Examples
    --------
    >>> import torch
    >>> from models.config import EncoderConfig
    >>> _ = torch.manual_seed(0)
    >>> scorer = EncoderScorer(SequenceEncoder(EncoderConfig.tiny(n_items=3)), ["a", "b", "c"])
    >>> scores = scorer.score("u1", ["a", "b"], ["c", "unknown"])
    >>> len(scores), scores[1], 0.0 < scores[0] < 1.0
    (2, 0.0, True)
    >>> scorer.candidates("u1", ["a", "b"], 5)
    ['c']
    >>> scorer.score("u1", ["never-seen"], ["a"])
    [0.0]
    """

    name = "encoder"

    def __init__(self, model: SequenceEncoder, items: Sequence[str], *, version: int | None = None,
                 normalize: bool = True, cache_mb: float = 128.0, max_users: int = 100_000) -> None:
        if len(items) != model.config.n_items:
            raise ValueError(f"{len(items)} items for an encoder of {model.config.n_items}")
        self.model = model.to("cpu").eval()
        self.vocab = ItemVocab(items)
        self.version = version
        self.normalize = normalize
        self.max_len = model.config.max_len
        with torch.inference_mode():  # the item table as one matrix: a request's scores are one product
            # [N+1, H] with id 0's row (zeros) kept, so that a score array is indexed by item id directly
            self._table = model.item_emb.weight.detach().float().numpy().copy()
        self._items = [""] + self.vocab.items  # the item of each id, as a list: the fastest look-up
        self._id_of = self.vocab.id_getter()  # and the id of each item
        #: each user's state, kept up to date one new item at a time
        self.states = IncrementalStates(self.model, cache_mb=cache_mb, max_users=max_users)
        self._cache: tuple[str | None, tuple[int, ...], np.ndarray] | None = None  # the last request's scores
        #: the last prepared micro-batch's scores: user -> (ids they were computed from, scores [N+1] by item id)
        self._batch: dict[str, tuple[tuple[int, ...], np.ndarray]] = {}
        self.forwards = 0  # passes through the blocks run (a batch counts once), for benchmarks and tests

    def learn_many(self, interactions: Sequence[Any]) -> None:
        """No-op: the encoder is refreshed by the trainer and hot-swapped, not learned here."""

    # ------------------------------------------------------------------ user states
    def _key(self, history: Sequence[str]) -> tuple[tuple[int, ...], list[int]]:
        get = self._id_of
        ids = [i for item in history if (i := get(item))]  # the known items' ids (ItemVocab.encode, inlined)
        return tuple(ids[-self.max_len:]), ids

    def prepare(self, requests: Iterable[tuple[str, Sequence[str]]]) -> int:
        """Bring the states of every user in ``requests`` (``(user, history)``) up to date, all at once,
        and score the catalogue for each; returns how many states changed.

        A worker calls it once per micro-batch before ranking its users' lists, so each list then
        costs a look-up, not a pass of its own.
        """
        try:
            wanted: dict[str, tuple[int, ...]] = {}
            for user_id, history in requests:
                key, _ = self._key(history)
                if key:
                    wanted[user_id] = key
            batch: dict[str, tuple[tuple[int, ...], np.ndarray]] = {}
            if not wanted:
                self._batch = batch
                return 0
            users, keys = list(wanted), list(wanted.values())
            states, computed = self.states.states(users, keys)  # [B, H]
            self.forwards += computed > 0
            if len(users) * len(self._table) <= 16_000_000:  # the batch's scores: one product
                scores = self._normalized(states @ self._table.T)  # [B, N+1]
                batch = {user_id: (key, scores[row]) for row, (user_id, key) in enumerate(zip(users, keys))}
            self._batch = batch  # one reference assignment
            return computed
        except Exception:  # the protocol forbids raising into the serving path; requests compute their own
            log.exception("encoder v%s failed to prepare a batch of states", self.version)
            return 0

    def _normalized(self, logits: np.ndarray) -> np.ndarray:
        """Scores indexed by item id (``[..., N+1]``; id 0, no item, scores 0): a softmax over the
        catalogue when ``normalize``, else the raw logits (id 0's are 0: its embedding row is zeros)."""
        if not self.normalize:
            return logits
        logits[..., 0] = -np.inf
        logits = np.exp(logits - logits.max(-1, keepdims=True))
        logits /= logits.sum(-1, keepdims=True)
        return logits

    def _scores(self, history: Sequence[str], user_id: str | None = None) -> tuple[np.ndarray | None, list[int]]:
        """Scores of all items ``[N+1]`` (index = item id; 0 at id 0) for the known part of ``history``."""
        key, ids = self._key(history)
        if not key:
            return None, ids
        prepared = self._batch.get(user_id) if user_id is not None else None
        if prepared is not None and prepared[0] == key:
            return prepared[1], ids
        cached = self._cache
        if cached is not None and cached[0] == user_id and cached[1] == key:
            return cached[2], ids
        states, computed = self.states.states([user_id], [key])
        self.forwards += computed > 0
        out = self._normalized(self._table @ states[0])  # [N+1]
        self._cache = (user_id, key, out)  # a single reference assignment: safe with concurrent readers
        return out, ids

    # ------------------------------------------------------------------ the strategy protocol
    def scorer(self, user_id: str, history: Sequence[str]) -> _Request:
        """One request's view (``online.base.Scorer``): the user's scores computed once, from the state
        :meth:`prepare` left (or one forward pass when it did not)."""
        return _Request(self, user_id, history)

    def score(self, user_id: str, history: Sequence[str], items: Sequence[str]) -> list[float]:
        """One float per item, higher is better; unknown items and users score 0.0."""
        try:
            scores, _ = self._scores(history, user_id)
            return self._lookup(scores, items)
        except Exception:  # the protocol forbids raising into the serving path
            log.exception("encoder v%s failed to score for user %r; answering zeros", self.version, user_id)
            try:
                return [0.0] * len(items)
            except TypeError:
                return []

    def _lookup(self, scores: np.ndarray | None, items: Sequence[str]) -> list[float]:
        if scores is None:
            return [0.0] * len(items)
        get = self._id_of
        return scores[[get(item, 0) for item in items]].tolist()  # id 0 (unknown) scores 0

    def candidates(self, user_id: str, history: Sequence[str], n: int) -> list[str]:
        """Top-``n`` items by score, excluding the user's history; ``[]`` if no item is known."""
        try:
            scores, ids = self._scores(history, user_id)
            return self._top(scores, ids, n)
        except Exception:
            log.exception("encoder v%s failed to rank for user %r; answering no candidates",
                          self.version, user_id)
            return []

    def _top(self, scores: np.ndarray | None, ids: list[int], n: int,
             exclude: Collection[str] = ()) -> list[str]:
        """The ``n`` best items, leaving out the history's and ``exclude``'s. The items to leave out are
        strings (the blend's ``seen`` plus its pool so far, often hundreds): rather than look each one up,
        the best ``2n`` are read and filtered, and twice as many again while too few remain."""
        if scores is None or n <= 0:
            return []
        scores = scores.copy()
        scores[0] = -np.inf  # id 0 is no item
        if ids:
            scores[ids] = -np.inf
        available = len(scores) - 1 - len(set(ids))
        items, n = self._items, int(n)
        wanted = min(2 * n if exclude else n, available)
        while wanted > 0:
            top = np.argpartition(-scores, wanted - 1)[:wanted]
            top = top[np.argsort(-scores[top], kind="stable")].tolist()
            out = [item for j in top if (item := items[j]) not in exclude] if exclude else [items[j] for j in top]
            if len(out) >= n or wanted >= available:
                return out[:n]
            wanted = min(2 * wanted, available)
        return []


class _Request:
    """A request's view of an :class:`EncoderScorer` for one user: scores computed at most once."""

    __slots__ = ("owner", "user_id", "history", "version", "_scores", "_ids")

    def __init__(self, owner: EncoderScorer, user_id: str, history: Sequence[str]) -> None:
        self.owner, self.user_id, self.history, self.version = owner, user_id, history, owner.version
        self._scores: np.ndarray | None = None
        self._ids: list[int] | None = None

    def _get(self) -> tuple[np.ndarray | None, list[int]]:
        if self._ids is None:
            self._scores, self._ids = self.owner._scores(self.history, self.user_id)
        return self._scores, self._ids

    def candidates(self, n: int, exclude: Collection[str] = ()) -> list[str]:
        try:
            scores, ids = self._get()
            return self.owner._top(scores, ids, n, exclude)
        except Exception:
            log.exception("encoder v%s failed to rank for user %r; answering no candidates",
                          self.version, self.user_id)
            return []

    def score(self, items: Sequence[str]) -> list[float]:
        try:
            return self.owner._lookup(self._get()[0], items)
        except Exception:
            log.exception("encoder v%s failed to score for user %r; answering zeros", self.version, self.user_id)
            return [0.0] * len(items)
