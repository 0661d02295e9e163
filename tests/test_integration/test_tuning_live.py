"""A worker with STREAMREC_TUNER tunes itself on a live stream, and says so: the ``tuning`` topic,
the tuner's gauges and the ``arm`` field of every list."""
from __future__ import annotations

import pytest

from stream.cli.datasets import generate
from stream.cli.scrape import scrape, total
from stream.kafka.broker import free_port
from stream.kafka.clients import EventPublisher
from tests.test_integration.conftest import isolated_settings, read_topic, worker_process

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def _read(bootstrap, topic, want, timeout):
    return [value for _, value in read_topic(bootstrap, topic, lambda got: want([v for _, v in got]), timeout)]


def test_a_tuned_worker_publishes_its_tuning_and_labels_each_list_with_its_arms(kafka_bootstrap, tmp_path):
    settings = isolated_settings(kafka_bootstrap, "tuned", partitions=2, metrics_port=free_port(),
        data_dir=str(tmp_path / "worker"), tuner=True, tuner_publish_s=1.0, encoder_poll_s=3600.0)
    url = f"http://{settings.metrics.host}:{settings.metrics.port}/metrics"
    events = generate(6_000, n_users=200, n_items=300, seed=5)
    with worker_process(settings, tmp_path / "worker.log"):
        with EventPublisher(settings.kafka.bootstrap_servers, settings.topics.events, batch_events=20) as publisher:
            publisher.replay(events, rate=3_000)
        snapshots = _read(settings.kafka.bootstrap_servers, settings.topics.tuning,
                          lambda found: any(s["step"] >= len(events) for s in found), timeout=90)
        page = scrape(url)
    assert snapshots, "nothing on the tuning topic"
    last = max(snapshots, key=lambda s: s["step"])
    assert last["step"] == len(events) and last["policy"] == "thompson"
    arms = last["models"]["mf"]["arms"]
    assert set(arms) == {"x0.5", "x1", "x2"}
    assert sum(arm["probability"] for arm in arms.values()) == pytest.approx(1.0)
    assert sum(last["strategies"]["weights"].values()) == pytest.approx(1.0)
    assert total(page, "streamrec_tuner_learning_rate", model="mf") == pytest.approx(last["models"]["mf"]["learning_rate"])
    assert total(page, "streamrec_tuner_arm_probability", decision="mf") == pytest.approx(1.0, abs=1e-6)
    assert total(page, "streamrec_tuner_arm_probability", decision="strategies") == pytest.approx(1.0, abs=1e-6)
    assert total(page, "streamrec_tuner_strategy_weight") == pytest.approx(1.0)
    assert total(page, "streamrec_blend_strategy_weight") == pytest.approx(1.0)
    lists = _read(settings.kafka.bootstrap_servers, settings.topics.recommendations, lambda found: len(found) >= 50, 30)
    assert lists and all(listing["arm"] != "default" and listing["strategy"] == "blend" for listing in lists)
