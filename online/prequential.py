"""Prequential (test-then-train) hit tracking for a stream.

Before an event is learned, the item it names is looked up in the last list we
served to that user. That is HR@k / NDCG@k / MRR@k on a live stream without a
held-out set, and the same numbers ``streamrec eval`` reports.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field


@dataclass
class PrequentialStats:
    """Running totals plus a rolling window of the most recent outcomes.

    Examples
    --------
    >>> stats = PrequentialStats(k=3, window=2)
    >>> stats.record(["a", "b", "c"], "b")
    >>> stats.record(["a", "b", "c"], "z")
    >>> stats.snapshot()["hr"], round(stats.snapshot()["ndcg"], 3)
    (0.5, 0.315)
    >>> stats.record(["a", "b", "c"], "a")
    >>> stats.snapshot()["hr_recent"], round(stats.snapshot()["ndcg_recent"], 3)
    (0.5, 0.5)
    """

    k: int = 10
    window: int = 1_000
    evaluated: int = 0
    hits: int = 0
    ndcg_sum: float = 0.0
    mrr_sum: float = 0.0
    _recent: deque = field(default_factory=deque, repr=False)
    # Running totals of the recent window, so that snapshot() (called per micro-batch by the worker)
    # is O(1) instead of summing the window (~45 µs at 1,000).
    _recent_hits: int = field(default=0, repr=False)
    _recent_gain: float = field(default=0.0, repr=False)
    _since_resync: int = field(default=0, repr=False)

    def record(self, served: list[str] | tuple[str, ...], item_id: str) -> None:
        """Score one event against the list that was served before it."""
        top = served[: self.k]
        self.evaluated += 1
        try:
            rank = top.index(item_id)
        except ValueError:
            gain = 0.0
        else:
            gain = 1.0 / math.log2(rank + 2)
            self.hits += 1
            self.ndcg_sum += gain
            self.mrr_sum += 1.0 / (rank + 1)
        recent = self._recent  # the gain of each recent outcome: 0 for a miss, > 0 for a hit
        recent.append(gain)
        self._recent_hits += gain > 0
        self._recent_gain += gain
        if len(recent) > self.window:
            gone = recent.popleft()
            self._recent_hits -= gone > 0
            self._recent_gain -= gone
            self._since_resync += 1
            if self._since_resync >= self.window:  # no drift from adding and subtracting floats
                self._since_resync = 0
                self._recent_gain = math.fsum(recent)

    def snapshot(self) -> dict[str, float]:
        n = self.evaluated
        recent = self._recent
        return {
            "evaluated": n,
            "hits": self.hits,
            "hr": self.hits / n if n else 0.0,
            "ndcg": self.ndcg_sum / n if n else 0.0,
            "mrr": self.mrr_sum / n if n else 0.0,
            "hr_recent": self._recent_hits / len(recent) if recent else 0.0,
            "ndcg_recent": max(0.0, self._recent_gain) / len(recent) if recent else 0.0,
        }
