"""The metrics objects (stream.worker.metrics, stream.trainer.metrics, the demo's) on fresh registries:
names, labels, and how snapshots become gauges and counters."""
from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry

from stream.cli.demo import DemoMetrics
from stream.observability import serve_metrics
from stream.trainer.metrics import TrainerMetrics
from stream.worker.metrics import WorkerMetrics, record_blend, record_prequential, record_tuning, update_consumer_lag
from stream.worker.progress import TopicPartition


def _snapshot(step=1, drift=0, resets=0, lr=0.05):
    return {"step": step, "policy": "thompson", "reward_rate": 0.25, "drift_events": drift,
            "models": {"mf": {"learning_rate": lr, "resets": resets,
                              "arms": {"x0.5": {"probability": 0.2, "learning_rate": lr / 2, "reward": 0.1},
                                       "x1": {"probability": 0.7, "learning_rate": lr, "reward": 0.3},
                                       "x2": {"probability": 0.1, "learning_rate": lr * 2, "reward": 0.05}}}},
            "strategies": {"weights": {"popularity": 0.3, "next_item": 0.7},
                           "probabilities": {"popularity": 0.4, "next_item": 0.6}}}


def test_record_tuning_sets_every_tuner_metric():
    registry = CollectorRegistry()
    metrics = WorkerMetrics.create(registry)
    record_tuning(metrics, _snapshot())
    get = registry.get_sample_value
    assert get("streamrec_tuner_learning_rate", {"model": "mf"}) == 0.05
    assert get("streamrec_tuner_arm_probability", {"decision": "mf", "arm": "x1"}) == 0.7
    assert get("streamrec_tuner_arm_probability", {"decision": "strategies", "arm": "popularity"}) == 0.4
    assert get("streamrec_tuner_arm_reward", {"model": "mf", "arm": "x0.5"}) == 0.1
    assert get("streamrec_tuner_strategy_weight", {"strategy": "next_item"}) == 0.7
    assert get("streamrec_blend_strategy_weight", {"strategy": "next_item"}) == 0.7
    assert get("streamrec_tuner_strategy_probability", {"strategy": "popularity"}) == 0.4
    assert get("streamrec_tuner_reward_rate") == 0.25
    assert get("streamrec_tuner_drift_events_total") == 0
    assert get("streamrec_tuner_resets_total", {"model": "mf"}) == 0  # the series exists before any reset


def test_record_tuning_turns_cumulative_counts_into_increments():
    registry = CollectorRegistry()
    metrics = WorkerMetrics.create(registry)
    get = registry.get_sample_value
    for drift, resets in ((1, 0), (1, 0), (3, 2), (3, 2)):
        record_tuning(metrics, _snapshot(drift=drift, resets=resets))
    assert get("streamrec_tuner_drift_events_total") == 3
    assert get("streamrec_tuner_resets_total", {"model": "mf"}) == 2
    record_tuning(metrics, _snapshot(drift=1))  # the tuner restarted and counts from zero again
    assert get("streamrec_tuner_drift_events_total") == 4


def test_record_tuning_leaves_missing_parts_alone():
    registry = CollectorRegistry()
    metrics = WorkerMetrics.create(registry)
    record_tuning(metrics, _snapshot(lr=0.01))
    record_tuning(metrics, {"step": 2})
    assert registry.get_sample_value("streamrec_tuner_learning_rate", {"model": "mf"}) == 0.01


def test_record_prequential_exports_hr_and_ndcg_overall_and_recent():
    from online.prequential import PrequentialStats

    stats = PrequentialStats(k=3, window=2)
    for served, item in ((["a", "b", "c"], "b"), (["a", "b", "c"], "z"), (["a", "b", "c"], "a")):
        stats.record(served, item)
    registry = CollectorRegistry()
    metrics = WorkerMetrics.create(registry)
    record_prequential(metrics, stats.snapshot(), 3)
    get = registry.get_sample_value
    assert get("streamrec_prequential_hit_rate", {"k": "3", "window": "all"}) == pytest.approx(2 / 3)
    assert get("streamrec_prequential_hit_rate", {"k": "3", "window": "recent"}) == 0.5
    assert get("streamrec_prequential_ndcg", {"k": "3", "window": "recent"}) == 0.5
    assert get("streamrec_prequential_ndcg", {"k": "3", "window": "all"}) == pytest.approx((1 / 1.58496 + 1) / 3,
                                                                                          rel=1e-4)
    assert get("streamrec_prequential_evaluated_events") == 3


def test_record_blend_exports_the_blend_weights():
    registry = CollectorRegistry()
    metrics = WorkerMetrics.create(registry)
    record_blend(metrics, None)
    record_blend(metrics, SimpleNamespace(weights={"popularity": 0.25, "cooccurrence": 0.75}))
    assert registry.get_sample_value("streamrec_blend_strategy_weight", {"strategy": "cooccurrence"}) == 0.75


def test_setting_the_encoder_version_stamps_its_load_time():
    registry = CollectorRegistry()
    metrics = WorkerMetrics.create(registry)
    assert registry.get_sample_value("streamrec_encoder_loaded_timestamp_seconds") == 0
    before = time.time()
    metrics.encoder_version.set(4)
    assert registry.get_sample_value("streamrec_encoder_version") == 4
    assert before <= registry.get_sample_value("streamrec_encoder_loaded_timestamp_seconds") <= time.time()


#: design.md's metric names and the labels it gives them; scripts outside the project read these.
DESIGN_METRICS = {
    "streamrec_events_processed_total": None, "streamrec_events_dlq_total": {"reason"},
    "streamrec_recommendations_published_total": None, "streamrec_event_to_recommendation_seconds_bucket": None,
    "streamrec_tuner_learning_rate": {"model"}, "streamrec_tuner_strategy_weight": {"strategy"},
    "streamrec_tuner_arm_probability": {"decision", "arm"}, "streamrec_prequential_hit_rate": {"k"},
    "streamrec_encoder_version": set(), "streamrec_encoder_age_seconds": set(),
}
#: the ones design.md names whose labels must be exactly those (the others may carry more)
EXACT_LABELS = {"streamrec_tuner_strategy_weight", "streamrec_tuner_arm_probability", "streamrec_encoder_age_seconds",
                "streamrec_encoder_version"}


def test_every_metric_design_md_names_is_exported_with_its_labels():
    from online.prequential import PrequentialStats

    registry = CollectorRegistry()
    metrics = WorkerMetrics.create(registry)
    record_tuning(metrics, _snapshot())
    record_prequential(metrics, PrequentialStats(k=10).snapshot(), 10)
    metrics.event_to_recommendation.observe(0.01)
    labels: dict[str, list[set[str]]] = {}
    for family in registry.collect():
        for sample in family.samples:
            labels.setdefault(sample.name, []).append(set(sample.labels) - {"le"})
    for name, wanted in DESIGN_METRICS.items():
        assert name in labels, f"{name} is not exported"
        if wanted is None:
            continue
        for found in labels[name]:
            assert found == wanted if name in EXACT_LABELS else wanted <= found, f"{name}{sorted(found)}"


def test_the_encoder_age_counts_from_when_the_served_version_was_trained_else_from_its_load():
    from stream.worker.metrics import record_encoder_swap

    registry = CollectorRegistry()
    metrics = WorkerMetrics.create(registry)
    get = registry.get_sample_value
    assert math.isnan(get("streamrec_encoder_age_seconds"))  # no version served yet
    record_encoder_swap(metrics, 3, trained_at=time.time() - 100)
    assert get("streamrec_encoder_version") == 3
    assert 100 <= get("streamrec_encoder_age_seconds") < 110
    assert get("streamrec_encoder_loaded_timestamp_seconds") >= time.time() - 10  # still stamps the load
    record_encoder_swap(metrics, 4, trained_at=None)  # a checkpoint that records no time
    assert 0 <= get("streamrec_encoder_age_seconds") < 10


class _TP(SimpleNamespace):
    def __hash__(self):
        return hash((self.topic, self.partition))


def test_consumer_lag_is_high_watermark_minus_committed_and_forgets_revoked_partitions():
    tp0, tp1, tp2 = _TP(topic="events", partition=0), _TP(topic="events", partition=1), _TP(topic="events", partition=2)
    highwater = {tp0: 120, tp1: 7, tp2: None}
    consumer = SimpleNamespace(assignment=lambda: {tp0, tp1, tp2}, highwater=lambda tp: highwater[tp],
                               _committed_offset={tp0: 100})
    app = SimpleNamespace(_consumer=consumer, consumer=consumer, monitor=SimpleNamespace())
    registry = CollectorRegistry()
    metrics = WorkerMetrics.create(registry)
    exported: set = set()
    update_consumer_lag(app, metrics.consumer_lag, exported)
    get = registry.get_sample_value
    assert get("streamrec_consumer_lag", {"topic": "events", "partition": "0"}) == 20
    assert get("streamrec_consumer_lag", {"topic": "events", "partition": "1"}) == 7  # nothing committed yet
    assert get("streamrec_consumer_lag", {"topic": "events", "partition": "2"}) is None  # no fetch response yet
    consumer.assignment = lambda: {tp1}
    update_consumer_lag(app, metrics.consumer_lag, exported)
    assert get("streamrec_consumer_lag", {"topic": "events", "partition": "0"}) is None
    update_consumer_lag(SimpleNamespace(_consumer=None), metrics.consumer_lag, exported)  # not started: no-op


def test_consumer_lag_counts_from_what_was_processed_when_that_is_ahead_of_the_last_commit():
    tp0 = _TP(topic="events", partition=0)
    consumer = SimpleNamespace(assignment=lambda: {tp0}, highwater=lambda tp: 120, _committed_offset={tp0: 100})
    app = SimpleNamespace(_consumer=consumer, consumer=consumer, monitor=SimpleNamespace())
    registry = CollectorRegistry()
    metrics = WorkerMetrics.create(registry)
    update_consumer_lag(app, metrics.consumer_lag, set(), {TopicPartition("events", 0): 118})  # commits wait for the snapshot
    assert registry.get_sample_value("streamrec_consumer_lag", {"topic": "events", "partition": "0"}) == 2


def test_trainer_and_demo_metrics_have_the_documented_names():
    registry = CollectorRegistry()
    trainer = TrainerMetrics.create(registry)
    trainer.record_epoch(SimpleNamespace(loss=2.5, sequences=300, sequences_per_s=1500.0))
    trainer.checkpoints.inc()
    trainer.encoder_published.set(1.7e9)
    get = registry.get_sample_value
    assert get("streamrec_trainer_training_loss") == 2.5
    assert get("streamrec_trainer_sequences_trained_total") == 300
    assert get("streamrec_trainer_sequences_per_second") == 1500
    assert get("streamrec_trainer_checkpoints_total") == 1
    assert get("streamrec_encoder_published_timestamp_seconds") == 1.7e9
    assert get("streamrec_trainer_events_consumed_total") == 0
    demo_registry = CollectorRegistry()
    demo = DemoMetrics.create(demo_registry)
    demo.list_latency.observe(0.02)
    assert demo_registry.get_sample_value("streamrec_demo_list_latency_seconds_count") == 1
    assert demo_registry.get_sample_value("process_cpu_seconds_total") is not None


def test_serve_metrics_answers_metrics_and_health():
    registry = CollectorRegistry()
    TrainerMetrics.create(registry)
    ready = {"now": False}
    server, base = serve_metrics(registry, "127.0.0.1", 0, ready=lambda: ready["now"])
    try:
        body = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()
        assert "streamrec_trainer_checkpoints_total" in body
        assert json.loads(urllib.request.urlopen(f"{base}/health/live", timeout=5).read())["status"] == "live"
        with pytest.raises(urllib.error.HTTPError) as not_ready:
            urllib.request.urlopen(f"{base}/health/ready", timeout=5)
        assert not_ready.value.code == 503
        ready["now"] = True
        assert json.loads(urllib.request.urlopen(f"{base}/health/ready", timeout=5).read())["status"] == "ready"
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{base}/nothing", timeout=5)
    finally:
        server.shutdown()
        server.server_close()


def test_delivery_counts_are_exported_as_counters_that_only_grow():
    from stream.worker.metrics import record_delivery

    registry = CollectorRegistry()
    metrics = WorkerMetrics.create(registry)
    processor = SimpleNamespace(duplicates=3, replayed=5, replicated=0)
    keeper = SimpleNamespace(snapshots_written=2, failures=1, last_pause_seconds=0.004, last_written=1_700_000_000.0)
    record_delivery(metrics, processor, keeper)
    processor.duplicates = 4
    record_delivery(metrics, processor, keeper)
    get = registry.get_sample_value
    assert get("streamrec_events_duplicate_total") == 4
    assert get("streamrec_events_replayed_total") == 5
    assert get("streamrec_snapshots_total", {"result": "written"}) == 2
    assert get("streamrec_snapshots_total", {"result": "failed"}) == 1
    assert get("streamrec_snapshot_pause_seconds") == 0.004
