"""The blend: weights are normalised plain data, normalisation is scale-free, lists obey the rules."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from online.blend import Blend, BlendConfig, StrategySlot, build_blend, normalise
from online.engine import EngineConfig, StreamingRecommender
from online.registry import StrategyConfigs
from online.rerank import LearnedWeights
from online.sequential import NextItem
from tests.test_online.helpers import stream

NAMES = ["a", "b", "c"]


class Fixed:
    """A stub strategy with fixed item scores (``transform`` changes their scale)."""

    name = "fixed"

    def __init__(self, scores: dict[str, float], transform=lambda x: x) -> None:
        self.scores, self.transform = scores, transform

    def learn_many(self, interactions) -> None:
        pass

    def candidates(self, user_id, history, n):
        return sorted(self.scores, key=self.scores.__getitem__, reverse=True)[:n]

    def score(self, user_id, history, items):
        return [self.transform(self.scores.get(i, 0.0)) if i in self.scores else self.transform(0.0) for i in items]


weights_st = st.dictionaries(st.sampled_from(NAMES), st.floats(0, 1e6, allow_nan=False), min_size=1).filter(
    lambda w: sum(w.values()) > 0)
scores_st = st.dictionaries(st.sampled_from([f"i{n}" for n in range(12)]),
                            st.integers(-1000, 1000).map(float), min_size=1)


def _blend(weights=None, **kwargs):
    return Blend({name: Fixed({}) for name in NAMES}, weights, **kwargs)


@settings(max_examples=60, deadline=None)
@given(weights_st)
def test_weights_are_normalised_non_negative_and_sum_to_one(weights):
    blend = _blend(weights)
    assert set(blend.weights) == set(NAMES)
    assert math.isclose(sum(blend.weights.values()), 1.0)
    assert all(w >= 0 for w in blend.weights.values())
    total = sum(weights.values())
    for name, w in weights.items():
        assert math.isclose(blend.weights[name], w / total, rel_tol=1e-9, abs_tol=1e-12)


@settings(max_examples=40, deadline=None)
@given(weights_st, weights_st)
def test_set_weights_renormalises_and_bad_input_changes_nothing(first, second):
    blend = _blend(first)
    blend.set_weights(second)
    assert math.isclose(sum(blend.weights.values()), 1.0)
    before = blend.weights
    for bad in ({"a": -1.0}, {"a": float("nan")}, {"zzz": 1.0}, dict.fromkeys(NAMES, 0.0)):
        with pytest.raises(ValueError):
            blend.set_weights(bad)
        assert blend.weights == before


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=30),
       st.floats(1e-3, 1e3), st.floats(-1e3, 1e3), st.sampled_from(["minmax", "rank"]))
def test_normalise_is_in_unit_range_and_scale_free(scores, scale, shift, how):
    x = np.array(scores)
    out = normalise(x, how)
    assert out.shape == x.shape and np.all((out >= 0) & (out <= 1))
    moved = normalise(scale * x + shift, how)
    if how == "minmax" and np.ptp(x) > 1e-6 * (1 + np.abs(x).max()):
        assert np.allclose(out, moved, atol=1e-6)
    if how == "rank" and (len(x) == 1 or np.min(np.diff(np.sort(x))) > 1e-6 * (1 + np.abs(x).max())):
        assert np.array_equal(out, moved)


def test_normalise_treats_nan_and_inf_as_worst():
    out = normalise(np.array([1.0, np.nan, 3.0, np.inf, -np.inf]))
    assert np.all(np.isfinite(out)) and out[2] == 1.0 and out[1] == 0.0
    assert normalise(np.array([np.nan, np.nan])).tolist() == [0.0, 0.0]


@settings(max_examples=40, deadline=None)
@given(scores_st, scores_st, st.floats(0.01, 100), st.floats(-100, 100))
def test_blend_ranking_ignores_each_strategys_scale(first, second, scale, shift):
    plain = Blend({"x": Fixed(first), "y": Fixed(second)}, {"x": 0.6, "y": 0.4})
    moved = Blend({"x": Fixed(first, lambda v: scale * v + shift), "y": Fixed(second)}, {"x": 0.6, "y": 0.4})
    a = plain.serve("u", [], k=5).items
    b = moved.serve("u", [], k=5).items
    assert [s for _, s in a] == pytest.approx([s for _, s in b], abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(scores_st, scores_st, st.sets(st.sampled_from([f"i{n}" for n in range(12)])), st.integers(1, 8))
def test_lists_are_sorted_unique_bounded_and_never_seen(first, second, seen, k):
    blend = Blend({"x": Fixed(first), "y": Fixed(second)}, {"x": 1.0, "y": 2.0})
    ranked = blend.serve("u", [], seen=seen, k=k, exclude=["i0"]).items
    items = [item for item, _ in ranked]
    scores = [score for _, score in ranked]
    assert len(items) == len(set(items)) <= k
    assert not set(items) & (seen | {"i0"})
    assert scores == sorted(scores, reverse=True)
    # within rounding of [0, 1]: the fast minmax path sums w_s * x_s / span_s - lo_s * w_s / span_s,
    # which can leave -1.8e-17 where the exact value is 0 (found by hypothesis)
    assert all(-1e-9 <= s <= 1.0 + 1e-9 for s in scores)
    unseen = (set(first) | set(second)) - seen - {"i0"}
    assert len(items) == min(k, len(unseen))


def test_a_diverging_strategy_never_puts_nan_on_top():
    blend = Blend({"good": Fixed({"i1": 1.0, "i2": 0.5}), "bad": Fixed({"i1": 0.0, "i3": 1.0},
                                                                          lambda v: float("nan") if v else v)},
                  {"good": 0.5, "bad": 0.5})
    ranked = blend.serve("u", [], k=3).items
    assert all(math.isfinite(score) for _, score in ranked)
    assert ranked[0][0] == "i1"


def test_weights_decide_between_strategies():
    pop = Fixed({"p": 1.0, "s": 0.0})
    seq = Fixed({"s": 1.0, "p": 0.0})
    assert Blend({"pop": pop, "seq": seq}, {"pop": 0.9, "seq": 0.1}).serve("u", [], k=1).items[0][0] == "p"
    assert Blend({"pop": pop, "seq": seq}, {"pop": 0.1, "seq": 0.9}).serve("u", [], k=1).items[0][0] == "s"


def test_config_parse_validation_and_copy():
    config = BlendConfig.parse("popularity=0.5, cooccurrence=1, mf", candidates=7)
    assert config.weights == (("popularity", 0.5), ("cooccurrence", 1.0), ("mf", 1.0)) and config.candidates == 7
    assert dict(config.with_weights(mf=0.0, popularity=2.0).weights) == {"popularity": 2.0, "cooccurrence": 1.0,
                                                                          "mf": 0.0}
    for bad in ("nope=1", "popularity=-1", "popularity=x", "popularity=0", "popularity=1,popularity=2", ""):
        with pytest.raises(ValueError):
            BlendConfig.parse(bad)
    with pytest.raises(ValueError):
        BlendConfig(normalise="softmax")


def test_engine_with_blend_shares_its_own_models_and_serves_the_encoder_slot():
    config = EngineConfig(k=5, blend=BlendConfig.parse("popularity=1,next_item=1,cooccurrence=1,encoder=1"))
    engine = StreamingRecommender(config)
    blend = engine.blend
    assert blend.strategies["popularity"] is engine.popularity and blend.strategies["next_item"] is engine.next_item
    assert "popularity" not in blend.learners and "cooccurrence" in blend.learners
    assert isinstance(blend.strategies["encoder"], StrategySlot)
    events = stream(200)
    engine.learn_many(events)
    before = engine.recommend("u1", record=False).items
    blend.strategies["encoder"].swap(Fixed({"i24": 1e9}))
    after = engine.recommend("u1", record=False).items
    seen = engine._users["u1"].seen
    assert "i24" in seen or "i24" in [item for item, _ in after]
    assert len(before) == len(after) == 5
    assert engine.recommend("never-seen-user").items  # new users get the popular items


def test_learned_weights_move_towards_the_strategy_that_predicts_and_stay_normalised():
    # "seq" always ranks the next item first; "pop" ranks a fixed item first.
    learner = LearnedWeights(lr=0.5, floor=0.05, seed=1)
    blend = Blend({"pop": Fixed({"p": 1.0}), "seq": NextItem(window=1)}, {"pop": 0.5, "seq": 0.5},
                  learner=learner)
    from online.base import Interaction

    for t in range(60):
        user = f"u{t % 5}"
        item = f"x{t // 5}"
        blend.serve(user, [f"x{t // 5 - 1}"], k=3)
        blend.learn_many([Interaction(user, item, float(t))])
        blend.strategies["seq"].learn_pairs([(f"x{t // 5 - 1}", item)])
    weights = blend.weights
    assert math.isclose(sum(weights.values()), 1.0) and min(weights.values()) >= 0.05 - 1e-9
    assert weights["seq"] > weights["pop"]
    assert learner.steps > 0 and learner.pairs > 0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.floats(-1e9, 1e9), st.just(float("nan")), st.just(float("inf"))),
                min_size=3, max_size=3))
def test_learned_weights_projection_is_a_distribution_with_a_floor(raw):
    learner = LearnedWeights(floor=0.05)
    learner.reset(NAMES, [1.0, 1.0, 1.0])
    learner.assign(raw)
    w = learner.vector()
    assert np.all(np.isfinite(w)) and math.isclose(w.sum(), 1.0) and w.min() >= 0.05 - 1e-9


def test_build_blend_builds_every_named_strategy():
    config = BlendConfig.parse("popularity,next_item,cooccurrence,mf,river_mf,encoder", learn_weights=False)
    strategies = StrategyConfigs().replace(mf_lr=0.07)
    blend = build_blend(config, strategies, max_users=50, max_items=50)
    assert list(blend.strategies) == ["popularity", "next_item", "cooccurrence", "mf", "river_mf", "encoder"]
    blend.learn_many(stream(120))
    ranked = blend.serve("u1", ["i1", "i2"], seen={"i1", "i2"}, k=4).items
    assert len(ranked) == 4 and not {"i1", "i2"} & {item for item, _ in ranked}
    snap = blend.snapshot()
    assert math.isclose(sum(snap["weights"].values()), 1.0) and snap["params"]["mf"]["lr"] == 0.07


class Version(Fixed):
    """A stand-in for one hot-swapped encoder version: fixed scores and a version number."""

    name = "encoder"

    def __init__(self, version: int, scores: dict[str, float]) -> None:
        super().__init__(scores)
        self.version = version
        self.scored = 0

    def score(self, user_id, history, items):
        self.scored += 1
        return super().score(user_id, history, items)


def test_the_blend_reports_the_version_of_each_hot_swapped_strategy_that_weighed_in_on_a_list():
    slot = StrategySlot("encoder")
    blend = Blend({"popularity": Fixed({"p": 1.0, "q": 0.5}), "encoder": slot}, {"popularity": 1.0, "encoder": 1.0})
    assert blend.serve("u", [], k=3).versions == ()  # an empty slot serves nothing
    slot.swap(Version(7, {"e": 1.0}))
    served = blend.serve("u", [], k=3)
    assert served.versions == (("encoder", 7),) and "e" in [item for item, _ in served.items]
    assert served.items == blend.serve("u", [], k=3).items  # the same list every time it is asked
    silent = blend.serve("u", [], k=3, weights={"popularity": 1.0, "encoder": 0.0})
    assert silent.versions == ()  # in the pool with weight 0: it did not shape the list
    slot.swap(Version(8, {"e": 1.0}))
    assert blend.serve("u", [], k=3).versions == (("encoder", 8),)


def test_a_request_is_scored_by_the_version_it_started_with_even_if_the_slot_swaps_midway():
    slot = StrategySlot("encoder")
    newer = Version(2, {"x": 1.0, "e": 0.0})

    class SwapsWhileProposing(Version):
        def candidates(self, user_id, history, n):
            slot.swap(newer)  # a hot swap lands between this request's candidates and its scores
            return super().candidates(user_id, history, n)

    slot.swap(SwapsWhileProposing(1, {"e": 1.0, "x": 0.0}))
    blend = Blend({"popularity": Fixed({"p": 1.0}), "encoder": slot}, {"popularity": 1.0, "encoder": 1.0})
    served = blend.serve("u", [], k=3)
    assert served.versions == (("encoder", 1),) and newer.scored == 0


def test_filling_a_slot_serves_the_strategy_in_the_declared_slot_or_adds_one_once():
    declared = build_blend(BlendConfig.parse("popularity=1,encoder=0.5", learn_weights=False))
    slot = declared.strategies["encoder"]
    first = Version(1, {"e": 1.0})
    declared.fill("encoder", first, weight=0.3)
    assert declared.strategies["encoder"] is slot and slot.strategy is first  # the declared slot, filled
    assert declared.weights["encoder"] == pytest.approx(0.5 / 1.5)  # with the weight it was declared with

    undeclared = build_blend(BlendConfig.parse("popularity=1", learn_weights=False))
    undeclared.fill("encoder", first, weight=0.25)
    added = undeclared.strategies["encoder"]
    assert isinstance(added, StrategySlot) and added.strategy is first
    assert undeclared.weights["encoder"] == pytest.approx(0.25 / 1.25)
    second = Version(2, {"e": 1.0})
    undeclared.fill("encoder", second, weight=0.9)  # the next version: same slot, same weight
    assert undeclared.strategies["encoder"] is added and added.strategy is second
    assert undeclared.weights["encoder"] == pytest.approx(0.25 / 1.25)
    with pytest.raises(ValueError):
        undeclared.fill("popularity", second)  # a learned model is not a slot


def test_the_engine_serves_the_list_with_what_served_it():
    fixed = StreamingRecommender(EngineConfig(k=3))
    blended = StreamingRecommender(EngineConfig(k=3, blend=BlendConfig.parse("popularity=1,next_item=1,encoder=1")))
    for engine in (fixed, blended):
        engine.learn_many(stream(100))
        ranking = engine.recommend("u1", record=False)
        assert ranking.items and ranking.versions == () and ranking.arm is None and ranking.model_version == "online"
    blended.blend.fill("encoder", Version(5, {"e": 1.0}))
    ranking = blended.recommend("u1", record=False)
    assert ranking.versions == (("encoder", 5),) and ranking.model_version == "encoder-v5"
