"""The strategy blend: candidates from every strategy, normalised scores, weighted sum.

A request for user ``u`` asks each strategy with a positive weight for its top
``candidates`` items (never ones the user touched), pools them, has every
strategy score the whole pool, normalises each strategy's scores over the pool
(so a co-occurrence vote and a factor product become comparable) and ranks the
pool by the weighted sum. The weights are plain data: :class:`BlendConfig` sets
them at start-up, :meth:`Blend.set_weights` changes them while running (the
tuner's hook), and each learning model's rate changes through its own
``mutate``.

Normalisations
--------------
``minmax``  ``(s - min) / (max - min)`` over the pool; invariant to any positive
            affine change of a strategy's scale, so weights mean "share of the vote".
``rank``    ``1 - rank / (len(pool) - 1)`` (Borda); ignores score gaps entirely.
``none``    the raw scores, weighted as they are: for strategies whose scales are already
            comparable (the engine's fixed mix of popularity and next-item votes, both in [0, 1]).

Pooling
-------
``union``   every strategy proposes its best ``candidates`` items; the pool is their union.
``fill``    strategies propose in order, each its best items not already pooled, so a later
            strategy fills the pool up (the fixed mix: every next-item vote, then popular items).

A strategy may propose another number of candidates than the blend's (``per_strategy``);
``None`` there means every candidate it has (a bounded proposer, like next-item votes).
"""
from __future__ import annotations

import math
import sys
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from operator import itemgetter
from typing import Any

import numpy as np

from online import compiled
from online.base import Excluded, Interaction, Pool, Ranking, Scorer, Strategy, scorer_for
from online.popularity import DecayedPopularity, PopularityScorer
from online.ranker import PoolRanker
from online.registry import RANKERS, REGISTRY, BuildContext, StrategyConfigs, spec
from online.rerank import OPTIMIZERS, LearnedWeights
from online.sequential import NextItem

NORMALISATIONS = ("minmax", "rank", "none")
POOLINGS = ("union", "fill")
#: Names of the registered strategies (``online.registry.REGISTRY``, which knows how to build each).
STRATEGY_NAMES = tuple(REGISTRY)


@dataclass(frozen=True)
class BlendConfig:
    """Which strategies the engine blends, with what weight and hyper-parameters.

    ``weights`` is a tuple of ``(strategy, weight)`` pairs, names from
    :data:`STRATEGY_NAMES`; :meth:`parse` reads ``"popularity=0.3,cooccurrence=1"``.
    ``popularity`` and ``next_item`` are the engine's own models; the others are built
    from their configs in ``EngineConfig.strategies`` (``online.registry``): this record
    says only how the strategies are combined. ``encoder`` is an empty
    :class:`StrategySlot` that ``stream/`` fills with each version of the heavy model the
    trainer publishes (:meth:`Blend.fill`).
    """

    weights: tuple[tuple[str, float], ...] = (("popularity", 0.2), ("cooccurrence", 1.0), ("next_item", 0.3))
    candidates: int = 20
    normalise: str = "minmax"
    seed: int = 0
    pooling: str = "union"
    #: ``(strategy, candidates)`` for strategies that propose another number than ``candidates``
    #: (``None``: all they have). Not a setting: the engine's fixed mix sets it.
    per_strategy: tuple[tuple[str, int | None], ...] = ()
    # learned weights: online.rerank.LearnedWeights over the served pools
    learn_weights: bool = True
    learn_lr: float = 0.02
    learn_optimizer: str = "sgd"
    #: "network": the pool ranked by online.ranker.PoolRanker, which reads the weighted sum as one of its
    #: features; "weighted_sum": by the sum alone
    ranker: str = "network"

    def __post_init__(self) -> None:
        problems = []
        names = [name for name, _ in self.weights]
        unknown = [name for name in names if name not in STRATEGY_NAMES]
        if unknown:
            problems.append(f"unknown strategies {unknown} (choose from {', '.join(STRATEGY_NAMES)})")
        if len(set(names)) != len(names):
            problems.append("a strategy is named twice")
        if not names:
            problems.append("a blend needs at least one strategy")
        for name, weight in self.weights:
            if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight >= 0):
                problems.append(f"weight of {name} must be a finite number >= 0 (got {weight!r})")
        if names and not any(weight > 0 for _, weight in self.weights):
            problems.append("at least one weight must be positive")
        if self.normalise not in NORMALISATIONS:
            problems.append(f"normalise must be one of {', '.join(NORMALISATIONS)}")
        if self.pooling not in POOLINGS:
            problems.append(f"pooling must be one of {', '.join(POOLINGS)}")
        if self.candidates < 1 or any(n is not None and n < 1 for _, n in self.per_strategy):
            problems.append("candidates must be >= 1")
        if self.learn_optimizer not in OPTIMIZERS:
            problems.append(f"learn_optimizer must be one of {', '.join(OPTIMIZERS)}")
        if self.ranker not in RANKERS:
            problems.append(f"ranker must be one of {', '.join(RANKERS)}")
        if problems:
            raise ValueError("invalid blend: " + "; ".join(problems))

    @classmethod
    def parse(cls, spec: str, **overrides: Any) -> BlendConfig:
        """``"name=weight,name=weight"`` (a bare name weighs 1) plus field overrides.

        >>> BlendConfig.parse("popularity=0.3, mf").weights
        (('popularity', 0.3), ('mf', 1.0))
        """
        weights = []
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            name, _, raw = part.partition("=")
            try:
                weight = float(raw) if raw.strip() else 1.0
            except ValueError:
                raise ValueError(f"weight of {name.strip()!r} is not a number: {raw!r}") from None
            weights.append((name.strip(), weight))
        return cls(weights=tuple(weights), **overrides)

    def with_weights(self, **weights: float) -> BlendConfig:
        """A copy with some weights changed or added (validated again)."""
        merged = dict(self.weights)
        merged.update(weights)
        return replace(self, weights=tuple(merged.items()))

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["weights"] = dict(self.weights)
        out["per_strategy"] = dict(self.per_strategy)
        return out


class _Pinned:
    """One request's view of a slot: the scorer of the strategy held when the request began,
    and that strategy's ``version`` (``None`` for an unversioned one)."""

    __slots__ = ("scorer", "version")

    def __init__(self, scorer: Scorer, version: int | None) -> None:
        self.scorer, self.version = scorer, version

    def candidates(self, n: int, exclude: Collection[str] = ()) -> list[str]:
        return self.scorer.candidates(n, exclude)

    def score(self, items: Sequence[str]) -> Sequence[float]:
        return self.scorer.score(items)


#: "Every candidate it has": the count a strategy proposes with ``per_strategy`` ``None``.
_ALL = sys.maxsize


class _Empty:
    """The view of an empty slot: no candidates, 0.0 for every item, no version."""

    version = None

    def candidates(self, n: int, exclude: Collection[str] = ()) -> list[str]:
        return []

    def score(self, items: Sequence[str]) -> list[float]:
        return [0.0] * len(items)


_EMPTY = _Empty()


class StrategySlot:
    """A named place for a strategy that arrives later (the heavy encoder), swapped whole.

    Empty, it proposes no candidates and scores everything 0. :meth:`swap` replaces
    the held strategy in one reference assignment, so a request sees either the old
    or the new model, never a half-loaded one: :meth:`scorer` pins the request to the
    strategy held when it began, and carries that strategy's ``version`` (if it has
    one) for the blend to report. The held object is not part of engine snapshots:
    it is restored from its own checkpoint.

    Examples
    --------
    >>> slot = StrategySlot("encoder")
    >>> slot.candidates("u", [], 3), slot.score("u", [], ["a"])
    ([], [0.0])
    >>> from online.popularity import DecayedPopularity
    >>> slot.swap(DecayedPopularity()) is None
    True
    """

    #: Held but not served: the slot answers as an empty one while ``True`` (``online.shadow.StrategyGate``
    #: mutes a strategy whose lists lose hits). Its version stays held, for handovers and for
    #: :meth:`unmuted`, the same strategy served for one request (what the lists would be with it).
    #: Set on an instance by the gate; the class's ``False`` also covers slots pickled before there was one.
    muted = False

    def __init__(self, name: str = "encoder", strategy: Strategy | None = None) -> None:
        self.name = name
        self.strategy = strategy

    def swap(self, strategy: Strategy | None) -> Strategy | None:
        """Install ``strategy`` (or empty the slot); returns the previous one."""
        old, self.strategy = self.strategy, strategy
        return old

    def unmuted(self) -> StrategySlot:
        """A slot serving what this one holds, muted or not (``Blend.serve``'s ``substitutes``)."""
        return StrategySlot(self.name, self.strategy)

    def _served(self) -> Strategy | None:
        return None if self.muted else self.strategy

    def scorer(self, user_id: str, history: Sequence[str]) -> Scorer:
        """This request's view, pinned to the strategy held now (a swap mid-request cannot mix
        two versions' candidates and scores, nor report a version that did not score)."""
        held = self._served()
        if held is None:
            return _EMPTY
        return _Pinned(scorer_for(held, user_id, history), getattr(held, "version", None))

    def learn_many(self, interactions: Sequence[Interaction]) -> None:
        held = self.strategy
        if held is not None:
            held.learn_many(interactions)

    def candidates(self, user_id: str, history: Sequence[str], n: int) -> list[str]:
        held = self._served()
        return [] if held is None else list(held.candidates(user_id, history, n))

    def score(self, user_id: str, history: Sequence[str], items: Sequence[str]) -> list[float]:
        held = self._served()
        return [0.0] * len(items) if held is None else list(held.score(user_id, history, items))

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name, "strategy": None, "muted": False}


def _weighted_top(columns: list[Sequence[float]], weights: list[float], items: list[str],
                  k: int) -> list[tuple[str, float]] | None:
    """Top-``k`` by the weighted sum of raw scores, in plain Python: for the small pools of the fixed
    mix this is cheaper than building arrays. Sums run strategy by strategy, as scoring one item at a
    time would; ties keep pool order. ``None`` if a score is not finite (the careful path decides)."""
    if len(columns) == 2:  # the fixed mix: one pass
        (w0, w1), (c0, c1) = weights, columns
        total = [w0 * a + w1 * b for a, b in zip(c0, c1)]
    else:
        total = [weights[0] * value for value in columns[0]]
        for column, weight in zip(columns[1:], weights[1:]):
            total = [acc + weight * value for acc, value in zip(total, column)]
    if not math.isfinite(math.fsum(total)):
        return None
    # sorted(...)[:k] is what heapq.nlargest(k, ...) is defined to equal (stable: ties keep pool
    # order), and cheaper for pools of a few hundred
    return sorted(zip(items, total), key=_by_score, reverse=True)[:k]


_by_score = itemgetter(1)
_by_vote = itemgetter(2)  # of (item, score, vote)


def normalise(scores: np.ndarray, how: str = "minmax") -> np.ndarray:
    """Map each strategy's pool scores to [0, 1]; a constant or empty column gives zeros.

    ``scores`` is one strategy's scores (1-d) or one column per strategy (2-d).
    NaN and infinite scores count as that strategy's worst score, so a diverging
    model can never put an item on top.

    >>> normalise(np.array([2.0, 4.0, 3.0])).tolist()
    [0.0, 1.0, 0.5]
    >>> normalise(np.array([2.0, 4.0, 3.0]), "rank").tolist()
    [0.0, 1.0, 0.5]
    >>> normalise(np.array([[1.0, 5.0], [3.0, 5.0], [np.nan, 5.0]])).tolist()
    [[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]
    >>> normalise(np.array([0.5, np.inf]), "none").tolist()
    [0.5, 0.5]
    """
    x = np.asarray(scores, dtype=float)
    flat = x.ndim == 1
    if flat:
        x = x[:, None]
    n = x.shape[0]
    if n == 0:
        return np.zeros(x.shape[0]) if flat else np.zeros(x.shape)
    bad = ~np.isfinite(x)
    if bad.any():
        worst = np.where(bad, np.inf, x).min(axis=0)
        worst[~np.isfinite(worst)] = 0.0
        x = np.where(bad, worst, x)
    if how == "none":
        out = x
    elif how == "rank":
        if n == 1:
            out = np.zeros(x.shape)
        else:
            ranks = np.empty(x.shape)
            np.put_along_axis(ranks, np.argsort(-x, axis=0, kind="stable"),
                              np.arange(n, dtype=float)[:, None], axis=0)
            out = 1.0 - ranks / (n - 1)
    else:
        low = x.min(axis=0)
        span = x.max(axis=0) - low
        out = np.divide(x - low, span, out=np.zeros(x.shape), where=span > 0)
    return out[:, 0] if flat else out


class Blend:
    """Weighted blend of named strategies.

    Parameters
    ----------
    strategies
        ``name -> strategy``; order is the order candidates are pooled in.
    weights
        ``name -> weight >= 0``; normalised to sum to 1. Missing names weigh 0.
    candidates
        How many candidates each strategy proposes per request.
    normalise
        ``"minmax"``, ``"rank"`` or ``"none"`` (see the module docstring).
    pooling
        ``"union"`` or ``"fill"`` (see the module docstring).
    per_strategy
        ``name -> candidates`` for strategies that propose another number than ``candidates``
        (``None``: every candidate they have).
    learners
        Names whose ``learn_many`` the blend calls; the rest are learned by their
        owner (the engine learns its own popularity and next-item models).
    learner
        Optional :class:`~online.rerank.LearnedWeights`: the weights then follow
        what it learns from the served pools (starting from ``weights``).
    ranker
        Optional :class:`~online.ranker.PoolRanker`: the pool is then ranked by it, from every
        strategy's scores and the weighted sum, and it learns from the served pools too.

    Examples
    --------
    >>> from online.base import Interaction
    >>> from online.popularity import DecayedPopularity
    >>> from online.sequential import NextItem
    >>> blend = Blend({"popularity": DecayedPopularity(), "co": NextItem(window=2, symmetric=1.0)},
    ...               {"popularity": 1.0, "co": 3.0})
    >>> blend.weights
    {'popularity': 0.25, 'co': 0.75}
    >>> blend.learn_many([Interaction("u1", "a", 0.0), Interaction("u1", "b", 1.0),
    ...                   Interaction("u2", "c", 2.0), Interaction("u2", "c", 3.0)])
    >>> [item for item, _ in blend.serve("u3", ["a"], seen={"a"}, k=2).items]
    ['b', 'c']
    """

    def __init__(self, strategies: Mapping[str, Strategy], weights: Mapping[str, float] | None = None,
                 candidates: int = 30, normalise: str = "minmax",
                 learners: Collection[str] | None = None, learner: LearnedWeights | None = None,
                 pooling: str = "union", per_strategy: Mapping[str, int | None] | None = None,
                 ranker: PoolRanker | None = None) -> None:
        if normalise not in NORMALISATIONS:
            raise ValueError(f"normalise must be one of {', '.join(NORMALISATIONS)}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}")
        if candidates < 1:
            raise ValueError("candidates must be >= 1")
        self.strategies: dict[str, Strategy] = dict(strategies)
        self.candidates = int(candidates)
        self.normalise = normalise
        self.pooling = pooling
        self.per_strategy: dict[str, int | None] = dict(per_strategy or {})
        self.learners = list(self.strategies if learners is None else learners)
        self._weights: dict[str, float] = {}
        self.learner = learner
        self.ranker = ranker
        self.set_weights(dict.fromkeys(self.strategies, 1.0) if weights is None else
                         {name: weights.get(name, 0.0) for name in self.strategies})
        self.requests = 0

    #: (the weights it was made for, ``_fixed_mix()``): rebuilt when the weights or the strategies change
    _plan: tuple | None = None
    #: None on a blend from a snapshot older than the ranker: it ranks by the weighted sum, as it did
    ranker: PoolRanker | None = None

    @property
    def weights(self) -> dict[str, float]:
        """Current weights, normalised to sum to 1 (a copy: plain data for metrics and tuners)."""
        return dict(self._weights)

    def set_weights(self, weights: Mapping[str, float]) -> None:
        """Change some or all weights; the result is renormalised to sum to 1.

        Unknown names, negative or non-finite weights, or an all-zero result raise
        ``ValueError`` and leave the weights unchanged.
        """
        merged = dict(self._weights) if self._weights else dict.fromkeys(self.strategies, 0.0)
        for name, weight in weights.items():
            if name not in self.strategies:
                raise ValueError(f"no strategy named {name!r} in this blend")
            weight = float(weight)
            if not (math.isfinite(weight) and weight >= 0):
                raise ValueError(f"weight of {name} must be a finite number >= 0 (got {weight})")
            merged[name] = weight
        total = sum(merged.values())
        if not total > 0:
            raise ValueError("at least one weight must be positive")
        self._weights = {name: merged[name] / total for name in self.strategies}
        learner = self.learner
        if learner is not None:
            if learner.names != list(self._weights):
                learner.reset(list(self._weights), list(self._weights.values()))
            else:
                learner.assign(list(self._weights.values()))
            self._weights = learner.weights()

    def add(self, name: str, strategy: Strategy, weight: float = 0.0, learn: bool = True) -> None:
        """Add (or replace) a strategy; it starts with ``weight`` before renormalising."""
        if name not in self.strategies:
            self._weights[name] = 0.0
        self.strategies[name] = strategy
        self._plan = None
        if learn and name not in self.learners:
            self.learners.append(name)
        self.set_weights({name: weight})

    def replace(self, name: str, strategy: Strategy) -> None:
        """Serve ``strategy`` under ``name`` from now on, keeping the name's weight and learning role
        (the tuner promoting a challenger model)."""
        if name not in self.strategies:
            raise ValueError(f"no strategy named {name!r} in this blend")
        self.strategies[name] = strategy
        self._plan = None

    def stop_learning(self, name: str) -> None:
        """Stop calling ``name``'s ``learn_many`` here: someone else teaches it (the tuner's search)."""
        if name in self.learners:
            self.learners.remove(name)

    def fill(self, name: str, strategy: Strategy, weight: float = 0.0) -> StrategySlot:
        """Serve ``strategy`` from the slot ``name``: how each encoder version the trainer publishes
        reaches the lists.

        A slot the blend was built with (``encoder`` listed in its config) is filled in place
        and keeps the weight it was declared with; a blend without one gets a slot added that
        starts at ``weight``. Either way the name has one slot, and later calls only swap what
        it holds. Returns the slot; ``ValueError`` if ``name`` is a strategy that is not a slot.
        """
        slot = self.strategies.get(name)
        if slot is None:
            slot = StrategySlot(name)
            self.add(name, slot, weight=weight, learn=False)
        elif not isinstance(slot, StrategySlot):
            raise ValueError(f"{name!r} is a {type(slot).__name__} in this blend, not a slot to fill")
        slot.swap(strategy)
        return slot

    def learn_many(self, interactions: Sequence[Interaction], *,
                   collect: dict[str, dict[tuple[str, str], float]] | None = None, items: bool = True) -> None:
        """Teach the learners (and the weight learner) a micro-batch.

        Item sharing (``online.sharing``): ``collect`` gathers, per strategy that shares its item
        knowledge (``shares_items``), the pairs it learned; ``items=False`` teaches those strategies only
        the users' side (their item knowledge of these events came from another worker). Strategies
        that do not share (the factor models) always learn the events whole.
        """
        learner = self.learner
        if learner is not None and learner.learn_many(interactions):
            self._weights = learner.weights()
        if self.ranker is not None:
            self.ranker.learn_many(interactions)
        strategies = self.strategies
        sharing = collect is not None or not items
        for name in self.learners:
            strategy = strategies[name]
            if sharing and getattr(strategy, "shares_items", False):
                strategy.learn_many(interactions, collect=None if collect is None else collect.setdefault(name, {}),
                                    pairs=items)
            else:
                strategy.learn_many(interactions)

    def sharing_learner(self, name: str) -> Any:
        """The strategy ``name`` if this blend teaches it and it shares its item knowledge, else None:
        where another worker's pairs for ``name`` go (``online.sharing``)."""
        strategy = self.strategies.get(name)
        if name in self.learners and getattr(strategy, "shares_items", False):
            return strategy
        return None

    def prepare(self, requests: Iterable[tuple[str, Sequence[str]]]) -> None:
        """Before a micro-batch's lists are ranked one by one: let the strategies that batch work over
        users (``prepare(requests)``, the encoder's one forward pass for all of them) do it now.
        ``requests`` yields ``(user, history)`` per user about to be served; it is read only when some
        strategy batches (a blend without the encoder pays nothing per batch)."""
        preparers = [prepare for strategy in self.strategies.values()
                     if callable(prepare := getattr(strategy.strategy if isinstance(strategy, StrategySlot)
                                                    else strategy, "prepare", None))]
        if not preparers:
            return
        requests = list(requests)
        if requests:
            for prepare in preparers:
                prepare(requests)

    def serve(self, user_id: str, history: Sequence[str], seen: Collection[str] = frozenset(),
              k: int = 10, exclude: Iterable[str] = (), observe: bool = True,
              weights: Mapping[str, float] | None = None, *, keep_pool: bool = False,
              substitutes: Mapping[str, Strategy] | None = None) -> Ranking:
        """Top-``k`` ``(item, blended score)``, never an item in ``seen`` or ``exclude``: the one
        ranking path of every engine. The :class:`~online.base.Ranking` carries the versions of
        the hot-swapped strategies that weighed in on it (weight above 0 in this request, a version
        loaded), read from the same per-request scorers that ranked it.

        ``observe`` lets the weight learner remember the pool as the one served. ``weights`` ranks
        this one request with other (normalised) weights: the tuner's arms.

        ``keep_pool`` returns the scored pool with the list (:class:`~online.base.Pool`, every
        strategy's column). ``substitutes`` ranks this one request with other models under some
        names (the tuner serving a challenger's arm); the blend itself is not changed.
        """
        self.requests += 1
        excluded: Collection[str] = seen
        if exclude:
            excluded = set(seen)
            excluded.update(exclude)
        if (weights is None and not keep_pool and not substitutes and self.learner is None and self.ranker is None
                and self.normalise == "none" and self.pooling == "fill"):
            ranked = self._votes_then_popular(history, excluded, k)
            if ranked is not None:
                return Ranking(ranked)
        # the learners and the kept pool need every strategy's column
        learning = self.learner is not None or self.ranker is not None or keep_pool
        chosen = self._weights if weights is None else {name: weights.get(name, 0.0) for name in self.strategies}
        names = [name for name, weight in chosen.items() if weight > 0 or learning]
        strategies = self.strategies if not substitutes else {**self.strategies, **substitutes}
        active = [(scorer_for(strategies[name], user_id, history), chosen[name]) for name in names]
        pool: dict[str, None] = {}
        n = max(self.candidates, k)
        per_strategy, fill = self.per_strategy, self.pooling == "fill"
        for name, (scorer, _) in zip(names, active):
            wanted = n
            if name in per_strategy:
                own = per_strategy[name]
                wanted = _ALL if own is None else max(own, k)
            taken = Excluded(excluded, pool) if fill and pool else excluded
            pool.update(dict.fromkeys(scorer.candidates(wanted, taken)))
        if excluded:
            items = [item for item in pool if item not in excluded]
        else:
            items = list(pool)
        if not items:
            return Ranking([])
        columns = [scorer.score(items) for scorer, _ in active]
        learner = self.learner if observe else None
        versions = tuple((name, version) for name, (scorer, weight) in zip(names, active)
                         if weight > 0 and (version := getattr(scorer, "version", None)) is not None)
        if self.normalise == "none" and learner is None and self.ranker is None:
            ranked = _weighted_top(columns, [weight for _, weight in active], items, k)
            if ranked is not None:
                return Ranking(ranked, versions, pool=Pool(items, names, columns) if keep_pool else None)
        total = self._combine(columns, [weight for _, weight in active], user_id, items, learner)
        if self.ranker is not None:
            total = self.ranker.score(items, columns, total, len(history), user_id if observe else None)
        if len(items) > k:
            top = np.argpartition(-total, k - 1)[:k]
            top = top[np.argsort(-total[top], kind="stable")]
        else:
            top = np.argsort(-total, kind="stable")
        return Ranking([(items[i], float(total[i])) for i in top.tolist()], versions,
                      pool=Pool(items, names, columns) if keep_pool else None)

    def _votes_then_popular(self, history: Sequence[str], excluded: Collection[str],
                            k: int) -> list[tuple[str, float]] | None:
        """The list :meth:`serve` ranks for the engine's fixed mix, built without the general path's
        per-request objects; ``None`` when the blend is not that mix (or a score is not finite), and
        the general path then ranks.

        The mix: a :class:`~online.sequential.NextItem` then a :class:`~online.popularity.DecayedPopularity`,
        both weighing above 0, raw scores, "fill" pooling. The general path pools the user's votes
        (best first), then popular items not pooled, scores the whole pool and sorts it by
        ``w_votes * vote + w_pop * popularity`` (ties in pool order). The same pool, the same sums
        and the same sort are done here, with one shortcut: when every vote is pooled, a popular
        candidate has no vote and its sum falls along the popularity ranking, so only the first
        ``k`` of them can reach the top ``k`` and only those are scored. The popularity model is
        asked for exactly the candidates the general path asks for (its leaderboard reads deeper on
        demand, a side effect that must not differ): see ``PopularityScorer.leading``.
        """
        plan = self._plan
        if plan is None or plan[0] is not self._weights:
            plan = self._plan = (self._weights, self._fixed_mix())
        mix = plan[1]
        if mix is None or k < 1:
            return None
        votes_model, w_votes, pop, w_pop, n_votes, n_pop = mix
        n = max(self.candidates, k)
        n_votes = n if n_votes is None else max(n_votes, k)
        n_pop = n if n_pop is None else max(n_pop, k)
        if n_votes != _ALL:  # only the best votes are pooled: score the whole pool
            return self._fixed_mix_pool(votes_model, w_votes, pop, w_pop, n_votes, n_pop, history, excluded, k)
        # Every vote is pooled, so a popular candidate carries none: its sum falls along the popularity
        # ranking and only the first k popular candidates can reach the top k. The pool's order is the
        # general path's (votes best first, ties in the order cast, then popular ones in popularity
        # order), and both sorts are stable, so ties in the sum fall as they do there.
        votes = votes_model.votes(history, excluded)  # the pooled votes: none of them excluded
        popular = PopularityScorer(pop).leading(n_pop, excluded, votes, k)
        if not votes and not popular:
            return []
        relative = pop.relative_scores([*votes, *popular])  # (after the candidates, as the general path)
        fast = compiled.fixed_mix
        if fast is not None:
            return fast.rank(votes, popular, relative, w_votes, w_pop, k)
        ranked = [(item, w_votes * vote + w_pop * value, vote) for (item, vote), value in zip(votes.items(), relative)]
        ranked.sort(key=_by_vote, reverse=True)  # the pool's order (VoteScorer.candidates)
        if popular:
            zero = w_votes * 0.0
            ranked += [(item, zero + w_pop * value, 0.0) for item, value in zip(popular, relative[len(votes):])]
        if not math.isfinite(sum(map(_by_score, ranked))):
            return None
        ranked.sort(key=_by_score, reverse=True)
        return [(item, score) for item, score, _ in ranked[:k]]

    @staticmethod
    def _fixed_mix_pool(votes_model: NextItem, w_votes: float, pop: DecayedPopularity, w_pop: float, n_votes: int,
                        n_pop: int, history: Sequence[str], excluded: Collection[str],
                        k: int) -> list[tuple[str, float]] | None:
        """:meth:`_votes_then_popular` when only the best ``n_votes`` votes are pooled: the general path's
        pool, sums and sort, without its per-request objects."""
        votes = votes_model.votes(history)
        keys = [item for item in votes if item not in excluded] if excluded else votes
        voted = sorted(keys, key=votes.__getitem__, reverse=True)[:n_votes]  # VoteScorer.candidates
        pool = dict.fromkeys(voted)
        popular = PopularityScorer(pop).candidates(n_pop, Excluded(excluded, pool) if pool else excluded)
        if not voted and not popular:
            return []
        items = voted + popular
        get = votes.get
        ranked = [(item, w_votes * get(item, 0.0) + w_pop * value)
                  for item, value in zip(items, pop.relative_scores(items))]
        if not math.isfinite(sum(map(_by_score, ranked))):
            return None
        ranked.sort(key=_by_score, reverse=True)
        return ranked[:k]

    def _fixed_mix(self) -> tuple | None:
        """``(votes model, its weight, popularity model, its weight, votes wanted, popular wanted)`` when
        this blend is the fixed mix :meth:`_votes_then_popular` ranks (wanted: ``None`` for the blend's
        ``candidates``, ``_ALL`` for all), else ``None``."""
        strategies = self.strategies
        if len(strategies) != 2:
            return None
        (votes_name, votes_model), (pop_name, pop) = strategies.items()
        if type(votes_model) is not NextItem or type(pop) is not DecayedPopularity:
            return None
        w_votes, w_pop = self._weights[votes_name], self._weights[pop_name]
        if not (w_votes > 0 and w_pop > 0):
            return None
        wanted: list[int | None] = [None, None]
        for i, name in enumerate((votes_name, pop_name)):
            if name in self.per_strategy:
                own = self.per_strategy[name]
                wanted[i] = _ALL if own is None else own
        return votes_model, w_votes, pop, w_pop, wanted[0], wanted[1]

    def _combine(self, columns: list[Sequence[float]], weights: list[float], user_id: str,
                 items: list[str], learner: LearnedWeights | None) -> np.ndarray:
        """Blended score per pool item; hands the normalised features to ``learner``."""
        if self.normalise == "minmax":
            # sum_s w_s (x_s - lo_s) / span_s == x @ a - lo @ a with a_s = w_s / span_s: one matmul,
            # and the normalised matrix is only built when the learner wants it.
            coefs, lows, spans = [], [], []
            for column, weight in zip(columns, weights):
                low, high = min(column), max(column)
                if not math.isfinite(sum(column)):
                    break  # NaN or inf: take the careful path below
                span = high - low
                coefs.append(weight / span if span > 0 else 0.0)
                lows.append(low)
                spans.append(span)
            else:
                raw = np.array(columns, dtype=float)  # [strategies, pool]
                coef = np.array(coefs)
                total = coef @ raw - float(np.dot(coef, lows))
                if learner is not None:  # raw scores; normalised only for the pairs it learns from
                    inverse = np.array([1.0 / span if span > 0 else 0.0 for span in spans])
                    learner.observe(user_id, items, raw.T, np.array(lows), inverse)
                return total
        features = normalise(np.array(columns, dtype=float).T, self.normalise)
        if learner is not None:
            learner.observe(user_id, items, features)
        return features @ np.array(weights, dtype=float)

    def snapshot(self) -> dict[str, Any]:
        """Weights and each strategy's mutable hyper-parameters, as plain data."""
        params = {}
        for name, strategy in self.strategies.items():
            mutable = getattr(strategy, "_mutable_attributes", ())
            params[name] = {key: getattr(strategy, key) for key in sorted(mutable)
                            if isinstance(getattr(strategy, key, None), (int, float))}
        return {"weights": self.weights, "params": params, "requests": self.requests}


def build_blend(config: BlendConfig, strategies: StrategyConfigs | None = None, *,
                shared: Mapping[str, Strategy] | None = None, max_users: int = 1_000_000,
                max_items: int = 1_000_000) -> Blend:
    """The blend ``config`` describes, each strategy built by the registry from its config in
    ``strategies`` (the defaults if ``None``); ``shared`` strategies are used as given and not
    learned here."""
    strategies = StrategyConfigs() if strategies is None else strategies
    context = BuildContext(max_users=max_users, max_items=max_items, seed=config.seed)
    shared = dict(shared or {})
    built: dict[str, Strategy] = {}
    learners = []
    for name, _ in config.weights:
        if name in shared:
            built[name] = shared[name]
        else:
            built[name] = spec(name).build(strategies[name], context)
            learners.append(name)
    learner = None
    if config.learn_weights:
        learner = LearnedWeights(lr=config.learn_lr, optimizer=config.learn_optimizer,
                                 max_users=min(max_users, 100_000), seed=config.seed)
    ranker = PoolRanker(max_users=min(max_users, 100_000), seed=config.seed) if config.ranker == "network" else None
    return Blend(built, dict(config.weights), candidates=config.candidates,
                 normalise=config.normalise, learners=learners, learner=learner,
                 pooling=config.pooling, per_strategy=dict(config.per_strategy), ranker=ranker)
