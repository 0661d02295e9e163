"""The fixed mix's lists for a whole micro-batch at once, as array work.

Push mode builds one list per user of every micro-batch. One at a time
(``Blend._votes_then_popular``) each list costs a few dozen dict operations in Python:
the user's last items' followers summed into votes, the popular head walked past what the
user saw, relative popularity looked up, a sort. Here the batch's lists are built together:

1. **Gather.** Every user's last ``lookback`` items are read. Items are numbered once for good,
   and each item's strongest followers are kept as two arrays (numbers, shares) for as long as
   ``NextItem.strongest`` hands out the same ranking, so a batch joins arrays instead of walking
   dicts. Each (user, follower) vote becomes one entry of flat arrays; the items each user must
   not see are numbered the same way.
2. **Votes.** Entries of excluded items are dropped; the rest are summed per (user, item) by
   ``np.bincount`` in the order they were cast: the same additions, in the same order, as
   ``NextItem.votes`` does, so the sums are the same floats.
3. **Popular items.** One boolean matrix (users x the leaderboard's head) marks what each
   user saw or was already voted; a cumulative sum finds each user's first ``k`` free items.
4. **Rank.** ``w_votes * vote + w_pop * relative popularity`` for every candidate, one
   ``np.lexsort`` by (user, score, pool position) for all users, the first ``k`` of each.

The result is the list ``_votes_then_popular`` gives, item for item and score for score
(``tests/test_online/test_batch_lists.py``). Where that cannot be promised without walking
the leaderboard as the one-at-a-time path does (a user who saw more of the popular head than
the board holds, a catalogue larger than the board and a deep read), or a score is not finite,
the user's entry is ``None`` and the caller builds that list the one-at-a-time way.
"""
from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from online.popularity import DecayedPopularity
from online.sequential import NextItem

#: One list, as ``Ranking.items`` holds it.
Items = list[tuple[str, float]]

_EMPTY_INTS = np.zeros(0, dtype=np.int64)


class FixedMixLists:
    """Builds the fixed mix's lists for micro-batches (:meth:`lists`), keeping item numbers and each
    item's followers as arrays between batches.

    ``max_items`` bounds what is kept: past it, numbers and arrays start afresh (a cost, not a
    change in any list).
    """

    def __init__(self, max_items: int = 1_000_000) -> None:
        self.max_items = max_items
        self._numbers: dict[str, int] = {}
        self._names: list[str] = []
        self._model: NextItem | None = None
        # item -> (the ranking NextItem.strongest returned, its followers' numbers, their shares, their names)
        self._followers: dict[str, tuple[list, np.ndarray, np.ndarray, list[str]]] = {}

    def _number(self, items: Sequence[str]) -> list[int]:
        numbers, names = self._numbers, self._names
        out = []
        for item in items:
            n = numbers.get(item)
            if n is None:
                n = numbers[item] = len(names)
                names.append(item)
            out.append(n)
        return out

    def _strongest(self, votes_model: NextItem, item: str) -> tuple[list, np.ndarray, np.ndarray, list[str]]:
        """``votes_model.strongest(item)`` and its followers as (numbers, shares, names), converted only
        when it changed."""
        top = votes_model.strongest(item)
        kept = self._followers.get(item)
        if kept is not None and kept[0] is top:
            return kept
        names = [follower for follower, _ in top]
        kept = self._followers[item] = (top, np.array(self._number(names), dtype=np.int64),
                                        np.array([share for _, share in top], dtype=np.float64), names)
        return kept

    def lists(self, votes_model: NextItem, w_votes: float, pop: DecayedPopularity, w_pop: float, n_pop: int,
              requests: Sequence[tuple[Sequence[str], Collection[str]]], k: int) -> list[Items | None]:
        """The top ``k`` of the fixed mix for each ``(history, excluded)`` in ``requests``.

        ``n_pop`` is how many popular candidates the pool takes (at least ``k``); every vote is
        pooled. An entry is ``None`` where this user's list must be built one at a time (see the
        module docstring). Reads the models only (the followers' cached rankings aside).
        """
        users = len(requests)
        if not users or k < 1:
            return [None] * users
        if votes_model is not self._model or len(self._names) > self.max_items:
            self._model = votes_model
            self._numbers, self._names, self._followers = {}, [], {}
        board = pop.leaderboard()
        on_board = len(board)
        board_numbers_list = self._number(board)
        board_numbers = np.array(board_numbers_list, dtype=np.int64)
        weights = []  # decay ** j by repeated multiplication, as NextItem.votes weighs the j-th last item
        weight = 1.0
        for _ in range(votes_model.lookback):
            weights.append(weight)
            weight *= votes_model.decay
        lookback = votes_model.lookback

        gathered: dict[str, tuple[list, np.ndarray, np.ndarray, list[str]]] = {}
        seg_user: list[int] = []
        seg_step: list[int] = []
        seg_items: list[np.ndarray] = []
        seg_shares: list[np.ndarray] = []
        seg_names: list[list[str]] = []
        seen_user: list[int] = []
        seen_item: list[int] = []
        seen_count: list[int] = []
        number = self._numbers.get
        strongest = self._strongest
        for user, (history, excluded) in enumerate(requests):
            first_segment = len(seg_items)
            for step, prev in enumerate(reversed(history[-lookback:])):
                found = gathered.get(prev)
                if found is None:
                    found = gathered[prev] = strongest(votes_model, prev)
                if found[0]:
                    seg_user.append(user)
                    seg_step.append(step)
                    seg_items.append(found[1])
                    seg_shares.append(found[2])
                    seg_names.append(found[3])
            seen_count.append(len(excluded))
            if not excluded:
                continue
            entries = sum(map(len, seg_names[first_segment:]))
            if len(excluded) <= 2 * entries + k:  # few items seen: number them
                hidden = [n for item in excluded if (n := number(item)) is not None]
            else:  # a heavy user: test the candidates instead, as the one-at-a-time path does
                hidden = [n for names, numbers in zip(seg_names[first_segment:], seg_items[first_segment:])
                          for name, n in zip(names, numbers.tolist()) if name in excluded]
                # the board as far as it takes to pass k items neither seen nor voted
                free, wanted = 0, k + entries
                for position, name in enumerate(board):
                    if name in excluded:
                        hidden.append(board_numbers_list[position])
                    else:
                        free += 1
                        if free >= wanted:
                            break
            seen_user += [user] * len(hidden)
            seen_item += hidden
        size = len(self._names)

        # -- votes: per (user, item), summed in the order cast ------------------------------------------
        if seg_items:
            lengths = np.fromiter(map(len, seg_items), dtype=np.int64, count=len(seg_items))
            entry_item = np.concatenate(seg_items)
            values = np.concatenate(seg_shares) * np.repeat(np.array(weights)[np.array(seg_step)], lengths)
            keys = np.repeat(np.array(seg_user, dtype=np.int64), lengths) * size + entry_item
        else:
            keys, values = _EMPTY_INTS, np.zeros(0)
        hidden_users = np.array(seen_user, dtype=np.int64)
        hidden_items = np.array(seen_item, dtype=np.int64)
        if hidden_items.size and keys.size:
            keys, values = _without(keys, values, hidden_users * size + hidden_items)
        voted, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        votes = np.bincount(inverse.reshape(-1), weights=values, minlength=voted.size)
        cast = np.argsort(first, kind="stable")  # each user's votes in the order first cast (users in order)
        vote_user, vote_item = np.divmod(voted[cast], size)
        votes = votes[cast]
        vote_counts = np.bincount(vote_user, minlength=users)
        # the pool's order: votes best first, ties as cast (a stable sort of each user's row)
        vote_position = _row_ranks(vote_user, vote_counts, -votes)

        # -- popular items: each user's first k on the board not seen and not voted ---------------------
        by_number = np.argsort(board_numbers)
        sorted_numbers = board_numbers[by_number]
        masked_user = np.concatenate([hidden_users, vote_user])
        masked_number = np.concatenate([hidden_items, vote_item])
        at = np.minimum(np.searchsorted(sorted_numbers, masked_number), max(on_board - 1, 0))
        on = sorted_numbers[at] == masked_number if on_board else np.zeros(masked_number.size, dtype=bool)
        masked_user, masked_position = masked_user[on], by_number[at[on]]
        masked_counts = np.bincount(masked_user, minlength=users)
        width = min(on_board, k + int(masked_counts.max(initial=0)))
        free = np.ones((users, width), dtype=bool)
        inside = masked_position < width
        free[masked_user[inside], masked_position[inside]] = False
        running = np.cumsum(free, axis=1) if width else np.zeros((users, 1), dtype=np.int64)
        popular_user, popular_position = np.nonzero(free & (running <= k))
        popular_counts = np.minimum(running[:, -1], k)
        # the walk's answer is these items, without side effects, when the board is the whole catalogue or
        # holds every candidate the pool takes and every item this user could skip (PopularityScorer.leading)
        excluded_counts = np.array(seen_count, dtype=np.int64) + vote_counts
        sure = (on_board >= len(pop)) | ((popular_counts == k) & (on_board >= n_pop + excluded_counts))

        # -- rank: each user's pool sorted by score, ties in pool order --------------------------------
        user_of = np.concatenate([vote_user, popular_user])
        item_of = np.concatenate([vote_item, board_numbers[popular_position]])
        used, where = np.unique(item_of, return_inverse=True)
        names = self._names
        relative = pop.relative_array([names[n] for n in used.tolist()])[where.reshape(-1)]
        scores = w_votes * np.concatenate([votes, np.zeros(popular_user.size)]) + w_pop * relative
        bad = ~np.isfinite(scores)
        if bad.any():
            sure[user_of[bad]] = False
            scores[bad] = 0.0  # (those users' lists are built one at a time)
        popular_starts = np.cumsum(popular_counts) - popular_counts
        position = np.concatenate([vote_position,
                                   vote_counts[popular_user] + np.arange(popular_user.size)
                                   - popular_starts[popular_user]])
        counts = vote_counts + popular_counts
        grid = np.full((users, max(int(counts.max(initial=0)), 1)), np.inf)
        grid[user_of, position] = -scores
        numbers = np.zeros(grid.shape, dtype=np.int64)
        numbers[user_of, position] = item_of
        best = np.argsort(grid, axis=1, kind="stable")[:, :k]
        top_numbers = np.take_along_axis(numbers, best, axis=1).tolist()
        top_scores = (-np.take_along_axis(grid, best, axis=1)).tolist()
        out: list[Items | None] = []
        for row, (count, ok) in enumerate(zip(counts.tolist(), sure.tolist())):
            if not ok:
                out.append(None)
                continue
            out.append([(names[n], score) for n, score in zip(top_numbers[row][:count], top_scores[row][:count])])
        return out


def _without(keys: np.ndarray, values: np.ndarray, dropped: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``keys`` and ``values`` without the entries whose key is in ``dropped`` (order kept)."""
    dropped = np.sort(dropped)
    at = np.minimum(np.searchsorted(dropped, keys), dropped.size - 1)
    keep = dropped[at] != keys
    return keys[keep], values[keep]


def _row_ranks(rows: np.ndarray, counts: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """For entries grouped by row (``rows`` ascending, ``counts[r]`` entries of row ``r``), each entry's
    place when its row is sorted by ``keys`` ascending, ties in the order given (a stable sort)."""
    if not rows.size:
        return rows
    starts = np.cumsum(counts) - counts
    column = np.arange(rows.size) - starts[rows]
    grid = np.full((counts.size, int(counts.max())), np.inf)
    grid[rows, column] = keys
    order = np.argsort(grid, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(order.shape[1]), order.shape), axis=1)
    return ranks[rows, column]
