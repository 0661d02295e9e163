"""The fast ways of building a list give exactly the lists of the straightforward ways.

Push mode builds one list per user of every micro-batch, so list building has shortcuts:
the fixed mix is ranked without the general blend path's per-request objects
(``Blend._votes_then_popular``), relative popularity is remembered between the requests of
one micro-batch (``DecayedPopularity.relative_scores``), and the popular candidates are read
only as far as a list can use them (``PopularityScorer.leading``). Each is specified here
against the plain way it replaces: same items, same order, bit-identical scores, and the
same effects on the models (the lists recorded, the popularity leaderboard) — on random
streams, for the fixed mix and the learned blend.
"""
from __future__ import annotations

import math
import random

import numpy as np
import pytest

from online.base import Excluded, Interaction
from online.blend import Blend, BlendConfig, normalise
from online.engine import EngineConfig, StreamingRecommender
from online.popularity import DecayedPopularity, PopularityScorer
from stream.cli.datasets import generate
from tests.test_online.test_fixed_mix import skewed_stream


def plain(engine: StreamingRecommender) -> StreamingRecommender:
    """``engine`` with the fixed mix's shortcut turned off: every list takes the general blend path."""
    engine.blend._votes_then_popular = lambda history, excluded, k: None
    return engine


def board(engine: StreamingRecommender) -> tuple:
    pop = engine.popularity
    return list(pop._board), pop._board_len


def binge(events: list[Interaction], *engines: StreamingRecommender) -> list[Interaction]:
    """A user who works through the popular head, so that popular candidates must be read deeper
    (asked of every engine: reading 400 deep grows the leaderboard)."""
    head = [engine.popularity.top(400) for engine in engines][0]
    return [Interaction("binger", item, events[-1].ts + n + 1) for n, item in enumerate(head)]


FIXED_MIXES = [
    EngineConfig(),
    EngineConfig(k=5, popularity_weight=0.9, next_item_weight=0.2, popularity_candidates=7, max_seen=300),
    EngineConfig(k=25, history_len=8).replace(lookback=5, vote_top=40),
    # all-time popularity: every event adds 1, so popularity ties are everywhere and order decides
    EngineConfig(k=10).replace(half_life=math.inf),
]


@pytest.mark.parametrize("config", FIXED_MIXES, ids=["default", "popularity-heavy", "long-lists", "ties"])
@pytest.mark.parametrize("stream", ["generated", "skewed"])
def test_the_fixed_mix_serves_exactly_the_lists_of_the_general_blend_path(config, stream):
    events = (generate(8_000, n_users=300, n_items=700, seed=4) if stream == "generated"
              else skewed_stream(8_000, seed=5))
    fast, slow = StreamingRecommender(config), plain(StreamingRecommender(config))
    rng = random.Random(0)
    for start in range(0, len(events), 400):
        batch = events[start:start + 400]
        if start == 4_000:
            batch = batch + binge(batch, fast, slow)
        for engine in (fast, slow):
            engine.learn_many(batch)
        users = list(dict.fromkeys(event.user_id for event in batch)) + ["never-seen"]
        for user in users:
            exclude = tuple(rng.sample(fast.popularity.top(30), 3)) if rng.random() < 0.2 else ()
            k = rng.choice([config.k, 1, 3, 40]) if rng.random() < 0.1 else None
            got, expected = fast.recommend(user, k, exclude), slow.recommend(user, k, exclude)
            assert got == expected, user  # items, order and scores bit for bit; nothing else differs
        assert board(fast) == board(slow)  # reading popular candidates left the leaderboard alike
    assert fast.prequential.snapshot() == slow.prequential.snapshot()  # each list recorded alike
    assert fast.blend.requests == slow.blend.requests


def test_the_shortcut_steps_aside_for_anything_but_the_fixed_mix():
    engine = StreamingRecommender(EngineConfig())
    engine.learn_many(skewed_stream(2_000, seed=1))
    history, seen = engine.user_state("u1").history, engine.user_state("u1").seen
    assert engine.blend._votes_then_popular(history, seen, 10) is not None
    engine.blend.set_weights({"popularity": 0.0})  # one model alone: the general path
    assert engine.blend._votes_then_popular(history, seen, 10) is None
    engine.blend.set_weights({"popularity": 0.3})
    assert engine.blend._votes_then_popular(history, seen, 10) is not None
    engine.blend.fill("encoder", DecayedPopularity(), weight=0.5)  # a third strategy
    assert engine.blend._votes_then_popular(history, seen, 10) is None


def test_the_shortcut_serves_only_when_every_vote_is_pooled_or_says_the_same():
    """With the votes cut to the blend's candidates a popular candidate may carry a vote: the
    shortcut then scores the whole pool, as the general path does."""
    events = skewed_stream(5_000, seed=9)
    blends = []
    for _ in range(2):
        engine = StreamingRecommender(EngineConfig())
        blends.append((engine, Blend({"next_item": engine.next_item, "popularity": engine.popularity},
                                     {"next_item": 1.0, "popularity": 0.5}, candidates=4, normalise="none",
                                     learners=[], pooling="fill")))
    fast, slow = blends
    slow[1]._votes_then_popular = lambda history, excluded, k: None
    for start in range(0, len(events), 500):
        for engine, _ in blends:
            engine.learn_many(events[start:start + 500])
        for user in {event.user_id for event in events[start:start + 500]}:
            state = fast[0].user_state(user)
            got = fast[1].serve(user, state.history, state.seen, 6)
            assert got == slow[1].serve(user, state.history, state.seen, 6), user


@pytest.mark.parametrize("half_life", [50.0, math.inf])
def test_remembered_relative_popularity_is_the_models_score_and_forgets_each_change(half_life):
    pop = DecayedPopularity(half_life=half_life, max_items=300)
    rng = random.Random(half_life)
    for _ in range(30):
        pop.learn_many([Interaction("u", f"i{int(rng.paretovariate(0.7)) % 500}", 0.0) for _ in range(200)])
        items = [f"i{rng.randrange(600)}" for _ in range(80)] + ["unknown"]
        for _ in range(2):  # asked twice: the second answer comes from memory
            assert pop.relative_scores(items) == pop.score("u", [], items)
            assert pop.relative_scores(items) == [pop.score_of(item) for item in items]
    restored = __import__("pickle").loads(__import__("pickle").dumps(pop))
    assert restored.relative_scores(items) == pop.score("u", [], items)


@pytest.mark.parametrize("seed", range(6))
def test_the_leading_popular_candidates_are_the_first_of_all_of_them_with_the_same_effects(seed):
    rng = random.Random(seed)
    events = [Interaction("u", f"i{int(rng.paretovariate(0.6)) % 900}", 0.0) for _ in range(6_000)]
    half_life = math.inf if seed % 2 else 500.0
    one, other = DecayedPopularity(half_life=half_life), DecayedPopularity(half_life=half_life)
    for start in range(0, len(events), 1_000):
        for pop in (one, other):
            pop.learn_many(events[start:start + 1_000])
        for _ in range(40):
            known = list(one._index)  # ranked here without reading the leaderboard (which would grow it)
            head = [known[i] for i in np.argsort(-np.array(one.score("u", [], known)), kind="stable")]
            depth = min(rng.choice([30, 260, 600, len(head)]), len(head))  # deep: the walk reads past the board
            excluded = set(rng.sample(head[:depth], min(depth, rng.randrange(0, 300))))
            pooled = [item for item in rng.sample(head, 12) if item not in excluded][: rng.randrange(0, 12)]
            n, take = rng.choice([(20, 10), (20, 20), (7, 3), (50, 10), (20, 0)])
            pool = dict.fromkeys(pooled)
            expected = PopularityScorer(other).candidates(n, Excluded(excluded, pool) if pool else excluded)[:take]
            assert PopularityScorer(one).leading(n, excluded, pooled, take) == expected
            assert (one._board, one._board_len) == (other._board, other._board_len)


def reference_blend(blend: Blend, history, seen: set[str], k: int) -> list[tuple[str, float]]:
    """The learned blend by its definition: pool every strategy's best candidates (protocol methods),
    normalise each strategy's scores over the pool, rank by the weighted sum (ties in pool order)."""
    weights = blend.weights
    pool: dict[str, None] = {}
    n = max(blend.candidates, k)
    for strategy in blend.strategies.values():
        wider = strategy.candidates("u", history, n + len(seen))
        pool.update(dict.fromkeys([item for item in wider if item not in seen][:n]))
    items = list(pool)
    columns = np.array([strategy.score("u", history, items) for strategy in blend.strategies.values()]).T
    total = normalise(columns, blend.normalise) @ np.array([weights[name] for name in blend.strategies])
    order = np.argsort(-total, kind="stable")[:k]
    return [(items[i], float(total[i])) for i in order]


def test_the_learned_blend_ranks_as_its_definition_says():
    config = EngineConfig(blend=BlendConfig(ranker="weighted_sum"))
    engine = StreamingRecommender(config)
    events = generate(6_000, n_users=200, n_items=500, seed=8)
    for start in range(0, len(events), 300):
        engine.learn_many(events[start:start + 300])
        for user in dict.fromkeys(event.user_id for event in events[start:start + 300]):
            state = engine.user_state(user)
            got = engine.recommend(user, record=False).items
            expected = reference_blend(engine.blend, state.history, state.seen, config.k)
            # the same scores; the same items, but for near ties (the blend sums in another order)
            assert [score for _, score in got] == pytest.approx([score for _, score in expected], abs=1e-9)
            scores = [score for _, score in expected]
            for i, ((item, _), (want, score)) in enumerate(zip(got, expected)):
                near = [j for j, other in enumerate(scores) if abs(other - score) < 1e-9 and j != i]
                assert item == want or near, (user, i)
            engine.recommend(user)  # served: the weight learner moves on as in a worker
