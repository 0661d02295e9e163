"""Next-item co-occurrence: "people who touched X touched Y next".

For every consecutive pair (previous item of a user, this item) the follower
count of the previous item grows. The follower table of each item is bounded:
when it outgrows twice its cap it is cut back to the ``cap`` strongest
followers, so memory per item is O(cap) and pruning is amortised O(1).
"""
from __future__ import annotations

from typing import Sequence

from online.base import Interaction


class NextItem:
    """Sequential co-occurrence over a user's last few items.

    Parameters
    ----------
    followers_cap
        Followers kept per item.
    lookback
        How many of the user's most recent items vote for candidates; the i-th
        most recent votes with weight ``decay ** i``.
    decay
        Weight ratio between successive lookback positions.

    Examples
    --------
    >>> from online.base import Interaction
    >>> seq = NextItem()
    >>> seq.learn_pairs([("a", "b"), ("a", "b"), ("a", "c")])
    >>> seq.candidates("u", ["a"], 5)
    ['b', 'c']
    """

    name = "next_item"

    def __init__(self, followers_cap: int = 32, lookback: int = 3, decay: float = 0.5,
                 max_items: int = 1_000_000) -> None:
        self.followers_cap = int(followers_cap)
        self.lookback = int(lookback)
        self.decay = float(decay)
        self.max_items = int(max_items)
        self._followers: dict[str, dict[str, float]] = {}

    def __len__(self) -> int:
        return len(self._followers)

    def learn_pairs(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Learn (previous item, next item) transitions."""
        followers = self._followers
        cap2 = 2 * self.followers_cap
        for prev, item in pairs:
            if prev == item:
                continue
            table = followers.get(prev)
            if table is None:
                if len(followers) >= self.max_items:
                    followers.pop(next(iter(followers)))  # oldest inserted item
                table = followers[prev] = {}
            table[item] = table.get(item, 0.0) + 1.0
            if len(table) > cap2:
                kept = sorted(table.items(), key=lambda kv: kv[1], reverse=True)[: self.followers_cap]
                followers[prev] = dict(kept)

    def learn_many(self, interactions: Sequence[Interaction]) -> None:
        """Interactions alone carry no order per user; the engine calls :meth:`learn_pairs`."""
        raise NotImplementedError("NextItem learns transitions; use learn_pairs()")

    def votes(self, history: Sequence[str]) -> dict[str, float]:
        """Follower scores of the user's last items, each table normalised to its maximum."""
        out: dict[str, float] = {}
        weight = 1.0
        for prev in reversed(history[-self.lookback:]):
            table = self._followers.get(prev)
            if table:
                top = max(table.values())
                for item, count in table.items():
                    out[item] = out.get(item, 0.0) + weight * count / top
            weight *= self.decay
        return out

    def candidates(self, user_id: str, history: Sequence[str], n: int) -> list[str]:
        votes = self.votes(history)
        return sorted(votes, key=votes.__getitem__, reverse=True)[:n]

    def score(self, user_id: str, history: Sequence[str], items: Sequence[str]) -> list[float]:
        votes = self.votes(history)
        return [votes.get(i, 0.0) for i in items]
