"""One contract, generated over every strategy in ``online`` (river's ``check_estimator`` habit).

Strategies are discovered, not listed: every ``Tunable`` subclass in the package
whose instances satisfy the ``online.base.Strategy`` protocol, built from each of
its ``_unit_test_params()``. A new strategy is checked without touching this file.
"""
from __future__ import annotations

import importlib
import math
import pickle
import pkgutil

import pytest

import online
from online.base import Strategy, Tunable, scorer_for
from online.blend import StrategySlot
from tests.test_online.helpers import stream


def _all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


def _strategy_classes():
    for module in pkgutil.iter_modules(online.__path__):
        importlib.import_module(f"online.{module.name}")
    found = []
    for cls in _all_subclasses(Tunable):
        if not cls.__module__.startswith("online."):
            continue
        for params in cls._unit_test_params():
            if isinstance(cls(**params), Strategy):
                found.append((cls, params))
    return found


CASES = _strategy_classes()
IDS = [f"{cls.__name__}-{i}" for i, (cls, _) in enumerate(CASES)]
EVENTS = stream(300)


def _trained(cls, params, events=EVENTS, batch=7):
    strategy = cls(**params)
    for start in range(0, len(events), batch):
        strategy.learn_many(events[start:start + batch])
    return strategy


def _history(user, events=EVENTS):
    return [e.item_id for e in events if e.user_id == user][-10:]


def test_discovery_finds_every_strategy():
    names = {cls.__name__ for cls, _ in CASES}
    assert {"DecayedPopularity", "NextItem", "ImplicitMF", "RiverMF"} <= names


@pytest.mark.parametrize("cls,params", CASES, ids=IDS)
def test_satisfies_protocol_and_has_a_name(cls, params):
    strategy = cls(**params)
    assert isinstance(strategy, Strategy)
    assert isinstance(strategy.name, str) and strategy.name


@pytest.mark.parametrize("cls,params", CASES, ids=IDS)
def test_clone_is_fresh_with_the_same_params(cls, params):
    trained = _trained(cls, params)
    clone = trained.clone()
    assert type(clone) is cls and clone._get_params() == trained._get_params()
    fresh = cls(**params)
    history = _history("u1")
    assert clone.candidates("u1", history, 5) == fresh.candidates("u1", history, 5)
    assert clone.score("u1", history, ["i1", "i2"]) == fresh.score("u1", history, ["i1", "i2"])


@pytest.mark.parametrize("cls,params", CASES, ids=IDS)
def test_seeded_runs_are_identical(cls, params):
    a, b = _trained(cls, params), _trained(cls, params)
    for user in ("u0", "u3", "u7"):
        history = _history(user)
        assert a.candidates(user, history, 8) == b.candidates(user, history, 8)
        items = [f"i{i}" for i in range(25)]
        assert a.score(user, history, items) == b.score(user, history, items)


@pytest.mark.parametrize("cls,params", CASES, ids=IDS)
def test_candidates_are_sorted_by_score(cls, params):
    strategy = _trained(cls, params)
    for user in ("u0", "u2", "u5", "u9"):
        history = _history(user)
        candidates = strategy.candidates(user, history, 10)
        assert len(candidates) == len(set(candidates)) <= 10
        scores = strategy.score(user, history, candidates)
        assert all(x >= y - 1e-12 for x, y in zip(scores, scores[1:])), (candidates, scores)


@pytest.mark.parametrize("cls,params", CASES, ids=IDS)
def test_unseen_users_and_items_do_not_raise_and_scores_are_finite(cls, params):
    untrained = cls(**params)
    assert isinstance(untrained.candidates("nobody", [], 5), list)
    assert untrained.score("nobody", ["never"], ["x", "y"]) == [0.0, 0.0]
    strategy = _trained(cls, params)
    for user, history in (("nobody", []), ("nobody", ["never-seen"]), ("u1", _history("u1") + ["zzz"])):
        candidates = strategy.candidates(user, history, 5)
        assert isinstance(candidates, list)
        scores = strategy.score(user, history, ["i1", "never-seen", *candidates])
        assert len(scores) == 2 + len(candidates)
        assert all(isinstance(s, float) and math.isfinite(s) for s in scores)
    assert strategy.score("u1", _history("u1"), []) == []


@pytest.mark.parametrize("cls,params", CASES, ids=IDS)
def test_no_nan_after_long_learning(cls, params):
    strategy = _trained(cls, params, events=stream(1500, seed=3), batch=50)
    items = [f"i{i}" for i in range(25)]
    for user in ("u0", "u1"):
        assert all(math.isfinite(s) for s in strategy.score(user, _history(user), items))


@pytest.mark.parametrize("cls,params", CASES, ids=IDS)
def test_scorer_agrees_with_the_protocol_methods_and_honours_exclude(cls, params):
    strategy = _trained(cls, params)
    history = _history("u4")
    scorer = scorer_for(strategy, "u4", history)
    assert scorer.candidates(6) == strategy.candidates("u4", history, 6)
    items = ["i0", "i3", "nope"]
    assert list(scorer.score(items)) == strategy.score("u4", history, items)
    full = scorer.candidates(10)
    excluded = set(full[:3])
    assert not excluded & set(scorer.candidates(10, excluded))


@pytest.mark.parametrize("cls,params", CASES, ids=IDS)
def test_pickle_round_trip_keeps_the_model(cls, params):
    strategy = _trained(cls, params)
    copy = pickle.loads(pickle.dumps(strategy))
    history = _history("u2")
    assert copy.candidates("u2", history, 8) == strategy.candidates("u2", history, 8)
    more = stream(50, seed=9)
    strategy.learn_many(more)
    copy.learn_many(more)
    assert copy.score("u2", history, ["i1", "i5"]) == strategy.score("u2", history, ["i1", "i5"])


@pytest.mark.parametrize("cls,params", CASES, ids=IDS)
def test_mutate_only_through_the_whitelist(cls, params):
    strategy = cls(**params)
    with pytest.raises(ValueError, match="not a mutable attribute"):
        strategy.mutate({"definitely_not_a_parameter": 1})
    for key in strategy._mutable_attributes:
        before = getattr(strategy, key)
        with pytest.raises(ValueError):
            strategy.mutate({key: float("nan")})
        assert getattr(strategy, key) == before  # a refused call changes nothing
        strategy.mutate({key: before})


def test_learning_rates_are_tunable_at_run_time():
    from online.mf import ImplicitMF
    from online.river_mf import RiverMF

    mf = ImplicitMF(n_factors=4)
    mf.mutate({"lr": 0.2, "l2": 0.0, "negatives": 2})
    assert (mf.lr, mf.l2, mf.negatives) == (0.2, 0.0, 2)
    with pytest.raises(ValueError):
        mf.mutate({"lr": -1.0})
    river = RiverMF(n_factors=3)
    river.mutate({"lr": 0.007})
    assert all(opt.learning_rate == pytest.approx(0.007) for opt in river._optimizers())


def test_encoder_slot_satisfies_the_protocol_empty_and_full():
    from online.popularity import DecayedPopularity

    slot = StrategySlot("encoder")
    assert isinstance(slot, Strategy)
    slot.learn_many(EVENTS[:10])
    assert slot.candidates("u1", [], 3) == [] and slot.score("u1", [], ["a", "b"]) == [0.0, 0.0]
    inner = DecayedPopularity()
    assert slot.swap(inner) is None
    slot.learn_many(EVENTS)
    assert slot.candidates("u1", [], 3) == inner.candidates("u1", [], 3)
    assert pickle.loads(pickle.dumps(slot)).strategy is None  # restored from its own checkpoint instead
