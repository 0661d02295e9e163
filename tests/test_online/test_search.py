"""Self-tuning of the whole engine: the space, the replay, the search's evidence, the production loop.

Specifications: a point of the space is a working config; the shipped default blend is a
point; a trial sees only the window it is given; a winner is accepted only on paired
evidence; the loop searches strictly on the past and swaps warm, keeping every user; a
config that cannot serve is refused and the old one keeps serving; a stored study outlives
the process that ran it.
"""
from __future__ import annotations

import math
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from online.base import Interaction  # noqa: E402
from online.blend import BlendConfig  # noqa: E402
from online.engine import EngineConfig, StreamingRecommender  # noqa: E402
from online.search import Schedule, SearchConfig, SearchSpace, SelfTunedRecommender, score_window, search  # noqa: E402
from online.search.study import create_study  # noqa: E402


def sequential_stream(n: int, seed: int = 0, users: int = 60, items: int = 120) -> list[Interaction]:
    """Users walk a fixed item cycle (i -> i+1), with some noise: order is everything here."""
    rng = random.Random(seed)
    position = {f"u{u}": rng.randrange(items) for u in range(users)}
    out = []
    for t in range(n):
        user = f"u{rng.randrange(users)}"
        step = 1 if rng.random() < 0.8 else rng.randrange(2, items)
        position[user] = (position[user] + step) % items
        out.append(Interaction(user, f"i{position[user]}", float(t)))
    return out


POPULARITY_ONLY = EngineConfig(k=10, blend=BlendConfig(weights=(("popularity", 1.0),), learn_weights=False))
FAST = SearchConfig(trials=8, timeout_s=None, startup_trials=4, seed=1)


def test_every_sampled_point_is_a_working_engine_config():
    space = SearchSpace()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    events = sequential_stream(400)
    for _ in range(12):
        trial = study.ask()
        config = space.sample(trial).config(EngineConfig(k=5))
        engine = StreamingRecommender(config)
        engine.learn_many(events)
        ranking = engine.recommend("u1")
        assert all(math.isfinite(score) for _, score in ranking.items)
        study.tell(trial, 0.0)


def test_the_shipped_default_blend_is_a_point_of_the_space_and_the_fixed_mix_is_not():
    space = SearchSpace()
    default = EngineConfig(k=10, blend=BlendConfig())
    params = space.params_of(default)
    assert params is not None and params["use:cooccurrence"] and not params["use:mf"]
    rebuilt = space.sample(optuna.trial.FixedTrial(params)).config(EngineConfig(k=10))
    assert rebuilt == default
    assert space.params_of(EngineConfig()) is None  # the fixed mix: measured as the serving config instead


def test_a_window_score_compares_two_configs_event_by_event():
    events = sequential_stream(3_000)
    serving = score_window(POPULARITY_ONLY, events)
    better = score_window(EngineConfig(k=10), events)  # next-item votes follow the cycle
    assert len(serving.outcomes) == len(better.outcomes) == 1_500
    assert better.hr > serving.hr
    diff, se, n = better.paired(serving)
    assert n > 1_000 and diff == pytest.approx(better.hr - serving.hr, abs=0.02) and diff > 3 * se
    assert serving.paired(serving)[0] == 0.0


def test_a_search_finds_and_proves_a_better_config_than_the_serving_one():
    events = sequential_stream(4_000)
    result = search(events, POPULARITY_ONLY, FAST)
    assert result.accepted, result.reason
    assert result.best.hr > result.serving.hr * 1.5 and result.diff > FAST.z * result.se
    assert len(result.trials) == FAST.trials and result.window_events == len(events)
    assert StreamingRecommender(result.best_config).recommend("u1").items is not None
    evidence = result.evidence()
    assert evidence["accepted"] and evidence["serving_hr"] == result.serving.hr and evidence["config"]


def test_no_winner_is_accepted_without_evidence():
    events = sequential_stream(1_000)
    strict = SearchConfig(trials=3, timeout_s=None, startup_trials=1, min_gain=10.0)  # a 1000% gain needed
    result = search(events, EngineConfig(k=10, blend=BlendConfig()), strict)
    assert not result.accepted and "below" in result.reason


def _spy_searcher(calls):
    def searcher(window, serving):
        calls.append(list(window))
        return search(window, serving, SearchConfig(trials=2, timeout_s=None, startup_trials=1, min_gain=10.0))
    return searcher


def test_the_loop_searches_strictly_on_the_past():
    events = sequential_stream(3_000)
    calls: list[list[Interaction]] = []
    tuned = SelfTunedRecommender(EngineConfig(k=10), searcher=_spy_searcher(calls),
                                 schedule=Schedule(first=1_000, every=1_000, window=600, keep=800, drift=False))
    learned = 0
    for start in range(0, len(events), 50):
        batch = events[start:start + 50]
        searches_before = len(calls)
        tuned.learn_many(batch)
        learned += len(batch)
        if len(calls) > searches_before:  # a search ran in this call: on the events learned, none after
            window = calls[-1]
            assert window == events[learned - len(window):learned]
    assert tuned.searches == len(calls) == 3  # at 1,000, 2,000 and 3,000
    assert all(len(window) == 600 for window in calls)


def test_the_events_kept_for_rebuilds_are_not_walked_by_the_garbage_collector():
    """50,000 kept events were the largest part of a worker's full collections; kept as plain tuples, the
    collector stops tracking them at its first pass, and they come back as the same events."""
    import gc

    events = sequential_stream(500)
    tuned = SelfTunedRecommender(EngineConfig(k=10), searcher=None, schedule=Schedule(window=300, keep=400))
    tuned.learn_many(events)
    gc.collect()
    position, kept = tuned.kept()
    assert position == 500 and kept == events[100:] and all(type(event) is Interaction for event in kept)
    assert tuned.window() == events[200:]
    assert not any(gc.is_tracked(row) for row in tuned._kept)


def _cycles(n: int, start: int = 0) -> list[Interaction]:
    """20 users walk one chain of items, each a step behind the one before: all but the leader's
    next item follows the item they are on, as the users ahead of them showed."""
    events, step = [], 0
    while len(events) < n:
        for user in range(20):
            if step - user >= 0 and len(events) < n:
                events.append(Interaction(f"u{user}", f"s{start}-{step - user}", float(start + len(events))))
        step += 1
    return events


def _noise(n: int, start: int = 0) -> list[Interaction]:
    """Every event a new item: nothing can be predicted."""
    return [Interaction(f"u{i % 20}", f"n{start + i}", float(start + i)) for i in range(n)]


def _searches_at(events: list[Interaction]) -> list[int]:
    calls: list[list[Interaction]] = []
    tuned = SelfTunedRecommender(EngineConfig(k=10), searcher=_spy_searcher(calls),
                                 schedule=Schedule(first=100_000, every=4_000, window=500, keep=500))
    at = []
    for start in range(0, len(events), 20):
        before = len(calls)
        batch = events[start:start + 20]
        tuned.learn_many(batch)
        for user_id in {event.user_id for event in batch}:  # the worker serves every user of the batch
            tuned.recommend(user_id)
        if len(calls) > before:
            at.append(tuned.events)
    return at


def test_a_fall_of_the_served_hit_rate_brings_a_search_forward_and_a_rise_does_not():
    fall = _searches_at(_cycles(3_000) + _noise(3_000, start=3_000))
    assert fall and 3_000 < fall[0] < 4_000  # soon after the stream turned unpredictable, long before `first`
    assert _searches_at(_noise(3_000) + _cycles(3_000, start=3_000)) == []  # the rate rose: nothing to fix


def test_an_accepted_winner_is_served_from_then_on_and_no_user_is_forgotten():
    events = sequential_stream(4_000)
    tuned = SelfTunedRecommender(POPULARITY_ONLY, searcher=lambda window, serving: search(window, serving, FAST),
                                 schedule=Schedule(first=3_000, every=10_000, window=3_000, keep=3_000, drift=False))
    tuned.learn_many(events[:2_999])
    seen_before = set(tuned.user_state("u1").seen)
    tuned.learn_many(events[2_999:3_000])  # the search is due
    assert tuned.searches == 1 and tuned.swaps and tuned.swaps[0].applied
    assert tuned.config != POPULARITY_ONLY
    assert seen_before <= set(tuned.user_state("u1").seen)  # the rebuilt engine knows what u1 has seen
    assert not seen_before & {item for item, _ in tuned.recommend("u1").items}
    tuned.learn_many(events[3_000:])
    assert tuned.stats()["selftune_swaps"] == 1


def test_a_config_that_cannot_serve_is_refused_and_the_old_one_keeps_serving():
    events = sequential_stream(1_000)
    tuned = SelfTunedRecommender(EngineConfig(k=5), searcher=None)
    tuned.learn_many(events)
    before = tuned.recommend("u1", record=False).items
    broken = EngineConfig(k=5, blend=BlendConfig.parse("mf")).replace(mf_factors=0)  # ImplicitMF refuses it
    swap = tuned.apply(broken, {"gain": 0.5})
    assert not swap.applied and "refused" in swap.how
    assert tuned.config == EngineConfig(k=5) and tuned.recommend("u1", record=False).items == before
    assert tuned.stats()["selftune_refused"] == 1


def test_a_change_of_blend_weights_alone_is_applied_in_place():
    tuned = SelfTunedRecommender(EngineConfig(k=5, blend=BlendConfig()), searcher=None)
    tuned.learn_many(sequential_stream(500))
    engine = tuned.engine
    swap = tuned.apply(EngineConfig(k=5, blend=BlendConfig().with_weights(popularity=0.9)))
    assert swap.applied and swap.how == "in place" and tuned.engine is engine
    assert dict(tuned.config.blend.weights)["popularity"] == 0.9


def test_in_place_knobs_go_to_the_live_models_and_a_structural_change_rebuilds():
    tuned = SelfTunedRecommender(EngineConfig(k=5, blend=BlendConfig.parse("popularity=0.3,cooccurrence=1,mf=0.3")),
                                 searcher=None)
    tuned.learn_many(sequential_stream(500))
    engine, mf = tuned.engine, tuned.blend.strategies["mf"]
    swap = tuned.apply(tuned.config.replace(half_life=50.0, mf_lr=0.2, cooc_decay=0.3))
    assert swap.applied and swap.how == "in place" and tuned.engine is engine  # nothing rebuilt
    assert tuned.engine.popularity.half_life == 50.0 and mf.lr == 0.2
    assert tuned.blend.strategies["cooccurrence"].decay == 0.3
    assert tuned.config.strategies["mf"].lr == 0.2  # the config records what serves
    swap = tuned.apply(tuned.config.replace(cooc_window=2))  # not in place: a warm rebuild
    assert swap.applied and swap.how == "rebuilt" and tuned.engine is not engine


def test_an_in_place_value_a_model_refuses_changes_nothing():
    tuned = SelfTunedRecommender(EngineConfig(k=5, blend=BlendConfig.parse("popularity=0.3,mf=0.3")), searcher=None)
    tuned.learn_many(sequential_stream(300))
    before = tuned.config
    swap = tuned.apply(before.replace(half_life=50.0, mf_lr=-0.1))  # ImplicitMF refuses a negative rate
    assert not swap.applied and tuned.config == before
    assert tuned.engine.popularity.half_life == before.strategies["popularity"].half_life  # rolled back


def test_the_in_loop_bandits_tune_inside_the_searched_config_and_restart_with_each_swap():
    from functools import partial

    from online.tuning import TunedRecommender, TunerConfig, tuned_engine_config

    bandit = partial(TunedRecommender, config=TunerConfig(seed=0, period=100, weight_period=100))
    tuned = SelfTunedRecommender(tuned_engine_config(EngineConfig(k=5)), searcher=None, bandit=bandit)
    assert isinstance(tuned.engine, TunedRecommender) and tuned.engine.searches  # mf's learning rate is tuned
    tuned.learn_many(sequential_stream(1_000))
    assert tuned.tuning_snapshot()["step"] == 1_000
    first = tuned.engine
    winner = tuned.config.replace(cooc_window=2)
    assert tuned.apply(winner).how == "rebuilt"
    assert isinstance(tuned.engine, TunedRecommender) and tuned.engine is not first  # bandits around the new config
    assert tuned.config == winner and tuned.events == 1_000 and tuned.user_state("u1") is not None
    weights_only = winner.replace(blend=winner.blend.with_weights(popularity=0.9))
    serving = tuned.engine
    assert tuned.apply(weights_only).how == "in place" and tuned.engine is serving
    assert tuned.engine.weights.weights == tuned.blend.weights  # the weight bandit starts from the new weights
    assert tuned.apply(weights_only.replace(mf_lr=0.3)).how == "rebuilt"  # the lr shadows are rebuilt around it
    tuned.learn_many(sequential_stream(200))
    assert tuned.recommend("u1").items


def test_a_stored_study_outlives_the_process_that_ran_it(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(__import__('pathlib').Path(__file__).resolve().parents[2])!r})
        from tests.test_online.test_search import sequential_stream, POPULARITY_ONLY
        from online.search import SearchConfig, search
        from online.search.study import create_study
        config = SearchConfig(trials=50, timeout_s=None, startup_trials=2)
        study = create_study(config, storage={storage!r}, study_name="kept")
        def stop_after_three(record, n):
            if n == 3:
                os._exit(9)  # killed mid-search: no cleanup, no final result
        search(sequential_stream(1_200), POPULARITY_ONLY, config, study=study, on_trial=stop_after_three)
    """)
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert killed.returncode == 9, killed.stderr
    config = SearchConfig(trials=2, timeout_s=None, startup_trials=1)
    study = create_study(config, storage=storage, study_name="kept")
    assert len([t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]) >= 3  # nothing done was lost
    result = search(sequential_stream(1_200), POPULARITY_ONLY, config, study=study)
    assert len(study.trials) >= 5 and len(result.trials) == 2  # the study went on where it stopped


def test_trial_values_are_relative_to_the_serving_config_on_the_same_events():
    events = sequential_stream(1_500)
    config = SearchConfig(trials=3, timeout_s=None, startup_trials=3)
    study = create_study(config)
    result = search(events, POPULARITY_ONLY, config, study=study)
    cut = int(len(result.serving.outcomes) * (1 - config.holdout))  # trials are valued before the held-out events
    for trial in study.trials:
        if trial.state.name == "COMPLETE":
            assert trial.value == pytest.approx(trial.user_attrs["hr_select"] / result.serving.hr_between(0, cut))
    assert np.all(result.serving.outcomes[result.serving.outcomes >= 0] <= 1.0)


def test_a_warm_swap_catches_up_in_slices_and_serves_what_a_one_shot_swap_serves():
    from online.search.loop import build

    events = sequential_stream(3_000)
    winner = EngineConfig(k=10, blend=BlendConfig())

    def engine_after(slices: bool) -> SelfTunedRecommender:
        tuned = SelfTunedRecommender(EngineConfig(k=10), searcher=None,
                                     schedule=Schedule(first=10**9, window=2_000, keep=2_000))
        tuned.learn_many(events[:1_500])
        position, kept = tuned.kept()
        fresh = build(winner, kept)  # elsewhere, while the stream goes on
        for start in range(1_500, 2_500, 50):
            tuned.learn_many(events[start:start + 50])
            if slices and tuned.events - position > 100:
                position = tuned.catch_up(fresh, position, 100)  # a slice per micro-batch boundary
        assert tuned.commit(fresh, position).applied
        return tuned

    sliced, one_shot = engine_after(True), engine_after(False)
    assert sliced.config == one_shot.config == winner
    for user in ("u1", "u7", "u30"):
        assert sliced.recommend(user, record=False) == one_shot.recommend(user, record=False)
    tuned = SelfTunedRecommender(EngineConfig(k=10), searcher=None, schedule=Schedule(window=100, keep=100))
    tuned.learn_many(events[:500])
    position, kept = tuned.kept()
    tuned.learn_many(events[500:700])  # more arrived than is kept: the build is too old to catch up
    with pytest.raises(ValueError, match="more than the 100 kept"):
        tuned.catch_up(build(winner, kept), position, 50)
