"""Self-tuning of the whole engine: a Bayesian search over every declared knob on a recent window.

The in-loop bandits of :mod:`online.tuning` move what can change per event (learning rates,
blend weights). This package searches everything else the registry declares
(:func:`online.registry.search_space`): which strategies run, their memory lengths and
decays, windows and caps, candidate counts, the blend's normalisation and pooling.

- :mod:`online.search.space` turns the registry's knobs into an Optuna search space and a
  sampled trial into an ``EngineConfig``.
- :mod:`online.search.replay` scores one config on a window of past events, prequentially
  (learn the first part, then test-then-train on the rest), per event, so two configs can
  be compared pairwise on the same events.
- :mod:`online.search.study` runs one search (Optuna TPE, successive halving), measures the
  serving config on the same window, and accepts a winner only on paired evidence.
- :mod:`online.search.loop` is the production loop: a window of the stream, searches on a
  schedule and on drift, strictly from the past, and warm swaps that keep every user.

Nothing here imports Kafka; ``streamrec tuner``, ``streamrec tune`` and ``streamrec eval``
(``stream/``) drive it.
"""
from __future__ import annotations

from online.search.loop import Schedule, SelfTunedRecommender
from online.search.replay import WindowScore, score_window
from online.search.space import SEARCHED, Candidate, SearchSpace
from online.search.study import SearchConfig, SearchResult, search, searcher

__all__ = ["SEARCHED", "Candidate", "Schedule", "SearchConfig", "SearchResult", "SearchSpace", "SelfTunedRecommender",
           "WindowScore", "score_window", "search", "searcher"]
