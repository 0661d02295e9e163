"""Incremental learning for streamrec: no Kafka, no Faust, no torch.

Everything here learns from :class:`~online.base.Interaction` records one
micro-batch at a time and ranks items for a user, so it runs the same way in a
Faust worker, in ``streamrec eval`` and in a unit test.
"""
from __future__ import annotations

from online.base import Interaction, Strategy
from online.engine import EngineConfig, StreamingRecommender

__all__ = ["EngineConfig", "Interaction", "Strategy", "StreamingRecommender"]
