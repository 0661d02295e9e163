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
    vote_top
        Only the strongest ``vote_top`` followers of each recent item vote; this
        bounds the candidate pool and so the cost of a request.

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
                 max_items: int = 1_000_000, vote_top: int = 12) -> None:
        self.followers_cap = int(followers_cap)
        self.lookback = int(lookback)
        self.decay = float(decay)
        self.max_items = int(max_items)
        self.vote_top = int(vote_top)
        self._followers: dict[str, dict[str, float]] = {}
        # item -> its strongest followers with weights normalised to the strongest (1.0);
        # dropped whenever the item's table changes, rebuilt on the next request.
        self._top: dict[str, list[tuple[str, float]]] = {}

    def __len__(self) -> int:
        return len(self._followers)

    def learn_pairs(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Learn (previous item, next item) transitions."""
        followers = self._followers
        stale = self._top
        cap2 = 2 * self.followers_cap
        for prev, item in pairs:
            if prev == item:
                continue
            table = followers.get(prev)
            if table is None:
                if len(followers) >= self.max_items:
                    evicted = next(iter(followers))  # oldest inserted item
                    followers.pop(evicted)
                    stale.pop(evicted, None)
                table = followers[prev] = {}
            table[item] = table.get(item, 0.0) + 1.0
            stale.pop(prev, None)
            if len(table) > cap2:
                kept = sorted(table.items(), key=lambda kv: kv[1], reverse=True)[: self.followers_cap]
                followers[prev] = dict(kept)

    def learn_many(self, interactions: Sequence[Interaction]) -> None:
        """Interactions alone carry no order per user; the engine calls :meth:`learn_pairs`."""
        raise NotImplementedError("NextItem learns transitions; use learn_pairs()")

    def strongest(self, item_id: str) -> list[tuple[str, float]]:
        """The ``vote_top`` strongest followers of an item, weights relative to the first."""
        top = self._top.get(item_id)
        if top is None:
            table = self._followers.get(item_id)
            if not table:
                return []
            ranked = sorted(table.items(), key=lambda kv: kv[1], reverse=True)[: self.vote_top]
            best = ranked[0][1]
            top = self._top[item_id] = [(item, count / best) for item, count in ranked]
        return top

    def votes(self, history: Sequence[str]) -> dict[str, float]:
        """Candidate items voted by the user's last items; the i-th most recent votes ``decay**i``."""
        out: dict[str, float] = {}
        weight = 1.0
        get = out.get
        for prev in reversed(history[-self.lookback:]):
            for item, share in self.strongest(prev):
                out[item] = get(item, 0.0) + weight * share
            weight *= self.decay
        return out

    def candidates(self, user_id: str, history: Sequence[str], n: int) -> list[str]:
        votes = self.votes(history)
        return sorted(votes, key=votes.__getitem__, reverse=True)[:n]

    def score(self, user_id: str, history: Sequence[str], items: Sequence[str]) -> list[float]:
        votes = self.votes(history)
        return [votes.get(i, 0.0) for i in items]
