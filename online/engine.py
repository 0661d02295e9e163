"""The online recommender the workers run: bounded user state + strategies + a blend.

This is the backbone's "simple but real" recommender: decayed popularity plus
"items that follow this user's last items", blended with fixed weights and
excluding what the user has already touched. It learns micro-batches in O(batch)
and answers a request in O(candidates), which is what keeps the Faust worker
near the bare pipe's throughput.
"""
from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from online.base import Interaction, Served
from online.blend import Blend, BlendConfig, build_blend
from online.popularity import DecayedPopularity
from online.prequential import PrequentialStats
from online.sequential import NextItem

_by_score = itemgetter(1)


@dataclass(frozen=True)
class EngineConfig:
    """Hyper-parameters of :class:`StreamingRecommender` (plain data; settings fill it)."""

    k: int = 10
    half_life: float = 5_000.0
    popularity_weight: float = 0.3
    next_item_weight: float = 1.0
    popularity_candidates: int = 20
    history_len: int = 50
    max_seen: int = 2_000
    max_users: int = 1_000_000
    max_items: int = 1_000_000
    followers_cap: int = 32
    lookback: int = 3
    vote_top: int = 24
    # None: the fixed popularity + next-item mix above. A BlendConfig: recommend() ranks with
    # online.blend (its "popularity"/"next_item" are this engine's own two models).
    blend: BlendConfig | None = None


class UserState:
    """What we keep per user: recent items (ordered), everything seen, the last list served."""

    __slots__ = ("history", "seen", "last_list")

    def __init__(self) -> None:
        self.history: list[str] = []
        self.seen: set[str] = set()
        self.last_list: tuple[str, ...] | None = None

    # A plain tuple pickles about twice as fast as the default state of a __slots__ class, and a
    # snapshot pickles one of these per user (benchmarks/snapshot.py).
    def __getstate__(self) -> tuple:
        return self.history, self.seen, self.last_list

    def __setstate__(self, state: tuple) -> None:
        self.history, self.seen, self.last_list = state


class StreamingRecommender:
    """Learns interaction micro-batches and ranks items per user.

    Examples
    --------
    >>> from online.base import Interaction
    >>> rec = StreamingRecommender(EngineConfig(k=2))
    >>> rec.learn_many([Interaction("u1", "a", 1.0), Interaction("u1", "b", 2.0),
    ...                 Interaction("u2", "a", 3.0)])
    >>> [item for item, _ in rec.recommend("u2")]  # "b" follows "a"; u2 has seen "a"
    ['b']
    >>> [item for item, _ in rec.recommend("new-user")]
    ['a', 'b']
    """

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config = config or EngineConfig()
        self.popularity = DecayedPopularity(config.half_life, config.max_items)
        self.next_item = NextItem(config.followers_cap, config.lookback, max_items=config.max_items,
                                 vote_top=config.vote_top)
        self.prequential = PrequentialStats(k=config.k)
        self.blend: Blend | None = None
        if config.blend is not None:
            self.blend = build_blend(config.blend, shared={"popularity": self.popularity,
                                                           "next_item": self.next_item},
                                     max_users=config.max_users, max_items=config.max_items,
                                     half_life=config.half_life)
        self._users: OrderedDict[str, UserState] = OrderedDict()
        self.events_learned = 0
        self.users_evicted = 0

    @property
    def n_users(self) -> int:
        return len(self._users)

    @property
    def n_items(self) -> int:
        return len(self.popularity)

    def user_state(self, user_id: str) -> UserState | None:
        """The user's state without touching recency (``None`` for an unknown user); read-only use."""
        return self._users.get(user_id)

    def _user(self, user_id: str) -> UserState:
        users = self._users
        state = users.get(user_id)
        if state is None:
            if len(users) >= self.config.max_users:
                users.popitem(last=False)  # least recently active user
                self.users_evicted += 1
            state = users[user_id] = UserState()
        else:
            users.move_to_end(user_id)
        return state

    def learn_many(self, interactions: Sequence[Interaction]) -> None:
        """Learn a micro-batch in order; each event is first scored against the user's last list."""
        cfg = self.config
        pairs: list[tuple[str, str]] = []
        record = self.prequential.record
        for event in interactions:
            state = self._user(event.user_id)
            item = event.item_id
            if state.last_list is not None:
                record(state.last_list, item)
            history = state.history
            if history:
                pairs.append((history[-1], item))
            history.append(item)
            if len(history) > cfg.history_len:
                del history[0]
            seen = state.seen
            if len(seen) < cfg.max_seen:
                seen.add(item)
        self.popularity.learn_many(interactions)
        self.next_item.learn_pairs(pairs)
        if self.blend is not None:
            self.blend.learn_many(interactions)
        self.events_learned += len(interactions)

    def recommend(self, user_id: str, k: int | None = None, exclude: Iterable[str] = (),
                  record: bool = True, rec_id: str | None = None,
                  weights: Mapping[str, float] | None = None) -> list[tuple[str, float]]:
        """Top-``k`` (item, score) for a user, never items the user touched or ``exclude``.

        ``record`` remembers the list as the one served, for prequential hit rate. ``rec_id``
        names the list for engines that learn from feedback on it (``online.tuning``); ignored here.
        ``weights`` ranks this one request with other blend weights (the tuner's sampled arm).
        """
        return self.serve(user_id, k, exclude, record, rec_id, weights).items

    def serve(self, user_id: str, k: int | None = None, exclude: Iterable[str] = (),
              record: bool = True, rec_id: str | None = None,
              weights: Mapping[str, float] | None = None, *, keep_pool: bool = False,
              substitutes: Mapping[str, Any] | None = None) -> Served:
        """:meth:`recommend`'s list with what served it (:class:`~online.base.Served`): what a
        published list reports, returned with the list rather than read off the engine afterwards.

        ``keep_pool`` and ``substitutes`` are passed to :meth:`online.blend.Blend.serve` (the
        tuner's view of a request); the fixed engine has no pool.
        """
        if self.blend is not None:
            return self._serve_blend(user_id, k, exclude, record, weights, keep_pool, substitutes)
        return Served(self._rank_fixed(user_id, k, exclude, record))

    def _rank_fixed(self, user_id: str, k: int | None, exclude: Iterable[str],
                    record: bool) -> list[tuple[str, float]]:
        cfg = self.config
        k = cfg.k if k is None else k
        state = self._users.get(user_id)
        history = state.history if state is not None else ()
        seen = state.seen if state is not None else frozenset()
        votes = self.next_item.votes(history)
        popular = self.popularity.top_scores(max(256, cfg.popularity_candidates))
        excluded = set(exclude) if exclude else ()
        w_seq, w_pop = cfg.next_item_weight, cfg.popularity_weight
        pop_of = popular.get
        scores: dict[str, float] = {}
        outside_head: list[str] = []
        for item, vote in votes.items():
            if item not in seen and item not in excluded:
                pop = pop_of(item)
                if pop is None:
                    outside_head.append(item)
                    pop = 0.0
                scores[item] = w_seq * vote + w_pop * pop
        if outside_head and w_pop:  # one vectorised look-up for votes outside the popular head
            for item, pop in zip(outside_head, self.popularity.score(user_id, history, outside_head)):
                scores[item] += w_pop * pop
        wanted = max(cfg.popularity_candidates, k)
        for item, pop in popular.items():
            if item not in scores and item not in seen and item not in excluded:
                scores[item] = w_pop * pop
                wanted -= 1
                if wanted <= 0:
                    break
        if wanted > 0 and len(popular) < self.n_items:  # a user who has seen most of the head
            for item in self.popularity.top(self.n_items):
                if item not in scores and item not in seen and item not in excluded:
                    scores[item] = w_pop * self.popularity.score_of(item)
                    wanted -= 1
                    if wanted <= 0:
                        break
        ranked = heapq.nlargest(k, scores.items(), key=_by_score)
        if record and state is not None:
            state.last_list = tuple(item for item, _ in ranked)
        return ranked

    def _serve_blend(self, user_id: str, k: int | None, exclude: Iterable[str], record: bool,
                     weights: Mapping[str, float] | None = None, keep_pool: bool = False,
                     substitutes: Mapping[str, Any] | None = None) -> Served:
        k = self.config.k if k is None else k
        state = self._users.get(user_id)
        if state is None:
            return self.blend.serve(user_id, (), frozenset(), k, exclude, observe=False, weights=weights,
                                    substitutes=substitutes)
        served = self.blend.serve(user_id, state.history, state.seen, k, exclude, observe=record, weights=weights,
                                  keep_pool=keep_pool and record, substitutes=substitutes)
        if record:
            state.last_list = tuple(item for item, _ in served.items)
        return served

    def stats(self) -> dict[str, float]:
        """Plain numbers for metrics and summaries (no Prometheus here)."""
        out = {"users": self.n_users, "items": self.n_items, "events_learned": self.events_learned,
               "users_evicted": self.users_evicted}
        out.update({f"prequential_{key}": value for key, value in self.prequential.snapshot().items()})
        if self.blend is not None:  # blend weights as plain numbers: blend_weight_<strategy>
            out.update({f"blend_weight_{name}": weight for name, weight in self.blend.weights.items()})
        return out
