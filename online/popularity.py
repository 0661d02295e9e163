"""Decayed popularity: what is trending now, the cold-start fallback.

Each event adds ``2 ** (n / half_life)`` to its item, where ``n`` counts events
seen so far. Multiplying every score by the same factor does not change the
ranking, so growing the increment is the same as decaying every older count by
half each ``half_life`` events, at O(1) per event instead of O(items). The
scores are rescaled before the increment overflows. ``half_life=math.inf`` is
all-time popularity.

Because stored scores only ever grow, an item's rank can change only when it is
touched; the best items are therefore kept in a sorted list that each event
updates in O(log n) plus a short memmove, instead of re-ranking the catalogue.
"""
from __future__ import annotations

import bisect
import math
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from online import compiled
from online.base import Excluded, Interaction, Tunable

_RESCALE_EXPONENT = 512.0  # 2**512 is far from float64 overflow (2**1024)
_TOP_MIN = 256  # length of the maintained leaderboard (grows on demand)
_BOARD_MAX = 4096  # deeper reads are computed, not maintained
_NONE: frozenset[str] = frozenset()
# Placing one grown slot on the board (a bisect, a short memmove) costs about what ten board entries cost in the
# merge's Python pass; so with fewer grown slots than a tenth of the board, they are placed one by one. The board is
# the same either way (benchmarks/board_merge.py measures the two; tests/test_online/test_popularity_counts.py checks).
_MERGE_OVER_TOUCH = 10


class DecayedPopularity(Tunable):
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
    _mutable_attributes = frozenset({"half_life"})

    def __init__(self, half_life: float = 5_000.0, max_items: int = 1_000_000) -> None:
        if not half_life > 0:
            raise ValueError("half_life must be positive")
        if max_items < 1:
            raise ValueError("max_items must be >= 1")
        self.half_life = float(half_life)
        self.max_items = int(max_items)
        self._index: dict[str, int] = {}
        self._items: list[str] = []
        self._scores = np.zeros(1024, dtype=np.float64)
        self._exponent = 0.0  # log2 of the current increment
        self._board: list[int] = []  # best slots, best first
        self._board_neg: list[float] = []  # their negated scores (ascending, for bisect)
        self._board_len = _TOP_MIN
        self._top_scores: dict[str, float] | None = None
        # relative popularity of every item asked for since the scores last changed (the head seeded
        # from top_scores): a micro-batch's lists ask for the same items again and again
        self._relative: dict[str, float] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_relative": None}  # a cache of the current micro-batch's reads

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("_relative", None)  # snapshots from before the cache
        self.__dict__.update(state)

    def __len__(self) -> int:
        return len(self._items)

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        yield {}
        yield {"half_life": 20.0, "max_items": 25}
        yield {"half_life": math.inf}

    def _check_mutation(self, key: str, value: Any) -> None:
        if not value > 0:
            raise ValueError("half_life must be positive")

    def _slot(self, item_id: str) -> int:
        slot = self._index.get(item_id)
        if slot is not None:
            return slot
        if len(self._items) >= self.max_items:
            slot = int(np.argmin(self._scores[: len(self._items)]))
            del self._index[self._items[slot]]
            self._items[slot] = item_id
            self._scores[slot] = 0.0
            self._board_remove(slot)
        else:
            slot = len(self._items)
            if slot == len(self._scores):
                self._scores = np.concatenate([self._scores, np.zeros_like(self._scores)])
            self._items.append(item_id)
        self._index[item_id] = slot
        return slot

    def _board_remove(self, slot: int) -> None:
        board = self._board
        try:
            pos = board.index(slot)
        except ValueError:
            return
        del board[pos], self._board_neg[pos]

    def _board_touch(self, slot: int, score: float) -> None:
        """``slot``'s score grew to ``score``: move it up the leaderboard (or onto it)."""
        board, neg = self._board, self._board_neg
        if len(board) >= self._board_len and -score >= neg[-1]:
            return  # not better than the last one on a full board
        self._board_remove(slot)
        pos = bisect.bisect_right(neg, -score)
        board.insert(pos, slot)
        neg.insert(pos, -score)
        if len(board) > self._board_len:
            board.pop()
            neg.pop()

    def learn_many(self, interactions: Sequence[Interaction]) -> None:
        """Each event adds the current increment to its item, then the increment grows by one event's worth.

        A batch is added at once (one ``np.add.at`` in event order, one board merge) unless an eviction may
        happen mid-way; the scores and the board are those of one event at a time
        (``tests/test_online/test_popularity_counts.py``)."""
        if len(self._items) + len(interactions) > self.max_items:
            self._learn_one_by_one(interactions)
            return
        step = 1.0 / self.half_life
        slot = self._slot
        slots = [slot(event.item_id) for event in interactions]
        exponent, increments = self._exponent, []
        for _ in slots:
            increments.append(2.0**exponent)
            exponent += step
        self._exponent = exponent
        if slots:
            np.add.at(self._scores, slots, increments)
            # each slot takes its place on the board when last touched
            by_last_touch = list(dict.fromkeys(reversed(slots)))
            by_last_touch.reverse()
            self._board_merge(by_last_touch)
        self._rescale()

    def _learn_one_by_one(self, interactions: Sequence[Interaction]) -> None:
        step = 1.0 / self.half_life
        touch = self._board_touch
        for event in interactions:
            slot = self._slot(event.item_id)
            scores = self._scores  # _slot may have grown the array
            scores[slot] += 2.0**self._exponent
            touch(slot, float(scores[slot]))
            self._exponent += step
        self._rescale()

    def _rescale(self) -> None:
        """Bring the increment back to 1 before it overflows (the ranking does not change)."""
        if self._exponent > _RESCALE_EXPONENT:
            factor = 2.0**-self._exponent
            self._scores *= factor
            self._board_neg = [value * factor for value in self._board_neg]
            self._exponent = 0.0
        self._top_scores = self._relative = None

    def add_counts(self, items: Sequence[str], counts: Sequence[float], events: int) -> None:
        """Add what ``events`` events learned elsewhere taught: ``counts[i]`` events of ``items[i]``
        (another worker's merged popularity increments, ``online.sharing``).

        The counts land at the current increment and the clock then moves on by ``events``, so
        the shared events age like local ones; the order inside the summarised batch is lost
        (each count is as fresh as the batch's start, at most ``events / half_life`` halvings off).
        """
        scale = 2.0**self._exponent
        slots = None
        # all at once (the same scores and board as one at a time, see _board_merge) unless an eviction may
        # happen (it picks the least popular slot mid-way), an item comes twice, or a count would shrink a score
        if len(self._items) + len(items) <= self.max_items and (not counts or min(counts) >= 0):
            slot = self._slot
            slots = [slot(item_id) for item_id in items]
            if len(set(slots)) != len(slots):
                slots = None
        if slots is None:
            self._add_one_by_one(items, counts, scale)
        elif slots:
            index = np.array(slots, dtype=np.int64)
            self._scores[index] += np.asarray(counts, dtype=np.float64) * scale
            self._board_merge(slots)
        self._exponent += events / self.half_life
        self._rescale()

    def _add_one_by_one(self, items: Sequence[str], counts: Sequence[float], scale: float) -> None:
        touch = self._board_touch
        for item_id, count in zip(items, counts):
            slot = self._slot(item_id)
            scores = self._scores
            scores[slot] += count * scale
            touch(slot, float(scores[slot]))

    def _board_merge(self, slots: list[int]) -> None:
        """The leaderboard after ``slots`` (distinct, in the order each was last touched) grew: what touching
        them one by one (:meth:`_board_touch`) leaves, found with one stable sort. Scores only grow, so the
        new board is the best of the old board and the grown slots; a grown slot lands after every slot of
        equal score that it did not grow past (``bisect_right``), and after the grown slots touched before it.

        A few grown slots are placed one by one instead: the merge is a Python pass over the whole board
        (~30 µs for 256 slots), which a live micro-batch, a handful of events per partition, cannot amortise."""
        if len(slots) * _MERGE_OVER_TOUCH < len(self._board):
            scores, touch = self._scores, self._board_touch
            for slot in slots:
                touch(slot, float(scores[slot]))
            return
        grown = set(slots)
        candidates = np.array([slot for slot in self._board if slot not in grown] + slots, dtype=np.int64)
        negated = -self._scores[candidates]
        order = np.argsort(negated, kind="stable")[: self._board_len]
        self._board = candidates[order].tolist()
        self._board_neg = negated[order].tolist()

    def score_of(self, item_id: str) -> float:
        """Popularity relative to the most popular item, in [0, 1]."""
        slot = self._index.get(item_id)
        if slot is None:
            return 0.0
        best = self._max_score()
        return float(self._scores[slot] / best) if best > 0 else 0.0

    def _max_score(self) -> float:
        return -self._board_neg[0] if self._board_neg else 0.0

    def _rebuild_board(self, length: int) -> None:
        count = len(self._items)
        self._board_len = max(length, self._board_len)
        want = min(self._board_len, count)
        scores = self._scores[:count]
        part = np.argpartition(-scores, want - 1)[:want]
        order = part[np.argsort(-scores[part], kind="stable")]
        self._board = order.tolist()
        self._board_neg = (-scores[order]).tolist()

    def top(self, n: int) -> list[str]:
        """The ``n`` most popular items, best first."""
        count = len(self._items)
        if count == 0 or n <= 0:
            return []
        items = self._items
        if n > len(self._board) and len(self._board) < count:
            if n > _BOARD_MAX:  # a one-off deep read: rank the catalogue, keep the board short
                scores = self._scores[:count]
                want = min(n, count)
                part = np.argpartition(-scores, want - 1)[:want]
                return [items[slot] for slot in part[np.argsort(-scores[part], kind="stable")]]
            self._rebuild_board(n)
        return [items[slot] for slot in self._board[:n]]

    def top_scores(self, n: int = 256) -> dict[str, float]:
        """The top ``n`` items with their relative popularity, best first (cached per batch)."""
        cached = self._top_scores
        if cached is None or (len(cached) < n and len(cached) < len(self._items)):
            top = self.top(n)
            best = self._max_score()
            if best <= 0:
                cached = dict.fromkeys(top, 0.0)
            else:  # -(-s) / best is s / best exactly: the same numbers as score()
                cached = dict(zip(top, [-value / best for value in self._board_neg[: len(top)]]))
            self._top_scores = cached
        return cached

    def relative_scores(self, items: Sequence[str]) -> list[float]:
        """:meth:`score_of` of each item (the same numbers as :meth:`score`). Interpreted, the values are
        remembered until the scores change (one dict look-up per item the micro-batch asked for before); the
        compiled twin (``online._fixed_mix.relative``) reads the score array directly, which costs less."""
        fast = compiled.fixed_mix
        if fast is not None:
            return fast.relative(items if type(items) is list else list(items), self._index, self._scores,
                                 self._max_score())
        memo = self._relative
        if memo is None:
            memo = self._relative = dict(self.top_scores())
        get = memo.get
        out = [get(item) for item in items]
        if None in out:  # first asked since the last change: score_of's division, for all of them at once
            missing = [i for i, value in enumerate(out) if value is None]
            best = self._max_score()
            if best > 0:
                index = self._index
                slots = [index.get(items[i], -1) for i in missing]
                values = (self._scores[slots] / best).tolist()  # (slot -1, an unknown item: 0.0 below)
                for i, slot, value in zip(missing, slots, values):
                    memo[items[i]] = out[i] = value if slot >= 0 else 0.0
            else:
                for i in missing:
                    memo[items[i]] = out[i] = 0.0
        return out

    def candidates(self, user_id: str, history: Sequence[str], n: int) -> list[str]:
        return self.top(n)

    def score(self, user_id: str, history: Sequence[str], items: Sequence[str]) -> list[float]:
        best = self._max_score()
        if best <= 0 or not items:
            return [0.0] * len(items)
        get = self._index.get
        slots = np.array([get(i, -1) for i in items], dtype=np.int64)
        values = self._scores[slots] / best
        values[slots < 0] = 0.0
        return values.tolist()

    def scorer(self, user_id: str, history: Sequence[str]) -> PopularityScorer:
        return PopularityScorer(self)


class PopularityScorer:
    """Candidates are the leaderboard minus ``exclude``; scores are relative popularity."""

    __slots__ = ("pop",)

    def __init__(self, pop: DecayedPopularity) -> None:
        self.pop = pop

    def candidates(self, n: int, exclude: Collection[str] = ()) -> list[str]:
        pop = self.pop
        if not exclude:
            return pop.top(n)
        # two collections tested directly, without copying them (the blend's "fill" pooling)
        first, second = (exclude.first, exclude.second) if isinstance(exclude, Excluded) else (exclude, _NONE)
        want = n + min(len(exclude), 4 * n)
        board = pop._board
        out: list[str] = []
        ranked: Iterable[str]
        if want > len(board) and len(board) < len(pop):
            ranked = pop.top(want)
            examined = len(ranked)
        else:  # walk the leaderboard lazily until n unexcluded items are found
            items = pop._items
            examined = len(board)
            fast = compiled.fixed_mix
            if fast is not None:  # the same walk, compiled (the general path's popularity candidates)
                out, _ = fast.walk(board, items, first, second, n)
                if len(out) == n or examined >= len(pop):
                    return out
                ranked = ()  # the whole board was walked: read deeper below
            else:
                ranked = (items[slot] for slot in board)
        for item in ranked:
            if item not in first and item not in second:
                out.append(item)
                if len(out) == n:
                    return out
        if examined < len(pop):  # a user who has seen most of the head: read deeper
            for item in pop.top(len(pop))[examined:]:
                if item not in first and item not in second:
                    out.append(item)
                    if len(out) == n:
                        break
        return out

    def leading(self, n: int, excluded: Collection[str], pooled: Collection[str], take: int) -> list[str]:
        """``candidates(n, Excluded(excluded, pooled))[:take]`` (``pooled``: distinct items, none of them
        excluded, e.g. a dict; the blend's "fill" pooling), with the same effect on the leaderboard (a
        deeper read rebuilds it), found by walking only as far as the first ``take``: when the part of
        the board not yet walked is long enough to hold the other ``n - take`` even if every excluded
        item lies in it, the full walk would have ended inside the board as well."""
        pop = self.pop
        board = pop._board
        excluded_count = len(excluded) + len(pooled)
        if (not excluded_count or take >= n
                or (n + min(excluded_count, 4 * n) > len(board) and len(board) < len(pop))):
            pool = dict.fromkeys(pooled)
            return self.candidates(n, Excluded(excluded, pool) if pool else excluded)[:take]
        first, second = excluded, pooled
        items = pop._items
        out: list[str] = []
        if take > 0:
            fast = compiled.fixed_mix
            if fast is not None:
                out, walked = fast.walk(board, items, first, second, take)
            else:
                walked = 0
                for slot in board:
                    walked += 1
                    item = items[slot]
                    if item not in first and item not in second:
                        out.append(item)
                        if len(out) == take:
                            break
            if len(out) < take:
                return self.leading(n, excluded, pooled, n)[:take]  # a short board: the full walk
            if len(board) - walked - excluded_count < n - take:
                return self.leading(n, excluded, pooled, n)[:take]
        elif len(board) - excluded_count < n:
            return self.leading(n, excluded, pooled, n)[:take]
        return out

    def score(self, items: Sequence[str]) -> list[float]:
        """Relative popularity, the same numbers as :meth:`DecayedPopularity.score`
        (:meth:`DecayedPopularity.relative_scores`)."""
        return self.pop.relative_scores(items)
