"""The tuned engine: a :class:`StreamingRecommender` whose rates and blend weights tune themselves.

:class:`TunedRecommender` wraps an engine with a blend and offers the same
public API the worker's processor uses (``learn_many``, ``recommend``,
``stats``, ``n_users``, ``n_items``, ``events_learned``, ``prequential``,
``config``, ``blend``) plus :meth:`TunedRecommender.tuning_snapshot`, the plain
dict published on the ``tuning`` topic.

Per event (full-information feedback), before the event is learned:

1. the served reward: was the item in the list last served to the user? It feeds
   the reward rate and an ADWIN detector; a detected change resets every policy
   (exploration re-opens);
2. every strategy-weight arm is scored on the pool served to that user
   (:mod:`online.tuning.weights`);
3. every learning-rate arm is scored on the same pool with that arm's model in
   place of the champion's column (:mod:`online.tuning.shadows`).

Then the engine (and the champion inside its blend) learns the batch, the
shadows learn it, and decisions are taken every ``period`` events.
"""
from __future__ import annotations

import dataclasses
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from river import drift

from online.base import Interaction, Pool, Ranking, scorer_for
from online.blend import BlendConfig, normalise
from online.engine import EngineConfig, StreamingRecommender
from online.tuning.config import TunerConfig
from online.tuning.policy import ArmPolicy
from online.tuning.safety import finite_scores
from online.tuning.shadows import ShadowSearch, arm_labels
from online.tuning.weights import KEEP, WeightSearch
from online.wrapping import WrapsEngine

DEFAULT_TUNED_WEIGHTS = (("popularity", 0.2), ("cooccurrence", 1.0), ("next_item", 0.3), ("mf", 0.3))


def tuned_engine_config(base: EngineConfig | None = None, **blend_overrides: Any) -> EngineConfig:
    """``base`` with the blend the tuner is built for: the default blend plus ``mf`` (rate-tuned),
    fixed weights (the tuner, not ``LearnedWeights``, moves them).

    >>> [name for name, _ in tuned_engine_config().blend.weights]
    ['popularity', 'cooccurrence', 'next_item', 'mf']
    """
    base = base or EngineConfig()
    blend = base.blend or BlendConfig()
    weights = dict(blend.weights)
    for name, weight in DEFAULT_TUNED_WEIGHTS:
        weights.setdefault(name, weight)
    changes = {"weights": tuple(weights.items()), "learn_weights": False}
    changes.update(blend_overrides)
    return dataclasses.replace(base, blend=dataclasses.replace(blend, **changes))


class _Pool:
    """What was served to one user: the pool and each strategy's raw scores over it.

    Normalised only when the user's next item turns out to be in the pool (most pools are never read).
    """

    __slots__ = ("items", "names", "columns", "_index", "_features")

    def __init__(self, pool: Pool) -> None:
        self.items, self.names, self.columns = pool  # the served pool as the blend returned it
        self._index: dict[str, int] | None = None
        self._features: np.ndarray | None = None

    @property
    def index(self) -> dict[str, int]:
        if self._index is None:
            self._index = {item: n for n, item in enumerate(self.items)}
        return self._index

    def features(self, how: str) -> np.ndarray:
        """``[pool, strategies]`` normalised scores."""
        if self._features is None:
            self._features = normalise(np.array(self.columns, dtype=float).T, how)
        return self._features


class TunedRecommender(WrapsEngine):
    """A drop-in engine that tunes learning rates and strategy weights online.

    Parameters
    ----------
    engine
        A :class:`StreamingRecommender` built with a blend (see :func:`tuned_engine_config`).
        If its blend learns its own weights, that learner is switched off: the tuner owns them.
    config
        A :class:`~online.tuning.TunerConfig` (``TunerConfig(policy="thompson", seed=0)``).

    Examples
    --------
    >>> from online.base import Interaction
    >>> engine = StreamingRecommender(tuned_engine_config(EngineConfig(k=2)))
    >>> tuned = TunedRecommender(engine, TunerConfig(period=4, weight_period=4))
    >>> tuned.learn_many([Interaction("u1", "a", 0.0), Interaction("u1", "b", 1.0)])
    >>> sorted(item for item, _ in tuned.recommend("u2").items)
    ['a', 'b']
    >>> snap = tuned.tuning_snapshot()
    >>> sorted(snap["models"]["mf"]["arms"]), snap["step"]
    (['x0.5', 'x1', 'x2'], 2)
    """

    def __init__(self, engine: StreamingRecommender, config: TunerConfig | None = None) -> None:
        if engine.config.blend is None:
            raise ValueError("the tuner needs an engine with a learned blend, not the fixed mix "
                             "(use tuned_engine_config())")
        self.engine = engine
        self.tuner_config = config = config or TunerConfig()
        blend = engine.blend
        blend.learner = None  # weights are the tuner's now
        self.k = engine.config.k
        seed = config.seed
        self.searches: dict[str, ShadowSearch] = {}
        for n, (name, param) in enumerate(config.params):
            model = blend.strategies.get(name)
            if model is None or param not in getattr(model, "_mutable_attributes", ()):
                continue
            policy = ArmPolicy(config.policy, arm_labels(config.lr_step), explore=config.explore,
                               seed=None if seed is None else seed + 101 * (n + 1))
            low, high = (config.lr_low, config.lr_high) if param == "lr" else (0.0, 1e9)
            self.searches[name] = ShadowSearch(
                name, model, policy, param=param, step=config.lr_step, low=low, high=high, period=config.period,
                check_every=config.check_every, bar_events=config.bar_events, max_norm=config.max_norm,
                collapse=config.collapse, min_evidence=config.min_evidence, gate=config.gate,
                max_evidence=config.max_evidence)
        for name, search in self.searches.items():
            if search.learns_champion:
                blend.stop_learning(name)  # the search teaches every arm, the champion included
        self.weights = self._weight_search()
        self.drift = drift.ADWIN(delta=config.drift_delta)
        self.drift_events = 0
        self.drift_steps: list[int] = []
        self._recent: deque[int] = deque(maxlen=config.reward_window)
        self._pools: OrderedDict[str, _Pool] = OrderedDict()
        self._served: OrderedDict[str, tuple[dict[str, tuple[str, float]], frozenset[str]]] = OrderedDict()
        self.ips: dict[str, dict[str, float]] = {}
        self.logged = 0

    def _weight_search(self) -> WeightSearch | None:
        """The bandit over strategy weights, starting from the blend's weights (``None``: not tuned)."""
        config, blend = self.tuner_config, self.engine.blend
        if not (config.tune_weights and len(blend.strategies) > 1):
            return None
        policy = ArmPolicy(config.policy, [KEEP, *blend.strategies], explore=config.explore, seed=config.seed)
        search = WeightSearch(
            blend.weights, policy,
            k=self.k, step=config.weight_step, period=config.weight_period, floor=config.floor,
            min_evidence=config.min_evidence, gate=config.gate, max_evidence=config.max_evidence)
        blend.set_weights(search.weights)
        return search

    def retune(self, config: EngineConfig) -> bool:
        """Serve under ``config`` without a rebuild if only blend weights differ: the weight bandit starts
        afresh from them. Anything else returns ``False`` (the learning-rate shadows are built around
        the models they shadow: a change of their knobs is a rebuild, with new shadows)."""
        changes = self.engine.config.changes_to(config)
        if not all(name.startswith("weight:") for name in changes) or not self.engine.retune(config):
            return False
        self.weights = self._weight_search()
        return True

    # -- the engine's public API ------------------------------------------------------------------
    def learn_many(self, interactions: Sequence[Interaction]) -> None:
        """Score every arm on the users' served pools, learn the batch everywhere, then decide."""
        if not interactions:
            return
        if self.tuner_config.feedback == "full":
            for event in interactions:
                self._score_event(event)
        self.engine.learn_many(interactions)
        for search in self.searches.values():
            search.learn(interactions)
        n = len(interactions)
        for name, search in self.searches.items():
            search.after_batch(n)
            if self.blend.strategies[name] is not search.champion:  # promoted or reset: serve it
                self.blend.replace(name, search.champion)
        if self.weights is not None and self.weights.after_batch(n) is not None:
            self.blend.set_weights(self.weights.weights)

    def recommend(self, user_id: str, k: int | None = None, exclude: Iterable[str] = (), record: bool = True,
                  rec_id: str | None = None) -> Ranking:
        """The engine's list with what served it (the arms behind it, the engine's versions); with
        bandit feedback, from a sampled arm whose propensity is logged.

        ``rec_id`` names the list for :meth:`feedback` (bandit feedback only). Scores are always finite.
        """
        full = self.tuner_config.feedback == "full"
        if full or not record:
            # Full information scores every arm on the pools served; bandit feedback never reads them.
            served = self.engine.recommend(user_id, k, exclude, record, keep_pool=full)
            if served.pool is not None:
                self._remember_pool(user_id, served.pool)
            return served._replace(items=finite_scores(served.items), arm=self._served_label, pool=None)
        return self._serve_sampled(user_id, k, exclude, rec_id)

    @property
    def _served_label(self) -> str | None:
        """The arms serving under full information: the champions (``"strategies=keep,mf=x1"``)."""
        parts = ([f"strategies={KEEP}"] if self.weights is not None else []) + [f"{name}=x1" for name in self.searches]
        return ",".join(parts) or None

    def stats(self) -> dict[str, float]:
        out = self.engine.stats()
        out["tuner_reward_rate"] = self.reward_rate
        out["tuner_drift_events"] = self.drift_events
        for name, search in self.searches.items():
            out[f"tuner_{search.param}_{name}"] = float(search.value)
        return out

    # -- rewards ----------------------------------------------------------------------------------
    @property
    def reward_rate(self) -> float:
        recent = self._recent
        return sum(recent) / len(recent) if recent else 0.0

    def _served_reward(self, hit: int) -> None:
        self._recent.append(hit)
        self.drift.update(hit)
        if self.drift.drift_detected:
            self.drift_events += 1
            self.drift_steps.append(self.engine.events_learned)
            self._reopen()

    def _reopen(self) -> None:
        """A change in reward: every policy forgets, so exploration starts over."""
        for search in self.searches.values():
            search.reopen()
        if self.weights is not None:
            self.weights.reopen()

    def _remember_pool(self, user_id: str, pool: Pool) -> None:
        """The pool served to ``user_id``, until their next event scores every arm on it."""
        pools = self._pools
        pools[user_id] = _Pool(pool)
        pools.move_to_end(user_id)
        if len(pools) > self.tuner_config.max_pending:
            pools.popitem(last=False)

    def _score_event(self, event: Interaction) -> None:
        state = self.engine.user_state(event.user_id)
        if state is None or state.last_list is None:
            return
        self._served_reward(int(event.item_id in state.last_list[: self.k]))
        pool = self._pools.pop(event.user_id, None)
        if pool is None:
            return
        if event.item_id not in pool.items:
            return  # no arm could have ranked it: no information
        row = pool.index[event.item_id]
        features = pool.features(self.blend.normalise)
        if self.weights is not None:
            self.weights.score(pool.items, pool.names, features, event.item_id, pool.index)
        if self.searches:
            weights = self.blend.weights
            w = np.array([weights.get(name, 0.0) for name in pool.names])
            for name, search in self.searches.items():
                if name in pool.names:
                    self._score_models(search, pool.items, features, row, w, pool.names.index(name),
                                       event.user_id, state.history)

    def _score_models(self, search: ShadowSearch, items: list[str], features: np.ndarray, row: int,
                      w: np.ndarray, column: int, user_id: str, history: Sequence[str]) -> None:
        """Each arm's hit@k on the pool with its own model's scores in the champion's column."""
        if search.stack is not None:
            raw = search.stack.score_pool(user_id, history, items)  # [arms, pool]
        else:
            raw = np.array([scorer_for(model, user_id, history).score(items) for model in search.models.values()],
                           dtype=float)
        scores = normalise(raw.T, self.blend.normalise).T  # each arm normalised over the pool
        base = features @ w - features[:, column] * w[column]
        totals = base[None, :] + w[column] * scores  # [arms, pool]
        mine = totals[:, row][:, None]
        above = (totals > mine).sum(axis=1) + 0.5 * ((totals == mine).sum(axis=1) - 1)
        search.policy.update_all({label: float(hit) for label, hit in zip(search.models, (above < self.k).tolist())},
                                 reference="x1")

    # -- bandit feedback (live traffic with rec_id) -----------------------------------------------
    def _serve_sampled(self, user_id: str, k: int | None, exclude: Iterable[str], rec_id: str | None) -> Ranking:
        choices: dict[str, tuple[str, float]] = {}
        weights = None
        if self.weights is not None:
            arm, p = self.weights.policy.sample()
            choices["strategies"] = (arm, p)
            weights = self.weights.arm_weights(arm)
        substitutes = {}
        for name, search in self.searches.items():
            arm, p = search.policy.sample()
            choices[name] = (arm, p)
            substitutes[name] = search.models[arm]
        served = self.engine.recommend(user_id, k, exclude, weights=weights, substitutes=substitutes)
        arm = ",".join(f"{decision}={arm}" for decision, (arm, _) in choices.items()) or None
        self.logged += 1
        if rec_id is not None:
            self._served[rec_id] = (choices, frozenset(item for item, _ in served.items))
            if len(self._served) > self.tuner_config.max_pending:
                self._served.popitem(last=False)
        return served._replace(items=finite_scores(served.items), arm=arm)

    def feedback(self, rec_id: str, item_id: str, reward: float = 1.0) -> bool:
        """An event that names a served list: reward its arms (IPS for the arms not served).

        Returns ``False`` for an unknown (or expired) ``rec_id``.
        """
        logged = self._served.get(rec_id)
        if logged is None:
            return False
        choices, items = logged
        value = min(1.0, max(0.0, float(reward))) if item_id in items else 0.0
        self._served_reward(int(value > 0))
        for decision, (arm, propensity) in choices.items():
            policy = self.weights.policy if decision == "strategies" else self.searches[decision].policy
            policy.update_served(arm, value)
            estimates = self.ips.setdefault(decision, {})
            estimates[arm] = estimates.get(arm, 0.0) + value / propensity
        return True

    def ips_estimates(self) -> dict[str, dict[str, float]]:
        """Per decision and arm, the IPS estimate of its reward per served list (logged lists so far)."""
        n = max(self.logged, 1)
        out = {}
        arms = {"strategies": self.weights.policy.arms} if self.weights is not None else {}
        arms.update({name: search.policy.arms for name, search in self.searches.items()})
        for decision, labels in arms.items():
            sums = self.ips.get(decision, {})
            out[decision] = {arm: sums.get(arm, 0.0) / n for arm in labels}
        return out

    # -- what the dashboards see ------------------------------------------------------------------
    def tuning_snapshot(self) -> dict[str, Any]:
        """Plain, JSON-serialisable state of the tuner (the ``tuning`` topic's payload)."""
        models = {name: search.snapshot() for name, search in self.searches.items()}
        if self.tuner_config.feedback == "bandit":
            for decision, estimates in self.ips_estimates().items():
                target = models.get(decision, {}).get("arms", {})
                for arm, value in estimates.items():
                    if arm in target:
                        target[arm]["reward"] = value
        if self.weights is not None:
            strategies = self.weights.snapshot()
        else:
            strategies = {"weights": self.blend.weights, "probabilities": {}}
        return {"step": self.engine.events_learned, "policy": self.tuner_config.policy,
                "feedback": self.tuner_config.feedback, "reward_rate": self.reward_rate,
                "drift_events": self.drift_events, "models": models, "strategies": strategies}
