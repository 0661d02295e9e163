"""The online tuner's invariants: probabilities, exploration, safety, drift, and that it notices change."""
from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from online.base import Interaction
from online.engine import EngineConfig, StreamingRecommender
from online.mf import ImplicitMF
from online.tuning import (
    POLICIES,
    ArmPolicy,
    ShadowSearch,
    TunedRecommender,
    TunerConfig,
    WeightSearch,
    arm_labels,
    tuned_engine_config,
)
from tests.test_online.helpers import stream


def _tuned(policy: str = "thompson", k: int = 10, **changes) -> TunedRecommender:
    config = TunerConfig(policy=policy, seed=0, **{"period": 200, "weight_period": 200, **changes})
    return TunedRecommender(StreamingRecommender(tuned_engine_config(EngineConfig(k=k))), config)


def _replay(engine, events) -> None:
    for event in events:
        engine.learn_many([event])
        engine.recommend(event.user_id)


# -- probabilities ---------------------------------------------------------------------------------

@pytest.mark.parametrize("policy", POLICIES)
def test_arm_probabilities_sum_to_one_and_every_open_arm_keeps_some(policy):
    arms = ["a", "b", "c", "d"]
    bandit = ArmPolicy(policy, arms, explore=0.1, seed=3)
    rng = random.Random(0)
    for _ in range(300):
        probs = bandit.probabilities()
        assert math.isclose(sum(probs.values()), 1.0, abs_tol=1e-9)
        assert all(p > 0 for p in probs.values())  # no arm is ever starved
        bandit.update_all({arm: float(rng.random() < 0.1 * (n + 1)) for n, arm in enumerate(arms)})
    bandit.barred.add("d")
    bandit._cache = None
    probs = bandit.probabilities()
    assert probs["d"] == 0.0 and math.isclose(sum(probs.values()), 1.0, abs_tol=1e-9)


@pytest.mark.parametrize("policy", POLICIES)
def test_full_information_learns_the_best_arm(policy):
    bandit = ArmPolicy(policy, ["x0.5", "x1", "x2"], seed=1)
    rng = random.Random(1)
    for _ in range(2000):
        bandit.update_all({"x0.5": float(rng.random() < 0.2), "x1": float(rng.random() < 0.3),
                           "x2": float(rng.random() < 0.5)}, reference="x1")
    assert bandit.best() == "x2"
    assert bandit.beats("x2", "x1", z=2.0) and not bandit.beats("x0.5", "x1", z=1.0)
    assert max(bandit.policy_probabilities(), key=bandit.policy_probabilities().get) == "x2"


@pytest.mark.parametrize("policy", POLICIES)
def test_sampled_serving_explores_every_arm_and_logs_its_propensity(policy):
    bandit = ArmPolicy(policy, ["keep", "a", "b"], explore=0.1, seed=2)
    for _ in range(30):
        bandit.update_all({"keep": 1.0, "a": 0.0, "b": 0.0})
    served = {}
    for _ in range(600):
        arm, propensity = bandit.sample()
        assert propensity == pytest.approx(bandit.probabilities()[arm])
        served[arm] = served.get(arm, 0) + 1
    assert set(served) == {"keep", "a", "b"}  # even arms that look bad are served now and then
    assert served["keep"] > served["a"]


def test_tuned_engine_snapshot_has_the_dashboard_shape_and_is_json():
    tuned = _tuned()
    _replay(tuned, stream(600, users=10, items=30))
    snap = json.loads(json.dumps(tuned.tuning_snapshot()))
    assert snap["step"] == 600 and snap["policy"] == "thompson"
    assert {"reward_rate", "drift_events", "models", "strategies"} <= set(snap)
    mf = snap["models"]["mf"]
    assert set(mf["arms"]) == set(arm_labels(2.0)) == {"x0.5", "x1", "x2"}
    assert mf["learning_rate"] == mf["arms"]["x1"]["learning_rate"]
    for arms in (mf["arms"], ):
        assert math.isclose(sum(a["probability"] for a in arms.values()), 1.0, abs_tol=1e-9)
        assert {"probability", "learning_rate", "reward"} <= set(arms["x2"])
    assert set(snap["strategies"]["weights"]) == {"popularity", "cooccurrence", "next_item", "mf"}
    assert math.isclose(sum(snap["strategies"]["weights"].values()), 1.0)
    assert math.isclose(sum(snap["strategies"]["probabilities"].values()), 1.0)
    assert isinstance(mf["resets"], int)


def test_every_arm_is_scored_on_every_informative_event():
    tuned = _tuned(period=10**9, weight_period=10**9)  # no decisions: evidence only accumulates
    _replay(tuned, stream(800, users=8, items=20))
    counts = tuned.searches["mf"].policy.counts()
    assert min(counts.values()) > 10 and len(set(counts.values())) == 1  # (drift may restart the count)
    weight_counts = tuned.weights.policy.counts()
    assert min(weight_counts.values()) > 10 and len(set(weight_counts.values())) == 1


# -- learning rates --------------------------------------------------------------------------------

def _mf_search(lr: float = 0.05, **kwargs) -> ShadowSearch:
    champion = ImplicitMF(n_factors=8, lr=lr, seed=0)
    return ShadowSearch("mf", champion, ArmPolicy("ucb", arm_labels(2.0), seed=0), **kwargs)


def test_a_better_shadow_is_promoted_and_the_labels_stay_fixed():
    search = _mf_search(lr=0.01, period=100, min_evidence=20)
    events = stream(100)
    for _round in range(3):
        search.learn(events)
        for _ in range(100):  # the x2 shadow wins every event
            search.policy.update_all({"x0.5": 0.0, "x1": 0.0, "x2": 1.0}, reference="x1")
        assert search.after_batch(100) == "x2"
    assert search.value == pytest.approx(0.08)  # three doublings: beyond any grid it started in
    assert set(search.models) == {"x0.5", "x1", "x2"}
    assert search.values() == pytest.approx({"x0.5": 0.04, "x1": 0.08, "x2": 0.16})


def test_no_promotion_without_paired_evidence():
    search = _mf_search(period=100, min_evidence=20)
    rng = random.Random(0)
    for _ in range(100):
        same = float(rng.random() < 0.3)
        search.policy.update_all({"x0.5": same, "x1": same, "x2": same}, reference="x1")
    assert search.after_batch(100) is None and search.value == 0.05


def test_a_diverging_shadow_is_reset_from_the_champion_and_barred():
    search = _mf_search(check_every=10, bar_events=50)
    search.learn(stream(200))
    search.models["x2"]._Q[0, 0] = np.nan  # the x2 arm blew up
    search.after_batch(10)
    assert search.resets == 1 and search.barred() == {"x2"}
    assert np.isfinite(search.models["x2"]._Q[: search.champion.n_items]).all()
    assert np.allclose(search.models["x2"]._Q[:5], search.champion._Q[:5])  # copied from the champion
    assert search.policy.probabilities()["x2"] == 0.0
    assert search.models["x2"].lr == pytest.approx(0.1)  # its rate is kept; it simply may not serve
    search.after_batch(50)
    assert search.barred() == set()


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the inf is injected on purpose
def test_a_diverging_champion_is_replaced_and_never_serves_nan():
    tuned = _tuned(check_every=5)
    events = stream(400, users=10, items=30)
    _replay(tuned, events)
    search = tuned.searches["mf"]
    before = search.champion
    search.champion._Q[:] = np.inf  # the served model diverges
    for event in events[:5]:
        ranked = tuned.recommend(event.user_id).items
        assert ranked and all(math.isfinite(score) for _, score in ranked)
        tuned.learn_many([event])
    assert search.resets >= 1 and search.champion is not before
    assert tuned.blend.strategies["mf"] is search.champion
    assert np.isfinite(search.champion._Q[: search.champion.n_items]).all()
    assert all(math.isfinite(score) for _, score in tuned.recommend(events[0].user_id).items)


def test_real_divergence_at_a_huge_rate_is_caught():
    tuned = _tuned(check_every=20, lr_high=1e6, max_norm=1e3)
    tuned.searches["mf"].models["x2"].mutate({"lr": 1e4})
    _replay(tuned, stream(300, users=10, items=30))
    assert tuned.tuning_snapshot()["models"]["mf"]["resets"] >= 1


# -- drift -----------------------------------------------------------------------------------------

def _switching_stream(n: int, switch: int, users: int = 20, items: int = 1000, seed: int = 0):
    """Users trail each other along items i -> i+1 (easy to predict) until ``switch``, then pick at random."""
    rng = random.Random(seed)
    position = {u: rng.randrange(10) for u in range(users)}
    out = []
    for t in range(n):
        user = rng.randrange(users)
        if t < switch:
            position[user] += 1
            item = position[user]
        else:
            item = rng.randrange(items, 4 * items)
        out.append(Interaction(f"u{user}", f"i{item}", float(t)))
    return out


def test_drift_in_reward_reopens_exploration():
    tuned = _tuned(period=10**9, weight_period=10**9)
    events = _switching_stream(6000, switch=3000)
    _replay(tuned, events[:3000])
    assert tuned.reward_rate > 0.3
    policy = tuned.weights.policy
    counts_before = min(policy.counts().values())
    entropy_before = policy.entropy()
    assert counts_before > 500
    _replay(tuned, events[3000:])
    assert tuned.drift_events >= 1 and tuned.tuning_snapshot()["drift_events"] == tuned.drift_events
    assert min(tuned.drift_steps) > 3000  # detected after the change, not before
    assert min(policy.counts().values()) < counts_before  # the evidence was forgotten ...
    assert policy._resets >= 1 and tuned.searches["mf"].policy._resets >= 1  # ... by every policy
    assert entropy_before >= 0.0


# -- strategy weights ------------------------------------------------------------------------------

class Oracle:
    """A strategy that is useless until ``wake()``, then knows each user's next item (an encoder refresh)."""

    name = "encoder"

    def __init__(self, events) -> None:
        self.awake = False
        self.next_of = {}
        self.queue = list(events)
        self.position = 0

    def wake(self) -> None:
        self.awake = True

    def learn_many(self, interactions) -> None:
        self.position += len(interactions)

    def _next(self, user_id):
        for event in self.queue[self.position:self.position + 200]:
            if event.user_id == user_id:
                return event.item_id
        return None

    def candidates(self, user_id, history, n):
        item = self._next(user_id) if self.awake else None
        return [item] if item is not None else []

    def score(self, user_id, history, items):
        item = self._next(user_id) if self.awake else None
        return [1.0 if it == item else 0.0 for it in items]


def test_a_strategy_that_improves_later_gains_weight():
    events = stream(5000, users=30, items=60, seed=4)
    config = tuned_engine_config(EngineConfig(k=5))
    config = config.__class__(**{**config.__dict__, "blend": config.blend.with_weights(encoder=0.02)})
    engine = StreamingRecommender(config)
    oracle = Oracle(events)
    engine.blend.strategies["encoder"].swap(oracle)
    tuned = TunedRecommender(engine, TunerConfig(policy="thompson", seed=0, period=300, weight_period=300))
    _replay(tuned, events[:2000])
    asleep = tuned.blend.weights["encoder"]
    assert asleep < 0.1
    oracle.wake()
    _replay(tuned, events[2000:])
    assert tuned.blend.weights["encoder"] > 3 * asleep
    assert tuned.blend.weights["encoder"] == max(tuned.blend.weights.values())


def test_weight_search_keeps_a_floor_and_sums_to_one():
    search = WeightSearch({"a": 1.0, "b": 0.0, "c": 0.0}, ArmPolicy("ucb", ["keep", "a", "b", "c"]), floor=0.05)
    assert math.isclose(sum(search.weights.values()), 1.0)
    assert min(search.weights.values()) >= 0.05 * 0.9
    for arm in ("keep", "a", "b", "c"):
        assert math.isclose(sum(search.arm_weights(arm).values()), 1.0)


# -- bandit feedback -------------------------------------------------------------------------------

def test_bandit_feedback_logs_propensities_and_estimates_unserved_arms():
    tuned = _tuned(feedback="bandit", explore=0.3)
    events = stream(600, users=10, items=30)
    served = []
    for n, event in enumerate(events):
        if served and n % 2 == 0:  # half the events answer the user's last list
            rec_id, items = served[-1]
            assert tuned.feedback(rec_id, items[0] if items else event.item_id)
        tuned.learn_many([event])
        listing = tuned.recommend(event.user_id, rec_id=f"r{n}")
        assert listing.arm and "strategies=" in listing.arm and "mf=" in listing.arm
        assert tuned.blend.strategies["mf"] is tuned.searches["mf"].champion  # the sampled arm served, not swapped in
        served.append((f"r{n}", [item for item, _ in listing.items]))
    assert not tuned.feedback("never-served", "i1")
    estimates = tuned.ips_estimates()
    assert set(estimates["mf"]) == {"x0.5", "x1", "x2"}
    assert sum(1 for value in estimates["strategies"].values() if value > 0) >= 2  # several arms were served
    snap = tuned.tuning_snapshot()
    assert snap["feedback"] == "bandit"
    assert snap["models"]["mf"]["arms"]["x1"]["reward"] == pytest.approx(estimates["mf"]["x1"])


def test_config_is_validated():
    with pytest.raises(ValueError, match="policy"):
        TunerConfig(policy="greedy")
    with pytest.raises(ValueError, match="feedback"):
        TunerConfig(feedback="partial")
    with pytest.raises(ValueError, match="blend"):
        TunedRecommender(StreamingRecommender(EngineConfig()), TunerConfig())


def test_the_processor_api_is_there():
    tuned = _tuned()
    tuned.learn_many(stream(50))
    assert tuned.events_learned == 50 and tuned.n_users > 0 and tuned.n_items > 0
    assert tuned.config.k == 10 and tuned.blend is tuned.engine.blend
    assert "tuner_lr_mf" in tuned.stats() and "prequential_hr" in tuned.stats()
    assert tuned.prequential is tuned.engine.prequential


def test_a_pickled_tuned_engine_resumes_where_it_stopped():
    import pickle

    events = stream(900, users=10, items=30)
    tuned = _tuned()
    _replay(tuned, events[:600])
    copy = pickle.loads(pickle.dumps(tuned))
    for engine in (tuned, copy):
        _replay(engine, events[600:])
    assert copy.tuning_snapshot() == tuned.tuning_snapshot()
    assert copy.recommend("u1") == tuned.recommend("u1")
    search = copy.searches["mf"]
    assert search.champion._Q.base is search.stack._SQ  # the served model learns through the stack again


@pytest.mark.parametrize("policy", POLICIES)
def test_looking_at_the_probabilities_never_changes_a_decision(policy):
    def run(look: bool) -> list[str]:
        bandit = ArmPolicy(policy, ["a", "b", "c"], seed=5)
        rng = random.Random(9)
        choices = []
        for _ in range(200):
            bandit.update_all({arm: float(rng.random() < p) for arm, p in zip("abc", (0.3, 0.35, 0.4))})
            if look:
                bandit.probabilities()
            choices.append(bandit.choose())
        return choices

    assert run(look=True) == run(look=False)


@pytest.mark.parametrize("policy", POLICIES)
def test_a_barred_arm_can_still_be_rewarded_after_a_choice_among_the_others(policy):
    bandit = ArmPolicy(policy, ["x0.5", "x1", "x2"], seed=0)
    bandit.update_all({"x0.5": 1.0, "x1": 0.0, "x2": 1.0}, reference="x1")
    bandit.barred.add("x2")
    assert bandit.choose() in ("x0.5", "x1")  # the policy pulled among the open arms only
    bandit.update_all({"x0.5": 0.0, "x1": 1.0, "x2": 1.0}, reference="x1")  # x2 still learns and is scored
    assert bandit.counts()["x2"] == 2
