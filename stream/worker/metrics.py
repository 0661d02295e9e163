"""Prometheus metrics of the worker (``streamrec worker``): one object, built on an injected registry.

Modelled on faust's ``FaustMetrics.create``: tests pass a fresh ``CollectorRegistry``;
the worker passes the one its ``/metrics`` page serves (faust's own sensor adds
``streamrec_faust_*``). Names follow design.md (prefix ``streamrec_``, base units, ``_total``
counters). Label values are bounded: event types, DLQ reasons, triggers, strategies, tuner arms
and models are small fixed sets; consumer lag is per assigned partition.

:class:`WorkerMetrics` is filled by :func:`record_tuning`, :func:`record_prequential`,
:func:`record_encoder_swap`, :func:`record_engine_knobs` (the served config's knobs; config swaps are
counted by ``stream.worker.config_handover``) and :func:`install_periodic_metrics` (consumer lag per partition,
blend weights, delivery counts). The trainer's metrics are ``stream.trainer.metrics``; what
every process shares (buckets, the ``/metrics`` server) is ``stream.observability``.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from stream.observability import BATCH_BUCKETS, LATENCY_BUCKETS, WORKER_SHARE_BUCKETS
from stream.wire.schema import DLQ_REASONS, EVENT_TYPES
from stream.worker.progress import TopicPartition

log = logging.getLogger(__name__)


class _VersionGauge(Gauge):
    """A gauge whose ``set(version)`` with a version >= 1 also stamps a companion timestamp gauge.

    ``encoder_version.set(v)`` is how the worker reports a swap (``stream.worker.encoder_handover``), so the
    encoder's load time (``streamrec_encoder_loaded_timestamp_seconds``; its age is
    ``time() - that``) needs no second call at the swap site.
    """

    stamp: Gauge | None = None

    def set(self, value: float) -> None:
        super().set(value)
        if self.stamp is not None and value >= 1:
            self.stamp.set_to_current_time()


class _AgeGauge(Gauge):
    """A gauge of seconds since a moment, computed when scraped; NaN until :meth:`count_from`."""

    def count_from(self, moment: float) -> None:
        self.set_function(lambda: max(0.0, time.time() - moment))  # clocks of two hosts: never below 0


#: The ``decision`` label of the tuner's strategy-weight moves (``streamrec_tuner_arm_probability``);
#: its other decisions are named after the model whose learning rate they tune.
STRATEGIES_DECISION = "strategies"


class WorkerMetrics(NamedTuple):
    events_processed: Counter
    messages_processed: Counter
    events_dlq: Counter
    recommendations_published: Counter
    event_to_recommendation: Histogram
    worker_share: Histogram
    producer_wait: Histogram
    gc_pauses: Histogram
    batch_processing: Histogram
    batch_wait: Histogram
    batch_size: Histogram
    state_users: Gauge
    state_items: Gauge
    prequential_hit_rate: Gauge
    prequential_evaluated: Gauge
    encoder_version: Gauge
    encoder_swaps: Counter
    prequential_ndcg: Gauge
    encoder_loaded_timestamp: Gauge
    consumer_lag: Gauge
    tuner_arm_probability: Gauge
    tuner_arm_reward: Gauge
    tuner_learning_rate: Gauge
    blend_strategy_weight: Gauge
    tuner_strategy_probability: Gauge
    tuner_reward_rate: Gauge
    tuner_drift_events: Counter
    tuner_resets: Counter
    events_duplicate: Counter
    events_replayed: Counter
    events_replicated: Counter
    snapshots: Counter
    snapshot_pause: Gauge
    snapshot_timestamp: Gauge
    tuner_feedback_events: Counter
    tuner_strategy_weight: Gauge
    encoder_age: _AgeGauge
    encoder_shadow_hit_rate: Gauge
    encoder_shadow_hits: Gauge
    encoder_gate: Gauge
    encoder_gate_z: Gauge
    config_swaps: Counter
    config_version: Gauge
    engine_knob: Gauge
    #: last cumulative counts seen in tuner snapshots (``record_tuning`` turns them into increments)
    seen: dict

    @classmethod
    def create(cls, registry: CollectorRegistry, prefix: str = "streamrec") -> WorkerMetrics:
        loaded = Gauge(f"{prefix}_encoder_loaded_timestamp_seconds",
                       "When the served encoder version was loaded (Unix time; 0 = none yet)", registry=registry)
        version = _VersionGauge(f"{prefix}_encoder_version", "Encoder version being served (0 = none)",
                                registry=registry)
        version.stamp = loaded
        age = _AgeGauge(f"{prefix}_encoder_age_seconds",
                        "Seconds since the encoder version served was trained (its checkpoint's write time on the "
                        "trainer), or since this worker loaded it if the checkpoint records no time; NaN while "
                        "no version is served", registry=registry)
        age.set_function(lambda: math.nan)
        metrics = cls(
            events_processed=Counter(f"{prefix}_events_processed", "Valid events processed, by type",
                                     ["type"], registry=registry),
            messages_processed=Counter(f"{prefix}_messages_processed",
                                       "Kafka messages read from the events topic", registry=registry),
            events_dlq=Counter(f"{prefix}_events_dlq", "Bad input sent to the dead-letter topic, by reason",
                               ["reason"], registry=registry),
            recommendations_published=Counter(
                f"{prefix}_recommendations_published", "Recommendation lists published, by trigger",
                ["trigger"], registry=registry),
            event_to_recommendation=Histogram(
                f"{prefix}_event_to_recommendation_seconds",
                "From the triggering message's broker timestamp to the list being published",
                buckets=LATENCY_BUCKETS, registry=registry),
            worker_share=Histogram(
                f"{prefix}_worker_share_seconds",
                "The worker's own share of a list's latency: from the fetch that received its event to the "
                "micro-batch's lists being built and encoded (the rest is the broker's and the clients')",
                buckets=WORKER_SHARE_BUCKETS, registry=registry),
            producer_wait=Histogram(
                f"{prefix}_producer_wait_seconds",
                "Time a micro-batch's output waits to be handed to the producer (aiokafka takes a partition's "
                "next batch once the broker took the previous one)", buckets=WORKER_SHARE_BUCKETS, registry=registry),
            gc_pauses=Histogram(f"{prefix}_gc_pause_seconds",
                                "Pauses of the garbage collector (the event loop waits), by generation",
                                ["generation"], buckets=WORKER_SHARE_BUCKETS, registry=registry),
            batch_processing=Histogram(f"{prefix}_batch_processing_seconds",
                                       "Time to learn a micro-batch and build its lists",
                                       buckets=LATENCY_BUCKETS, registry=registry),
            batch_wait=Histogram(f"{prefix}_batch_wait_seconds",
                                 "From the oldest message's broker timestamp to the start of its micro-batch",
                                 buckets=LATENCY_BUCKETS, registry=registry),
            batch_size=Histogram(f"{prefix}_batch_size_events", "Events per processed micro-batch",
                                 buckets=BATCH_BUCKETS, registry=registry),
            state_users=Gauge(f"{prefix}_state_users", "Users held in worker memory", registry=registry),
            state_items=Gauge(f"{prefix}_state_items", "Items held in worker memory", registry=registry),
            prequential_hit_rate=Gauge(
                f"{prefix}_prequential_hit_rate",
                "Share of events whose item was in the last list served to that user (HR@k)",
                ["k", "window"], registry=registry),
            prequential_evaluated=Gauge(f"{prefix}_prequential_evaluated_events",
                                        "Events scored against a previously served list", registry=registry),
            encoder_version=version,
            encoder_swaps=Counter(f"{prefix}_encoder_swaps", "Encoder announcements handled, by result",
                                  ["result"], registry=registry),
            prequential_ndcg=Gauge(
                f"{prefix}_prequential_ndcg",
                "NDCG@k of the last list served to each user against the item they touched next",
                ["k", "window"], registry=registry),
            encoder_loaded_timestamp=loaded,
            consumer_lag=Gauge(
                f"{prefix}_consumer_lag",
                "Messages not yet committed: the partition's high watermark minus the group's committed offset",
                ["topic", "partition"], registry=registry),
            tuner_arm_probability=Gauge(
                f"{prefix}_tuner_arm_probability",
                "Probability that the tuner serves each arm of each decision: a model's learning rate "
                "(decision=<model>, arms relative to the champion: x0.5, x1, x2) or the blend weights "
                f"(decision={STRATEGIES_DECISION}, arms: keep, or move weight to <strategy>)",
                ["decision", "arm"], registry=registry),
            tuner_arm_reward=Gauge(f"{prefix}_tuner_arm_reward", "Recent reward rate of each tuner arm",
                                   ["model", "arm"], registry=registry),
            tuner_learning_rate=Gauge(f"{prefix}_tuner_learning_rate", "Learning rate served, per model",
                                      ["model"], registry=registry),
            blend_strategy_weight=Gauge(f"{prefix}_blend_strategy_weight", "Current blend weight of each strategy",
                                        ["strategy"], registry=registry),
            tuner_strategy_probability=Gauge(
                f"{prefix}_tuner_strategy_probability",
                "Probability the tuner gives each strategy (its share of the blend's decisions)",
                ["strategy"], registry=registry),
            tuner_reward_rate=Gauge(f"{prefix}_tuner_reward_rate",
                                    "Recent reward rate of the served configuration", registry=registry),
            tuner_drift_events=Counter(f"{prefix}_tuner_drift_events", "Drifts the tuner detected",
                                       registry=registry),
            tuner_resets=Counter(f"{prefix}_tuner_resets", "Tuner resets (after a drift), per model", ["model"],
                                 registry=registry),
            events_duplicate=Counter(
                f"{prefix}_events_duplicate", "Events not learned again: their event_id was in the dedup window",
                registry=registry),
            events_replayed=Counter(
                f"{prefix}_events_replayed",
                "Messages re-read after a restart or a takeover that the state already held (skipped or only answered)",
                registry=registry),
            events_replicated=Counter(
                f"{prefix}_events_replicated",
                "Events of other workers' partitions learned here (STREAMREC_LEARN_SCOPE=all)", registry=registry),
            snapshots=Counter(f"{prefix}_snapshots", "State snapshots before offset commits, by result",
                              ["result"], registry=registry),
            snapshot_pause=Gauge(f"{prefix}_snapshot_pause_seconds",
                                 "How long learning waited for the last snapshot", registry=registry),
            snapshot_timestamp=Gauge(f"{prefix}_snapshot_timestamp_seconds",
                                     "When the last snapshot was written (Unix time; 0 = none yet)",
                                     registry=registry),
            tuner_feedback_events=Counter(
                f"{prefix}_tuner_feedback_events",
                "Events naming a served list (rec_id) given to the tuner as bandit feedback, by whether it knew "
                "the list", ["result"], registry=registry),
            tuner_strategy_weight=Gauge(
                f"{prefix}_tuner_strategy_weight",
                "Blend weight the tuner gives each strategy (only while the tuner runs; "
                f"{prefix}_blend_strategy_weight is the blend's weight with or without it)",
                ["strategy"], registry=registry),
            encoder_age=age,
            encoder_shadow_hit_rate=Gauge(
                f"{prefix}_encoder_shadow_hit_rate",
                "HR@k of the measured users' lists with the encoder (lists=served: the served ones unless the gate "
                "has the encoder muted) and of the lists the blend would rank them with the encoder weighed 0 "
                "(lists=without_encoder), same users, same moments (online.shadow; "
                "STREAMREC_ENCODER_SHADOW_EVERY)", ["lists"], registry=registry),
            encoder_shadow_hits=Gauge(
                f"{prefix}_encoder_shadow_hits",
                "Of the measured users' events: evaluated, hits owed to the encoder (in the served list, not "
                "in the list without it), hits lost to it (the other way round)", ["kind"], registry=registry),
            encoder_gate=Gauge(
                f"{prefix}_encoder_gate",
                "1 while the encoder is served, 0 while the gate mutes it because its measured lists lose "
                "significantly more hits than they win (online.shadow.StrategyGate; STREAMREC_ENCODER_GATE_Z)",
                registry=registry),
            encoder_gate_z=Gauge(
                f"{prefix}_encoder_gate_z",
                "McNemar's z of the gate's record of hits owed to and lost to the encoder (below minus "
                "STREAMREC_ENCODER_GATE_Z: muted)", registry=registry),
            config_swaps=Counter(
                f"{prefix}_config_swaps",
                "Engine configs announced by the tuner on config-updates, by result: applied (served from then "
                "on) or refused (unreadable, failed to build or failed its checks; the served config stays)",
                ["result"], registry=registry),
            config_version=Gauge(f"{prefix}_config_version",
                                 "Version of the tuner's config this worker serves (0 = the configured one)",
                                 registry=registry),
            engine_knob=Gauge(f"{prefix}_engine_knob",
                              "Each numeric knob of the engine config served (flat setting names; blend weights "
                              "as weight:<strategy>; booleans 0/1)", ["knob"], registry=registry),
            seen={},
        )
        for result in ("matched", "unknown"):
            metrics.tuner_feedback_events.labels(result)
        for result in ("written", "failed"):
            metrics.snapshots.labels(result)
        metrics.encoder_gate.set(1.0)  # nothing muted until a gate mutes it
        ProcessCollector(registry=registry)
        # Touch every bounded label so each series exists (and PromQL returns data) from the start.
        for kind in sorted(EVENT_TYPES):
            metrics.events_processed.labels(kind)
        for reason in DLQ_REASONS:
            metrics.events_dlq.labels(reason)
        for result in ("swapped", "rejected", "stale"):
            metrics.encoder_swaps.labels(result)
        for trigger in ("push", "request"):
            metrics.recommendations_published.labels(trigger)
        for result in ("applied", "refused"):
            metrics.config_swaps.labels(result)
        return metrics


def record_prequential(metrics: WorkerMetrics, snapshot: Mapping[str, float], k: int) -> None:
    """Export an ``online.prequential.PrequentialStats.snapshot()``: HR@k and NDCG@k, overall and recent."""
    label = str(k)
    metrics.prequential_hit_rate.labels(label, "all").set(snapshot["hr"])
    metrics.prequential_hit_rate.labels(label, "recent").set(snapshot["hr_recent"])
    metrics.prequential_ndcg.labels(label, "all").set(snapshot["ndcg"])
    metrics.prequential_ndcg.labels(label, "recent").set(snapshot.get("ndcg_recent", snapshot["ndcg"]))
    metrics.prequential_evaluated.set(snapshot["evaluated"])


def _count_up(metrics: WorkerMetrics, counter: Counter, key: tuple, total: float) -> None:
    """Advance ``counter`` to a cumulative ``total`` reported by the tuner (a lower total: it restarted)."""
    last = metrics.seen.get(key, 0)
    step = total - last if total >= last else total
    if step > 0:
        counter.inc(step)
    metrics.seen[key] = total


def record_tuning(metrics: WorkerMetrics, snapshot: Mapping[str, Any]) -> None:
    """Set the tuner's gauges and counters from its snapshot dict.

    Shape: ``{"step", "policy", "reward_rate", "drift_events", "models": {name: {"learning_rate",
    "arms": {arm: {"probability", "learning_rate", "reward"}}, "resets"}}, "strategies":
    {"weights": {name: w}, "probabilities": {name: p}}}``; missing parts are left alone.
    ``drift_events`` and ``resets`` are cumulative: the counters grow by the difference.
    Arm probabilities are exported per decision as design.md names them: each model's
    learning-rate arms under ``decision=<model>``, the strategy-weight arms under
    ``decision="strategies"`` (also kept as ``streamrec_tuner_strategy_probability{strategy}``).
    """
    if snapshot.get("reward_rate") is not None:
        metrics.tuner_reward_rate.set(snapshot["reward_rate"])
    if snapshot.get("drift_events") is not None:
        _count_up(metrics, metrics.tuner_drift_events, ("drift",), snapshot["drift_events"])
    for model, state in (snapshot.get("models") or {}).items():
        if state.get("learning_rate") is not None:
            metrics.tuner_learning_rate.labels(model).set(state["learning_rate"])
        for arm, arm_state in (state.get("arms") or {}).items():
            if arm_state.get("probability") is not None:
                metrics.tuner_arm_probability.labels(model, arm).set(arm_state["probability"])
            if arm_state.get("reward") is not None:
                metrics.tuner_arm_reward.labels(model, arm).set(arm_state["reward"])
        _count_up(metrics, metrics.tuner_resets.labels(model), ("resets", model), state.get("resets") or 0)
    strategies = snapshot.get("strategies") or {}
    for name, weight in (strategies.get("weights") or {}).items():
        metrics.blend_strategy_weight.labels(name).set(weight)
        metrics.tuner_strategy_weight.labels(name).set(weight)
    for name, probability in (strategies.get("probabilities") or {}).items():
        metrics.tuner_strategy_probability.labels(name).set(probability)
        metrics.tuner_arm_probability.labels(STRATEGIES_DECISION, name).set(probability)


def record_engine_knobs(metrics: WorkerMetrics, knobs: Mapping[str, float]) -> None:
    """Set ``streamrec_engine_knob{knob}`` to the served config's ``knobs`` and drop knobs it no longer has
    (a strategy switched off, an optional knob set to none)."""
    gauge = metrics.engine_knob
    previous = metrics.seen.get(("knobs",), set())
    for name, value in knobs.items():
        gauge.labels(name).set(value)
    for name in previous - set(knobs):
        try:
            gauge.remove(name)
        except KeyError:
            pass
    metrics.seen[("knobs",)] = set(knobs)


def record_encoder_swap(metrics: WorkerMetrics, version: int, trained_at: float | None) -> None:
    """A new encoder version serves: its version, its load time, and the moment its age counts from.

    ``trained_at`` (``models.SwapResult.trained_at``) is when the version was trained; a
    checkpoint that records no time counts from now, the moment it was loaded.
    """
    metrics.encoder_version.set(version)  # also stamps streamrec_encoder_loaded_timestamp_seconds
    metrics.encoder_age.count_from(trained_at if trained_at is not None and trained_at > 0 else time.time())


def update_consumer_lag(app: Any, gauge: Gauge, exported: set,
                        positions: Mapping[TopicPartition, int] | None = None) -> None:
    """Set ``gauge{topic,partition}`` to high watermark minus the next offset to process, per assigned partition.

    ``positions`` (next offset processed per partition, ``PartitionProgress.covered()``)
    is used where it is ahead of the committed offset: with snapshots on, offsets are committed
    only every ``snapshot_interval_s`` (``stream.worker.durability``), and lag measured from commits
    would show the commit cadence, not how far processing is behind.

    Faust's sensor exports both offsets (``streamrec_faust_topic_partition_end_offset`` and
    ``..._offset_commited``), but the end offset only when records arrive; here the high
    watermark comes from the consumer's last fetch response, every call. A partition with no
    commit yet counts from offset 0. Series of partitions no longer assigned are removed
    (``exported`` remembers what was set). On Tansu the high watermark undercounts batched
    topics (notes/pipe-findings.md), so lag reads low there.
    """
    if getattr(app, "_consumer", None) is None:
        return
    consumer = app.consumer
    try:
        assigned = consumer.assignment()
    except Exception:  # not started or rebalancing
        return
    committed = getattr(consumer, "_committed_offset", None)  # faust-streaming 0.11-0.15
    if committed is None:
        committed = getattr(app.monitor, "tp_committed_offsets", None) or {}
    current = set()
    for tp in assigned:
        try:
            high = consumer.highwater(tp)
        except Exception:  # revoked meanwhile, or no fetch response yet
            continue
        if high is None:
            continue
        labels = (tp.topic, str(tp.partition))
        done = committed.get(tp) or 0
        if positions:
            done = max(done, positions.get(TopicPartition(tp.topic, tp.partition), 0))
        gauge.labels(*labels).set(max(0, high - done))
        current.add(labels)
    for labels in exported - current:
        try:
            gauge.remove(*labels)
        except KeyError:
            pass
    exported.clear()
    exported.update(current)


def record_blend(metrics: WorkerMetrics, blend: Any) -> None:
    """Export the blend's current weights (``online.blend.Blend.weights``, normalised) if it runs one."""
    if blend is None:
        return
    for name, weight in blend.weights.items():
        metrics.blend_strategy_weight.labels(name).set(weight)


def record_delivery(metrics: WorkerMetrics, processor: Any, keeper: Any = None) -> None:
    """Export the processor's and the snapshot keeper's cumulative counts (``stream.worker.durability``)."""
    _count_up(metrics, metrics.events_duplicate, ("duplicate",), processor.duplicates)
    _count_up(metrics, metrics.events_replayed, ("replayed",), processor.replayed)
    _count_up(metrics, metrics.events_replicated, ("replicated",), getattr(processor, "replicated", 0))
    _count_up(metrics, metrics.tuner_feedback_events.labels("matched"), ("feedback", "matched"),
              getattr(processor, "feedback_matched", 0))
    _count_up(metrics, metrics.tuner_feedback_events.labels("unknown"), ("feedback", "unknown"),
              getattr(processor, "feedback_unknown", 0))
    if keeper is not None:
        _count_up(metrics, metrics.snapshots.labels("written"), ("snap", "written"), keeper.snapshots_written)
        _count_up(metrics, metrics.snapshots.labels("failed"), ("snap", "failed"), keeper.failures)
        if keeper.last_pause_seconds is not None:
            metrics.snapshot_pause.set(keeper.last_pause_seconds)
        if keeper.last_written is not None:
            metrics.snapshot_timestamp.set(keeper.last_written)


def install_periodic_metrics(app: Any, metrics: WorkerMetrics, processor: Any, interval: float = 1.0,
                             keeper: Any = None) -> None:
    """Register a Faust timer that refreshes consumer lag, the blend weights and the delivery counters.

    (The prequential HR/NDCG gauges are set per micro-batch by ``EventProcessor``.)

    Call once from ``create_app`` before the app starts. ``processor.engine`` (read at every
    tick: a restore may replace it) is the worker's ``online.engine.StreamingRecommender``.
    """
    exported: set = set()
    reported: set = set()

    @app.timer(interval, name="streamrec.periodic_metrics")
    async def periodic_metrics() -> None:
        try:
            update_consumer_lag(app, metrics.consumer_lag, exported, processor.progress.covered())
            record_delivery(metrics, processor, keeper)
            record_blend(metrics, getattr(processor.engine, "blend", None))
        except Exception as exc:  # metrics must never stop the worker; say so once per kind of failure
            if repr(exc) not in reported:
                reported.add(repr(exc))
                log.exception("periodic metrics failed: %r", exc)
