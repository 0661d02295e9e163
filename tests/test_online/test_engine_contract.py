"""The one engine contract (``online.base.Engine``), checked on every engine the workers can run.

The fixed mix, a learned blend with every registered strategy (the encoder slot filled),
and the tuner over a blend all learn micro-batches and answer ``recommend`` with a
``Ranking`` that says what served it; none of them is read back after the call.
"""
from __future__ import annotations

import math

import pytest

from online.base import Engine, Ranking
from online.blend import BlendConfig
from online.engine import EngineConfig, StreamingRecommender
from online.registry import REGISTRY
from online.tuning import TunedRecommender, TunerConfig, tuned_engine_config
from tests.test_online.helpers import EncoderVersion, stream


def _fixed():
    return StreamingRecommender(EngineConfig(k=5))


def _every_strategy():
    weights = ",".join(REGISTRY)
    engine = StreamingRecommender(EngineConfig(k=5, blend=BlendConfig.parse(weights)).replace(mf_factors=4,
                                                                                              river_factors=3))
    engine.blend.fill("encoder", EncoderVersion(7, {"i3": 5.0, "i4": 1.0}))
    return engine


def _tuned():
    return TunedRecommender(StreamingRecommender(tuned_engine_config(EngineConfig(k=5))),
                            TunerConfig(period=20, weight_period=20))


ENGINES = {"fixed mix": _fixed, "every strategy": _every_strategy, "tuned": _tuned}


@pytest.fixture(params=list(ENGINES), ids=list(ENGINES))
def engine(request):
    built = ENGINES[request.param]()
    events = stream(400)
    for start in range(0, len(events), 25):
        built.learn_many(events[start:start + 25])
    return built


def test_it_satisfies_the_engine_protocol(engine):
    assert isinstance(engine, Engine)


def test_recommend_returns_a_ranking_of_k_new_distinct_items_with_finite_scores(engine):
    ranking = engine.recommend("u1", exclude=["i1", "i2"])
    assert isinstance(ranking, Ranking)
    items = [item for item, _ in ranking.items]
    assert 0 < len(items) <= 5 and len(set(items)) == len(items)
    assert not {"i1", "i2"} & set(items)
    assert all(math.isfinite(score) for _, score in ranking.items)
    assert [score for _, score in ranking.items] == sorted((score for _, score in ranking.items), reverse=True)


def test_a_ranking_names_what_served_it(engine):
    ranking = engine.recommend("u2", k=3)
    served_by_encoder = "encoder" in engine.blend.strategies and engine.blend.weights.get("encoder", 0) > 0
    assert ranking.model_version == ("encoder-v7" if served_by_encoder else "online")
    assert (ranking.arm is not None) == isinstance(engine, TunedRecommender)


def test_an_unknown_user_gets_a_list_and_is_not_remembered(engine):
    users = engine.n_users
    assert engine.recommend("never-seen", record=True).items
    assert engine.n_users == users


def test_stats_are_plain_finite_numbers(engine):
    stats = engine.stats()
    assert stats["events_learned"] == 400
    assert all(isinstance(value, (int, float)) and math.isfinite(value) for value in stats.values())
