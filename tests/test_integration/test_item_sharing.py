"""Two workers with ``STREAMREC_LEARN_SCOPE=shared`` (and the default self-tuning engine): item knowledge
crosses workers through Kafka.

Each worker learns its own partitions and publishes what they taught the item-level models
(``item-deltas``); the other applies it. An item made popular by users of one partition
reaches the lists of users on every partition within seconds, and a worker killed with
``-9`` and restarted leaves every worker's item-level state holding each event exactly once.
"""
from __future__ import annotations

import signal
import time

import pytest

from stream.cli.processes import ready_state, spawn_worker, stop_process, wait_until_ready
from stream.kafka.broker import create_topics, free_port
from stream.kafka.clients import EventPublisher
from stream.wire.partitioner import partition_for
from tests.test_integration.conftest import isolated_settings, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

PARTITIONS = 4


def _wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def _users_of(partition, count, prefix):
    out, n = [], 0
    while len(out) < count:
        user = f"{prefix}{n}"
        if partition_for(user.encode(), PARTITIONS) == partition:
            out.append(user)
        n += 1
    return out


def _pair(kafka_bootstrap, tmp_path):
    base = isolated_settings(kafka_bootstrap, "share", partitions=PARTITIONS, snapshot_interval_s=1.0,
        encoder_poll_s=3600.0, learn_scope="shared")  # self-tuning on, as by default
    create_topics(base.kafka.bootstrap_servers, base.topic_specs())
    a = base.replace(metrics_port=free_port(), data_dir=str(tmp_path / "a"))
    b = base.replace(metrics_port=free_port(), data_dir=str(tmp_path / "b"))
    return base, a, b


def _start_both(a, b, tmp_path):
    logs = {name: open(tmp_path / f"{name}.log", "ab") for name in "ab"}
    worker_a = spawn_worker(a, logs["a"])
    alone = wait_until_ready(a, worker_a, tmp_path / "a.log")["assigned_partitions"]
    worker_b = spawn_worker(b, logs["b"])
    wait_until_ready(b, worker_b, tmp_path / "b.log")

    def split():
        sa, sb = ready_state(a), ready_state(b)
        return sa and sb and sa["assigned_partitions"] + sb["assigned_partitions"] == alone \
            and sa["assigned_partitions"] > 0 and sb["assigned_partitions"] > 0

    _wait_for(split, 60, "the group to split the partitions")
    return worker_a, worker_b, logs


def _background(n_events):
    """Every partition's users touch items bg0..bg29."""
    return [{"user_id": f"bg{n % 80}", "item_id": f"bg{(n // 80 + n) % 30}", "type": "click",
             "ts": 1_700_000_000 + n, "event_id": f"bg{n}"} for n in range(n_events)]


def test_an_item_learned_on_one_partition_rises_on_every_other_within_seconds(kafka_bootstrap, tmp_path):
    base, a, b = _pair(kafka_bootstrap, tmp_path)
    worker_a, worker_b, _ = _start_both(a, b, tmp_path)
    try:
        with EventPublisher(base.kafka.bootstrap_servers, base.topics.events, batch_events=50) as publisher:
            publisher.replay(_background(1_600))
        # "hot" is touched only by users of partition 0: only the worker owning it learns it first-hand
        hot = [{"user_id": user, "item_id": "hot", "type": "click", "ts": 1_700_100_000 + n, "event_id": f"hot{n}"}
               for n, user in enumerate(_users_of(0, 300, "h"))]
        probes = {p: _users_of(p, 1, f"probe{p}-")[0] for p in range(1, PARTITIONS)}
        started = time.monotonic()
        with EventPublisher(base.kafka.bootstrap_servers, base.topics.events, batch_events=50) as publisher:
            publisher.replay(hot)
        _wait_for(lambda: (ready_state(a) or {}).get("events_shared_in", 0)
                  + (ready_state(b) or {}).get("events_shared_in", 0) >= 1, 30, "a delta to cross")

        # every other partition's users (some on the other worker) now get "hot" in their lists
        def hot_everywhere():
            tick = f"{time.monotonic():.3f}"
            events = [{"user_id": user, "item_id": "bg0", "type": "click", "ts": 1_700_200_000,
                       "event_id": f"{user}-{tick}"} for user in probes.values()]
            with EventPublisher(base.kafka.bootstrap_servers, base.topics.events) as publisher:
                publisher.replay(events)
            wanted = {e["event_id"] for e in events}
            found = read_topic(base.kafka.bootstrap_servers, base.topics.recommendations,
                               lambda got: wanted <= {v.get("event_id") for _, v in got}, 15)
            lists = {v["event_id"]: [entry["item_id"] for entry in v["items"]] for _, v in found
                     if v.get("event_id") in wanted}
            return len(lists) == len(wanted) and all("hot" in items for items in lists.values())

        _wait_for(hot_everywhere, 60, "'hot' in the lists of every other partition's users")
        assert time.monotonic() - started < 30
        assert (ready_state(a) or {}).get("deltas_applied", 0) > 0
        assert (ready_state(b) or {}).get("deltas_applied", 0) > 0
    finally:
        stop_process(worker_a)
        stop_process(worker_b)


def test_a_killed_workers_deltas_are_neither_lost_nor_applied_twice(kafka_bootstrap, tmp_path):
    base, a, b = _pair(kafka_bootstrap, tmp_path)
    worker_a, worker_b, logs = _start_both(a, b, tmp_path)
    try:
        first = _background(2_000)
        with EventPublisher(base.kafka.bootstrap_servers, base.topics.events, batch_events=50) as publisher:
            publisher.replay(first)
        _wait_for(lambda: all((ready_state(s) or {}).get("item_events") == len(first) for s in (a, b)), 60,
                  "both workers' item models to hold every event once")
        time.sleep(0.5)  # b goes on publishing and snapshotting; kill it wherever it is
        worker_b.send_signal(signal.SIGKILL)
        worker_b.wait(10)
        second = [{"user_id": f"bg{n % 80}", "item_id": f"late{n % 7}", "type": "click", "ts": 1_800_000_000 + n,
                   "event_id": f"late{n}"} for n in range(800)]
        with EventPublisher(base.kafka.bootstrap_servers, base.topics.events, batch_events=50) as publisher:
            publisher.replay(second)
        worker_b = spawn_worker(b, logs["b"])
        wait_until_ready(b, worker_b, tmp_path / "b.log", timeout=90)
        total = len(first) + len(second)
        _wait_for(lambda: all((ready_state(s) or {}).get("item_events") == total for s in (a, b)), 90,
                  "both workers' item models to hold every event of both phases once")
        time.sleep(3.0)  # anything applied twice would show now
        states = [ready_state(s) for s in (a, b)]
        assert [s["item_events"] for s in states] == [total, total], states
    finally:
        stop_process(worker_a)
        stop_process(worker_b)
