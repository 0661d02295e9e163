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
        if len(recent) > self.window:
            recent.popleft()

    def snapshot(self) -> dict[str, float]:
        n = self.evaluated
        recent = self._recent
        return {
            "evaluated": n,
            "hits": self.hits,
            "hr": self.hits / n if n else 0.0,
            "ndcg": self.ndcg_sum / n if n else 0.0,
            "mrr": self.mrr_sum / n if n else 0.0,
            "hr_recent": sum(1 for gain in recent if gain) / len(recent) if recent else 0.0,
            "ndcg_recent": sum(recent) / len(recent) if recent else 0.0,
        }
