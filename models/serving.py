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
into the user's state is the expensive part: :meth:`EncoderScorer.prepare` runs it
once for all the users of a micro-batch (one batched pass), states are kept per
user and reused while the user's known history is unchanged, and a request's
:meth:`EncoderScorer.scorer` computes its scores once for ``candidates`` and ``score``.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import numpy as np
import torch

from models.data import ItemVocab, pad_right
from models.encoder import SequenceEncoder

log = logging.getLogger(__name__)


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
                 normalize: bool = True, max_users: int = 100_000) -> None:
        if len(items) != model.config.n_items:
            raise ValueError(f"{len(items)} items for an encoder of {model.config.n_items}")
        self.model = model.to("cpu").eval()
        self.vocab = ItemVocab(items)
        self.version = version
        self.normalize = normalize
        self.max_len = model.config.max_len
        self.max_users = int(max_users)
        with torch.inference_mode():  # the item table as one matrix: a request's scores are one product
            self._table = model.output_table.detach().float().contiguous().clone()  # [N, H]
        self._cache: tuple[tuple[int, ...], np.ndarray] | None = None
        #: the last prepared micro-batch's scores: user -> (ids they were computed from, scores [N])
        self._batch: dict[str, tuple[tuple[int, ...], np.ndarray]] = {}
        #: user -> (the ids the state was computed from, the state [H]): reused while nothing new arrived
        self._states: OrderedDict[str, tuple[tuple[int, ...], torch.Tensor]] = OrderedDict()
        self.forwards = 0  # forward passes run (a batch counts once), for benchmarks and tests

    def learn_many(self, interactions: Sequence[Any]) -> None:
        """No-op: the encoder is refreshed by the trainer and hot-swapped, not learned here."""

    # ------------------------------------------------------------------ user states
    def _key(self, history: Sequence[str]) -> tuple[tuple[int, ...], list[int]]:
        ids = self.vocab.encode(history)
        return tuple(ids[-self.max_len:]), ids

    def _remember(self, user_id: str, key: tuple[int, ...], state: torch.Tensor) -> None:
        states = self._states
        states[user_id] = (key, state)
        states.move_to_end(user_id)
        while len(states) > self.max_users:
            states.popitem(last=False)

    def prepare(self, requests: Iterable[tuple[str, Sequence[str]]]) -> int:
        """Compute the states of every user in ``requests`` (``(user, history)``) whose history changed
        since their state was computed, in one batched forward pass; returns how many were computed.

        A worker calls it once per micro-batch before ranking its users' lists, so each list then
        costs one product with the item table, not a forward pass of its own.
        """
        try:
            wanted: dict[str, tuple[int, ...]] = {}
            for user_id, history in requests:
                key, _ = self._key(history)
                if key:
                    wanted[user_id] = key
            todo = {user_id: key for user_id, key in wanted.items()
                    if (held := self._states.get(user_id)) is None or held[0] != key}
            if todo:
                users, keys = list(todo), list(todo.values())
                with torch.inference_mode():
                    seq = torch.from_numpy(pad_right(keys, self.max_len))  # [B, L] right-padded
                    states = self.model.last_hidden(seq).float()  # [B, H]
                self.forwards += 1
                for user_id, key, state in zip(users, keys, states):
                    self._remember(user_id, key, state)
            batch: dict[str, tuple[tuple[int, ...], np.ndarray]] = {}
            if wanted and len(wanted) * len(self._table) <= 16_000_000:  # the batch's scores: one product
                users = list(wanted)
                with torch.inference_mode():
                    logits = torch.stack([self._states[u][1] for u in users]) @ self._table.T  # [B, N]
                    scores = (torch.softmax(logits, dim=1) if self.normalize else logits).numpy()
                batch = {user_id: (wanted[user_id], scores[row]) for row, user_id in enumerate(users)}
            self._batch = batch  # one reference assignment
            return len(todo)
        except Exception:  # the protocol forbids raising into the serving path; requests compute their own
            log.exception("encoder v%s failed to prepare a batch of states", self.version)
            return 0

    def _state(self, user_id: str | None, key: tuple[int, ...]) -> torch.Tensor:
        held = self._states.get(user_id) if user_id is not None else None
        if held is not None and held[0] == key:
            return held[1]
        with torch.inference_mode():
            state = self.model.last_hidden(torch.tensor([key], dtype=torch.int64))[0].float()  # [H]
        self.forwards += 1
        if user_id is not None:
            self._remember(user_id, key, state)
        return state

    def _scores(self, history: Sequence[str], user_id: str | None = None) -> tuple[np.ndarray | None, list[int]]:
        """Scores of all items ``[N]`` (index j = id j+1) for the known part of ``history``."""
        key, ids = self._key(history)
        if not key:
            return None, ids
        prepared = self._batch.get(user_id) if user_id is not None else None
        if prepared is not None and prepared[0] == key:
            return prepared[1], ids
        cached = self._cache
        if cached is not None and cached[0] == key:
            return cached[1], ids
        state = self._state(user_id, key)
        with torch.inference_mode():
            logits = self._table @ state  # [N]
            scores = torch.softmax(logits, dim=0) if self.normalize else logits
            out = scores.numpy().copy()
        self._cache = (key, out)  # a single reference assignment: safe with concurrent readers
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
        get = self.vocab.id_of
        return [float(scores[i - 1]) if (i := get(item)) else 0.0 for item in items]

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
        if scores is None or n <= 0:
            return []
        scores = scores.copy()
        if ids:
            scores[np.asarray(ids, dtype=np.int64) - 1] = -np.inf
        available = len(scores) - len(set(ids))
        wanted = min(int(n) + min(len(exclude), len(scores)), available)
        if wanted <= 0:
            return []
        top = np.argpartition(-scores, wanted - 1)[:wanted]
        top = top[np.argsort(-scores[top], kind="stable")]
        item_of = self.vocab.item_of
        out = [item_of(int(j) + 1) for j in top]
        if exclude:
            out = [item for item in out if item not in exclude]
        return out[:n]


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
