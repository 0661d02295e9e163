"""The engine's fixed mix is a blend like any other, and ranks exactly as the hand-written mix did.

Until the engine contract was unified the default engine ranked with its own loop beside
``Blend.serve``. The reference below is that loop, kept here as the specification the
one ranking path must still meet: same items, same order, same scores (up to the blend's
weights summing to 1), for new users,
heavy users who have seen most of the popular head, exclusions, and other weights.
"""
from __future__ import annotations

import heapq
import random

import pytest

from online.base import Interaction
from online.engine import EngineConfig, StreamingRecommender


def hand_mix(engine: StreamingRecommender, user_id: str, k: int, exclude=()) -> list[tuple[str, float]]:
    """The ranking loop the default engine ran before it became a fixed-weight blend."""
    cfg = engine.config
    state = engine.user_state(user_id)
    history = state.history if state is not None else ()
    seen = state.seen if state is not None else frozenset()
    votes = engine.next_item.votes(history)
    popular = engine.popularity.top_scores(max(256, cfg.popularity_candidates))
    excluded = set(exclude)
    w_seq, w_pop = cfg.next_item_weight, cfg.popularity_weight
    scores: dict[str, float] = {}
    for item, vote in votes.items():
        if item not in seen and item not in excluded:
            pop = popular.get(item)
            if pop is None:
                pop = engine.popularity.score_of(item)
            scores[item] = w_seq * vote + w_pop * pop
    wanted = max(cfg.popularity_candidates, k)
    for item in engine.popularity.top(engine.n_items):
        if wanted <= 0:
            break
        if item not in scores and item not in seen and item not in excluded:
            scores[item] = w_pop * engine.popularity.score_of(item)
            wanted -= 1
    return heapq.nlargest(k, scores.items(), key=lambda pair: pair[1])


def skewed_stream(n: int, seed: int, users: int = 60, items: int = 600) -> list[Interaction]:
    """A long-tailed stream with a few heavy users, one of whom sees the whole popular head."""
    rng = random.Random(seed)
    out = []
    binged = 0
    for t in range(n):
        if rng.random() < 0.1:  # one user works through the catalogue, most popular items first
            out.append(Interaction("binger", f"i{binged % items}", float(t)))
            binged += 1
            continue
        user = f"u{min(int(rng.paretovariate(1.2)), users)}"
        item = f"i{min(int(rng.paretovariate(0.9)), items) if rng.random() < 0.5 else rng.randrange(items)}"
        out.append(Interaction(user, item, float(t)))
    return out


@pytest.mark.parametrize("config", [
    EngineConfig(k=10),
    EngineConfig(k=5, popularity_weight=0.9, next_item_weight=0.2, popularity_candidates=7, max_seen=300),
    EngineConfig(k=20, popularity_weight=0.05, history_len=8).replace(lookback=5, vote_top=40),
], ids=["default", "popularity-heavy", "long-lists"])
@pytest.mark.parametrize("seed", [1, 2])
def test_the_fixed_mix_ranks_exactly_as_the_hand_written_mix(config, seed):
    engine = StreamingRecommender(config)
    events = skewed_stream(6_000, seed)
    users = sorted({event.user_id for event in events}) + ["never-seen"]
    for start in range(0, len(events), 500):
        engine.learn_many(events[start:start + 500])
        for user in users:
            exclude = ("i1", "i2") if user.endswith("3") else ()
            expected = hand_mix(engine, user, config.k, exclude)
            got = engine.recommend(user, exclude=exclude, record=False).items
            assert [item for item, _ in got] == [item for item, _ in expected], user
            # the blend's weights sum to 1: the same scores, divided by the sum of the configured weights
            total = config.next_item_weight + config.popularity_weight
            assert [score for _, score in got] == pytest.approx([score / total for _, score in expected], rel=1e-12)


def test_the_fixed_mix_is_a_blend_of_the_engines_own_two_models():
    engine = StreamingRecommender(EngineConfig(popularity_weight=0.3, next_item_weight=1.0))
    assert engine.blend.strategies == {"next_item": engine.next_item, "popularity": engine.popularity}
    assert engine.blend.weights == pytest.approx({"next_item": 1 / 1.3, "popularity": 0.3 / 1.3})
    assert engine.blend.learner is None and engine.blend.normalise == "none" and engine.blend.pooling == "fill"


def test_a_user_who_has_seen_the_whole_popular_head_still_gets_popular_items_from_deeper_down():
    engine = StreamingRecommender(EngineConfig(k=10))
    engine.learn_many(skewed_stream(6_000, seed=3))
    head = engine.popularity.top(300)  # more than the 256 the leaderboard keeps
    engine.learn_many([Interaction("head-watcher", item, 10_000.0 + n) for n, item in enumerate(head)])
    got = engine.recommend("head-watcher", record=False).items
    assert len(got) == 10 and not {item for item, _ in got} & set(head)
    assert [item for item, _ in got] == [item for item, _ in hand_mix(engine, "head-watcher", 10)]
