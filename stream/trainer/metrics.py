"""Prometheus metrics of the streaming trainer (``streamrec trainer``), on an injected registry.

Served by ``StreamTrainer.serve_metrics`` (``stream.observability.serve_metrics``).
"""
from __future__ import annotations

from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from stream.observability import REFRESH_BUCKETS


class TrainerMetrics(NamedTuple):
    events_consumed: Counter
    messages_consumed: Counter
    undecodable_batches: Counter
    buffered_users: Gauge
    training_loss: Gauge
    sequences_trained: Counter
    sequences_per_second: Gauge
    refresh_duration: Histogram
    checkpoints: Counter
    encoder_version: Gauge
    encoder_published: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry, prefix: str = "streamrec") -> TrainerMetrics:
        metrics = cls(
            events_consumed=Counter(f"{prefix}_trainer_events_consumed", "Valid events the trainer buffered",
                                    registry=registry),
            messages_consumed=Counter(f"{prefix}_trainer_messages_consumed",
                                      "Kafka messages the trainer read from the events topic", registry=registry),
            undecodable_batches=Counter(f"{prefix}_trainer_undecodable_batches",
                                        "Record batches of events the trainer could not decode and skipped "
                                        "(the worker dead-letters them)", registry=registry),
            buffered_users=Gauge(f"{prefix}_trainer_buffered_users", "Users whose sequences the trainer holds",
                                 registry=registry),
            training_loss=Gauge(f"{prefix}_trainer_training_loss", "Mean training loss of the last epoch",
                                registry=registry),
            sequences_trained=Counter(f"{prefix}_trainer_sequences_trained",
                                      "Training sequences processed (all epochs)", registry=registry),
            sequences_per_second=Gauge(f"{prefix}_trainer_sequences_per_second",
                                       "Training throughput of the last epoch", registry=registry),
            refresh_duration=Histogram(f"{prefix}_trainer_refresh_duration_seconds",
                                       "Time to train, write and announce one encoder version",
                                       buckets=REFRESH_BUCKETS, registry=registry),
            checkpoints=Counter(f"{prefix}_trainer_checkpoints", "Encoder versions written and announced",
                                registry=registry),
            encoder_version=Gauge(f"{prefix}_trainer_encoder_version", "Last encoder version published (0 = none)",
                                  registry=registry),
            encoder_published=Gauge(f"{prefix}_encoder_published_timestamp_seconds",
                                    "When the last encoder version was announced (Unix time; 0 = none yet)",
                                    registry=registry),
        )
        ProcessCollector(registry=registry)
        return metrics

    def record_epoch(self, report: Any) -> None:
        """Export a ``models.trainer.EpochReport``."""
        self.training_loss.set(report.loss)
        self.sequences_trained.inc(report.sequences)
        self.sequences_per_second.set(report.sequences_per_s)
