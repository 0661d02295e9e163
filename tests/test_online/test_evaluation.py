"""Prequential evaluation: hand-computed figures on tiny streams, and the worker's exact loop."""
from __future__ import annotations

import math

import pytest

from online.base import Interaction
from online.blend import BlendConfig
from online.engine import EngineConfig, StreamingRecommender
from online.evaluation import iter_prequential, run_prequential
from tests.test_online.helpers import stream

POPULARITY_ONLY = EngineConfig(k=2).replace(half_life=1e12, blend=BlendConfig(weights=(("popularity", 1.0),),
                                                                              learn_weights=False))


def _events(pairs):
    return [Interaction(user, item, float(t)) for t, (user, item) in enumerate(pairs)]


# Six one-event users make popularity a=3, b=2, c=1; then user t is evaluated three times.
HAND_MADE = _events([("w1", "a"), ("w2", "a"), ("w3", "a"), ("w4", "b"), ("w5", "b"), ("w6", "c"),
                     ("t", "a"),   # first event of t: not evaluated; t is then served [b, c]
                     ("t", "c"),   # hit at rank 2; t is then served [b]
                     ("t", "d"),   # a new item: miss; t is served [b]
                     ("t", "b")])  # hit at rank 1


def test_hand_computed_hr_ndcg_mrr_and_coverage():
    result = run_prequential(HAND_MADE, POPULARITY_ONLY)
    assert result["events"] == 10 and result["evaluated"] == 3 and result["hits"] == 2
    assert result["hr@2"] == pytest.approx(2 / 3)
    assert result["ndcg@2"] == pytest.approx((1 / math.log2(3) + 1.0) / 3)
    assert result["mrr@2"] == pytest.approx((0.5 + 1.0) / 3)
    # lists served: w4,w5 -> [a]; w6 -> [a, b]; t -> [b, c], [b], [b]; catalogue a, b, c, d
    assert result["coverage"] == pytest.approx(3 / 4)
    assert result["catalogue"] == 4 and result["batch_size"] == 1 and result["k"] == 2


def test_curve_slices_cover_the_stream_and_add_up():
    result = run_prequential(HAND_MADE, POPULARITY_ONLY, slices=5)
    curve = result["curve"]
    assert [c["slice"] for c in curve] == [1, 2, 3, 4, 5]
    assert curve[0]["start"] == 0 and curve[-1]["end"] == 10
    assert all(a["end"] == b["start"] for a, b in zip(curve, curve[1:]))
    assert sum(c["evaluated"] for c in curve) == result["evaluated"]
    assert sum(c["hr@2"] * c["evaluated"] for c in curve) == pytest.approx(result["hits"])
    assert [c["hr@2"] for c in curve[3:]] == [1.0, 0.5]  # events 7-8: one hit; 9-10: a miss and a hit


def test_is_exactly_the_workers_loop():
    events = stream(400, seed=5)
    config = EngineConfig(k=5, blend=BlendConfig())
    for batch in (1, 16):
        engine = StreamingRecommender(config)
        for start in range(0, len(events), batch):
            chunk = events[start:start + batch]
            engine.learn_many(chunk)
            for user in dict.fromkeys(e.user_id for e in chunk):
                engine.recommend(user)
        result = run_prequential(events, config, batch_size=batch)
        expected = engine.prequential.snapshot()
        assert (result["evaluated"], result["hits"]) == (expected["evaluated"], expected["hits"])
        assert result["ndcg@5"] == pytest.approx(expected["ndcg"])


def test_batches_score_every_event_against_the_list_served_before_its_batch():
    # With one batch holding all of t's events, t has no list yet: nothing of t is evaluated.
    result = run_prequential(HAND_MADE, POPULARITY_ONLY, batch_size=10)
    assert result["evaluated"] == 0
    # Batches of 2: t's "a" and "c" share a batch, so only "d" and "b" are scored (against [b, c]).
    result = run_prequential(HAND_MADE, POPULARITY_ONLY, batch_size=2)
    assert (result["evaluated"], result["hits"]) == (2, 1)
    assert result["batch_size"] == 2


def test_generator_yields_growing_snapshots_then_a_final_one_and_reports_progress():
    events = stream(300)
    calls = []
    snapshots = list(iter_prequential(events, EngineConfig(k=3), every=50,
                                      on_progress=lambda done, total: calls.append((done, total))))
    assert [s["final"] for s in snapshots] == [False] * (len(snapshots) - 1) + [True]
    assert [s["events"] for s in snapshots] == sorted(s["events"] for s in snapshots)
    assert snapshots[-1]["events"] == 300 and len(snapshots) >= 6
    final = snapshots[-1]
    for key in ("events", "evaluated", "hr@3", "ndcg@3", "mrr@3", "coverage", "events_per_s", "curve",
                "peak_rss_mb", "cpu_s"):
        assert key in final
    assert 0 <= final["ndcg@3"] <= final["hr@3"] <= 1 and final["mrr@3"] <= final["hr@3"]
    assert final["events_per_s"] > 0 and len(final["curve"]) == 10
    assert calls[-1] == (300, 300) and all(a[0] <= b[0] for a, b in zip(calls, calls[1:]))


def test_k_and_engine_arguments():
    engine = StreamingRecommender(EngineConfig(k=4))
    assert run_prequential(stream(50), engine=engine)["k"] == 4
    with pytest.raises(ValueError, match="k=4"):
        run_prequential(stream(50), engine=engine, k=10)
    assert run_prequential(stream(50), EngineConfig(k=4), k=7)["k"] == 7
    with pytest.raises(ValueError):
        run_prequential(stream(50), batch_size=0)
    assert run_prequential([], EngineConfig())["evaluated"] == 0


def test_the_blend_beats_popularity_on_a_structured_stream():
    events = stream(2000, users=30, items=40, seed=2)
    pop = run_prequential(events, EngineConfig(blend=BlendConfig(weights=(("popularity", 1.0),),
                                                                 learn_weights=False)))
    blend = run_prequential(events, EngineConfig(blend=BlendConfig()))
    assert blend["hr@10"] > pop["hr@10"]
