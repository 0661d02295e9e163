"""The CPU scorer: satisfies the Strategy protocol, never raises, and serves from the blend's slot."""
from __future__ import annotations

import math

import pytest

from models.encoder import SequenceEncoder
from models.hot_swap import EncoderLoader
from models.serving import EncoderScorer
from online.base import Strategy
from online.blend import StrategySlot

ITEMS = [f"i{j}" for j in range(30)]


@pytest.fixture
def scorer(tiny_model: SequenceEncoder) -> EncoderScorer:
    return EncoderScorer(tiny_model, ITEMS, version=1)


def test_satisfies_the_strategy_protocol(scorer: EncoderScorer) -> None:
    assert isinstance(scorer, Strategy) and scorer.name == "encoder"
    assert isinstance(StrategySlot("encoder"), Strategy)
    assert not isinstance(EncoderLoader(), Strategy)  # the loader loads; the slot serves
    assert scorer.learn_many([]) is None


def test_the_blends_slot_serves_the_scorer_it_holds(scorer: EncoderScorer) -> None:
    slot = StrategySlot("encoder")
    assert slot.swap(scorer) is None
    history = ["i1", "i2"]
    request = slot.scorer("u", history)
    assert request.version == 1
    assert list(request.score(ITEMS)) == scorer.score("u", history, ITEMS)
    assert request.candidates(5) == scorer.candidates("u", history, 5)
    assert slot.score("u", history, ITEMS) == scorer.score("u", history, ITEMS)


def test_unknown_users_and_items_score_zero(scorer: EncoderScorer) -> None:
    assert scorer.score("nobody", [], ["i1", "i2"]) == [0.0, 0.0]
    assert scorer.score("nobody", ["x", "y"], ["i1"]) == [0.0]
    mixed = scorer.score("u", ["i1", "x", "i2"], ["i3", "never", 42])
    assert mixed[1:] == [0.0, 0.0] and 0.0 < mixed[0] < 1.0
    assert mixed[0] == scorer.score("u", ["i1", "i2"], ["i3"])[0]  # unknown history items are skipped


@pytest.mark.parametrize("history,items", [(None, ["i1"]), (["i1"], None), ([["unhashable"]], ["i1"]),
                                           (["i1"], [["unhashable"]]), ([1.5, None], [None])])
def test_never_raises_on_odd_input(scorer: EncoderScorer, history, items) -> None:
    out = scorer.score("u", history, items)
    assert isinstance(out, list) and all(isinstance(x, float) for x in out)
    assert isinstance(scorer.candidates("u", history, 3), list)


def test_scores_are_probabilities_over_the_catalogue(scorer: EncoderScorer) -> None:
    scores = scorer.score("u", ["i1", "i2"], ITEMS)
    assert math.isclose(sum(scores), 1.0, rel_tol=1e-4) and all(s > 0 for s in scores)
    raw = EncoderScorer(scorer.model, ITEMS, normalize=False).score("u", ["i1", "i2"], ITEMS)
    assert any(s < 0 for s in raw)


def test_candidates_are_ranked_and_exclude_the_history(scorer: EncoderScorer) -> None:
    history = ["i1", "i2", "i3"]
    top = scorer.candidates("u", history, 5)
    assert len(top) == 5 and not set(top) & set(history)
    scores = scorer.score("u", history, top)
    assert scores == sorted(scores, reverse=True)
    assert len(scorer.candidates("u", history, 1000)) == 27
    assert scorer.candidates("u", history, 0) == [] and scorer.candidates("u", ["zz"], 3) == []


def test_long_histories_are_truncated_not_refused(scorer: EncoderScorer) -> None:
    history = [ITEMS[j % 30] for j in range(500)]
    assert len(scorer.score("u", history, ["i5"])) == 1
    assert scorer.score("u", history, ["i5"]) == scorer.score("u", history[-50:], ["i5"])


# -- serving a micro-batch: one forward pass for all its users, states reused -----------------------
HISTORIES = {"u1": ["i1", "i2", "i3"], "u2": ["i7"], "u3": [f"i{j % 30}" for j in range(80)],
             "u4": ["unknown", "i4", "i5"], "u5": ["never-seen"]}


def per_user(model: SequenceEncoder, user: str) -> tuple[list[float], list[str]]:
    alone = EncoderScorer(model, ITEMS, version=1)  # a fresh scorer: its own forward pass for this user
    return alone.score(user, HISTORIES[user], ITEMS), alone.candidates(user, HISTORIES[user], 10)


def test_the_batched_scorer_agrees_with_the_per_user_scorer(tiny_model: SequenceEncoder) -> None:
    batched = EncoderScorer(tiny_model, ITEMS, version=1)
    assert batched.prepare(list(HISTORIES.items())) == 4  # u5 knows no item: nothing to compute
    assert batched.forwards == 1
    for user, history in HISTORIES.items():
        scores, candidates = per_user(tiny_model, user)
        request = batched.scorer(user, history)
        assert list(request.score(ITEMS)) == pytest.approx(scores, rel=1e-4, abs=1e-7)
        assert request.candidates(10) == candidates
        assert batched.score(user, history, ITEMS) == pytest.approx(scores, rel=1e-4, abs=1e-7)
    assert batched.forwards == 1  # every list above came from the batch's states


def test_a_users_state_is_reused_until_something_new_arrives(tiny_model: SequenceEncoder) -> None:
    scorer = EncoderScorer(tiny_model, ITEMS)
    scorer.prepare([("u1", ["i1", "i2"])])
    assert scorer.prepare([("u1", ["i1", "i2"])]) == 0  # nothing new: the state stands
    assert scorer.prepare([("u1", ["i1", "i2", "unknown"])]) == 0  # an item it cannot read changes nothing
    assert scorer.prepare([("u1", ["i1", "i2", "i3"])]) == 1
    assert scorer.forwards == 2


def test_a_request_excludes_what_the_blend_excludes(tiny_model: SequenceEncoder) -> None:
    scorer = EncoderScorer(tiny_model, ITEMS)
    request = scorer.scorer("u1", ["i1", "i2"])
    top = request.candidates(5)
    fewer = request.candidates(5, exclude=set(top[:2]))
    assert len(fewer) == 5 and not set(top[:2]) & set(fewer) and {"i1", "i2"}.isdisjoint(fewer)


def test_the_blend_prepares_the_encoder_it_holds(tiny_model: SequenceEncoder) -> None:
    from online.blend import Blend
    from online.popularity import DecayedPopularity

    scorer = EncoderScorer(tiny_model, ITEMS, version=3)
    blend = Blend({"popularity": DecayedPopularity()})
    blend.fill("encoder", scorer, weight=0.5)
    blend.prepare([("u1", ["i1"]), ("u2", ["i2"])])
    assert scorer.forwards == 1
    ranking = blend.serve("u1", ["i1"], seen={"i1"}, k=5)
    assert ranking.versions == (("encoder", 3),) and scorer.forwards == 1
