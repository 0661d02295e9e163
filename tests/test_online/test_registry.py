"""The strategy registry: every registered strategy builds, learns and ranks, and its knobs are honest.

Each strategy declares its frozen config, and every field of it is a knob. A knob is a
promise to the self-tuning search: its field exists and holds a value in the declared space
by default, every value in the space builds a working strategy, and a knob declared
``in_place`` really can be applied to a live model with ``mutate``. The contract
runs over everything in :data:`online.registry.REGISTRY`, the encoder slot included (filled
with a real, tiny ``models.EncoderScorer``).
"""
from __future__ import annotations

import dataclasses
import math
import pickle

import pytest

from online.base import Strategy, scorer_for
from online.blend import STRATEGY_NAMES, BlendConfig, StrategySlot, build_blend
from online.engine import EngineConfig
from online.registry import (
    BLEND_KNOBS,
    ENGINE_KNOBS,
    REGISTRY,
    STRATEGY_FIELDS,
    BuildContext,
    Knob,
    StrategyConfigs,
    in_place_changes,
    search_space,
    spec,
)
from tests.test_online.helpers import stream

EVENTS = stream(300)
CONTEXT = BuildContext(max_users=1_000, max_items=1_000)
NAMES = list(REGISTRY)


def _built(name: str) -> Strategy:
    strategy = spec(name).build(spec(name).Config(), CONTEXT)
    if spec(name).slot:
        strategy.swap(_tiny_encoder())
    return strategy


def _tiny_encoder():
    torch = pytest.importorskip("torch")
    from models.config import EncoderConfig
    from models.encoder import SequenceEncoder
    from models.serving import EncoderScorer

    torch.manual_seed(0)
    items = sorted({e.item_id for e in EVENTS})
    return EncoderScorer(SequenceEncoder(EncoderConfig.tiny(n_items=len(items))), items, version=1)


def test_every_strategy_is_registered_under_its_own_name_and_the_blend_accepts_it():
    assert all(REGISTRY[name].name == name for name in REGISTRY)
    for name in REGISTRY:
        assert BlendConfig(weights=((name, 1.0),)).weights == ((name, 1.0),)
    assert set(STRATEGY_NAMES) == set(REGISTRY)


def test_every_strategy_but_a_slot_can_be_evaluated_alone():
    from stream.cli.evaluate import STRATEGY_CHOICES

    assert {name for name, spec_ in REGISTRY.items() if not spec_.slot} <= set(STRATEGY_CHOICES)


def test_an_unknown_strategy_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="choose from popularity, next_item"):
        spec("telepathy")


@pytest.mark.parametrize("name", NAMES)
def test_every_registered_strategy_builds_learns_and_ranks(name):
    strategy = _built(name)
    assert isinstance(strategy, Strategy)
    for start in range(0, len(EVENTS), 10):
        strategy.learn_many(EVENTS[start:start + 10])
    history = [e.item_id for e in EVENTS if e.user_id == "u1"][-5:]
    scorer = scorer_for(strategy, "u1", history)
    candidates = scorer.candidates(5, exclude=set(history))
    assert len(candidates) == len(set(candidates)) <= 5 and not set(candidates) & set(history)
    scores = scorer.score(candidates + ["never-seen-item"])
    assert len(scores) == len(candidates) + 1 and all(math.isfinite(s) for s in scores)
    assert candidates, f"{name} proposes nothing after 300 events"
    if not spec(name).slot:  # a slot's model is restored from its own checkpoint, not from the pickle
        clone = pickle.loads(pickle.dumps(strategy))
        assert scorer_for(clone, "u1", history).candidates(5, exclude=set(history)) == candidates


@pytest.mark.parametrize("name", NAMES)
def test_the_blend_builds_each_strategy_through_the_registry_from_its_own_config(name):
    configs = StrategyConfigs()
    built = build_blend(BlendConfig(weights=((name, 1.0),)), configs, max_users=1_000, max_items=1_000)
    assert type(built.strategies[name]) is type(spec(name).build(configs[name], CONTEXT))


@pytest.mark.parametrize("name", NAMES)
def test_every_field_of_a_strategys_frozen_config_is_declared_by_exactly_one_knob(name):
    spec_ = spec(name)
    config = spec_.Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.__setattr__("anything", 1)
    assert sorted(f.name for f in dataclasses.fields(spec_.Config)) == sorted(knob.field for knob in spec_.knobs)
    for f in dataclasses.fields(spec_.Config):
        assert STRATEGY_FIELDS[spec_.flat(f.name)] == (name, f.name)  # one flat name each, unique


def test_strategy_configs_change_by_flat_name_and_refuse_what_they_do_not_know():
    configs = StrategyConfigs().replace(cooc_window=3, half_life=100.0, river_optimizer="adam")
    assert configs["cooccurrence"].window == 3 and configs["popularity"].half_life == 100.0
    assert configs != StrategyConfigs() and configs == StrategyConfigs().replace(
        river_optimizer="adam", half_life=100.0, cooc_window=3)
    with pytest.raises(ValueError, match="not a strategy setting"):
        StrategyConfigs().replace(cooc_windoe=3)
    with pytest.raises(ValueError, match="river_optimizer must be one of sgd, adam, rmsprop"):
        StrategyConfigs().replace(river_optimizer="lbfgs")


def test_the_engine_builds_its_own_two_models_from_their_configs():
    from online.engine import StreamingRecommender

    engine = StreamingRecommender(EngineConfig().replace(half_life=123.0, lookback=7, vote_top=9))
    assert engine.popularity.half_life == 123.0 and engine.next_item.lookback == 7 and engine.next_item.vote_top == 9


KNOBS = [(name, knob) for name in NAMES for knob in spec(name).knobs] + \
        [("engine", knob) for knob in ENGINE_KNOBS] + [("blend", knob) for knob in BLEND_KNOBS]


def _default(owner: str, knob: Knob):
    if owner in REGISTRY:
        return getattr(spec(owner).Config(), knob.field)
    return getattr(BlendConfig() if owner == "blend" else EngineConfig(), knob.field)


@pytest.mark.parametrize("owner,knob", KNOBS, ids=[f"{o}.{k.field}" for o, k in KNOBS])
def test_every_knob_names_a_config_field_whose_default_lies_in_its_space(owner, knob):
    default = _default(owner, knob)
    assert knob.contains(default), f"{knob.field}={default!r} is outside {knob}"


@pytest.mark.parametrize("owner,knob", [(o, k) for o, k in KNOBS if o in REGISTRY],
                         ids=[f"{o}.{k.field}" for o, k in KNOBS if o in REGISTRY])
def test_every_value_at_the_edges_of_a_strategy_knob_builds_a_working_strategy(owner, knob):
    values = list(knob.choices) if knob.kind == "categorical" else [knob.low, knob.high]
    if knob.kind == "int":
        values = [int(v) for v in values]
    for value in values + ([None] if knob.optional else []):
        config = dataclasses.replace(spec(owner).Config(), **{knob.field: value})
        strategy = spec(owner).build(config, CONTEXT)
        strategy.learn_many(EVENTS[:50])
        assert all(math.isfinite(s) for s in strategy.score("u1", ["i1"], ["i2", "i3"]))


@pytest.mark.parametrize("owner,knob", [(o, k) for o, k in KNOBS if o in REGISTRY and k.in_place],
                         ids=[f"{o}.{k.field}" for o, k in KNOBS if o in REGISTRY and k.in_place])
def test_an_in_place_knob_can_be_applied_to_a_live_model(owner, knob):
    strategy = _built(owner)
    strategy.learn_many(EVENTS[:50])
    value = int(knob.high) if knob.kind == "int" else knob.high
    strategy.mutate({knob.model_attribute: value})
    assert getattr(strategy, knob.model_attribute) == value


def test_a_knob_outside_its_space_is_recognised():
    knob = Knob("mf_lr", "float", 1e-3, 1.0, log=True)
    assert knob.contains(0.1) and not knob.contains(2.0) and not knob.contains(math.nan)
    assert not Knob("cooc_cap", "int", 8, 512).contains(9.5)
    assert Knob("cooc_half_life", "float", 1.0, 10.0, optional=True).contains(None)
    with pytest.raises(ValueError, match="log-scale"):
        Knob("bad", "float", 0.0, 1.0, log=True)


def test_the_search_space_holds_every_strategys_weight_and_knobs_and_splits_changes_by_how_they_apply():
    space = search_space(["popularity", "cooccurrence", "mf"])
    assert {"weight:popularity", "weight:cooccurrence", "weight:mf", "cooc_window", "mf_lr", "half_life",
            "history_len", "candidates"} <= set(space)
    assert "river_factors" not in space
    live, rebuild = in_place_changes({"mf_lr": 0.2, "weight:mf": 0.5, "cooc_window": 3, "history_len": 20})
    assert live == {"mf": {"lr": 0.2}, "blend": {"mf": 0.5}}
    assert sorted(rebuild) == ["cooc_window", "history_len"]


def test_the_encoder_is_a_slot_that_serves_what_fills_it():
    slot = spec("encoder").build(spec("encoder").Config(), CONTEXT)
    assert isinstance(slot, StrategySlot) and slot.candidates("u1", ["i1"], 3) == []
    slot.swap(_tiny_encoder())
    assert slot.candidates("u1", ["i1", "i2"], 3)
