"""Incremental learning for streamrec: no Kafka, no Faust, no torch.

Everything here learns from :class:`~online.base.Interaction` records one
micro-batch at a time and ranks items for a user, so it runs the same way in a
Faust worker, in ``streamrec eval`` and in a unit test.

Module map: ``base`` (Interaction, Strategy protocol, Tunable), ``popularity``,
``sequential`` (next-item / windowed co-occurrence), ``mf`` (ISGD matrix
factorisation), ``river_mf`` (river's BiasedMF/FunkMF), ``rerank`` (learned blend
weights), ``blend`` (candidates, normalisation, weights, the encoder slot),
``engine`` (what the workers run), ``evaluation`` (prequential replay),
``state`` (snapshots), ``prequential`` (live hit-rate counters).
"""
from __future__ import annotations

from online.base import Engine, Interaction, Ranking, Strategy, Tunable
from online.blend import Blend, BlendConfig, StrategySlot
from online.engine import EngineConfig, StreamingRecommender
from online.errors import OnlineError, SnapshotError

__all__ = ["Blend", "BlendConfig", "Engine", "EngineConfig", "Interaction", "OnlineError", "Ranking", "SnapshotError",
           "Strategy", "StrategySlot", "StreamingRecommender", "Tunable"]
