"""Sequential co-occurrence: "people who touched X touched Y next (or soon after)".

For every consecutive pair (previous item of a user, this item) the follower
count of the previous item grows. The follower table of each item is bounded:
when it outgrows twice its cap it is cut back to the ``cap`` strongest
followers, so memory per item is O(cap) and pruning is amortised O(1).

:meth:`NextItem.learn_many` generalises the pairs: each item is paired with the
user's previous ``window`` items, the one ``d`` steps back weighing
``decay ** (d - 1)``, and with ``symmetric > 0`` the reverse pair is learned too
(item-to-item similarity as well as order). With a ``half_life`` (in events) old
pairs fade: each new pair adds ``2 ** (n / half_life)``, the trick
:mod:`online.popularity` uses, so forgetting costs nothing per event.
"""
from __future__ import annotations

from array import array
from collections import OrderedDict
from collections.abc import Collection, Iterator, Sequence
from operator import itemgetter
from typing import Any

from online import compiled
from online.base import Interaction, Tunable

_RESCALE_EXPONENT = 256.0


class NextItem(Tunable):
    """Sequential co-occurrence over a user's last few items.

    Parameters
    ----------
    followers_cap
        Followers kept per item.
    lookback
        How many of the user's most recent items vote for candidates; the i-th
        most recent votes with weight ``decay ** i``.
    decay
        Weight ratio between successive lookback positions (and, in
        :meth:`learn_many`, between successive positions of the learning window).
    max_items
        Items with a follower table; the oldest table is dropped beyond it.
    vote_top
        Only the strongest ``vote_top`` followers of each recent item vote; this
        bounds the candidate pool and so the cost of a request.
    window
        How many previous items :meth:`learn_many` pairs each new item with.
    symmetric
        Weight of the reverse pair in :meth:`learn_many` (0 learns order only).
    half_life
        Events after which a pair learned by :meth:`learn_many` counts half;
        ``None`` never forgets.
    max_users
        Users whose recent items :meth:`learn_many` keeps (least recently active evicted).
    staleness
        A table's cached strongest followers are rebuilt once the weight learned
        since the last build exceeds this fraction of the table's weight then
        (0 rebuilds after every change). Heavy tables change share slowly, and
        rebuilding them after every pair is what makes a request expensive.

    Examples
    --------
    >>> from online.base import Interaction
    >>> seq = NextItem()
    >>> seq.learn_pairs([("a", "b"), ("a", "b"), ("a", "c")])
    >>> seq.candidates("u", ["a"], 5)
    ['b', 'c']
    >>> co = NextItem(window=2, symmetric=1.0)
    >>> co.learn_many([Interaction("u", "a", 0.0), Interaction("u", "b", 1.0),
    ...                Interaction("u", "c", 2.0)])
    >>> co.candidates("v", ["c"], 5)
    ['b', 'a']
    """

    name = "next_item"
    _mutable_attributes = frozenset({"decay", "lookback"})
    #: Its item knowledge travels between workers as pairs (``online.sharing``): see :meth:`add_pairs`.
    shares_items = True

    def __init__(self, followers_cap: int = 32, lookback: int = 3, decay: float = 0.5,
                 max_items: int = 1_000_000, vote_top: int = 12, window: int = 1,
                 symmetric: float = 0.0, half_life: float | None = None,
                 max_users: int = 1_000_000, staleness: float = 0.0) -> None:
        if min(followers_cap, lookback, max_items, vote_top, window, max_users) < 1:
            raise ValueError("followers_cap, lookback, max_items, vote_top, window and max_users must be >= 1")
        if not 0.0 <= decay <= 1.0 or not symmetric >= 0.0:
            raise ValueError("decay must be in [0, 1] and symmetric >= 0")
        if half_life is not None and not half_life > 0:
            raise ValueError("half_life must be positive or None")
        if not staleness >= 0:
            raise ValueError("staleness must be >= 0")
        self.followers_cap = int(followers_cap)
        self.lookback = int(lookback)
        self.decay = float(decay)
        self.max_items = int(max_items)
        self.vote_top = int(vote_top)
        self.window = int(window)
        self.symmetric = float(symmetric)
        self.half_life = half_life
        self.max_users = int(max_users)
        self.staleness = float(staleness)
        # Ordered so that the oldest item leaves in O(1) once max_items is reached: a plain dict's
        # next(iter(d)) scans the deleted slots at its front and slows down with every eviction.
        self._followers: OrderedDict[str, dict[str, float]] = OrderedDict()
        # item -> (its table's weight when built, its strongest followers, their weights relative to the
        # first); rebuilt on the next request once the table's weight outgrows ``1 + staleness`` times that.
        # Three objects an entry (the weights one array), not a tuple and a float per follower: a list reads
        # a few of these entries cold from memory, and that reading was most of what its votes cost.
        self._top: dict[str, tuple[float, tuple[str, ...], array]] = {}
        self._mass: dict[str, float] = {}  # total weight in each table
        self._recent: OrderedDict[str, list[str]] = OrderedDict()  # learn_many's own user windows
        self._exponent = 0.0  # log2 of the current pair increment (half_life only)

    def __setstate__(self, state: dict[str, Any]) -> None:
        top = state.get("_top")
        if top and len(next(iter(top.values()))) == 2:  # a snapshot from before the compact cache: rebuilt
            state["_top"] = {}
        self.__dict__.update(state)

    def __len__(self) -> int:
        return len(self._followers)

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        yield {}
        yield {"window": 4, "symmetric": 0.5, "decay": 0.8, "lookback": 4, "followers_cap": 4,
               "vote_top": 6, "half_life": 50.0, "max_items": 30, "max_users": 10, "staleness": 0.2}

    def _check_mutation(self, key: str, value: Any) -> None:
        super()._check_mutation(key, value)
        if key == "decay" and not 0.0 <= value <= 1.0:
            raise ValueError("decay must be in [0, 1]")
        if key == "lookback" and (int(value) != value or value < 1):
            raise ValueError("lookback must be an integer >= 1")

    def _add(self, prev: str, item: str, weight: float) -> None:
        followers = self._followers
        table = followers.get(prev)
        if table is None:
            if len(followers) >= self.max_items:
                evicted, _ = followers.popitem(last=False)  # oldest inserted item
                del self._mass[evicted]
                self._top.pop(evicted, None)
            table = followers[prev] = {}
            self._mass[prev] = 0.0
        table[item] = table.get(item, 0.0) + weight
        self._mass[prev] += weight
        if len(table) > 2 * self.followers_cap:
            self._prune(prev, table)

    def _tables(self, fast: Any) -> Any:
        """The tables, for the compiled twins of the pair loops (``online._fixed_mix.PairTables``)."""
        return fast.PairTables(self._followers, self._mass, self._top, self.max_items, self.followers_cap)

    def _prune(self, prev: str, table: dict[str, float]) -> None:
        """Cut ``prev``'s table back to its ``followers_cap`` strongest followers."""
        kept = sorted(table.items(), key=_count, reverse=True)[: self.followers_cap]
        self._followers[prev] = dict(kept)
        self._mass[prev] = sum(count for _, count in kept)
        self._top.pop(prev, None)

    def learn_pairs(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Learn (previous item, next item) transitions, each with weight 1 (the engine's path)."""
        fast = compiled.fixed_mix
        if fast is not None:
            fast.learn_pairs(self._tables(fast), pairs)
            return
        add = self._add
        for prev, item in pairs:
            if prev != item:
                add(prev, item, 1.0)

    def add_pairs(self, prevs: Sequence[str], items: Sequence[str], weights: Sequence[float],
                  events: int = 0) -> None:
        """Add pairs learned elsewhere (another worker's merged deltas, ``online.sharing``):
        ``weights[i]`` of ``items[i]`` after ``prevs[i]``, as :meth:`learn_many` collects them (before
        the half-life's growth and without the reverse pair, which is added here with ``symmetric``).
        The half-life's clock then moves on by the ``events`` they summarise."""
        scale = 2.0**self._exponent if self.half_life else 1.0
        symmetric = self.symmetric * scale
        fast = compiled.fixed_mix
        if fast is not None:
            fast.add_pairs(self._tables(fast), prevs, items, weights, scale, symmetric)
        else:
            self._add_grouped(prevs, items, weights, scale, symmetric)
        if self.half_life:
            self._exponent += events / self.half_life
            self._rescale()

    def _add_grouped(self, prevs: Sequence[str], items: Sequence[str], weights: Sequence[float], scale: float,
                     symmetric: float) -> None:
        """:meth:`add_pairs`' pairs, grouped by the table that grows (the Python twin of ``_fixed_mix.add_pairs``)."""
        # grouped by the item whose table grows: one look-up, one mass update, one size check per table
        grouped: dict[str, list[tuple[str, float]]] = {}
        get = grouped.get
        for prev, item, weight in zip(prevs, items, weights):
            if prev == item:
                continue
            adds = get(prev)
            if adds is None:
                grouped[prev] = [(item, weight * scale)]
            else:
                adds.append((item, weight * scale))
            if symmetric:
                adds = get(item)
                if adds is None:
                    grouped[item] = [(prev, weight * symmetric)]
                else:
                    adds.append((prev, weight * symmetric))
        followers, mass, limit = self._followers, self._mass, 2 * self.followers_cap
        for prev, adds in grouped.items():
            table = followers.get(prev)
            if table is None:  # a new table (may evict the oldest): the general path
                self._add(prev, *adds[0])
                table, adds = followers[prev], adds[1:]
            found = table.get
            total = 0.0
            for item, weight in adds:
                table[item] = found(item, 0.0) + weight
                total += weight
            mass[prev] += total
            if len(table) > limit:
                self._prune(prev, table)

    # -- summaries (scale-out by item, ``online.aggregation``) ----------------------------------------------
    def masses(self) -> dict[str, float]:
        """Each item's table weight, in units of a pair learned now (:meth:`fresh_weight`): how much evidence
        it holds. A copy."""
        fresh = self.fresh_weight()
        return {item: mass / fresh for item, mass in self._mass.items()}

    def mass_of(self, item_id: str) -> float:
        """One item's :meth:`masses` (0 for an item without a table)."""
        return self._mass.get(item_id, 0.0) / self.fresh_weight()

    def summary(self, item_id: str) -> dict[str, float]:
        """The item's followers (up to ``followers_cap``, strongest first) with their weights in units of a
        pair learned now: what another model holding this one's evidence for the item would hold."""
        table = self._followers.get(item_id)
        if not table:
            return {}
        fresh = self.fresh_weight()
        kept = sorted(table.items(), key=_count, reverse=True)[: self.followers_cap]
        return {item: weight / fresh for item, weight in kept}

    def replace_followers(self, item_id: str, followers: dict[str, float]) -> None:
        """Make ``followers`` (weights in units of a pair learned now, as :meth:`summary` gives them) the item's
        table: another model's fuller view of the item replaces this one's."""
        fresh = self.fresh_weight()
        if item_id not in self._followers:
            if not followers:
                return
            self._add(item_id, next(iter(followers)), 0.0)  # a new table through the general path (evictions)
        table = {item: weight * fresh for item, weight in followers.items() if item != item_id}
        self._followers[item_id] = table
        self._mass[item_id] = sum(table.values())
        self._top.pop(item_id, None)

    def fresh_weight(self) -> float:
        """What a pair learned now adds (``2 ** (n / half_life)``, rescaled; 1 without a half-life)."""
        return 2.0**self._exponent if self.half_life else 1.0

    def learn_many(self, interactions: Sequence[Interaction], *,
                   collect: dict[tuple[str, str], float] | None = None, pairs: bool = True) -> None:
        """Learn a micro-batch in order, pairing each item with the user's previous ``window`` items.

        ``collect`` (sharing, ``online.sharing``) also gathers each forward pair's weight, merged by
        pair, before the half-life's growth: what :meth:`add_pairs` adds elsewhere. ``pairs=False``
        only moves the users' windows on: the pairs of these events came in already (another
        worker's deltas), but the users' next events must pair with them.
        """
        recent = self._recent
        window, decay, symmetric = self.window, self.decay, self.symmetric
        step = 1.0 / self.half_life if self.half_life and pairs else 0.0
        fast = compiled.fixed_mix
        if fast is not None:
            self._exponent = fast.learn_events(self._tables(fast), recent, interactions, window, decay, symmetric,
                                               step, self._exponent, self.max_users, collect, pairs)
            self._rescale()
            return
        add = self._add
        for event in interactions:
            user, item = event.user_id, event.item_id
            past = recent.get(user)
            if past is None:
                if len(recent) >= self.max_users:
                    recent.popitem(last=False)
                past = recent[user] = []
            else:
                recent.move_to_end(user)
            if pairs:
                scale = 2.0**self._exponent if step else 1.0
                weight = 1.0
                for prev in reversed(past):
                    if not weight:
                        break
                    if prev != item:
                        add(prev, item, weight * scale)
                        if symmetric:
                            add(item, prev, symmetric * weight * scale)
                        if collect is not None:
                            key = (prev, item)
                            collect[key] = collect.get(key, 0.0) + weight
                    weight *= decay
            past.append(item)
            if len(past) > window:
                del past[0]
            self._exponent += step
        self._rescale()

    def _rescale(self) -> None:
        """Bring the pair increment back to 1 before it overflows (the ranking does not change)."""
        if self._exponent > _RESCALE_EXPONENT:
            factor = 2.0**-self._exponent
            for table in self._followers.values():
                for item in table:
                    table[item] *= factor
            for prev in self._mass:
                self._mass[prev] *= factor
            self._top.clear()  # built in the old scale
            self._exponent = 0.0

    def strongest(self, item_id: str) -> list[tuple[str, float]]:
        """The ``vote_top`` strongest followers of an item, weights relative to the first."""
        fast = compiled.fixed_mix
        if fast is not None:
            return fast.strongest(self._top, self._mass, self._followers, item_id, 1.0 + self.staleness,
                                  self.vote_top)
        entry = self._entry(item_id)
        return [] if entry is None else list(zip(entry[1], entry[2]))

    def _entry(self, item_id: str) -> tuple[float, tuple[str, ...], array] | None:
        """The item's strongest-followers cache entry (see ``_top``), rebuilt when stale; ``None`` when none."""
        cached = self._top.get(item_id)
        mass = self._mass.get(item_id)
        if cached is not None and mass is not None and mass <= cached[0] * (1.0 + self.staleness):
            return cached
        table = self._followers.get(item_id)
        if not table:
            return None
        ranked = sorted(table.items(), key=_count, reverse=True)[: self.vote_top]
        best = ranked[0][1]
        if not best > 0:
            return None
        entry = self._top[item_id] = (mass, tuple([item for item, _ in ranked]),
                                      array("d", [count / best for _, count in ranked]))
        return entry

    def votes(self, history: Sequence[str], exclude: Collection[str] = ()) -> dict[str, float]:
        """Candidate items voted by the user's last items; the i-th most recent votes ``decay**i``.

        With ``exclude``, the items in it are left out: the same votes for the others, in the same
        order, as leaving them out afterwards gives (each vote is a sum over the user's items, and
        every item's terms are added in the same order either way)."""
        fast = compiled.fixed_mix
        if fast is not None:
            return fast.votes(self._top, self._mass, self._followers, history, self.lookback, self.decay,
                              1.0 + self.staleness, self.vote_top, exclude)
        out: dict[str, float] = {}
        weight = 1.0
        get = out.get
        entry_of = self._entry
        for prev in reversed(history[-self.lookback:]):
            entry = entry_of(prev)
            followers = () if entry is None else zip(entry[1], entry[2])
            if out:
                for item, share in followers:
                    if item not in exclude:
                        out[item] = get(item, 0.0) + weight * share
            else:  # (0.0 + x is x for the votes, which are never negative: the first term is taken as it is)
                out = ({item: share for item, share in followers if item not in exclude} if weight == 1.0
                       else {item: weight * share for item, share in followers if item not in exclude})
                get = out.get
            weight *= self.decay
        return out

    def scorer(self, user_id: str, history: Sequence[str]) -> VoteScorer:
        return VoteScorer(self.votes(history))

    def candidates(self, user_id: str, history: Sequence[str], n: int) -> list[str]:
        return VoteScorer(self.votes(history)).candidates(n)

    def score(self, user_id: str, history: Sequence[str], items: Sequence[str]) -> list[float]:
        return VoteScorer(self.votes(history)).score(items)


_count = itemgetter(1)  # the count of an (item, count) pair


class VoteScorer:
    """A :class:`~online.base.Scorer` over a dict of item scores (items absent score 0)."""

    __slots__ = ("votes",)

    def __init__(self, votes: dict[str, float]) -> None:
        self.votes = votes

    def candidates(self, n: int, exclude: Collection[str] = ()) -> list[str]:
        votes = self.votes
        keys = [item for item in votes if item not in exclude] if exclude else votes
        return sorted(keys, key=votes.__getitem__, reverse=True)[:n]

    def score(self, items: Sequence[str]) -> list[float]:
        get = self.votes.get
        return [get(item, 0.0) for item in items]
