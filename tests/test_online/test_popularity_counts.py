"""Popularity learned a batch at a time leaves the model as one event (or one count) at a time does.

``DecayedPopularity.learn_many`` (a micro-batch of events) and ``add_counts`` (another worker's counts) add a
whole batch at once; the scores, and the leaderboard in its order, ties included, are those of adding each
event or count and placing its item on the board before the next.
"""
from __future__ import annotations

import math
import pickle
import random

import pytest

from online.base import Interaction
from online.popularity import DecayedPopularity


def _learned(items: int, seed: int, **params) -> DecayedPopularity:
    rng = random.Random(seed)
    pop = DecayedPopularity(**params)
    pop.learn_many([Interaction("u", f"i{rng.randrange(items)}", float(t)) for t in range(3 * items)])
    return pop


def _one_at_a_time(pop: DecayedPopularity, items, counts, events: int) -> None:
    """The reference: every item's count added and its place on the board found before the next one."""
    pop._add_one_by_one(items, counts, 2.0**pop._exponent)
    pop._exponent += events / pop.half_life
    pop._rescale()


def _state(pop: DecayedPopularity):
    n = len(pop)
    return pop.top(n), [pop.score_of(f"i{i}") for i in range(2 * n + 50)]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("catalogue", [40, 400])  # a board that holds every item; one that holds a part
@pytest.mark.parametrize("half_life", [500.0, math.inf])  # all-time counts: integer scores, ties everywhere
def test_counts_added_at_once_leave_the_scores_and_the_board_of_one_at_a_time(seed, catalogue, half_life):
    rng = random.Random(100 + seed)
    at_once = _learned(catalogue, seed, half_life=half_life)
    reference = pickle.loads(pickle.dumps(at_once))
    for _ in range(20):
        # new items and known ones; small integer counts, so that many land on equal scores (ties)
        items = rng.sample([f"i{i}" for i in range(catalogue + 60)], rng.randrange(1, 80))
        counts = [float(rng.choice([1, 1, 1, 2, 3])) for _ in items]
        events = int(sum(counts))
        at_once.add_counts(items, counts, events)
        _one_at_a_time(reference, items, counts, events)
        assert _state(at_once) == _state(reference)
        assert at_once._board_neg == reference._board_neg  # the board's own record of its scores


def test_the_board_after_a_deep_read_keeps_its_length_and_order():
    at_once = _learned(600, seed=1)
    at_once.top(700)  # a deeper read lengthens the maintained board
    reference = pickle.loads(pickle.dumps(at_once))
    items, counts = [f"i{i}" for i in range(0, 600, 3)], [1.0] * 200
    at_once.add_counts(items, counts, 200)
    _one_at_a_time(reference, items, counts, 200)
    assert at_once._board == reference._board and len(at_once._board) == len(reference._board)


def test_a_table_at_capacity_and_a_repeated_item_are_added_one_at_a_time_as_before():
    full = _learned(30, seed=2, max_items=30)
    reference = pickle.loads(pickle.dumps(full))
    items, counts = ["new1", "i3", "new2", "i3"], [2.0, 1.0, 5.0, 1.0]  # evictions, and i3 twice
    full.add_counts(items, counts, 9)
    _one_at_a_time(reference, items, counts, 9)
    assert _state(full) == _state(reference) and len(full) == 30


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("half_life", [50.0, math.inf])
def test_a_batch_of_events_learned_at_once_leaves_the_scores_and_the_board_of_one_at_a_time(seed, half_life):
    rng = random.Random(200 + seed)
    at_once = _learned(300, seed, half_life=half_life)
    reference = pickle.loads(pickle.dumps(at_once))
    for _ in range(15):  # popular items repeat inside a batch: each takes its place when last touched
        batch = [Interaction("u", f"i{min(rng.randrange(400), rng.randrange(400))}", 0.0)
                 for _ in range(rng.randrange(0, 120))]
        at_once.learn_many(batch)
        reference._learn_one_by_one(batch)
        assert _state(at_once) == _state(reference)
        assert at_once._board_neg == reference._board_neg and at_once._exponent == reference._exponent
