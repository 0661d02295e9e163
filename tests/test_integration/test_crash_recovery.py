"""kill -9 a worker mid-stream and start it again: nothing accepted is lost, the state continues.

Counted exactly: every published event carries an ``event_id`` (some are published
twice, as a retrying producer would), and after the restart the worker must have
learned each distinct event exactly once: the snapshot holds what came before it,
the replay from the committed offsets adds what came after, and the dedup window
drops the copies. Every user's last event must have a list that answers it.
"""
from __future__ import annotations

import signal
import threading
import time

import pytest

from stream.cli.processes import ready_state, spawn_worker, stop_process, wait_until_ready
from stream.kafka.broker import create_topics, free_port
from stream.kafka.clients import EventPublisher
from tests.test_integration.conftest import isolated_settings, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

USERS = 150
EVENTS = 6_000
COPIES_EVERY = 20  # every 20th event is published a second time


def _stream():
    """Events with ids; a copy of every 20th one is published again a little later."""
    out = []
    for n in range(EVENTS):
        event = {"user_id": f"c{n % USERS}", "item_id": f"i{(n * 7 + n // USERS) % 400}", "type": "click",
                 "ts": 1_700_000_000 + n, "event_id": f"e{n}"}
        out.append(event)
        if n % COPIES_EVERY == 0 and n + USERS < EVENTS:
            out.append(dict(event))  # a retry: same id, same content
    return out


def _answered_event_ids(bootstrap: str, topic: str, wanted: set[str], timeout: float) -> set[str]:
    found = read_topic(bootstrap, topic, lambda got: wanted <= {v.get("event_id") for _, v in got}, timeout)
    return {value.get("event_id") for _, value in found} & wanted


def test_a_killed_worker_restarts_from_its_snapshot_and_learns_every_event_exactly_once(
        kafka_bootstrap, tmp_path):
    settings = isolated_settings(kafka_bootstrap, "crash", partitions=4, metrics_port=free_port(),
        data_dir=str(tmp_path / "worker"), snapshot_interval_s=1.0, encoder_poll_s=3600.0)
    create_topics(settings.kafka.bootstrap_servers, settings.topic_specs())
    log_path = tmp_path / "worker.log"
    events = _stream()
    distinct = len({e["event_id"] for e in events})

    log = open(log_path, "ab")
    worker = spawn_worker(settings, log)
    try:
        wait_until_ready(settings, worker, log_path)
        publisher = EventPublisher(settings.kafka.bootstrap_servers, settings.topics.events, batch_events=20)
        sending = threading.Thread(target=publisher.replay, args=(events,), kwargs={"rate": 1_500.0})
        sending.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # mid-stream, once a snapshot holds 1,000 events or more
            body = ready_state(settings) or {}
            if body.get("events_in_snapshot", 0) >= 1_000:
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"no snapshot of 1,000 events after 60 s: {ready_state(settings)}")
        covered = body["events_in_snapshot"]  # (a later snapshot before the kill holds more)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        assert sending.is_alive(), "the stream ended before the kill: raise EVENTS or lower the rate"
        sending.join(60)
        publisher.close()

        worker = spawn_worker(settings, log)
        restored = wait_until_ready(settings, worker, log_path)
        assert restored["events_learned"] >= covered, f"the worker did not start from its snapshot: {restored}"

        deadline = time.monotonic() + 90
        body = restored
        while time.monotonic() < deadline and body.get("events_learned") != distinct:
            time.sleep(0.2)
            body = ready_state(settings) or body
        time.sleep(2.0)  # anything learned twice would show up now
        body = ready_state(settings) or body
        assert body["events_learned"] == distinct, body
        assert body["duplicates_skipped"] > 0, body

        last_of_user = {}
        for event in events:
            last_of_user[event["user_id"]] = event["event_id"]
        wanted = set(last_of_user.values())
        answered = _answered_event_ids(settings.kafka.bootstrap_servers, settings.topics.recommendations, wanted, 60)
        assert answered == wanted, f"{len(wanted - answered)} users' last events have no list"
        assert worker.poll() is None
    finally:
        stop_process(worker)
        log.close()
