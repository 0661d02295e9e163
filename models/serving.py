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
from itertools import chain, repeat
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from models.data import ItemVocab
from models.encoder import SequenceEncoder
from models.incremental import IncrementalStates
from models.kernels import shortlists

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
        self._table_t = np.ascontiguousarray(self._table.T)  # [H, N+1]: a batch's product, ~2x faster than .T
        self._items = [""] + self.vocab.items  # the item of each id, as a list: the fastest look-up
        self._id_of = self.vocab.id_getter()  # and the id of each item
        #: each user's state, kept up to date one new item at a time
        self.states = IncrementalStates(self.model, cache_mb=cache_mb, max_users=max_users)
        self._cache: tuple[str | None, tuple[int, ...], _Scored] | None = None  # the last request's scores
        #: the last prepared micro-batch: user -> (the history it was prepared from, its scores)
        self._batch: dict[str, tuple[tuple[Any, ...], _Scored]] = {}
        self.forwards = 0  # passes through the blocks run (a batch counts once), for benchmarks and tests

    def learn_many(self, interactions: Sequence[Any]) -> None:
        """No-op: the encoder is refreshed by the trainer and hot-swapped, not learned here."""

    # ------------------------------------------------------------------ user states
    def _key(self, history: Sequence[str]) -> tuple[tuple[int, ...], list[int]]:
        ids = list(filter(None, map(self._id_of, history)))  # the known items' ids (ItemVocab.encode, inlined)
        return tuple(ids[-self.max_len:]), ids

    def prepare(self, requests: Iterable[tuple[str, Sequence[str]]]) -> int:
        """Bring the states of every user in ``requests`` (``(user, history)``) up to date, all at once,
        and score the catalogue for each; returns how many states changed.

        A worker calls it once per micro-batch before ranking its users' lists, so each list then
        costs a look-up, not a pass of its own: its history's ids, its scores and its best items are
        kept for the list, which finds them by its history (unchanged since, as within a micro-batch).
        """
        try:
            wanted: dict[str, tuple[tuple[Any, ...], tuple[int, ...], list[int]]] = {}
            for user_id, history in requests:
                history = tuple(history)
                key, ids = self._key(history)
                if key:
                    wanted[user_id] = (history, key, ids)
            batch: dict[str, tuple[tuple[Any, ...], _Scored]] = {}
            if not wanted:
                self._batch = batch
                return 0
            users = list(wanted)
            states, computed = self.states.states(users, [w[1] for w in wanted.values()])  # [B, H]
            self.forwards += computed > 0
            if len(users) * len(self._table) <= 16_000_000:  # the batch's scores: one product
                scores = self._normalized(states @ self._table_t)  # [B, N+1]
                rows = list(wanted.values())
                ranked = self._ranked(scores, [ids for _, _, ids in rows])
                batch = {user_id: (history, _Scored(ids, scores[row], ranked[row]))
                         for row, (user_id, (history, _, ids)) in enumerate(zip(users, rows))}
            self._batch = batch  # one reference assignment
            return computed
        except Exception:  # the protocol forbids raising into the serving path; requests compute their own
            log.exception("encoder v%s failed to prepare a batch of states", self.version)
            return 0

    def _ranked(self, scores: np.ndarray, ids: list[list[int]]) -> list[list[int]]:
        """Each row's best ``_SHORTLIST`` item ids, best first, leaving out id 0 and the row's ``ids`` (its
        history), for all rows in one compiled pass (``models.kernels.shortlists``): a list then reads its top
        items from here instead of sorting the catalogue. A row holds fewer only when fewer items are left
        (then it holds them all). Equal scores: the lower id first, as the whole sort in :meth:`_top`."""
        lengths = [len(row) for row in ids]
        history = np.fromiter(chain.from_iterable(ids), np.int64, sum(lengths))
        bounds = np.zeros(len(ids) + 1, np.int64)
        np.cumsum(lengths, out=bounds[1:])
        top = np.empty((len(ids), min(_SHORTLIST, scores.shape[1])), np.int64)
        kept = np.empty(len(ids), np.int64)
        shortlists(scores, history, bounds, top, kept)
        return [row[:n] for row, n in zip(top.tolist(), kept.tolist())]

    def _normalized(self, logits: np.ndarray) -> np.ndarray:
        """Scores indexed by item id (``[..., N+1]``; id 0, no item, scores 0): a softmax over the
        catalogue when ``normalize``, else the raw logits (id 0's are 0: its embedding row is zeros)."""
        if not self.normalize:
            return logits
        logits[..., 0] = -np.inf
        logits = np.exp(logits - logits.max(-1, keepdims=True))
        logits /= logits.sum(-1, keepdims=True)
        return logits

    def _scores(self, history: Sequence[str], user_id: str | None = None) -> _Scored | None:
        """Scores of all items ``[N+1]`` (index = item id; 0 at id 0) for the known part of ``history``,
        with its ids and its best items; None when no item of it is known."""
        history = tuple(history)
        prepared = self._batch.get(user_id) if user_id is not None else None
        if prepared is not None and prepared[0] == history:
            return prepared[1]
        key, ids = self._key(history)
        if not key:
            return None
        cached = self._cache
        if cached is not None and cached[0] == user_id and cached[1] == key:
            return cached[2]
        states, computed = self.states.states([user_id], [key])
        self.forwards += computed > 0
        scores = self._normalized(self._table @ states[0])  # [N+1]
        out = _Scored(ids, scores, self._ranked(scores[None, :], [ids])[0])
        self._cache = (user_id, key, out)  # a single reference assignment: safe with concurrent readers
        return out

    # ------------------------------------------------------------------ the strategy protocol
    def scorer(self, user_id: str, history: Sequence[str]) -> _Request:
        """One request's view (``online.base.Scorer``): the user's scores computed once, from the state
        :meth:`prepare` left (or one forward pass when it did not)."""
        return _Request(self, user_id, history)

    def score(self, user_id: str, history: Sequence[str], items: Sequence[str]) -> list[float]:
        """One float per item, higher is better; unknown items and users score 0.0."""
        try:
            return self._lookup(self._scores(history, user_id), items)
        except Exception:  # the protocol forbids raising into the serving path
            log.exception("encoder v%s failed to score for user %r; answering zeros", self.version, user_id)
            try:
                return [0.0] * len(items)
            except TypeError:
                return []

    def _lookup(self, scored: _Scored | None, items: Sequence[str]) -> list[float]:
        if scored is None:
            return [0.0] * len(items)
        ids = np.fromiter(map(self._id_of, items, repeat(0)), np.intp, len(items))  # id 0: unknown
        return scored.scores[ids].tolist()  # id 0 (unknown) scores 0

    def candidates(self, user_id: str, history: Sequence[str], n: int) -> list[str]:
        """Top-``n`` items by score, excluding the user's history; ``[]`` if no item is known."""
        try:
            return self._top(self._scores(history, user_id), n)
        except Exception:
            log.exception("encoder v%s failed to rank for user %r; answering no candidates",
                          self.version, user_id)
            return []

    def _top(self, scored: _Scored | None, n: int, exclude: Collection[str] = ()) -> list[str]:
        """The ``n`` best items, leaving out the history's and ``exclude``'s. The items to leave out are
        strings (the blend's ``seen`` plus its pool so far, often hundreds): they are read off the
        scores' shortlist (history already left out) and looked up one by one until ``n`` remain; a
        request that leaves out more than the shortlist can spare sorts the whole catalogue."""
        if scored is None or n <= 0:
            return []
        items, n = self._items, int(n)
        shortlist = scored.ranked
        if exclude:
            # two collections (online.base.Excluded: the user's seen items, the pool so far) are tested
            # directly, not through a Python-level __contains__ per item
            first, second = getattr(exclude, "first", exclude), getattr(exclude, "second", ())
            out = []
            for j in shortlist:
                item = items[j]
                if item not in first and item not in second:
                    out.append(item)
                    if len(out) == n:
                        return out
        else:
            out = [items[j] for j in shortlist[:n]]
        if len(out) >= n or len(shortlist) < _SHORTLIST:  # enough, or the shortlist holds every item left
            return out[:n]
        scores = scored.scores.copy()
        scores[0] = -np.inf  # id 0 is no item
        if scored.ids:
            scores[scored.ids] = -np.inf
        order = np.argsort(-scores, kind="stable")[: len(scores) - 1 - len(set(scored.ids))].tolist()
        return [item for j in order if (item := items[j]) not in exclude][:n]


class _Scored:
    """One user's scores at one moment: the ids of their known history, the catalogue's scores by item
    id, and the best item ids not in the history (``_SHORTLIST``)."""

    __slots__ = ("ids", "scores", "ranked")

    def __init__(self, ids: list[int], scores: np.ndarray, ranked: list[int]) -> None:
        self.ids, self.scores, self.ranked = ids, scores, ranked


#: How many of a user's best items are kept sorted with their scores: a list asks for the blend's
#: ``candidates`` (20-30), and the blend leaves out its pool so far besides the history.
_SHORTLIST = 64


class _Request:
    """A request's view of an :class:`EncoderScorer` for one user: scores computed at most once."""

    __slots__ = ("owner", "user_id", "history", "version", "_scored", "_done")

    def __init__(self, owner: EncoderScorer, user_id: str, history: Sequence[str]) -> None:
        self.owner, self.user_id, self.history, self.version = owner, user_id, history, owner.version
        self._scored: _Scored | None = None
        self._done = False

    def _get(self) -> _Scored | None:
        if not self._done:
            self._scored, self._done = self.owner._scores(self.history, self.user_id), True
        return self._scored

    def candidates(self, n: int, exclude: Collection[str] = ()) -> list[str]:
        try:
            return self.owner._top(self._get(), n, exclude)
        except Exception:
            log.exception("encoder v%s failed to rank for user %r; answering no candidates",
                          self.version, self.user_id)
            return []

    def score(self, items: Sequence[str]) -> list[float]:
        try:
            return self.owner._lookup(self._get(), items)
        except Exception:
            log.exception("encoder v%s failed to score for user %r; answering zeros", self.version, self.user_id)
            return [0.0] * len(items)
