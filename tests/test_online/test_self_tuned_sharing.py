"""Item sharing under self-tuning: the default worker engine shares, and a warm rebuild keeps what the
group taught it.

``SelfTunedRecommender`` collects item deltas while it learns and applies the other workers', like the
plain engine; it also keeps the deltas it applied, with where they fell among its own events, so a config
swap that rebuilds the engine on the kept events replays them in place and the new engine ranks as the
old one did. The positions that make each delta count once move over with the users.
"""
from __future__ import annotations

import functools

import pytest

from online.base import Interaction
from online.engine import EngineConfig, StreamingRecommender
from online.search.loop import Schedule, SelfTunedRecommender, build, build_encoded
from online.sharing import DeltaCollector, decode, encode
from online.tuning import TunedRecommender, TunerConfig, tuned_engine_config
from stream.settings import Settings
from stream.worker.processor import EventProcessor, collects_deltas
from tests.test_stream.test_processor import _event, _msg


def _stream(n=600, users=16, items=25):
    return [Interaction(f"u{i % users}", f"i{(i * 7 + i // users) % items}", float(i)) for i in range(n)]


def _group(schedule=None):
    """Two self-tuned workers, shard 0 (even users) and shard 1 (odd users), trading deltas every 20
    events of each; returns them and the stream."""
    workers = [SelfTunedRecommender(EngineConfig(), searcher=None, schedule=schedule) for _ in range(2)]
    events = _stream()
    shards = [[e for e in events if int(e.user_id[1:]) % 2 == s] for s in (0, 1)]
    for start in range(0, len(shards[0]), 20):
        sealed = []
        for source, worker in enumerate(workers):
            batch = shards[source][start:start + 20]
            collector = DeltaCollector(source)
            collector.cover(start, start + len(batch) - 1)
            worker.learn_many(batch, deltas=collector)
            sealed.append(encode(collector.seal()))
        for source, worker in enumerate(workers):
            assert worker.apply_item_deltas(decode(sealed[1 - source]))
    return workers, events


def _same_item_models(a: StreamingRecommender, b: StreamingRecommender, items) -> None:
    assert a.popularity.top(25) == b.popularity.top(25)
    assert a.popularity.score("x", [], sorted(items)) == pytest.approx(b.popularity.score("x", [], sorted(items)))
    for item in items:
        assert dict(a.next_item.strongest(item)) == pytest.approx(dict(b.next_item.strongest(item)))


def test_the_default_worker_engine_collects_deltas_and_the_bandit_one_does_not():
    assert collects_deltas(SelfTunedRecommender(EngineConfig(), searcher=None))
    bandit = functools.partial(TunedRecommender, config=TunerConfig())
    assert not collects_deltas(SelfTunedRecommender(tuned_engine_config(EngineConfig()), searcher=None,
                                                    bandit=bandit), quiet=True)


def test_a_self_tuned_worker_ranks_with_what_the_other_worker_taught_it():
    (a, _), events = _group()
    whole, alone = StreamingRecommender(), StreamingRecommender()
    whole.learn_many(events)
    alone.learn_many([e for e in events if int(e.user_id[1:]) % 2 == 0])
    items = sorted({e.item_id for e in events})
    truth = whole.popularity.score("x", [], items)
    error = sum(abs(x - t) for x, t in zip(a.models.popularity.score("x", [], items), truth))
    assert error < 0.05 * sum(truth)  # a batch's order within a delta is lost, nothing else
    assert error < 0.2 * sum(abs(x - t) for x, t in zip(alone.popularity.score("x", [], items), truth))
    assert a.n_users == 8  # only item knowledge crossed over


def test_a_rebuild_on_the_kept_events_replays_the_shared_deltas_where_they_fell():
    (_, b), events = _group()
    position, kept = b.kept()
    shared = b.kept_shared(position - len(kept))
    assert len(kept) == len(events) // 2 and len(shared) == 15
    fresh = build(b.config, kept, shared)
    _same_item_models(fresh, b.models, {e.item_id for e in events})
    shipped = build_encoded(b.config, b.kept_encoded(chunk=64)[1])  # as the worker ships them to its build process
    _same_item_models(shipped, b.models, {e.item_id for e in events})
    without = build(b.config, kept)
    assert without.popularity.top(25) != b.models.popularity.top(25)  # what the test would miss


def test_after_a_swap_each_delta_still_counts_once_and_the_group_knowledge_stays():
    (_, b), events = _group()
    old, old_positions = b.models, dict(b.item_positions)
    position, kept = b.kept()
    replayed = b.kept_shared(position - len(kept))
    fresh = build(b.config, kept[:100], [(at, d) for at, d in replayed if at <= 100])  # built a while ago
    swap = b.commit(fresh, position - len(kept) + 100)  # catches up on the rest, deltas included
    assert swap.applied and b.models is fresh
    assert b.item_positions == old_positions
    assert not any(b.apply_item_deltas(deltas) for _, deltas in replayed)  # re-read copies are skipped
    _same_item_models(b.models, old, {e.item_id for e in events})  # what the group taught it stays


def test_only_the_deltas_within_the_kept_window_are_kept():
    (_, b), _ = _group(schedule=Schedule(first=10_000, window=100, keep=100))
    position, kept = b.kept()
    assert len(kept) == 100
    assert all(0 <= at <= 100 for at, _ in b.kept_shared(position - len(kept)))
    assert len(b.kept_shared(0)) <= 6  # deltas every 20 events: the last 100 events' (the rest are gone)


def test_a_worker_with_default_settings_publishes_item_deltas():
    processor = EventProcessor(Settings.of(learn_scope="shared"), clock=lambda: 2000.0)
    assert isinstance(processor.engine, SelfTunedRecommender) and processor.sharing
    result = processor.process_events([_msg(_event("u1", "a"), offset=0, partition=0),
                                       _msg(_event("u2", "b"), offset=0, partition=1)])
    assert sorted(out.key for out in result.deltas) == [b"0", b"1"]


def test_events_learned_for_their_users_only_are_rebuilt_the_same_way():
    """A partition moved to ``b``, which re-reads its last events: their items came in ``a``'s deltas
    already, so they teach users only, and a rebuild must not count their items a second time."""
    (_, b), events = _group()
    moved = [e for e in events if int(e.user_id[1:]) % 2 == 0][-20:]
    b.learn_users(moved)
    position, kept = b.kept()
    fresh = build(b.config, kept, b.kept_shared(position - len(kept)))
    _same_item_models(fresh, b.models, {e.item_id for e in events})
    shipped = build_encoded(b.config, b.kept_encoded(chunk=64)[1])
    _same_item_models(shipped, b.models, {e.item_id for e in events})
