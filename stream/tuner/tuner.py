"""``streamrec tuner``: search the whole engine config on the live stream and announce each winner.

The tuner reads ``events`` with its own kafka-python consumer (manual assignment of every
partition, offsets kept under its own group id ``<app_id>-tuner``, no group join), and runs the
production loop of ``streamrec eval --self-tune`` on it: a
:class:`~online.search.SelfTunedRecommender` that learns every event, serves a list to each
user of a micro-batch (so its prequential hit rate, and with it drift detection, works), and
searches on ``settings.schedule()`` (``search_first``, ``search_every``, early on drift) with
:func:`online.search.search` over the last ``search_window`` events. A winner the search
accepts is served by the tuner's own engine first; if it serves (it builds and passes the
checks), it is announced on ``config-updates`` (``stream.wire.config_updates``) with its
evidence and the next version, and every worker swaps to it warm
(``stream.worker.config_handover``).

The Optuna study lives in ``search_storage`` under ``search_study`` (an SQLite file by
default; its folder is created): a tuner killed mid-search and started again continues the
same study, having lost at most its running trial. On start the tuner reads ``config-updates``
to the end: the newest announced config is the one workers serve, so it is the tuner's serving
config, and versions continue from it. Offsets are committed after each search, so a restart
resumes after the last search's events. Metrics: ``stream.tuner.metrics``.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from online.base import Interaction
from online.engine import EngineConfig
from stream.kafka import batch_guard
from stream.observability import close_all, serve_metrics, stop_serving
from stream.settings import Settings
from stream.tuner.metrics import TunerMetrics
from stream.wire import schema
from stream.wire.config_updates import ConfigUpdate, decode_config_update, encode_config_update
from stream.wire.schema import Invalid

log = logging.getLogger(__name__)

#: Port of the tuner's ``/metrics`` unless ``--metrics-port`` says otherwise (worker 6066, trainer 6067).
DEFAULT_METRICS_PORT = 6068


def sqlite_folder(storage: str) -> Path | None:
    """The folder of an SQLite storage URL's file (``sqlite:////tmp/streamrec/tuner.db`` -> ``/tmp/streamrec``),
    None for other URLs and in-memory SQLite."""
    prefix = "sqlite:///"
    if not storage.startswith(prefix):
        return None
    path = storage[len(prefix):].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path).parent


class StreamTuner:
    """Consume events, search on the schedule, announce each config that wins and serves."""

    def __init__(self, settings: Settings, *, metrics_port: int = DEFAULT_METRICS_PORT,
                 registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.metrics_port = metrics_port
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = TunerMetrics.create(self.registry)
        self.search_config = settings.search_config()
        self.version = 0
        self.engine: Any = None  # an online.search.SelfTunedRecommender once started
        self.study: Any = None
        self._searcher: Callable[..., Any] | None = None
        self.announced: list[dict[str, Any]] = []
        self.should_stop: Callable[[], bool] = lambda: False
        self._consumer: Any = None
        self._producer: Any = None
        self._metrics_server: Any = None

    # -- start --------------------------------------------------------------------------------
    def start(self) -> None:
        """Connect, find the newest announced config, open the study, build the engine."""
        from online.search import SelfTunedRecommender, searcher
        from online.search.study import create_study

        s = self.settings
        self._connect()
        serving = s.engine_config()
        latest = self.latest_announcement()
        if latest is not None:
            self.version, serving = latest.version, latest.config
            self.metrics.config_version.set(latest.version)
            log.info("workers serve config version %d; searching against it", latest.version)
        folder = sqlite_folder(s.search.storage)
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        self.study = create_study(self.search_config, storage=s.search.storage, study_name=s.search.study)
        self._searcher = searcher(self.search_config, study=self.study, on_trial=self._on_trial)
        self.engine = SelfTunedRecommender(serving, searcher=self._search, schedule=s.schedule())

    def _connect(self) -> None:
        from kafka import KafkaConsumer, KafkaProducer, TopicPartition

        from stream.kafka.security import kafka_python_security

        batch_guard.install()  # an undecodable batch is skipped and counted, never a crash
        s = self.settings
        security = kafka_python_security(s)
        consumer = KafkaConsumer(bootstrap_servers=s.kafka.bootstrap_servers.split(","),
                                 group_id=f"{s.kafka.app_id}-tuner", enable_auto_commit=False,
                                 auto_offset_reset="earliest", fetch_max_wait_ms=100, isolation_level="read_committed",
                                 client_id="streamrec-tuner", **security)
        partitions = consumer.partitions_for_topic(s.topics.events) or {0}
        consumer.assign([TopicPartition(s.topics.events, p) for p in sorted(partitions)])
        self._consumer = consumer
        self._producer = KafkaProducer(bootstrap_servers=s.kafka.bootstrap_servers.split(","),
                                       client_id="streamrec-tuner", **security)

    def latest_announcement(self, timeout: float = 10.0) -> ConfigUpdate | None:
        """The newest readable announcement on ``config-updates`` (read to its end), or None."""
        from kafka import KafkaConsumer, TopicPartition

        from stream.kafka.security import kafka_python_security

        s = self.settings
        consumer = KafkaConsumer(bootstrap_servers=s.kafka.bootstrap_servers.split(","), group_id=None,
                                 enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=100,
                                 isolation_level="read_committed", client_id="streamrec-tuner",
                                 **kafka_python_security(s))
        partition = TopicPartition(s.topics.config_updates, 0)
        newest: ConfigUpdate | None = None
        defaults = Settings()
        try:
            if not consumer.partitions_for_topic(partition.topic):
                return None  # no such topic (yet): nothing was announced
            consumer.assign([partition])
            consumer.seek_to_beginning(partition)
            end = consumer.end_offsets([partition]).get(partition) or 0
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                batch = consumer.poll(timeout_ms=300)
                for record in batch.get(partition, ()):
                    try:
                        update = decode_config_update(record.value, defaults)
                    except ValueError as exc:
                        log.warning("skipping an unreadable config-updates message at offset %d: %s",
                                    record.offset, exc)
                        continue
                    if newest is None or update.version > newest.version:
                        newest = update
                if not batch and consumer.position(partition) >= end:
                    break  # at the end (an empty fetch: Tansu's end offsets can undercount)
        finally:
            consumer.close()
        return newest

    # -- the loop -----------------------------------------------------------------------------
    def poll(self, timeout: float = 0.5) -> int:
        """Read what arrived and learn it (searching when due); returns the number of events learned."""
        if self.engine is None:
            self.start()
        m = self.metrics
        events: list[Interaction] = []
        messages = 0
        for records in self._consumer.poll(timeout_ms=int(timeout * 1000)).values():
            messages += len(records)
            for record in records:
                if isinstance(record.value, batch_guard.UndecodableBatch):
                    m.undecodable_batches.inc()
                    log.warning("skipping an undecodable record batch of %s[%s]: %s", record.topic,
                                record.partition, record.value.describe())
                    continue
                events.extend(self._events_of(record.value or b""))
        m.messages_consumed.inc(messages)
        m.events_consumed.inc(len(events))
        events = [event for event in events if event.type not in schema.NON_POSITIVE_TYPES]  # learned as a worker does
        searches = self.engine.searches
        step = max(1, self.settings.serving.batch_max)
        for start in range(0, len(events), step):
            self.learn(events[start:start + step])
        if self.engine.searches != searches:
            self._consumer.commit()  # the events behind this search are done with
        return len(events)

    def learn(self, events: Sequence[Interaction]) -> None:
        """One micro-batch, as a worker sees it: learn it (a search may run), serve its users a list;
        announce the config the engine swapped to, if it did."""
        engine = self.engine
        swaps = len(engine.swaps)
        try:
            engine.learn_many(events)
            for swap in engine.swaps[swaps:]:
                if swap.applied:
                    self.announce(engine.config, swap.evidence)
        finally:
            self.metrics.searching.set(0)  # a search, its swap and its announcement are over
        if engine.schedule.drift:  # the served hit rate (drift detection) needs served lists
            for user_id in dict.fromkeys(event.user_id for event in events):
                engine.recommend(user_id)

    def _events_of(self, raw: bytes) -> list[Interaction]:
        """The valid events of one message; invalid ones are counted and skipped (the worker dead-letters them)."""
        try:
            payload = schema.decode_json(raw)
        except Invalid:
            self.metrics.invalid_events.inc()
            return []
        out = []
        for obj in payload if isinstance(payload, list) else [payload]:
            try:
                out.append(schema.validate_event(obj))
            except Invalid:
                self.metrics.invalid_events.inc()
        return out

    def _search(self, window: Sequence[Interaction], serving: EngineConfig) -> Any:
        """The searcher of the engine's loop (``online.search.searcher`` on the stored study), with metrics."""
        m = self.metrics
        log.info("searching on the last %d events (%d trials or %s s)", len(window), self.search_config.trials,
                 self.search_config.timeout_s)
        m.searching.set(1)  # until the engine has swapped and the winner is announced (:meth:`learn`)
        result = self._searcher(window, serving)
        m.record_search(result)
        log.info("search done: %s", result.reason)
        return result

    def _on_trial(self, record: Any, _trials: int) -> None:
        self.metrics.trials.labels(record.state).inc()
        if self.should_stop():
            self.study.stop()  # SIGTERM: end the search after this trial; the study keeps every trial

    def announce(self, config: EngineConfig, evidence: dict[str, Any]) -> dict[str, Any]:
        """Publish ``config`` as the next version on ``config-updates``; returns what was printed."""
        s = self.settings
        version = self.version + 1
        value = encode_config_update(version, config, evidence, settings=s, ts=time.time())
        self._producer.send(s.topics.config_updates, key=s.kafka.app_id.encode(), value=value)
        self._producer.flush()
        self.version = version
        self.metrics.config_version.set(version)
        note = {"version": version, "config": evidence.get("config"), "gain": evidence.get("gain"),
                "reason": evidence.get("reason")}
        self.announced.append(note)
        log.info("announced config version %d: %s", version, note["config"])
        print(json.dumps(note), flush=True)
        return note

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> int:
        self.should_stop = should_stop
        try:
            if self.engine is None:
                self.start()
            while not should_stop():
                self.poll()
        finally:
            self.close()
        return 0

    # -- metrics and shutdown -----------------------------------------------------------------
    def serve_metrics(self) -> str:
        """Serve ``/metrics`` and ``/health/*`` on ``metrics_host:metrics_port`` (0: a free port); returns the
        metrics URL (ready once the study is open and the consumer connected)."""
        self._metrics_server, base = serve_metrics(self.registry, self.settings.metrics.host, self.metrics_port,
                                                   ready=lambda: self.engine is not None)
        return f"{base}/metrics"

    def close(self) -> None:
        close_all(self._consumer, self._producer)
        stop_serving(self._metrics_server)
        self._consumer = self._producer = self._metrics_server = None
