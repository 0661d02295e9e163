"""PartitionProgress: the one owner of the worker's per-partition offsets, and the snapshot's string keys."""
from __future__ import annotations

import asyncio
import json

import pytest

from online.state import snapshot_bytes
from stream.settings import Settings
from stream.wire.messages import RawMessage
from stream.worker.durability import SNAPSHOT_NAME, StateKeeper
from stream.worker.processor import EventProcessor
from stream.worker.progress import PartitionProgress, TopicPartition, from_keys, to_keys

E0, E1 = TopicPartition("events", 0), TopicPartition("events", 1)


def test_a_topic_partition_is_the_pair_faust_and_aiokafka_use_and_keys_round_trip():
    from aiokafka import TopicPartition as AIOKafkaTopicPartition

    assert E0 == ("events", 0) == AIOKafkaTopicPartition("events", 0)
    assert E0.key() == "events/0" and TopicPartition.from_key("events/0") == E0
    assert TopicPartition.from_key("my.topic-v2/12") == TopicPartition("my.topic-v2", 12)
    assert from_keys(to_keys({E0: 3, E1: 7})) == {E0: 3, E1: 7}
    for bad in ("events", "/3", "events/x"):
        with pytest.raises(ValueError):
            TopicPartition.from_key(bad)


def test_learned_moves_the_next_offset_forward_only():
    progress = PartitionProgress()
    assert progress.next_offset(E0) is None and progress.covered() == {}
    assert progress.learned(E0, 4) and progress.learned(E0, 5)
    assert not progress.learned(E0, 2)  # already past it
    assert progress.next_offset(E0) == 6
    covered = progress.covered()
    progress.learned(E0, 9)
    assert covered == {E0: 6}  # a copy: the snapshot does not move with learning


def test_a_restored_partition_skips_what_the_state_holds_until_it_catches_up():
    progress = PartitionProgress()
    progress.restore({E0: 10}, {E0: 8})
    assert progress.already_learned(E0, 8) and progress.already_learned(E0, 9)
    assert not progress.already_learned(E0, 10)  # caught up: checking stops for good
    assert not progress.already_learned(E0, 9)
    assert not progress.already_learned(E1, 0)  # not in the snapshot
    assert progress.next_offset(E0) == 10


def test_a_first_message_below_the_resume_floor_means_a_new_topic_incarnation():
    progress = PartitionProgress()
    progress.restore({E0: 10}, {E0: 8})
    assert not progress.already_learned(E0, 0)
    assert not progress.already_learned(E0, 9)  # no longer checked


def test_a_taken_over_partition_without_a_commit_has_no_floor():
    progress = PartitionProgress()
    progress.restore({}, {E1: 5})
    progress.take_over(E1, covered=3, committed=None)
    assert progress.already_learned(E1, 0) and progress.already_learned(E1, 2)
    assert not progress.already_learned(E1, 3)


def test_answer_only_below_a_replicas_offset():
    progress = PartitionProgress()
    assert not progress.answer_only(E0, 0)
    progress.answer_only_below(E0, 5)
    assert progress.answer_only(E0, 4) and not progress.answer_only(E0, 5) and not progress.answer_only(E1, 0)


def _msg(user, item, offset):
    event = {"user_id": user, "item_id": item, "type": "click", "ts": float(offset)}
    return RawMessage(json.dumps(event).encode(), user.encode(), "events", 0, offset, 1000.0)


def test_a_snapshot_written_before_progress_existed_still_restores(tmp_path):
    """The file format did not change: offsets and commits are stored as "topic/partition" strings."""
    settings = Settings.of(data_dir=str(tmp_path), snapshot_interval_s=1.0)
    old = EventProcessor(settings)
    old.process_events([_msg("u1", "a", 0), _msg("u1", "b", 1)])
    source = f"{settings.kafka.bootstrap_servers}|{settings.topics.events}|{settings.kafka.app_id}"
    (tmp_path / SNAPSHOT_NAME).write_bytes(snapshot_bytes(
        old.engine, offsets={"events/0": 2},
        metadata={"recent_ids": [], "committed": {"events/0": 1}, "source": source}))

    async def flush():
        return None

    fresh = EventProcessor(settings)
    keeper = StateKeeper(settings, fresh, asyncio.Lock(), flush)
    assert keeper.restore()
    assert keeper.committed == {E0: 1} and fresh.progress.covered() == {E0: 2}
    result = fresh.process_events([_msg("u1", "b", 1), _msg("u1", "c", 2)])
    assert (result.replayed, result.events) == (1, 1)


def test_a_snapshot_with_unreadable_offsets_is_set_aside(tmp_path):
    settings = Settings.of(data_dir=str(tmp_path), snapshot_interval_s=1.0)
    processor = EventProcessor(settings)
    source = f"{settings.kafka.bootstrap_servers}|{settings.topics.events}|{settings.kafka.app_id}"
    (tmp_path / SNAPSHOT_NAME).write_bytes(snapshot_bytes(
        processor.engine, offsets={"no-partition-here": 2}, metadata={"source": source}))

    async def flush():
        return None

    assert not StateKeeper(settings, processor, asyncio.Lock(), flush).restore()
    assert any(p.name.startswith(f"{SNAPSHOT_NAME}.corrupt-") for p in tmp_path.iterdir())
