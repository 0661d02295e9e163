"""The network ranker over the blend's pool (``online.ranker``): starts as the weighted sum, learns from the
user's next items what the sum cannot express, and keeps the blend's contract."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from online.base import Interaction
from online.blend import BlendConfig
from online.engine import EngineConfig, StreamingRecommender
from online.ranker import PER_STRATEGY, SHARED, PoolRanker, pool_features
from stream.cli.datasets import generate


def test_the_features_say_what_each_strategy_said_of_each_item() -> None:
    columns = np.array([[0.5, 0.0, 0.25], [3.0, 1.0, 2.0]])  # the first strategy did not propose item 1
    features = pool_features(columns, np.array([1.0, 0.0, 0.5]), history_length=0)
    assert features.shape == (3, SHARED + PER_STRATEGY * 2)
    assert features[:, 0].tolist() == [1.0, 0.0, 0.5]  # the blend's sum, min-max over the pool
    assert features[:, 1].tolist() == [0.0, 0.0, 0.0]  # log(1 + history length) / 5
    first, second = features[:, SHARED:SHARED + PER_STRATEGY], features[:, SHARED + PER_STRATEGY:]
    assert first[:, 0].tolist() == [1.0, 0.0, 0.5] and second[:, 0].tolist() == [1.0, 0.0, 0.5]
    assert first[:, 1].tolist() == [1.0, 0.0, 0.5]  # 1 / (1 + rank); none where the strategy gave 0
    assert second[:, 1].tolist() == [1.0, 1 / 3, 0.5]
    assert first[:, 2].tolist() == [1.0, 0.0, 1.0] and second[:, 2].tolist() == [1.0, 1.0, 1.0]
    # the standard score over the pool, divided by 3: (score - mean) / standard deviation / 3
    spread = np.sqrt(2 / 3)
    assert np.allclose(second[:, 3], [1 / spread / 3, -1 / spread / 3, 0.0])
    assert np.allclose(first[:, 3], (columns[0] - 0.25) / columns[0].std() / 3)


def test_a_standard_score_is_bounded_when_one_item_dwarfs_the_pool() -> None:
    columns = np.array([[1e6] + [1.0] * 99, [1.0] * 100])  # the second strategy says nothing apart
    features = pool_features(columns, columns[0], 4)
    assert features[0, SHARED + 3] == 2.0  # its standard score, about 9.95, is clipped at 6 before the / 3
    assert features[:, SHARED + PER_STRATEGY + 3].tolist() == [0.0] * 100


def test_scores_that_are_not_finite_count_as_nothing() -> None:
    columns = np.array([[np.nan, 1.0, np.inf, -np.inf]])
    features = pool_features(columns, np.zeros(4), 3)
    assert np.isfinite(features).all()
    assert features[:, SHARED + 2].tolist() == [0.0, 1.0, 0.0, 0.0]


def test_an_untrained_ranker_ranks_as_the_weighted_sum() -> None:
    rng = np.random.default_rng(0)
    ranker = PoolRanker(seed=3)
    for _ in range(20):
        columns, blended = rng.random((3, 30)), rng.random(30)
        scores = ranker.score([f"i{j}" for j in range(30)], columns, blended, int(rng.integers(0, 50)))
        assert np.argsort(-scores, kind="stable").tolist() == np.argsort(-blended, kind="stable").tolist()


def _pool(rng: np.random.Generator, n: int = 20) -> tuple[list[str], np.ndarray, np.ndarray, int]:
    """A pool where the weighted sum is led by a noisy strategy, and the next item is the one a quiet strategy
    ranks first (its scores small, so the sum barely hears it)."""
    items = [f"i{j}" for j in range(n)]
    noisy = rng.random(n)
    quiet = rng.random(n) * 0.05
    nxt = int(rng.integers(0, n))
    quiet[nxt] = 0.06
    blended = 0.9 * noisy / noisy.max() + 0.1 * quiet / quiet.max()
    return items, np.array([noisy, quiet]), blended, nxt


def test_it_learns_to_follow_the_strategy_that_names_the_next_item() -> None:
    rng = np.random.default_rng(1)
    ranker = PoolRanker(seed=0, lr=0.01)

    def top1_rate(trials: int, learn: bool) -> float:
        hits = 0
        for t in range(trials):
            items, columns, blended, nxt = _pool(rng)
            scores = ranker.score(items, columns, blended, 10, user_id=f"u{t}" if learn else None)
            hits += int(np.argmax(scores)) == nxt
            if learn:
                ranker.learn_many([Interaction(f"u{t}", items[nxt], float(t))])
        return hits / trials

    before = top1_rate(200, learn=False)
    top1_rate(1_500, learn=True)
    after = top1_rate(200, learn=False)
    assert before < 0.2 and after > 0.8, (before, after)
    assert ranker.steps == 1_500 and ranker.pairs == 1_500 * ranker.negatives


def test_it_learns_only_from_events_that_name_an_item_of_the_users_last_pool() -> None:
    ranker = PoolRanker()
    columns, blended = np.array([[0.2, 0.1]]), np.array([0.2, 0.1])
    ranker.score(["a", "b"], columns, blended, 1, user_id="u")
    ranker.score(["a", "b"], columns, blended, 1)  # not served: not remembered
    assert not ranker.learn_many([Interaction("u", "c", 0.0), Interaction("v", "a", 0.0)])
    assert ranker.learn_many([Interaction("u", "b", 0.0)])


def test_a_pool_of_another_width_starts_it_again() -> None:
    ranker = PoolRanker()
    ranker.score(["a", "b"], np.array([[0.2, 0.1]]), np.array([0.2, 0.1]), 1, user_id="u")
    scores = ranker.score(["a", "b"], np.array([[0.2, 0.1], [0.0, 0.9]]), np.array([0.1, 0.6]), 1)
    assert np.argmax(scores) == 1  # the new width's first ranking: the sum
    assert not ranker.learn_many([Interaction("u", "b", 0.0)])  # pools of the old width were forgotten


def test_lr_changes_in_place_and_must_be_positive() -> None:
    ranker = PoolRanker()
    ranker.mutate({"lr": 0.1})
    assert ranker.lr == 0.1
    with pytest.raises(ValueError):
        ranker.mutate({"lr": 0.0})


def _engine(ranker: str) -> StreamingRecommender:
    return StreamingRecommender(EngineConfig(blend=BlendConfig(ranker=ranker)))


def test_the_blend_with_the_network_keeps_the_contract_and_survives_a_snapshot() -> None:
    engine = _engine("network")
    events = generate(4_000, n_users=100, n_items=300, seed=2)
    for start in range(0, len(events), 100):
        batch = events[start:start + 100]
        for user in dict.fromkeys(event.user_id for event in batch):
            engine.recommend(user)
        engine.learn_many(batch)
    assert engine.blend.ranker is not None and engine.blend.ranker.steps > 0
    restored = pickle.loads(pickle.dumps(engine))
    for user in dict.fromkeys(event.user_id for event in events[-300:]):
        listed = engine.recommend(user, record=False).items
        assert len(listed) == engine.config.k
        assert not {item for item, _ in listed} & set(engine.user_state(user).seen)
        assert restored.recommend(user, record=False).items == listed


def test_the_weighted_sum_builds_no_network() -> None:
    assert _engine("weighted_sum").blend.ranker is None
    assert StreamingRecommender(EngineConfig()).blend.ranker is None  # the fixed mix: the sum on raw scales
    with pytest.raises(ValueError, match="ranker must be one of"):
        BlendConfig(ranker="forest")


def test_a_warm_swap_keeps_what_the_ranker_learned_when_it_reads_the_same_strategies() -> None:
    old = _engine("network")
    events = generate(2_000, n_users=50, n_items=200, seed=4)
    for start in range(0, len(events), 50):
        for user in dict.fromkeys(event.user_id for event in events[start:start + 50]):
            old.recommend(user)
        old.learn_many(events[start:start + 50])
    learned = old.blend.ranker
    assert learned.steps > 0
    same = StreamingRecommender(EngineConfig(blend=BlendConfig(ranker="network", candidates=30)))
    same.adopt(old)
    assert same.blend.ranker is learned
    other = StreamingRecommender(EngineConfig(blend=BlendConfig(ranker="network").with_weights(mf=0.3)))
    other.adopt(old)
    assert other.blend.ranker is not learned and other.blend.ranker.steps == 0


def test_a_blend_from_a_snapshot_older_than_the_ranker_ranks_by_the_weighted_sum() -> None:
    engine = _engine("weighted_sum")
    events = generate(1_000, n_users=40, n_items=100, seed=6)
    engine.learn_many(events)
    del engine.blend.__dict__["ranker"]  # as a Blend pickled before it had one
    restored = pickle.loads(pickle.dumps(engine))
    user = events[-1].user_id
    assert restored.blend.ranker is None
    assert restored.recommend(user, record=False).items == engine.recommend(user, record=False).items


def test_a_step_that_leaves_a_parameter_not_finite_starts_the_ranker_again() -> None:
    ranker = PoolRanker()
    columns, blended = np.array([[0.2, 0.1, 0.3]]), np.array([0.2, 0.1, 0.3])
    ranker.score(["a", "b", "c"], columns, blended, 1, user_id="u")
    ranker._params[2][:] = np.inf  # as if the output layer had diverged
    with np.errstate(invalid="ignore", over="ignore"):  # inf times 0 on the way
        assert not ranker.learn_many([Interaction("u", "b", 0.0)])
    assert ranker.restarts == 1 and all(np.isfinite(p).all() for p in ranker._params)
    scores = ranker.score(["a", "b", "c"], columns, np.array([0.2, np.nan, 0.3]), 1)
    assert np.isfinite(scores).all() and int(np.argmax(scores)) == 2
