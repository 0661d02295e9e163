"""Online auto-tuning of learning rates and strategy weights (issue 4).

What it does
------------
- Learning rates: champion/challenger shadows (:mod:`online.tuning.shadows`): the served
  model ("x1") and two copies at ``rate / 2`` and ``rate * 2`` ("x0.5", "x2") learn the same
  events (in one vectorised pass for ``ImplicitMF``, ``online.mf.StackedMF``); a shadow
  that beats the champion is promoted and new shadows are copied from it, so the rate walks
  a log scale with no grid edge. Other whitelisted hyper-parameters (``l2``, ``negatives``)
  work the same way through ``TunerConfig.params``.
- Strategy weights: champion/challenger over weight vectors (:mod:`online.tuning.weights`):
  "keep" and one "more of <strategy>" arm per strategy, all scored on every served pool.
- Decisions: a river bandit policy per decision (``thompson``, ``ucb``, ``exp3``, ``epsilon``;
  :mod:`online.tuning.policy`) proposes; a paired test on the same events accepts.
- Rewards: full information in replay/prequential mode (every arm's list is scored on the
  user's next item); with ``feedback="bandit"``, only lists named by ``rec_id`` count, the
  served arm is drawn with a logged propensity and the others are estimated by IPS.
- Drift: ADWIN on the served reward; a change resets every policy (exploration re-opens).
- Safety: a diverged arm (non-finite or exploding factors, collapsed reward) is reset from
  the champion and barred; a diverged champion is replaced; served scores are always finite.

Interface for ``stream/``
-------------------------
``TunedRecommender(StreamingRecommender(tuned_engine_config(base)), TunerConfig(policy="thompson", seed=0))``
is a drop-in engine (the :class:`online.base.Engine` contract: ``learn_many``, ``recommend``,
``stats``; and ``n_users``, ``n_items``, ``events_learned``, ``prequential``, ``config``, ``blend``)
with ``tuning_snapshot()`` (plain JSON data for the ``tuning`` topic and the gauges); its
``recommend`` returns the list with the arms behind it (the ``arm`` field of a published list),
and, for live bandit feedback, ``recommend(..., rec_id=...)`` pairs with
``feedback(rec_id, item_id, reward)``.
"""
from __future__ import annotations

import importlib
from typing import Any

from online.tuning.config import FEEDBACK, POLICIES, TunerConfig

# The rest imports river (bandits, drift detectors): loaded on first use, so that reading the
# configuration (``stream.settings`` needs TunerConfig) does not cost river's import time.
_LAZY = {"ArmPolicy": "policy", "make_policy": "policy", "TunedRecommender": "recommender",
         "tuned_engine_config": "recommender", "diverged": "safety", "finite_scores": "safety",
         "model_norm": "safety", "ShadowSearch": "shadows", "arm_labels": "shadows",
         "KEEP": "weights", "WeightSearch": "weights"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'online.tuning' has no attribute {name!r}")
    return getattr(importlib.import_module(f"online.tuning.{module}"), name)


__all__ = ["FEEDBACK", "KEEP", "POLICIES", "ArmPolicy", "ShadowSearch", "TunedRecommender",
           "TunerConfig", "WeightSearch", "arm_labels", "diverged", "finite_scores", "make_policy", "model_norm",
           "tuned_engine_config"]
