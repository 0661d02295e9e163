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
``hidden x catalogue`` product per request, which ``candidates`` needs anyway;
the last request's scores are cached, so ``candidates`` then ``score`` for the
same history computes once.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from models.data import ItemVocab
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
                 normalize: bool = True) -> None:
        if len(items) != model.config.n_items:
            raise ValueError(f"{len(items)} items for an encoder of {model.config.n_items}")
        self.model = model.to("cpu").eval()
        self.vocab = ItemVocab(items)
        self.version = version
        self.normalize = normalize
        self.max_len = model.config.max_len
        self._cache: tuple[tuple[int, ...], np.ndarray] | None = None

    def learn_many(self, interactions: Sequence[Any]) -> None:
        """No-op: the encoder is refreshed by the trainer and hot-swapped, not learned here."""

    def _scores(self, history: Sequence[str]) -> tuple[np.ndarray | None, list[int]]:
        """Scores of all items ``[N]`` (index j = id j+1) for the known part of ``history``."""
        ids = self.vocab.encode(history)
        if not ids:
            return None, ids
        key = tuple(ids[-self.max_len:])
        cached = self._cache
        if cached is not None and cached[0] == key:
            return cached[1], ids
        with torch.inference_mode():
            seq = torch.tensor([key], dtype=torch.int64)  # [1, L], no padding needed for one user
            logits = self.model.full_sort_predict(seq)[0].float()  # [N]
            scores = torch.softmax(logits, dim=0) if self.normalize else logits
            out = scores.numpy().copy()
        self._cache = (key, out)  # a single reference assignment: safe with concurrent readers
        return out, ids

    def score(self, user_id: str, history: Sequence[str], items: Sequence[str]) -> list[float]:
        """One float per item, higher is better; unknown items and users score 0.0."""
        try:
            scores, _ = self._scores(history)
            if scores is None:
                return [0.0] * len(items)
            get = self.vocab.id_of
            return [float(scores[i - 1]) if (i := get(item)) else 0.0 for item in items]
        except Exception:  # the protocol forbids raising into the serving path
            log.exception("encoder v%s failed to score for user %r; answering zeros", self.version, user_id)
            try:
                return [0.0] * len(items)
            except TypeError:
                return []

    def candidates(self, user_id: str, history: Sequence[str], n: int) -> list[str]:
        """Top-``n`` items by score, excluding the user's history; ``[]`` if no item is known."""
        try:
            scores, ids = self._scores(history)
            if scores is None or n <= 0:
                return []
            scores = scores.copy()
            scores[np.asarray(ids, dtype=np.int64) - 1] = -np.inf
            n = min(int(n), len(scores) - len(set(ids)))
            if n <= 0:
                return []
            top = np.argpartition(-scores, n - 1)[:n]
            top = top[np.argsort(-scores[top], kind="stable")]
            return [self.vocab.item_of(int(j) + 1) for j in top]
        except Exception:
            log.exception("encoder v%s failed to rank for user %r; answering no candidates",
                          self.version, user_id)
            return []
