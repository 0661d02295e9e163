"""The compiled loops of a list (``online/_fixed_mix.pyx``) do exactly what their Python twins do.

``online.compiled.fixed_mix`` is the compiled module where the install built it, and ``None`` where
the Python twins run. Each step is specified against its twin on random inputs built to tie (small
integer counts, all-time popularity), and whole engines against each other: the same items, the same
order, bit-identical scores, and the same caches left behind (the strongest-followers cache).
"""
from __future__ import annotations

import math
import pickle
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from online import compiled
from online.base import Excluded, Interaction
from online.blend import BlendConfig
from online.engine import EngineConfig, StreamingRecommender
from online.popularity import DecayedPopularity, PopularityScorer
from online.sequential import NextItem
from stream.cli.datasets import generate
from tests.test_online.test_fixed_mix import skewed_stream

FAST = compiled.fixed_mix
pytestmark = pytest.mark.skipif(FAST is None, reason="online._fixed_mix is not built (no C compiler at install?); "
                                                     "the Python twins run, there is nothing to compare")


@pytest.fixture
def python_twins(monkeypatch):
    """Inside the block, every caller takes the Python twin."""
    def use(flag: bool) -> None:
        monkeypatch.setattr(compiled, "fixed_mix", None if flag else FAST)
    return use


items = st.sampled_from([f"i{n}" for n in range(12)])
tables = st.dictionaries(items, st.integers(1, 4).map(float), max_size=12)


def _twins(model: NextItem, ask):
    """``ask(copy)`` on two copies of ``model``, compiled and in Python: the answers and the caches left."""
    out = []
    for fast in (FAST, None):
        copy = pickle.loads(pickle.dumps(model))
        saved, compiled.fixed_mix = compiled.fixed_mix, fast
        try:
            out.append((ask(copy), copy._top))
        finally:
            compiled.fixed_mix = saved
    return out


def _with_table(table: dict[str, float], vote_top: int) -> NextItem:
    model = NextItem(vote_top=vote_top)
    if table:
        model._followers["x"] = dict(table)
        model._mass["x"] = sum(table.values())
    return model


@settings(max_examples=200, deadline=None)
@given(table=tables, vote_top=st.integers(1, 14))
def test_the_strongest_followers_are_ranked_as_sorted_ranks_them(table, vote_top):
    """Ties everywhere (counts 1-4): the table's own order decides, as ``sorted(..., reverse=True)`` keeps it;
    the cache holds the same list."""
    compiled_twin, python_twin = _twins(_with_table(table, vote_top), lambda model: model.strongest("x"))
    assert compiled_twin == python_twin


@pytest.mark.parametrize("table", [{"a": 0.0, "b": 0.0}, {"a": math.nan, "b": 1.0}, {"a": 1.0, "b": math.nan}],
                         ids=["nothing-positive", "nan-first", "nan-later"])
def test_a_table_without_a_positive_best_or_with_nan_is_answered_as_in_python(table):
    compiled_twin, python_twin = _twins(_with_table(table, 5), lambda model: model.strongest("x"))
    assert repr(compiled_twin) == repr(python_twin)  # (repr: nan != nan)


@settings(max_examples=100, deadline=None)
@given(pairs=st.lists(st.tuples(items, items), min_size=1, max_size=80),
       history=st.lists(items, max_size=6), exclude=st.sets(items, max_size=4),
       lookback=st.integers(1, 5), decay=st.sampled_from([1.0, 0.5, 0.8, 0.0]), vote_top=st.integers(1, 8),
       staleness=st.sampled_from([0.0, 0.1, 1.0]))
def test_votes_are_the_same_floats_in_the_same_order(pairs, history, exclude, lookback, decay, vote_top, staleness):
    model = NextItem(lookback=lookback, decay=decay, vote_top=vote_top, staleness=staleness)
    model.learn_pairs(pairs[: len(pairs) // 2])

    def ask(copy: NextItem):
        first = list(copy.votes(history, exclude).items())  # builds the cache
        copy.learn_pairs(pairs[len(pairs) // 2:])  # some tables grow past it
        return first, list(copy.votes(tuple(history), exclude).items()), list(copy.votes(history).items())

    compiled_twin, python_twin = _twins(model, ask)
    assert compiled_twin == python_twin


class _Colliding(str):
    """An item id whose hash every other one shares: each look-up walks the whole probe sequence."""

    def __hash__(self) -> int:
        return 7


def _copy(item: str, kind: str) -> str:
    """``item`` as another object: an equal string (as each decoded event carries), or a colliding one."""
    return _Colliding(item) if kind == "colliding" else "".join(list(item))


@settings(max_examples=100, deadline=None)
@given(pairs=st.lists(st.tuples(items, items), min_size=1, max_size=60),
       history=st.lists(items, max_size=6), exclude=st.sets(items, max_size=4),
       kind=st.sampled_from(["equal", "colliding"]), decay=st.sampled_from([1.0, 0.5]))
def test_votes_find_equal_items_held_as_different_objects(pairs, history, exclude, kind, decay):
    """The compiled votes keep their sums in a table of their own: an item reached through tables that hold it
    as different (equal) objects, or whose hash collides with every other, is still one candidate, summed in
    the twin's order, and tested against ``exclude`` by equality."""
    model = NextItem(lookback=4, decay=decay, vote_top=6)
    model.learn_pairs([(_copy(prev, kind), _copy(item, kind)) for prev, item in pairs])

    def ask(copy: NextItem):
        return list(copy.votes([_copy(item, kind) for item in history], {_copy(item, kind) for item in exclude})
                    .items())

    compiled_twin, python_twin = _twins(model, ask)
    assert compiled_twin == python_twin
    assert len({item for item, _ in compiled_twin[0]}) == len(compiled_twin[0])


@settings(max_examples=60, deadline=None)
@given(learned=st.lists(items, min_size=0, max_size=60), asked=st.lists(st.sampled_from(
    [f"i{n}" for n in range(15)]), max_size=20), half_life=st.sampled_from([5.0, 50.0, math.inf]))
def test_relative_popularity_is_the_same_number_as_score_of(learned, asked, half_life):
    pop = DecayedPopularity(half_life=half_life)
    pop.learn_many([Interaction("u", item, 0.0) for item in learned])
    got = pop.relative_scores(asked)
    saved, compiled.fixed_mix = compiled.fixed_mix, None
    try:
        assert got == pop.relative_scores(asked) == [pop.score_of(item) for item in asked]
    finally:
        compiled.fixed_mix = saved


@settings(max_examples=80, deadline=None)
@given(learned=st.lists(st.integers(0, 300), min_size=1, max_size=400), n=st.integers(0, 30),
       seen=st.sets(st.integers(0, 300), max_size=280), pooled=st.sets(st.integers(0, 300), max_size=40))
def test_popular_candidates_are_the_walk_of_the_python_twin(learned, n, seen, pooled):
    """``PopularityScorer.candidates`` walks the leaderboard compiled: the same items, in the same order, as the
    twin, and the same board left behind, also for a user who has seen most of the head (a deeper read)."""
    out = []
    for fast in (FAST, None):
        pop = DecayedPopularity(half_life=math.inf)
        pop.learn_many([Interaction("u", f"item-{i}", 0.0) for i in learned])
        saved, compiled.fixed_mix = compiled.fixed_mix, fast
        try:
            got = PopularityScorer(pop).candidates(n, Excluded({f"item-{i}": None for i in seen},
                                                               {f"item-{i}": None for i in pooled}))
        finally:
            compiled.fixed_mix = saved
        out.append((got, list(pop._board)))
    assert out[0] == out[1]


def test_a_user_who_has_seen_most_of_the_board_gets_popular_candidates_read_deeper_as_in_python():
    """The compiled walk finds too few on the board: the rest are read beyond it, as the twin does."""
    out = []
    for fast in (FAST, None):
        pop = DecayedPopularity(half_life=math.inf)
        pop.learn_many([Interaction("u", f"item-{i}", 0.0) for i in range(400) for _ in range(400 - i)])
        saved, compiled.fixed_mix = compiled.fixed_mix, fast
        try:
            got = PopularityScorer(pop).candidates(10, Excluded({f"item-{i}": None for i in range(251)}, {}))
        finally:
            compiled.fixed_mix = saved
        out.append((got, list(pop._board)))
    assert out[0] == out[1] and out[0][0] == [f"item-{i}" for i in range(251, 261)]


def test_a_scores_array_of_another_type_is_refused_not_misread():
    with pytest.raises((TypeError, ValueError, BufferError)):
        FAST.relative(["a"], {"a": 0}, np.zeros(4, dtype=np.float32), 1.0)
    with pytest.raises(IndexError):
        FAST.relative(["a"], {"a": 9}, np.zeros(4), 1.0)


@settings(max_examples=100, deadline=None)
@given(board=st.permutations(list(range(12))), first=st.sets(items, max_size=5), second=st.sets(items, max_size=5),
       take=st.integers(1, 12))
def test_the_board_walk_stops_where_the_python_walk_stops(board, first, second, take):
    names = [f"i{n}" for n in range(12)]
    out, walked = [], 0
    for slot in board:
        walked += 1
        if names[slot] not in first and names[slot] not in second:
            out.append(names[slot])
            if len(out) == take:
                break
    assert FAST.walk(list(board), names, first, second, take) == (out, walked)


@settings(max_examples=200, deadline=None)
@given(votes=st.dictionaries(items, st.sampled_from([0.0, 0.25, 0.5, 1.0, 1.5]), max_size=10),
       popular=st.lists(st.sampled_from(["p1", "p2", "p3", "p4"]), unique=True),
       values=st.lists(st.sampled_from([0.0, 0.1, 0.5, 1.0]), min_size=14, max_size=14),
       w_votes=st.sampled_from([1.0, 0.3, 2.0]), w_pop=st.sampled_from([1.0, 0.7, 0.05]), k=st.integers(1, 15))
def test_the_ranking_is_the_sort_of_the_python_twin(votes, popular, values, w_votes, w_pop, k):
    relative = values[: len(votes) + len(popular)]
    assert FAST.rank(votes, popular, relative, w_votes, w_pop, k) == _rank_in_python(
        votes, popular, relative, w_votes, w_pop, k)


def _rank_in_python(votes, popular, relative, w_votes, w_pop, k):
    """``Blend._votes_then_popular``'s ranking, as written there."""
    ranked = [(item, w_votes * vote + w_pop * value, vote) for (item, vote), value in zip(votes.items(), relative)]
    ranked.sort(key=lambda row: row[2], reverse=True)
    zero = w_votes * 0.0
    ranked += [(item, zero + w_pop * value, 0.0) for item, value in zip(popular, relative[len(votes):])]
    if not math.isfinite(sum(row[1] for row in ranked)):
        return None
    ranked.sort(key=lambda row: row[1], reverse=True)
    return [(item, score) for item, score, _ in ranked[:k]]


def test_a_ranking_refuses_popularity_values_that_do_not_match_its_candidates():
    with pytest.raises(ValueError, match="2 popularity values for 3 candidates"):
        FAST.rank({"a": 1.0, "b": 0.5}, ["c"], [0.1, 0.2], 1.0, 1.0, 3)


def test_a_score_that_is_not_finite_leaves_the_list_to_the_general_path():
    assert FAST.rank({"a": math.inf}, [], [0.5], 1.0, 1.0, 3) is None
    assert FAST.rank({"a": 1.0}, ["b"], [0.5, math.nan], 1.0, 1.0, 3) is None


ENGINES = [
    EngineConfig(),
    EngineConfig(k=25, history_len=8).replace(lookback=5, vote_top=40),
    EngineConfig(k=10).replace(half_life=math.inf),  # popularity ties everywhere
    EngineConfig(blend=BlendConfig()),  # the learned blend: co-occurrence votes, the general path
]


@pytest.mark.parametrize("config", ENGINES, ids=["fixed", "long-lists", "ties", "learned-blend"])
@pytest.mark.parametrize("stream", ["generated", "skewed"])
def test_an_engine_serves_the_same_lists_compiled_or_not(config, stream, python_twins):
    events = (generate(6_000, n_users=300, n_items=700, seed=4) if stream == "generated"
              else skewed_stream(6_000, seed=5))
    engines = [StreamingRecommender(config), StreamingRecommender(config)]
    rng = random.Random(0)
    for start in range(0, len(events), 300):
        batch = events[start:start + 300]
        users = list(dict.fromkeys(event.user_id for event in batch)) + ["never-seen"]
        excludes = [tuple(rng.sample([e.item_id for e in batch], 2)) if rng.random() < 0.2 else () for _ in users]
        lists = []
        for engine, python in zip(engines, (False, True)):
            python_twins(python)
            engine.learn_many(batch)
            lists.append([engine.recommend(user, None, exclude) for user, exclude in zip(users, excludes)])
        assert lists[0] == lists[1]
    python_twins(False)
    compiled_state, python_state = (pickle.loads(pickle.dumps(engine)) for engine in engines)
    assert compiled_state.prequential.snapshot() == python_state.prequential.snapshot()
    assert compiled_state.popularity.top(50) == python_state.popularity.top(50)


# -- learning: the pair loops -------------------------------------------------------------------------------------

def _state(model: NextItem) -> tuple:
    """Everything a NextItem holds, in order (the oldest table is evicted first, so order is state)."""
    return ([(item, list(table.items())) for item, table in model._followers.items()], list(model._mass.items()),
            list(model._top.items()), [(user, list(past)) for user, past in model._recent.items()], model._exponent)


LEARNERS = [
    {},  # the engine's next-item model: window 1, order only
    {"window": 4, "symmetric": 0.5, "decay": 0.8, "followers_cap": 3, "max_items": 9, "max_users": 5},
    {"window": 10, "symmetric": 1.0, "decay": 0.8, "half_life": 3.0, "followers_cap": 4, "staleness": 0.1},
    {"window": 3, "decay": 0.0, "half_life": 0.5, "max_items": 4},  # rescales often; decay 0 stops after one
]


@pytest.mark.parametrize("params", LEARNERS, ids=["next-item", "evicting", "half-life", "rescaling"])
@settings(max_examples=40, deadline=None)
@given(stream=st.lists(st.tuples(st.sampled_from("uvwxyz"), items), min_size=1, max_size=120),
       cut=st.integers(1, 30), collecting=st.booleans())
def test_learning_leaves_the_same_tables_in_the_same_order(params, stream, cut, collecting):
    events = [Interaction(user, item, float(n)) for n, (user, item) in enumerate(stream)]

    def learn(model: NextItem):
        collected = []
        for start in range(0, len(events), cut):
            collect: dict | None = {} if collecting else None
            model.learn_many(events[start:start + cut], collect=collect, pairs=start % (3 * cut) != cut)
            model.votes([event.item_id for event in events[:start + 1]])  # fills the cache the tables invalidate
            collected.append(None if collect is None else list(collect.items()))
        model.learn_pairs([(a.item_id, b.item_id) for a, b in zip(events, events[1:])])
        return collected, _state(model)

    compiled_twin, python_twin = _twins(NextItem(**params), learn)
    assert compiled_twin == python_twin


@pytest.mark.parametrize("params", LEARNERS, ids=["next-item", "evicting", "half-life", "rescaling"])
@settings(max_examples=40, deadline=None)
@given(pairs=st.lists(st.tuples(items, items, st.sampled_from([1.0, 0.8, 0.64, 2.5])), max_size=60),
       events=st.integers(0, 50), learned=st.lists(st.tuples(items, items), max_size=30))
def test_another_workers_pairs_land_in_the_same_tables(params, pairs, events, learned):
    model = NextItem(**params)
    model.learn_pairs(learned)

    def add(copy: NextItem):
        copy.add_pairs([p for p, _, _ in pairs], [n for _, n, _ in pairs], [w for _, _, w in pairs], events)
        return _state(copy)

    compiled_twin, python_twin = _twins(model, add)
    assert compiled_twin == python_twin
