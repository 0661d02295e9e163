"""Prometheus metrics of the tuner (``streamrec tuner``), on an injected registry.

Served by ``StreamTuner.serve_metrics`` (``stream.observability.serve_metrics``). What workers do
with the announcements is the worker's ``streamrec_config_swaps_total`` and ``streamrec_config_version``.
"""
from __future__ import annotations

from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector

#: Label values (bounded): a trial's end, a search's outcome.
TRIAL_STATES = ("complete", "pruned", "failed")
SEARCH_RESULTS = ("accepted", "rejected")


class TunerMetrics(NamedTuple):
    trials: Counter
    searches: Counter
    best_gain: Gauge
    serving_hit_rate: Gauge
    cpu_seconds: Counter
    config_version: Gauge
    searching: Gauge
    events_consumed: Counter
    messages_consumed: Counter
    invalid_events: Counter
    undecodable_batches: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry, prefix: str = "streamrec") -> TunerMetrics:
        metrics = cls(
            trials=Counter(f"{prefix}_search_trials", "Trials of the tuner's searches, by how they ended "
                           "(complete, pruned by successive halving, failed)", ["state"], registry=registry),
            searches=Counter(f"{prefix}_search_searches", "Searches the tuner ran, by result: accepted (a winner "
                             "proved its gain on paired evidence and was announced) or rejected", ["result"],
                             registry=registry),
            best_gain=Gauge(f"{prefix}_search_best_gain", "Relative HR@k gain of the last search's best trial over "
                            "the serving config on the same window", registry=registry),
            serving_hit_rate=Gauge(f"{prefix}_search_serving_hit_rate", "HR@k of the serving config on the last "
                                   "search's window", registry=registry),
            cpu_seconds=Counter(f"{prefix}_search_cpu_seconds", "CPU seconds the tuner's searches used",
                                registry=registry),
            config_version=Gauge(f"{prefix}_search_config_version", "Last config version the tuner announced on "
                                 "config-updates (0 = none)", registry=registry),
            searching=Gauge(f"{prefix}_search_running", "1 while a search runs (until its winner is served and "
                            "announced)", registry=registry),
            events_consumed=Counter(f"{prefix}_search_events_consumed", "Valid events the tuner read (impressions and "
                                    "skips are read, not learned)",
                                    registry=registry),
            messages_consumed=Counter(f"{prefix}_search_messages_consumed",
                                      "Kafka messages the tuner read from the events topic", registry=registry),
            invalid_events=Counter(f"{prefix}_search_invalid_events", "Events or messages the tuner skipped as "
                                   "invalid (the worker dead-letters them)", registry=registry),
            undecodable_batches=Counter(f"{prefix}_search_undecodable_batches", "Record batches of events the "
                                        "tuner could not decode and skipped", registry=registry),
        )
        for state in TRIAL_STATES:
            metrics.trials.labels(state)
        for result in SEARCH_RESULTS:
            metrics.searches.labels(result)
        ProcessCollector(registry=registry)
        return metrics

    def record_search(self, result: Any) -> None:
        """Export one ``online.search.SearchResult``."""
        self.searches.labels("accepted" if result.accepted else "rejected").inc()
        self.best_gain.set(result.gain)
        self.serving_hit_rate.set(result.serving.hr)
        self.cpu_seconds.inc(max(0.0, result.cpu_s))
