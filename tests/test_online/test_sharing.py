"""Item deltas between workers (``online.sharing``): what they carry, and that each is applied once."""
from __future__ import annotations

import pytest

from online.base import Interaction
from online.blend import BlendConfig
from online.engine import EngineConfig, StreamingRecommender
from online.scaleout import simulate_workers
from online.sharing import DeltaCollector, ItemDeltas, decode, encode

BLEND = EngineConfig(blend=BlendConfig())


def _stream(n=400, users=12, items=15):
    return [Interaction(f"u{i % users}", f"i{(i * 7 + i // users) % items}", float(i)) for i in range(n)]


def _learn_with_deltas(engine, events, source, start=0):
    collector = DeltaCollector(source)
    collector.cover(start, start + len(events) - 1)
    engine.learn_many(events, deltas=collector)
    return collector.seal()


def test_a_delta_round_trips_through_its_bytes():
    engine = StreamingRecommender(BLEND)
    deltas = _learn_with_deltas(engine, _stream(50), source=2, start=100)
    assert isinstance(deltas, ItemDeltas)
    assert decode(encode(deltas)) == deltas
    assert (deltas.source, deltas.first, deltas.last, deltas.events) == (2, 100, 149, 50)
    assert set(deltas.pairs) == {"next_item", "cooccurrence"}


def test_sealing_empties_the_collector_and_an_empty_one_seals_to_nothing():
    collector = DeltaCollector(0)
    assert collector.seal() is None
    _learn_with_deltas(StreamingRecommender(), _stream(5), 0)  # another collector
    collector.cover(0, 4)
    StreamingRecommender().learn_many(_stream(5), deltas=collector)
    assert collector.seal() is not None and collector.seal() is None


@pytest.mark.parametrize("config", [EngineConfig(), BLEND], ids=["fast", "blend"])
def test_a_worker_that_applies_the_others_deltas_ranks_like_one_that_learned_everything(config):
    """Two shards, one per event: worker A learns shard 0 and applies shard 1's deltas event by event;
    its item-level models then rank as one engine that learned the whole stream."""
    events = _stream()
    whole, a, b = (StreamingRecommender(config) for _ in range(3))
    whole.learn_many(events)
    positions = [0, 0]
    for event in events:
        shard = int(event.user_id[1:]) % 2
        if shard == 0:
            _learn_with_deltas(a, [event], 0, positions[0])
        else:
            assert a.apply_item_deltas(decode(encode(_learn_with_deltas(b, [event], 1, positions[1]))))
        positions[shard] += 1
    assert a.popularity.top(10) == whole.popularity.top(10)
    for item in {e.item_id for e in events}:
        assert dict(a.next_item.strongest(item)) == pytest.approx(dict(whole.next_item.strongest(item)))
    assert a.item_events == whole.item_events == len(events)
    assert a.n_users == 6  # no user crossed over: only item-level state is shared
    probe = a.recommend("someone-new").items
    assert [item for item, _ in probe] == [item for item, _ in whole.recommend("someone-new").items]


def test_each_delta_is_applied_once_by_its_source_positions():
    source, sink = StreamingRecommender(), StreamingRecommender()
    first = _learn_with_deltas(source, _stream(20), 3, start=0)
    second = _learn_with_deltas(source, _stream(20)[:10], 3, start=20)
    assert sink.apply_item_deltas(first) and sink.apply_item_deltas(second)
    assert not sink.apply_item_deltas(first) and not sink.apply_item_deltas(second)  # re-read copies
    assert sink.item_positions == {3: 29} and sink.item_events == 30 and sink.deltas_applied == 2
    assert sink.knows_items(3, 29) and not sink.knows_items(3, 30) and not sink.knows_items(4, 0)


def test_learning_events_whose_items_came_as_deltas_teaches_only_their_users():
    owner, restarted = StreamingRecommender(BLEND), StreamingRecommender(BLEND)
    events = _stream(60)
    restarted.apply_item_deltas(_learn_with_deltas(owner, events, 0))
    before = (restarted.popularity.top(20), restarted.item_events)
    restarted.learn_users(events)
    assert (restarted.popularity.top(20), restarted.item_events) == before
    assert restarted.n_users == owner.n_users
    assert restarted.user_state("u1").history == owner.user_state("u1").history


def test_learning_without_a_collector_records_no_positions():
    engine = StreamingRecommender()
    engine.learn_many(_stream(10))
    assert engine.item_positions == {} and engine.item_events == 10


def test_a_simulated_group_sharing_items_keeps_more_quality_than_one_split_by_partition():
    events = _stream(3_000, users=40, items=60)
    runs = {mode: simulate_workers(events, BLEND, workers=4, shard_of=lambda u: int(u[1:]) % 8, shards=8,
                                   mode=mode, delay=50, flush_every=10) for mode in ("partitions", "shared")}
    one = simulate_workers(events, BLEND, workers=1, shard_of=lambda u: int(u[1:]) % 8, shards=8)
    assert runs["shared"]["hr@10"] > runs["partitions"]["hr@10"]
    assert runs["shared"]["hr@10"] >= 0.95 * one["hr@10"]
    assert runs["partitions"]["deltas"] == 0 and runs["shared"]["deltas"] > 0
