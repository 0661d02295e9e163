"""The online recommender the workers run: bounded user state + strategies + a blend.

Every list is ranked by one path, :meth:`online.blend.Blend.serve`. By default the blend
is the backbone's "simple but real" fixed mix: decayed popularity plus "items that follow
this user's last items", with fixed weights on their raw scores, excluding what the user
has already touched; it learns micro-batches in O(batch) and answers a request in
O(candidates), which is what keeps the Faust worker near the bare pipe's throughput.
``EngineConfig.blend`` swaps in a learned blend of any registered strategies.
"""
from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from online.base import Interaction, Ranking
from online.blend import Blend, BlendConfig, build_blend
from online.popularity import DecayedPopularity
from online.prequential import PrequentialStats
from online.registry import BuildContext, StrategyConfigs, in_place_changes, spec
from online.sequential import NextItem
from online.sharing import NEXT_ITEM, DeltaCollector, ItemDeltas


@dataclass(frozen=True)
class EngineConfig:
    """Hyper-parameters of :class:`StreamingRecommender` (plain data; settings fill it).

    ``strategies`` holds every registered strategy's frozen config (``online.registry``),
    the engine's own popularity and next-item models included; :meth:`replace` changes any
    field of this record or of a strategy's config by its flat name.
    """

    k: int = 10
    popularity_weight: float = 0.3
    next_item_weight: float = 1.0
    popularity_candidates: int = 20
    history_len: int = 50
    max_seen: int = 2_000
    max_users: int = 1_000_000
    max_items: int = 1_000_000
    strategies: StrategyConfigs = field(default_factory=StrategyConfigs)
    # None: the fixed mix of popularity and next-item above. A BlendConfig: the learned blend it
    # describes (its "popularity"/"next_item" are this engine's own two models). Either way the
    # engine ranks with online.blend: blend_config() is what it builds.
    blend: BlendConfig | None = None

    def replace(self, **changes: Any) -> EngineConfig:
        """A copy with fields changed by flat name: this record's (``k=5``, ``blend=...``) or a
        strategy's (``cooc_window=4``, ``half_life=100``).

        >>> EngineConfig().replace(k=5, cooc_window=4).strategies["cooccurrence"].window
        4
        """
        own = {f.name for f in fields(self)}
        mine = {name: value for name, value in changes.items() if name in own}
        theirs = {name: value for name, value in changes.items() if name not in own}
        if theirs:
            mine["strategies"] = mine.get("strategies", self.strategies).replace(**theirs)
        return dataclasses.replace(self, **mine)

    def flat(self) -> dict[str, Any]:
        """Every value of this config by flat name: the engine's fields, every strategy's
        (``cooc_window``), the blend's (``normalise``) and its weights (``weight:<strategy>``).

        >>> flat = EngineConfig(blend=BlendConfig().with_weights(mf=0.5)).flat()
        >>> flat["weight:mf"], flat["cooc_window"], flat["normalise"]
        (0.5, 10, 'minmax')
        """
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("strategies", "blend")}
        out.update(self.strategies.flat())
        if self.blend is not None:
            out.update({f.name: getattr(self.blend, f.name) for f in fields(self.blend) if f.name != "weights"})
            out.update({f"weight:{name}": weight for name, weight in self.blend.weights})
        return out

    def changes_to(self, other: EngineConfig) -> dict[str, Any]:
        """``other``'s values where they differ from this config's, by flat name (a name only one of
        the two has, such as the weight of a strategy only one blends, maps to ``other``'s value or
        ``None``).

        >>> EngineConfig().changes_to(EngineConfig().replace(half_life=100.0, k=5))
        {'k': 5, 'half_life': 100.0}
        """
        mine, theirs = self.flat(), other.flat()
        return {name: theirs.get(name) for name in {**mine, **theirs}
                if name not in mine or name not in theirs or mine[name] != theirs[name]}

    def blend_config(self) -> BlendConfig:
        """The blend the engine ranks with: ``blend``, or the fixed mix as a blend.

        The fixed mix is every next-item vote plus the ``popularity_candidates`` most popular
        items not voted for, scored ``next_item_weight * vote + popularity_weight * popularity``
        on the raw scales (both in [0, 1]): no normalisation, no learned weights, and "fill"
        pooling, so popularity tops the pool up after the votes, and the weighted sum ranks (no network).
        """
        if self.blend is not None:
            return self.blend
        return BlendConfig(weights=(("next_item", self.next_item_weight), ("popularity", self.popularity_weight)),
                           normalise="none", pooling="fill", learn_weights=False, ranker="weighted_sum",
                           per_strategy=(("next_item", None), ("popularity", self.popularity_candidates)))


class UserState:
    """What we keep per user: recent items (ordered), everything seen, the last list served.

    The recent items are a tuple and the seen items the keys of a dict: containers of strings that the
    garbage collector does not track, so that a user is one object in each of its full collections, not
    three (a list and a set were; ``benchmarks/gc_census.py``). A worker with a million users paused
    ~0.4 s for one.
    """

    __slots__ = ("history", "seen", "last_list")

    def __init__(self) -> None:
        self.history: tuple[str, ...] = ()
        self.seen: dict[str, None] = {}
        self.last_list: tuple[str, ...] | None = None

    # A plain tuple pickles about twice as fast as the default state of a __slots__ class, and a
    # snapshot pickles one of these per user (benchmarks/snapshot.py).
    def __getstate__(self) -> tuple:
        return self.history, self.seen, self.last_list

    def __setstate__(self, state: tuple) -> None:
        history, seen, self.last_list = state
        self.history = tuple(history)  # snapshots from before kept a list and a set
        self.seen = seen if type(seen) is dict else dict.fromkeys(seen)


class StreamingRecommender:
    """Learns interaction micro-batches and ranks items per user.

    Examples
    --------
    >>> from online.base import Interaction
    >>> rec = StreamingRecommender(EngineConfig(k=2))
    >>> rec.learn_many([Interaction("u1", "a", 1.0), Interaction("u1", "b", 2.0),
    ...                 Interaction("u2", "a", 3.0)])
    >>> [item for item, _ in rec.recommend("u2").items]  # "b" follows "a"; u2 has seen "a"
    ['b']
    >>> ranking = rec.recommend("new-user")
    >>> [item for item, _ in ranking.items], ranking.model_version
    (['a', 'b'], 'online')
    """

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config = config or EngineConfig()
        bounds = BuildContext(max_users=config.max_users, max_items=config.max_items)
        blend_config = config.blend_config()
        # The engine's own two models: it teaches them from its per-user histories (next-item pairs
        # from each user's last item) and shares them with the blend, which does not learn them.
        self.popularity: DecayedPopularity = spec("popularity").build(config.strategies["popularity"], bounds)
        self.next_item: NextItem = spec("next_item").build(config.strategies["next_item"], bounds)
        self.prequential = PrequentialStats(k=config.k)
        self.blend: Blend = build_blend(blend_config, config.strategies,
                                        shared={"popularity": self.popularity, "next_item": self.next_item},
                                        max_users=config.max_users, max_items=config.max_items)
        self._users: OrderedDict[str, UserState] = OrderedDict()
        self.events_learned = 0
        self.users_evicted = 0
        #: Item sharing (``online.sharing``): per source shard, the position of the last event the
        #: item-level models hold, learned here or applied from another worker's deltas.
        self.item_positions: dict[int, int] = {}
        self.deltas_applied = 0  # other workers' deltas added to the item-level models
        self.item_events = 0  # events the item-level models hold: learned here or applied from deltas
        self.events_shared_in = 0  # the events those deltas summarised
        #: One string object per item id, the first one seen (:meth:`_learn_users`), bounded by ``max_items``.
        self._names: dict[str, str] = {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # snapshots written before item sharing existed
        state.setdefault("item_positions", {})
        state.setdefault("deltas_applied", 0)
        state.setdefault("item_events", state.get("events_learned", 0))
        state.setdefault("events_shared_in", 0)
        state.setdefault("_names", {})  # snapshots from before one string per item
        self.__dict__.update(state)

    @property
    def n_users(self) -> int:
        return len(self._users)

    @property
    def n_items(self) -> int:
        return len(self.popularity)

    def user_state(self, user_id: str) -> UserState | None:
        """The user's state without touching recency (``None`` for an unknown user); read-only use."""
        return self._users.get(user_id)

    def adopt(self, other: StreamingRecommender) -> None:
        """Take over ``other``'s users (histories, seen items, the lists last served, recency order)
        and its running prequential counters (and its pool ranker, ``online.ranker``, when both rank the same
        strategies with one), in O(1): a warm config swap, where the new engine
        learned the recent stream on its own and must now serve every user the old one knew and
        score each user's next event against the list the old one served. The users are moved,
        not copied: ``other`` must not learn or serve afterwards (``other.adopt(self)`` gives
        them back). Longer histories are cut to this engine's ``history_len`` as users return."""
        self._users = other._users
        self.users_evicted = other.users_evicted
        self.events_learned = other.events_learned  # the stream's count: what it relearned is part of it
        self.prequential = other.prequential
        # Item sharing: what the item-level models were taught up to, per shard, is the old engine's (this
        # one relearned only the recent part of it), so no delta re-read later is applied twice.
        for source, position in other.item_positions.items():
            if position > self.item_positions.get(source, -1):
                self.item_positions[source] = position
        self.deltas_applied = other.deltas_applied
        self.events_shared_in = other.events_shared_in
        # The pool's ranker learned from served lists, which a rebuild does not replay: taken over when it reads
        # the same strategies (the same features); otherwise this engine's starts again from the weighted sum.
        if (self.blend.ranker is not None and other.blend.ranker is not None
                and list(self.blend.strategies) == list(other.blend.strategies)):
            self.blend.ranker = other.blend.ranker

    def retune(self, config: EngineConfig) -> bool:
        """Serve under ``config`` from now on without a rebuild, if every change can be applied to the live
        models (blend weights of the strategies it already runs, knobs declared ``in_place`` in the
        registry, through the model's ``mutate``); returns ``False``, changing nothing, if some cannot
        (a warm rebuild is then the way: ``online.search.loop.build``). A value a model refuses raises
        ``ValueError`` and changes nothing either."""
        changes = self.config.changes_to(config)
        live, rebuild = in_place_changes(changes)
        weights = live.pop("blend", {})
        if (rebuild or self.config.blend is None or config.blend is None or None in weights.values()
                or not set(weights) <= set(self.blend.weights)):
            return False
        models = {"popularity": self.popularity, "next_item": self.next_item, **self.blend.strategies}
        live = {name: attrs for name, attrs in live.items() if name in models}  # a strategy not running: config only
        old = {name: {attr: getattr(models[name], attr) for attr in attrs} for name, attrs in live.items()}
        applied: list[str] = []
        try:
            for name, attrs in live.items():
                models[name].mutate(attrs)
                applied.append(name)
            if weights:
                self.blend.set_weights(dict(config.blend.weights))
        except (ValueError, TypeError):
            for name in applied:  # all or nothing
                models[name].mutate(old[name])
            raise
        self.config = config
        return True

    def user_ids(self) -> list[str]:
        """The ids of the users held, least recently active first."""
        return list(self._users)

    def export_users(self, user_ids: Iterable[str]) -> dict[str, tuple[list[str], list[str]]]:
        """``{user: (recent items, items seen)}`` for the users held among ``user_ids`` (plain, picklable
        data): what moves with a partition, or into an engine rebuilt under another config."""
        users = self._users
        return {user_id: (list(state.history), list(state.seen))
                for user_id in user_ids if (state := users.get(user_id)) is not None}

    def import_users(self, states: Mapping[str, tuple[list[str], list[str]]]) -> int:
        """Replace (or add) these users' state, cut to this engine's bounds; returns how many."""
        cfg = self.config
        for user_id, (history, seen) in states.items():
            state = self._user(user_id)
            state.history = tuple(self._canonical(history[-cfg.history_len:]))
            state.seen = dict.fromkeys(self._canonical(list(seen)[: cfg.max_seen]))
            state.last_list = None
        return len(states)

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

    def _canonical(self, items: Iterable[str]) -> list[str]:
        """``items`` as the string objects the engine already holds for them (see :meth:`_learn_users`)."""
        canonical = self._names.setdefault
        return [canonical(item, item) for item in items]

    def _learn_users(self, interactions: Sequence[Interaction]) -> list[tuple[str, str]]:
        """Score each event against its user's last list, then move the user's state on; returns
        the batch's next-item pairs (each user's previous item, this item).

        Every event decodes its item id into a new string object. Each is replaced by the first one seen
        for that id, so that histories, seen items, pairs and the models' tables all hold the same object:
        a look-up then finds its key by identity, and the few thousand strings a list touches stay in
        the CPU's cache instead of being spread over millions of copies (a list of the fixed mix costs ~10%
        less for this alone, ``benchmarks/interleaved_lists.py --item-strings``). An id that was once in the
        table but is no longer after it was cleared is simply seen again for the first time: only speed
        depends on it."""
        cfg = self.config
        pairs: list[tuple[str, str]] = []
        record = self.prequential.record
        names = self._names
        if len(names) > cfg.max_items:  # items come and go: keep at most what the models may hold
            names.clear()
        canonical = names.setdefault
        for event in interactions:
            state = self._user(event.user_id)
            item = canonical(event.item_id, event.item_id)
            if state.last_list is not None:
                record(state.last_list, item)
            history = state.history
            if history:
                pairs.append((history[-1], item))
            history += (item,)
            if len(history) > cfg.history_len:  # (more than one only after adopt() under a shorter one)
                history = history[len(history) - cfg.history_len:]
            state.history = history
            seen = state.seen
            if len(seen) < cfg.max_seen:
                seen[item] = None
        self.events_learned += len(interactions)
        return pairs

    def learn_many(self, interactions: Sequence[Interaction], deltas: DeltaCollector | None = None) -> None:
        """Learn a micro-batch in order; each event is first scored against the user's last list.

        ``deltas`` (item sharing, ``online.sharing``): the events are the next ones of the collector's
        shard, at the positions it covers (:meth:`~online.sharing.DeltaCollector.cover`); what they teach the
        item-level models is also collected there, and the shard's item position moves to its end.
        Without it nothing is collected and nothing costs more.
        """
        pairs = self._learn_users(interactions)
        self.item_events += len(interactions)
        self.popularity.learn_many(interactions)
        self.next_item.learn_pairs(pairs)
        if deltas is None:
            self.blend.learn_many(interactions)
            return
        deltas.add_items([event.item_id for event in interactions])
        deltas.add_pairs(NEXT_ITEM, pairs)
        self.blend.learn_many(interactions, collect=deltas.models)
        if deltas.last is not None and deltas.last > self.item_positions.get(deltas.source, -1):
            self.item_positions[deltas.source] = deltas.last

    def learn_users(self, interactions: Sequence[Interaction]) -> None:
        """Learn a micro-batch's users only (histories, seen items, prequential scoring, the factor
        models that do not share): events whose item knowledge this engine already holds from
        another worker's deltas (:meth:`knows_items`), re-read after a restart or a rebalance."""
        self._learn_users(interactions)
        self.blend.learn_many(interactions, items=False)

    def hold_items(self, source: int, position: int) -> None:
        """The item-level models hold shard ``source`` up to ``position``: events learned without collecting
        deltas (a worker alone in its group), so that deltas other workers publish later for them are skipped."""
        if position > self.item_positions.get(source, -1):
            self.item_positions[source] = position

    def knows_items(self, source: int, position: int) -> bool:
        """Whether the item-level models already hold the event at ``position`` of shard ``source``."""
        return position <= self.item_positions.get(source, -1)

    def item_model(self, name: str) -> Any:
        """The item model whose shared pairs travel under ``name`` (``online.sharing``), or None: the engine's
        next-item pairs under ``NEXT_ITEM``, else a blend strategy that shares its item knowledge."""
        return self.next_item if name == NEXT_ITEM else self.blend.sharing_learner(name)

    def item_models(self) -> dict[str, Any]:
        """Every item model whose pairs are shared, by the name its deltas carry (:meth:`item_model`)."""
        names = [NEXT_ITEM, *self.blend.strategies]
        return {name: model for name in names if (model := self.item_model(name)) is not None}

    def apply_item_deltas(self, deltas: ItemDeltas) -> bool:
        """Add another worker's item deltas to the item-level models (never to any user), once: a
        delta that does not lie past the shard's item position is skipped (returns False).

        One that starts at or before that position but ends past it (a re-publication cut at other
        micro-batch boundaries) is applied whole: nothing is lost, its overlap counts twice. The
        live workers prevent it (``stream.worker.sharing``)."""
        if deltas.last <= self.item_positions.get(deltas.source, -1):
            return False
        items = self._canonical(deltas.items)
        self.popularity.add_counts([items[i] for i in deltas.pop_items], deltas.pop_counts, deltas.events)
        for name, pairs in deltas.pairs.items():
            model = self.item_model(name)
            if model is not None:
                model.add_pairs([items[i] for i in pairs.prev], [items[i] for i in pairs.nxt], pairs.weight,
                                deltas.events)
        self.item_positions[deltas.source] = deltas.last
        self.deltas_applied += 1
        self.item_events += deltas.events
        self.events_shared_in += deltas.events
        return True

    def recommend(self, user_id: str, k: int | None = None, exclude: Iterable[str] = (),
                  record: bool = True, rec_id: str | None = None, *,
                  weights: Mapping[str, float] | None = None, keep_pool: bool = False,
                  substitutes: Mapping[str, Any] | None = None) -> Ranking:
        """Top-``k`` ``(item, score)`` for a user, never items the user touched or ``exclude``, with
        what served them (:class:`~online.base.Ranking`, the engine contract).

        ``record`` remembers the list as the one served, for prequential hit rate. ``rec_id``
        names the list for engines that learn from feedback on it (``online.tuning``); ignored here.
        ``weights``, ``keep_pool`` and ``substitutes`` are the tuner's view of one request, passed
        to :meth:`online.blend.Blend.serve`: other blend weights (a sampled arm), the scored pool
        returned with the list, other models under some names (a challenger's arm).
        """
        k = self.config.k if k is None else k
        state = self._users.get(user_id)
        if state is None:
            return self.blend.serve(user_id, (), frozenset(), k, exclude, observe=False, weights=weights,
                                    substitutes=substitutes)
        ranking = self.blend.serve(user_id, state.history, state.seen, k, exclude, observe=record,
                                   weights=weights, keep_pool=keep_pool and record, substitutes=substitutes)
        if record:
            state.last_list = tuple([item for item, _ in ranking.items])
        return ranking

    def stats(self) -> dict[str, float]:
        """Plain numbers for metrics and summaries (no Prometheus here)."""
        out = {"users": self.n_users, "items": self.n_items, "events_learned": self.events_learned,
               "users_evicted": self.users_evicted}
        out.update({f"prequential_{key}": value for key, value in self.prequential.snapshot().items()})
        # blend weights as plain numbers: blend_weight_<strategy>
        out.update({f"blend_weight_{name}": weight for name, weight in self.blend.weights.items()})
        return out
