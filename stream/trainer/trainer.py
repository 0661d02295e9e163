"""``streamrec trainer``: refresh the sequence encoder from the live ``events`` stream.

The trainer reads ``events`` with its own kafka-python consumer (manual assignment,
offsets kept under its own group id ``<app_id>-trainer``, no group join), keeps
bounded per-user sequences with their stream positions (``models.refresh.StreamLog``), and
every ``trainer_refresh_s`` seconds (when at least ``trainer_min_new_events`` arrived) runs one
refresh (``models.refresh.refresh_encoder``, the same function ``streamrec eval --encoder on``
replays): warm-started from the last served version with new items appended, fine-tuned on what
is new with old windows replayed, early-stopped on the newest events. A version that scores below
the served one on those events is not written or announced; otherwise it writes a versioned
checkpoint and announces it on ``model-updates`` (``stream.wire.announcements``). Workers load announced
versions with their ``EncoderLoader`` and serve them from the blend's ``encoder`` slot
(``stream.worker.encoder_handover``) without a restart. Its
metrics (``stream.trainer.metrics.TrainerMetrics``: events consumed, training loss, throughput,
checkpoints, when the last version was published) live on its own registry, served by
:meth:`StreamTrainer.serve_metrics`.

After a restart the trainer warm-starts from the newest checkpoint in ``trainer_dir``.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

from stream.kafka import batch_guard
from stream.observability import close_all, serve_metrics, stop_serving
from stream.settings import Settings
from stream.trainer.metrics import TrainerMetrics
from stream.wire import schema
from stream.wire.announcements import ModelUpdate, encode_model_update
from stream.wire.schema import Invalid

log = logging.getLogger(__name__)


def refresh_config(settings: Settings) -> Any:
    """The ``models.refresh.RefreshConfig`` the ``trainer_*`` settings describe (this process and
    ``streamrec eval --encoder on``)."""
    from models.refresh import RefreshConfig

    enc = settings.encoder
    return RefreshConfig(max_epochs=enc.trainer_epochs, patience=enc.trainer_patience,
                         warm_start=enc.trainer_warm_start, replay=enc.trainer_replay, holdout=enc.trainer_holdout)


def trainer_config(settings: Settings) -> Any:
    """The ``models.TrainerConfig`` the ``trainer_*`` settings describe (this process and
    ``streamrec eval --encoder on``): no progress bar, the trainer runs unattended."""
    from models import TrainerConfig

    enc = settings.encoder
    return TrainerConfig(device=enc.trainer_device, epochs=enc.trainer_epochs, progress=False)


def events_of(raw: bytes) -> list[Any]:
    """The valid events of one message (the worker dead-letters the rest; here they are skipped)."""
    try:
        payload = schema.decode_json(raw)
    except Invalid:
        return []
    out = []
    for obj in payload if isinstance(payload, list) else [payload]:
        try:
            event = schema.validate_event(obj)
        except Invalid:
            continue
        if event.type not in schema.NON_POSITIVE_TYPES:
            out.append(event)
    return out


class StreamTrainer:
    """Consume events, refresh the encoder on a schedule, announce each version."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic,
                 registry: CollectorRegistry | None = None) -> None:
        from models import EncoderConfig
        from models.refresh import StreamLog

        self.settings = settings
        self.clock = clock
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = TrainerMetrics.create(self.registry)
        self._metrics_server: Any = None
        encoder = settings.encoder
        self.encoder_config = EncoderConfig.preset(encoder.trainer_size)
        self.trainer_config = trainer_config(settings)
        self.store = StreamLog(max(encoder.trainer_history, 2), settings.engine.max_users)
        self.served: Any = None  # the last served models.refresh.EncoderVersion (what the next one starts from)
        self.rejected = 0
        self.new_events = 0
        self.events_seen = 0
        self.versions: list[int] = []
        self._consumer: Any = None
        self._producer: Any = None

    def _connect(self) -> None:
        from kafka import KafkaConsumer, KafkaProducer, TopicPartition

        from stream.kafka.security import kafka_python_security

        batch_guard.install()  # an undecodable batch is skipped and counted, never a crash
        s = self.settings
        security = kafka_python_security(s)
        consumer = KafkaConsumer(bootstrap_servers=s.kafka.bootstrap_servers.split(","),
                                 group_id=f"{s.kafka.app_id}-trainer",
                                 enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=100,
                                 isolation_level="read_committed",
                                 client_id="streamrec-trainer", **security)
        partitions = consumer.partitions_for_topic(s.topics.events) or {0}
        consumer.assign([TopicPartition(s.topics.events, p) for p in sorted(partitions)])
        self._consumer = consumer
        self._producer = KafkaProducer(bootstrap_servers=s.kafka.bootstrap_servers.split(","),
                                       client_id="streamrec-trainer", **security)

    def poll(self, timeout: float = 0.5) -> int:
        """Read what arrived; returns the number of valid events added."""
        if self._consumer is None:
            self._connect()
        added = messages = 0
        for records in self._consumer.poll(timeout_ms=int(timeout * 1000)).values():
            messages += len(records)
            for record in records:
                if isinstance(record.value, batch_guard.UndecodableBatch):
                    self.metrics.undecodable_batches.inc()
                    log.warning("skipping an undecodable record batch of %s[%s]: %s", record.topic,
                                record.partition, record.value.describe())
                    continue
                for event in events_of(record.value or b""):
                    self.store.add(str(event.user_id), str(event.item_id))
                    added += 1
        self.new_events += added
        self.events_seen += added
        m = self.metrics
        m.messages_consumed.inc(messages)
        m.events_consumed.inc(added)
        m.buffered_users.set(len(self.store))
        return added

    def due(self, last_refresh: float) -> bool:
        s = self.settings
        return (self.new_events >= s.encoder.trainer_min_new_events
                and self.clock() - last_refresh >= s.encoder.trainer_refresh_s)

    def _resume(self) -> None:
        """After a restart: warm-start from the newest checkpoint (best effort; from scratch if unreadable)."""
        from models import build_model, latest_checkpoint, load_checkpoint
        from models.refresh import EncoderVersion

        path = latest_checkpoint(self.settings.encoder.trainer_dir)
        if path is None:
            return
        try:
            checkpoint = load_checkpoint(path)
            self.served = EncoderVersion(build_model(checkpoint), list(checkpoint.items), checkpoint.version, 0)
        except Exception as exc:
            log.warning("not warm-starting from %s (%s); the next version trains from scratch", path, exc)

    def refresh(self) -> dict[str, Any] | None:
        """One refresh (``models.refresh.refresh_encoder``); writes and announces the version unless it is
        kept from serving. Returns the announcement, or ``None`` when the version was not served."""
        from models import checkpoint_path, next_version, save_checkpoint
        from models.refresh import refresh_encoder

        s = self.settings
        if self.served is None and self.versions == [] and self.settings.encoder.trainer_warm_start:
            self._resume()
        version = next_version(s.encoder.trainer_dir)
        m = self.metrics
        started = time.perf_counter()
        result = refresh_encoder(self.store, self.served, self.encoder_config, self.trainer_config,
                                 refresh_config(s), version=version, on_epoch_end=m.record_epoch)
        self.new_events = 0
        if not result.serve:
            self.rejected += 1
            log.warning("encoder version %d not served: %s", version, result.reason)
            return None
        candidate = result.candidate
        path = checkpoint_path(s.encoder.trainer_dir, version)
        save_checkpoint(path, state_dict=candidate.model.state_dict(), config=candidate.model.config,
                        items=candidate.items, version=version, metrics=result.as_dict())
        self.served = candidate
        update = ModelUpdate(version, str(path), time.time(),
                             {"train_seconds": round(time.perf_counter() - started, 3), "users": len(self.store),
                              "events_seen": self.events_seen, "holdout_hr": result.holdout_hr,
                              "previous_hr": result.previous_hr, "epochs": result.epochs})
        self._producer.send(s.topics.model_updates, value=encode_model_update(update))
        self._producer.flush()
        m.checkpoints.inc()
        m.encoder_version.set(version)
        m.encoder_published.set(update.ts)
        m.refresh_duration.observe(time.perf_counter() - started)
        if self._consumer is not None:
            self._consumer.commit()  # the events this version learned from
        self.versions.append(version)
        log.info("encoder version %d written to %s", version, path)
        return update.as_dict()

    def run(self, once: bool = False, should_stop: Callable[[], bool] = lambda: False) -> int:
        last_refresh = self.clock() - self.settings.encoder.trainer_refresh_s if once else self.clock()
        while not should_stop():
            self.poll()
            if self.due(last_refresh):
                announcement = self.refresh()
                if announcement is not None:
                    print(json.dumps(announcement), flush=True)
                last_refresh = self.clock()
                if once:
                    break
        self.close()
        return 0

    def serve_metrics(self) -> str:
        """Serve this trainer's ``/metrics`` and ``/health/*`` on ``metrics_host:trainer_metrics_port``;
        returns the metrics URL (ready once the consumer is connected)."""
        s = self.settings
        self._metrics_server, base = serve_metrics(self.registry, s.metrics.host, s.metrics.trainer_port,
                                                   ready=lambda: self._consumer is not None)
        return f"{base}/metrics"

    def close(self) -> None:
        close_all(self._consumer, self._producer)
        stop_serving(self._metrics_server)
        self._consumer = self._producer = self._metrics_server = None
