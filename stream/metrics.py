"""The worker's domain metrics: one object built on an injected registry.

Modelled on faust's ``FaustMetrics.create``: tests pass a fresh
``CollectorRegistry``; processes pass the one their ``/metrics`` page serves.
Names follow design.md (prefix ``streamrec_``, base units, ``_total`` counters).
Label values are bounded: event types, DLQ reasons and triggers are fixed sets.
"""
from __future__ import annotations

from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stream.schema import DLQ_REASONS, EVENT_TYPES

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000)


class WorkerMetrics(NamedTuple):
    events_processed: Counter
    messages_processed: Counter
    events_dlq: Counter
    recommendations_published: Counter
    event_to_recommendation: Histogram
    batch_processing: Histogram
    batch_wait: Histogram
    batch_size: Histogram
    state_users: Gauge
    state_items: Gauge
    prequential_hit_rate: Gauge
    prequential_evaluated: Gauge
    encoder_version: Gauge
    encoder_swaps: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry, prefix: str = "streamrec") -> "WorkerMetrics":
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
                "Share of events whose item was in the last list served to that user",
                ["k", "window"], registry=registry),
            prequential_evaluated=Gauge(f"{prefix}_prequential_evaluated_events",
                                        "Events scored against a previously served list", registry=registry),
            encoder_version=Gauge(f"{prefix}_encoder_version", "Encoder version being served (0 = none)",
                                  registry=registry),
            encoder_swaps=Counter(f"{prefix}_encoder_swaps", "Encoder announcements handled, by result",
                                  ["result"], registry=registry),
        )
        # Touch every bounded label so each series exists (and PromQL returns data) from the start.
        for kind in sorted(EVENT_TYPES):
            metrics.events_processed.labels(kind)
        for reason in DLQ_REASONS:
            metrics.events_dlq.labels(reason)
        for result in ("swapped", "rejected", "stale"):
            metrics.encoder_swaps.labels(result)
        for trigger in ("push", "request"):
            metrics.recommendations_published.labels(trigger)
        return metrics
