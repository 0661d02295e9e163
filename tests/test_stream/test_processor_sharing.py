"""The processor with ``learn_scope=shared``: deltas per source partition out, other workers' deltas in, once."""
from __future__ import annotations

from online.sharing import decode
from stream.settings import Settings
from stream.worker.processor import EventProcessor
from tests.test_stream.test_processor import _event, _msg


def make():
    return EventProcessor(Settings.of(learn_scope="shared", self_tune=False), clock=lambda: 2000.0)


def test_a_batch_publishes_one_delta_per_source_partition_keyed_by_it():
    processor = make()
    result = processor.process_events([_msg(_event("u1", "a"), 0, 0), _msg(_event("u2", "b"), 0, 1),
                                       _msg([_event("u1", "c"), _event("u1", "d")], 1, 0)])
    by_key = {out.key: decode(out.value) for out in result.deltas}
    assert set(by_key) == {b"0", b"1"}
    assert {out.topic for out in result.deltas} == {processor.settings.topics.item_deltas}
    zero = by_key[b"0"]
    assert (zero.source, zero.first, zero.last, zero.events) == (0, 0, 1, 3)
    assert processor.deltas_published == 2


def test_other_workers_deltas_are_applied_once_and_events_already_held_teach_only_users():
    owner, other = make(), make()
    batch = [_msg(_event(f"u{n}", "hot"), n, 0) for n in range(5)]
    values = [out.value for out in owner.process_events(batch).deltas]
    assert other.apply_deltas(values) == 1 and other.apply_deltas(values) == 0  # a re-read copy is skipped
    assert other.engine.item_events == 5
    # the partition moves to ``other``, which re-reads it from an older commit: users only, nothing republished
    result = other.process_events(batch)
    assert result.deltas == [] and other.events_known == 5
    assert other.engine.item_events == 5 and other.engine.n_users == 5
    assert other.apply_deltas([b"not msgpack"]) == 0


def test_a_batch_that_straddles_what_deltas_taught_learns_items_only_from_the_events_past_it():
    owner, other = make(), make()
    batch = [_msg(_event(f"u{n}", f"item-{n}"), n, 0) for n in range(5)]
    other.apply_deltas([out.value for out in owner.process_events(batch[:3]).deltas])  # offsets 0-2 held
    result = other.process_events(batch)
    assert other.events_known == 3 and other.engine.item_events == 5 and other.engine.n_users == 5
    (delta,) = [decode(out.value) for out in result.deltas]
    assert (delta.first, delta.last, delta.events) == (3, 4, 2)


def test_auto_publishes_only_while_another_worker_holds_partitions():
    processor = EventProcessor(Settings.of(learn_scope="auto", self_tune=False, partitions=4), clock=lambda: 2000.0)
    processor.on_assigned({0, 1, 2, 3}, 4)  # alone in the group
    assert processor.process_events([_msg(_event("u1", "a"), 0, 0)]).deltas == []
    assert processor.engine.knows_items(0, 0)  # later deltas for these events are skipped
    processor.on_assigned({0, 1}, 4)  # a second worker joined
    assert [out.key for out in processor.process_events([_msg(_event("u1", "b"), 1, 0)]).deltas] == [b"0"]


def test_an_engine_that_cannot_collect_deltas_learns_its_partitions_only():
    class Plain:  # an engine whose learn_many takes no collector
        def learn_many(self, interactions):
            pass

    processor = EventProcessor(Settings.of(learn_scope="shared"), engine=Plain(), clock=lambda: 2000.0)
    assert not processor.sharing and not processor.publishing


def test_deltas_stay_unacknowledged_until_a_flush_and_a_restored_worker_publishes_them_again():
    processor = make()
    sent = processor.process_events([_msg(_event("u1", "a"), 0, 0)]).deltas
    assert processor.unacked_deltas == sent  # what a snapshot taken now keeps
    kept = [(out.key, out.value) for out in processor.unacked_deltas]
    processor.deltas_acknowledged(1)
    assert processor.unacked_deltas == []

    restored = make()
    restored.restore_deltas(kept)
    again = restored.process_events([_msg(_event("u2", "b"), 0, 1)]).deltas
    assert [out.value for out in again[:1]] == [value for _, value in kept]  # first, as they were
    assert [out.key for out in again] == [b"0", b"1"] and len(restored.unacked_deltas) == 2
