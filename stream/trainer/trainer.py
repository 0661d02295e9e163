"""``streamrec trainer``: refresh the sequence encoder from the live ``events`` stream.

The trainer reads ``events`` with its own kafka-python consumer (manual assignment,
offsets kept under its own group id ``<app_id>-trainer``, no group join), keeps
bounded per-user sequences, and every ``trainer_refresh_s`` seconds (when at least
``trainer_min_new_events`` arrived) trains a fresh encoder on them
(``models.train_offline``, all items, no hold-out), writes a versioned checkpoint
and announces it on ``model-updates`` (``stream.wire.announcements``). Workers load announced
versions with their ``EncoderLoader`` and serve them from the blend's ``encoder`` slot
(``stream.worker.encoder_handover``) without a restart. Its
metrics (``stream.trainer.metrics.TrainerMetrics``: events consumed, training loss, throughput,
checkpoints, when the last version was published) live on its own registry, served by
:meth:`StreamTrainer.serve_metrics`.

A refresh retrains from scratch on the buffered sequences: simple and always
consistent with the current item vocabulary; warm-starting is future work.
"""
from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict, deque
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


class SequenceStore:
    """Bounded recent items per user, in arrival order (least recently active users evicted)."""

    def __init__(self, max_len: int, max_users: int) -> None:
        self.max_len = max_len
        self.max_users = max_users
        self._users: OrderedDict[str, deque[str]] = OrderedDict()

    def add(self, user_id: str, item_id: str) -> None:
        seq = self._users.get(user_id)
        if seq is None:
            if len(self._users) >= self.max_users:
                self._users.popitem(last=False)
            seq = self._users[user_id] = deque(maxlen=self.max_len + 1)
        else:
            self._users.move_to_end(user_id)
        seq.append(item_id)

    def arrays(self) -> tuple[list[str], list[str]]:
        """(user ids, item ids), each user's items contiguous and in order."""
        users: list[str] = []
        items: list[str] = []
        for user_id, seq in self._users.items():
            users.extend([user_id] * len(seq))
            items.extend(seq)
        return users, items

    def __len__(self) -> int:
        return len(self._users)


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
        from models import EncoderConfig, TrainerConfig

        self.settings = settings
        self.clock = clock
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = TrainerMetrics.create(self.registry)
        self._metrics_server: Any = None
        preset = EncoderConfig.large if settings.encoder.trainer_size == "large" else EncoderConfig.tiny
        self.encoder_config = preset()
        encoder = settings.encoder
        self.trainer_config = TrainerConfig(device=encoder.trainer_device, epochs=encoder.trainer_epochs,
                                            progress=False)
        self.store = SequenceStore(self.encoder_config.max_len, settings.engine.max_users)
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
                    self.store.add(event.user_id, event.item_id)
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

    def refresh(self) -> dict[str, Any]:
        """Train on the buffered sequences, write a checkpoint, announce it; returns the announcement."""
        from models import next_version, train_offline

        s = self.settings
        users, items = self.store.arrays()
        version = next_version(s.encoder.trainer_dir)
        m = self.metrics
        started = time.perf_counter()
        path = train_offline(users, items, self.encoder_config, self.trainer_config, s.encoder.trainer_dir, holdout=0,
                             version=version, on_epoch_end=m.record_epoch)
        update = ModelUpdate(version, str(path), time.time(),
                             {"train_seconds": round(time.perf_counter() - started, 3), "users": len(self.store),
                              "events_seen": self.events_seen})
        self._producer.send(s.topics.model_updates, value=encode_model_update(update))
        self._producer.flush()
        m.checkpoints.inc()
        m.encoder_version.set(version)
        m.encoder_published.set(update.ts)
        m.refresh_duration.observe(time.perf_counter() - started)
        if self._consumer is not None:
            self._consumer.commit()  # the events this version learned from
        self.new_events = 0
        self.versions.append(version)
        log.info("encoder version %d written to %s", version, path)
        return update.as_dict()

    def run(self, once: bool = False, should_stop: Callable[[], bool] = lambda: False) -> int:
        last_refresh = self.clock() - self.settings.encoder.trainer_refresh_s if once else self.clock()
        while not should_stop():
            self.poll()
            if self.due(last_refresh):
                announcement = self.refresh()
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
