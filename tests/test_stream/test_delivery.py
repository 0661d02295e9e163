"""Delivery without a broker: redelivered events change the state once; a snapshot bounds every commit."""
from __future__ import annotations

import asyncio
import json
from collections import namedtuple

import pytest

from stream.settings import Settings
from stream.wire.messages import RawMessage
from stream.worker.durability import SNAPSHOT_NAME, StateKeeper
from stream.worker.processor import EventProcessor
from stream.worker.progress import TopicPartition

TP = namedtuple("TP", "topic partition")  # the shape of faust's TP


def _msg(user, item, offset, event_id=None, partition=0):
    event = {"user_id": user, "item_id": item, "type": "click", "ts": float(offset)}
    if event_id is not None:
        event["event_id"] = event_id
    return RawMessage(json.dumps(event).encode(), user.encode(), "events", partition, offset, 1000.0)


def _keeper(tmp_path, processor=None, **changes):
    settings = Settings.of(**{"data_dir": str(tmp_path), "snapshot_interval_s": 1.0, **changes})
    processor = processor or EventProcessor(settings)
    flushed = []

    async def flush():
        flushed.append(True)

    return StateKeeper(settings, processor, asyncio.Lock(), flush), processor, flushed


def test_an_event_id_seen_before_is_learned_once_and_counted():
    processor = EventProcessor(Settings())
    first = processor.process_events([_msg("u1", "a", 0, "e1"), _msg("u1", "b", 1, "e2")])
    again = processor.process_events([_msg("u1", "a", 0, "e1"), _msg("u2", "c", 2)])
    assert (first.events, first.duplicates) == (2, 0)
    assert (again.events, again.duplicates) == (1, 1)
    assert processor.engine.events_learned == 3


def test_events_without_an_id_cannot_be_recognised_and_are_learned_each_time():
    processor = EventProcessor(Settings())
    processor.process_events([_msg("u1", "a", 0)])
    processor.process_events([_msg("u1", "a", 0)])
    assert processor.engine.events_learned == 2


def test_the_dedup_window_is_bounded():
    processor = EventProcessor(Settings.of(dedup_window=2))
    processor.process_events([_msg("u", "a", 0, "e1"), _msg("u", "b", 1, "e2"), _msg("u", "c", 2, "e3")])
    assert len(processor.recent_ids) == 2
    assert processor.process_events([_msg("u", "a", 3, "e1")]).duplicates == 0  # forgotten


def test_the_processor_knows_the_next_offset_of_every_partition_it_learned():
    processor = EventProcessor(Settings())
    processor.process_events([_msg("u1", "a", 7, partition=0), _msg("u2", "b", 3, partition=1),
                              _msg("u1", "c", 8, partition=0)])
    assert processor.progress.covered() == {TopicPartition("events", 0): 9, TopicPartition("events", 1): 4}


def test_before_commit_writes_a_snapshot_and_never_commits_past_it(tmp_path):
    keeper, processor, flushed = _keeper(tmp_path)
    processor.process_events([_msg("u1", "a", 0, "e1"), _msg("u1", "b", 1, "e2")])
    offsets = {TP("events", 0): 5, TP("rec-requests", 0): 9}  # acked further than learned
    safe = asyncio.run(keeper.before_commit(offsets))
    assert safe == {TP("events", 0): 2, TP("rec-requests", 0): 9}
    assert flushed and (tmp_path / SNAPSHOT_NAME).exists()


@pytest.mark.parametrize("fork", [True, False], ids=["forked-writer", "in-place"])
def test_a_restarted_worker_continues_from_the_snapshot_and_skips_what_it_holds(tmp_path, fork):
    keeper, processor, _ = _keeper(tmp_path, snapshot_fork=fork)
    processor.process_events([_msg("u1", "a", 0, "e1"), _msg("u1", "b", 1, "e2")])
    asyncio.run(keeper.before_commit({TP("events", 0): 2}))
    processor.process_events([_msg("u1", "c", 2, "e3")])  # learned after the snapshot: lost in a crash
    asyncio.run(keeper.before_commit({TP("events", 0): 3}))
    processor.process_events([_msg("u1", "d", 3, "e4")])  # crash before the next snapshot

    restarted, fresh, _ = _keeper(tmp_path)
    assert restarted.restore()
    assert fresh.engine.events_learned == 3
    # Faust resumes from the last commit (offset 3): offset 3 and on are learned again exactly once.
    result = fresh.process_events([_msg("u1", "d", 3, "e4"), _msg("u2", "e", 4, "e5")])
    assert (result.events, result.replayed, result.duplicates) == (2, 0, 0)
    assert fresh.engine.events_learned == 5


def test_messages_between_the_last_commit_and_the_snapshot_are_not_learned_twice(tmp_path):
    keeper, processor, _ = _keeper(tmp_path)
    processor.process_events([_msg("u1", "a", 0), _msg("u1", "b", 1)])
    asyncio.run(keeper.before_commit({TP("events", 0): 2}))  # snapshot written; say the commit then failed
    restarted, fresh, _ = _keeper(tmp_path)
    assert restarted.restore()
    result = fresh.process_events([_msg("u1", "a", 0), _msg("u1", "b", 1), _msg("u1", "c", 2)])
    assert (result.replayed, result.events) == (2, 1)
    assert fresh.engine.events_learned == 3


def test_a_recreated_topic_is_not_mistaken_for_a_replay(tmp_path):
    keeper, processor, _ = _keeper(tmp_path)
    processor.process_events([_msg("u1", str(i), i) for i in range(10)])
    asyncio.run(keeper.before_commit({TP("events", 0): 10}))
    asyncio.run(keeper.before_commit({TP("events", 0): 10}))  # the snapshot now records commit 10
    restarted, fresh, _ = _keeper(tmp_path)
    assert restarted.restore()
    result = fresh.process_events([_msg("u9", "x", 0)])  # offsets start again below the commit
    assert (result.replayed, result.events) == (0, 1)


def test_a_worker_that_swapped_to_the_tuners_config_restores_its_snapshot_under_that_config(tmp_path):
    from online.blend import BlendConfig

    keeper, processor, _ = _keeper(tmp_path)
    processor.process_events([_msg("u1", str(i), i) for i in range(30)])
    swapped = processor.engine.config.replace(blend=BlendConfig(), cooc_window=4)
    assert processor.engine.apply(swapped).applied  # a winner of the tuner, served since
    asyncio.run(keeper.before_commit({TP("events", 0): 30}))
    restarted, fresh, _ = _keeper(tmp_path)
    assert restarted.restore()  # the settings it started from did not change: the snapshot fits
    assert fresh.engine.config == swapped and fresh.engine.events_learned == 30
    assert "0" in fresh.engine.user_state("u1").seen


def test_a_snapshot_from_other_settings_or_a_corrupt_one_is_set_aside_and_the_worker_starts_cold(tmp_path):
    keeper, processor, _ = _keeper(tmp_path)
    processor.process_events([_msg("u1", "a", 0)])
    asyncio.run(keeper.before_commit({TP("events", 0): 1}))
    other, fresh, _ = _keeper(tmp_path, k=5)
    assert not other.restore() and fresh.engine.events_learned == 0
    assert any(p.name.startswith(f"{SNAPSHOT_NAME}.stale-") for p in tmp_path.iterdir())

    (tmp_path / SNAPSHOT_NAME).write_bytes(b"streamrec-engine-snapshot\n\x80garbage")
    broken, fresh, _ = _keeper(tmp_path)
    assert not broken.restore() and fresh.engine.events_learned == 0
    assert any(p.name.startswith(f"{SNAPSHOT_NAME}.corrupt-") for p in tmp_path.iterdir())


def test_a_snapshot_writer_that_fails_in_the_child_skips_the_commit(tmp_path):
    keeper, processor, _ = _keeper(tmp_path)
    processor.process_events([_msg("u1", "a", 0)])
    keeper.path = tmp_path / "missing-folder-is-a-file" / SNAPSHOT_NAME
    (tmp_path / "missing-folder-is-a-file").write_text("in the way")
    assert asyncio.run(keeper.before_commit({TP("events", 0): 1})) is None
    assert keeper.failures == 1


def test_a_failed_snapshot_skips_the_commit(tmp_path):
    keeper, processor, _ = _keeper(tmp_path)
    processor.process_events([_msg("u1", "a", 0)])

    async def broker_gone():
        raise ConnectionError("broker gone")

    keeper.flush = broker_gone
    assert asyncio.run(keeper.before_commit({TP("events", 0): 1})) is None  # the lists may be lost: no commit
    assert keeper.failures == 1


def test_with_snapshots_off_commits_pass_through(tmp_path):
    keeper, _, flushed = _keeper(tmp_path, snapshot_interval_s=0)
    assert asyncio.run(keeper.before_commit({TP("events", 0): 4})) == {TP("events", 0): 4}
    assert not flushed and not keeper.restore()


def _user_in(partition, partitions=None):
    partitions = partitions or Settings().kafka.partitions
    from stream.wire.partitioner import partition_for

    return next(f"u{n}" for n in range(10_000) if partition_for(f"u{n}".encode(), partitions) == partition)


def test_a_partition_s_users_follow_it_to_the_worker_that_takes_it_over(tmp_path):
    from stream.worker.handoff import PartitionHandoff

    u0, u1 = _user_in(0), _user_in(1)  # users whose events Kafka's partitioner puts in partitions 0 and 1
    shared = str(tmp_path / "shared")
    old_keeper, old, _ = _keeper(tmp_path / "old", handoff_dir=shared)
    old_keeper.handoff = PartitionHandoff(old_keeper.settings, old)
    old_keeper.handoff.on_assigned({0, 1})
    old.process_events([_msg(u0, "a", 0, partition=0), _msg(u1, "x", 0, partition=1),
                        _msg(u1, "y", 1, partition=1)])
    asyncio.run(old_keeper.before_commit({TP("events", 0): 1, TP("events", 1): 2}))

    new_keeper, new, _ = _keeper(tmp_path / "new", handoff_dir=shared)
    new_keeper.handoff = PartitionHandoff(new_keeper.settings, new)
    new_keeper.handoff.on_assigned({1})  # the old worker died; partition 1 comes here
    assert new.engine.n_users == 1 and new_keeper.handoff.imported_users == 1
    assert "x" not in [item for item, _ in new.engine.recommend(u1).items]  # it knows what u1 has seen
    # Messages the file covers were learned (and answered) by the old owner: skipped, not learned twice.
    result = new.process_events([_msg(u1, "x", 0, partition=1), _msg(u1, "y", 1, partition=1),
                                 _msg(u1, "z", 2, partition=1)])
    assert (result.replayed, result.events) == (2, 1)
    assert list(new.engine.user_state(u1).history) == ["x", "y", "z"]


def test_a_worker_does_not_import_its_own_files(tmp_path):
    from stream.worker.handoff import PartitionHandoff

    shared = str(tmp_path / "shared")
    keeper, processor, _ = _keeper(tmp_path / "w", handoff_dir=shared)
    keeper.handoff = PartitionHandoff(keeper.settings, processor)
    keeper.handoff.on_assigned({0})
    processor.process_events([_msg("u0", "a", 0)])
    asyncio.run(keeper.before_commit({TP("events", 0): 1}))
    keeper.handoff.on_assigned({1})
    keeper.handoff.on_assigned({0, 1})  # partition 0 comes back: our engine is at least as new
    assert keeper.handoff.imported_users == 0


def test_a_replica_learns_other_partitions_without_lists_or_dead_letters():
    processor = EventProcessor(Settings())
    learned = processor.learn_replica([_msg("u1", "a", 0, "e1", partition=3), RawMessage(b"junk", None, "events", 3, 1),
                                       _msg("u1", "b", 2, "e2", partition=3)])
    assert learned == 2 and processor.engine.events_learned == 2
    assert processor.progress.covered() == {TopicPartition("events", 3): 3}
    assert processor.learn_replica([_msg("u1", "a", 0, "e1", partition=3)]) == 0  # already learned


def test_a_partition_taken_over_from_a_replica_is_answered_but_not_learned_twice():
    processor = EventProcessor(Settings())
    processor.learn_replica([_msg("u1", "a", 0, partition=3), _msg("u1", "b", 1, partition=3)])
    events_3 = TopicPartition("events", 3)
    processor.progress.answer_only_below(events_3, processor.progress.next_offset(events_3))  # the group gives us 3
    result = processor.process_events([_msg("u1", "b", 1, partition=3), _msg("u2", "c", 2, partition=3)])
    assert (result.replayed, result.events) == (1, 1)
    assert {json.loads(o.value)["user_id"] for o in result.recommendations} == {"u1", "u2"}
    assert processor.engine.events_learned == 3
