"""Decayed popularity: what is trending now, the cold-start fallback.

Each event adds ``2 ** (n / half_life)`` to its item, where ``n`` counts events
seen so far. Multiplying every score by the same factor does not change the
ranking, so growing the increment is the same as decaying every older count by
half each ``half_life`` events, at O(1) per event instead of O(items). The
scores are rescaled before the increment overflows.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from online.base import Interaction

_RESCALE_EXPONENT = 512.0  # 2**512 is far from float64 overflow (2**1024)


class DecayedPopularity:
    """Item popularity with an exponential half-life measured in events.

    Parameters
    ----------
    half_life
        Number of events after which an old event counts half as much.
    max_items
        Capacity of the item table; the least popular item is evicted beyond it.

    Examples
    --------
    >>> from online.base import Interaction
    >>> pop = DecayedPopularity(half_life=10)
    >>> pop.learn_many([Interaction("u1", "a", 0.0)] * 3 + [Interaction("u2", "b", 1.0)])
    >>> pop.top(2)
    ['a', 'b']
    """

    name = "popularity"

    def __init__(self, half_life: float = 5_000.0, max_items: int = 1_000_000) -> None:
        if half_life <= 0:
            raise ValueError("half_life must be positive")
        self.half_life = float(half_life)
        self.max_items = int(max_items)
        self._index: dict[str, int] = {}
        self._items: list[str] = []
        self._scores = np.zeros(1024, dtype=np.float64)
        self._exponent = 0.0  # log2 of the current increment
        self._top_cache: list[str] | None = None
        self._best: float | None = None
        self._top_scores: dict[str, float] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def _slot(self, item_id: str) -> int:
        slot = self._index.get(item_id)
        if slot is not None:
            return slot
        if len(self._items) >= self.max_items:
            slot = int(np.argmin(self._scores[: len(self._items)]))
            del self._index[self._items[slot]]
            self._items[slot] = item_id
            self._scores[slot] = 0.0
        else:
            slot = len(self._items)
            if slot == len(self._scores):
                self._scores = np.concatenate([self._scores, np.zeros_like(self._scores)])
            self._items.append(item_id)
        self._index[item_id] = slot
        return slot

    def learn_many(self, interactions: Sequence[Interaction]) -> None:
        step = 1.0 / self.half_life
        scores = self._scores
        for event in interactions:
            slot = self._slot(event.item_id)
            scores = self._scores  # _slot may have grown the array
            scores[slot] += 2.0**self._exponent
            self._exponent += step
        if self._exponent > _RESCALE_EXPONENT:
            self._scores *= 2.0**-self._exponent
            self._exponent = 0.0
        self._top_cache = None
        self._best = None
        self._top_scores = None

    def score_of(self, item_id: str) -> float:
        """Popularity relative to the most popular item, in [0, 1]."""
        slot = self._index.get(item_id)
        if slot is None:
            return 0.0
        best = self._max_score()
        return float(self._scores[slot] / best) if best > 0 else 0.0

    def _max_score(self) -> float:
        if self._best is None:
            n = len(self._items)
            self._best = float(self._scores[:n].max()) if n else 0.0
        return self._best

    def top(self, n: int) -> list[str]:
        """The ``n`` most popular items, best first (cached until the next batch)."""
        cache = self._top_cache
        if cache is not None and len(cache) >= min(n, len(self._items)):
            return cache[:n]
        count = len(self._items)
        if count == 0:
            return []
        want = min(max(n, 64), count)
        scores = self._scores[:count]
        part = np.argpartition(-scores, want - 1)[:want]
        order = part[np.argsort(-scores[part], kind="stable")]
        self._top_cache = [self._items[i] for i in order]
        return self._top_cache[:n]

    def top_scores(self, n: int = 256) -> dict[str, float]:
        """The top ``n`` items with their relative popularity, best first (cached per batch)."""
        cached = self._top_scores
        if cached is None or (len(cached) < n and len(cached) < len(self._items)):
            best = self._max_score()
            top = self.top(n)
            if best <= 0:
                cached = dict.fromkeys(top, 0.0)
            else:
                values = (self._scores[[self._index[i] for i in top]] / best).tolist()
                cached = dict(zip(top, values))
            self._top_scores = cached
        return cached

    def candidates(self, user_id: str, history: Sequence[str], n: int) -> list[str]:
        return self.top(n)

    def score(self, user_id: str, history: Sequence[str], items: Sequence[str]) -> list[float]:
        best = self._max_score()
        if best <= 0 or not items:
            return [0.0] * len(items)
        get = self._index.get
        slots = np.fromiter((get(i, -1) for i in items), dtype=np.int64, count=len(items))
        values = self._scores[slots] / best
        values[slots < 0] = 0.0
        return values.tolist()
