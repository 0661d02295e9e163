"""Two workers in one consumer group split the partitions; when one dies the other takes them all.

Events are keyed by user, so a user's events stay in one partition and one worker
holds that user's history. After ``kill -9`` of one worker the group rebalances
(after the session timeout), the survivor reads the dead worker's partitions from
their last committed offsets, and every user still gets a list for their last event.
With a shared handoff folder the users' state follows their partition: the survivor
knows what the dead worker's users had already seen and never recommends it again.
"""
from __future__ import annotations

import signal
import time

import pytest

from stream.cli.processes import ready_state, spawn_worker, stop_process, wait_until_ready
from stream.kafka.broker import create_topics, free_port
from stream.kafka.clients import EventPublisher
from tests.test_integration.conftest import isolated_settings, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


USERS = 120


def _events(start, stop):
    """Phase one: every user touches popular items p0..p29 (so they top any popularity ranking)."""
    return [{"user_id": f"f{n % USERS}", "item_id": f"p{(n // USERS + n) % 30}", "type": "click",
             "ts": 1_700_000_000 + n, "event_id": f"f{n}"} for n in range(start, stop)]


def _lists_by_event_id(bootstrap, topic, wanted, timeout):
    found = read_topic(bootstrap, topic, lambda got: wanted <= {v.get("event_id") for _, v in got}, timeout)
    return {v["event_id"]: [entry["item_id"] for entry in v["items"]] for _, v in found if v.get("event_id") in wanted}


def _wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


@pytest.mark.parametrize("mode", ["handoff", "replica"])
def test_two_workers_split_the_partitions_and_the_survivor_takes_over(kafka_bootstrap, tmp_path, mode):
    """``handoff``: each learns its partitions, users move through the shared folder.
    ``replica`` (STREAMREC_LEARN_SCOPE=all): each learns every event, answers only its partitions."""
    base = isolated_settings(kafka_bootstrap, "pair", partitions=4, snapshot_interval_s=1.0, encoder_poll_s=3600.0,
        handoff_dir=str(tmp_path / "handoff") if mode == "handoff" else "",
        learn_scope="all" if mode == "replica" else "partitions")
    create_topics(base.kafka.bootstrap_servers, base.topic_specs())
    a = base.replace(metrics_port=free_port(), data_dir=str(tmp_path / "a"))
    b = base.replace(metrics_port=free_port(), data_dir=str(tmp_path / "b"))
    logs = {name: open(tmp_path / f"{name}.log", "ab") for name in "ab"}
    worker_a = spawn_worker(a, logs["a"])
    worker_b = None
    try:
        alone = wait_until_ready(a, worker_a, tmp_path / "a.log")["assigned_partitions"]
        worker_b = spawn_worker(b, logs["b"])
        wait_until_ready(b, worker_b, tmp_path / "b.log")

        def split():
            sa, sb = ready_state(a), ready_state(b)
            if sa and sb and sa["assigned_partitions"] + sb["assigned_partitions"] == alone:
                return sa["assigned_partitions"], sb["assigned_partitions"]
            return None

        share_a, share_b = _wait_for(split, 60, "the group to split the partitions")
        assert share_a > 0 and share_b > 0

        first = _events(0, 2_400)  # 20 events per user
        with EventPublisher(a.kafka.bootstrap_servers, a.topics.events, batch_events=50) as publisher:
            publisher.replay(first)
        copies = 1 if mode == "handoff" else 2
        _wait_for(lambda: (ready_state(a) or {}).get("events_learned", 0)
                  + (ready_state(b) or {}).get("events_learned", 0) >= copies * len(first), 60, "both to learn")
        time.sleep(1.0)  # anything learned twice would show now
        learned_a, learned_b = ready_state(a)["events_learned"], ready_state(b)["events_learned"]
        if mode == "handoff":
            assert learned_a + learned_b == len(first)  # each event learned by exactly one of them
            assert learned_a > 0 and learned_b > 0
        else:
            assert learned_a == learned_b == len(first)  # each learns every event, once
        _wait_for(lambda: (ready_state(b) or {}).get("events_in_snapshot") == learned_b, 30,
                  "a snapshot of b that covers the first phase")

        worker_b.send_signal(signal.SIGKILL)
        worker_b.wait(10)
        _wait_for(lambda: (ready_state(a) or {}).get("assigned_partitions") == alone, 60,
                  "the survivor to take every partition")

        second = [{"user_id": f"f{u}", "item_id": f"new{u}", "type": "click", "ts": 1_800_000_000 + u,
                   "event_id": f"g{u}"} for u in range(USERS)]
        with EventPublisher(a.kafka.bootstrap_servers, a.topics.events, batch_events=50) as publisher:
            publisher.replay(second)
        wanted = {e["event_id"] for e in second}
        lists = _lists_by_event_id(a.kafka.bootstrap_servers, a.topics.recommendations, wanted, 60)
        assert set(lists) == wanted, f"{len(wanted - set(lists))} users' last events have no list"
        touched = {}
        for event in first + second:
            touched.setdefault(event["user_id"], set()).add(event["item_id"])
        repeats = {e["user_id"]: touched[e["user_id"]] & set(lists[e["event_id"]]) for e in second}
        assert not any(repeats.values()), f"recommended what users had seen: {repeats}"
        assert worker_a.poll() is None
    finally:
        stop_process(worker_a)
        if worker_b is not None:
            stop_process(worker_b)
        for log in logs.values():
            log.close()
