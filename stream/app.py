"""The composition root: builds the Faust app, its agents, metrics and web pages.

Only this module wires ``online`` (the learning) to Kafka. Agents are a few lines
each: take a micro-batch of raw messages, hand it to :class:`EventProcessor`,
publish what it returns with :class:`BatchSender`, and only then let Faust ack
(and later commit) the input offsets.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from faust.sensors.prometheus import setup_prometheus_sensors
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry

from online.engine import StreamingRecommender
from stream import batch_guard
from stream.durability import StateKeeper
from stream.handoff import PartitionHandoff
from stream.replica import ReplicaReader
from stream.security import aiokafka_security, faust_security
from stream.metrics import WorkerMetrics, install_periodic_metrics, record_encoder_swap, record_tuning
from stream.processor import EventProcessor, Output, RawMessage
from stream.sender import BatchSender
from stream.settings import Settings
from stream.transport import PerBatchPrometheusMonitor, PromptTableManager, StreamrecFaustApp

log = logging.getLogger(__name__)


def faust_broker_urls(bootstrap_servers: str) -> list[str]:
    return [f"kafka://{host.strip()}" for host in bootstrap_servers.split(",") if host.strip()]


def _raw(event: Any) -> RawMessage:
    message = event.message
    return RawMessage(message.value, message.key, message.topic, message.partition, message.offset,
                      message.timestamp)


class EncoderHandover:
    """Loads announced encoder versions into a ``models.ModelSlot`` and serves each in the blend.

    Loading (checksum, weights-only load, warm-up) runs in a thread so the event loop keeps
    serving; the slot swaps under its lock and keeps the old version on any failure. torch
    is imported on the first announcement, so workers without an encoder start fast.

    Each version that swaps in fills the blend's ``encoder`` slot (``online.blend.Blend.fill``):
    the slot ``STREAMREC_BLEND`` declared, with its declared weight, or, for a blend that does
    not list the encoder, one slot added with ``weight`` (``STREAMREC_ENCODER_WEIGHT``).
    """

    def __init__(self, processor: EventProcessor, metrics: WorkerMetrics, weight: float) -> None:
        self.processor = processor
        self.metrics = metrics
        self.weight = weight
        self.slot: Any = None

    async def handle(self, raw: bytes | None) -> None:
        """An announcement from ``model-updates``."""
        try:
            note = json.loads(raw or b"")
            path, version = str(note["path"]), int(note["version"])
        except (ValueError, KeyError, TypeError) as exc:
            self.metrics.encoder_swaps.labels("rejected").inc()
            log.error("unreadable model-updates message %r: %s", (raw or b"")[:200], exc)
            return
        await self.load(path, version)

    async def poll_directory(self, directory: str) -> None:
        """Load the newest complete checkpoint in ``directory`` if it is newer than the served one.

        ``model-updates`` reaches only the worker of its consumer group that owns its partition;
        every worker therefore also looks at the (shared) checkpoint directory now and then.
        """
        if not any(Path(directory).glob("*.sha256")):  # nothing yet: do not import torch for nothing
            return
        from models.checkpoint import latest_checkpoint, list_versions

        path = latest_checkpoint(directory)
        if path is None:
            return
        version = dict((str(p), v) for v, p in list_versions(directory))[str(path)]
        if self.slot is None or (self.slot.version or 0) < version:
            await self.load(str(path), version)

    async def load(self, path: str, version: int | None) -> None:
        import asyncio

        if self.slot is None:
            import torch

            from models import ModelSlot

            torch.set_num_threads(1)  # one thread: serving shares the core with the agent
            self.slot = ModelSlot()
        result = await asyncio.to_thread(self.slot.load_if_newer, path, version)
        if result.swapped:
            self.metrics.encoder_swaps.labels("swapped").inc()
            serving, scorer = self.slot.current
            if serving != result.version:  # a newer version swapped in meanwhile; its own load serves it
                return
            record_encoder_swap(self.metrics, result.version, result.trained_at)
            blend = self.processor.engine.blend
            if blend is None:
                log.warning("encoder version %s loaded but not served: the worker runs without the blend "
                            "(set STREAMREC_BLEND)", result.version)
            else:
                blend.fill("encoder", scorer, weight=self.weight)
            log.info("serving encoder version %s (was %s)", result.version, result.previous)
        else:
            stale = result.error is None
            self.metrics.encoder_swaps.labels("stale" if stale else "rejected").inc()
            log.log(logging.INFO if stale else logging.ERROR, "encoder version %s not loaded: %s",
                    result.candidate, result.reason)


def create_app(settings: Settings, *, registry: CollectorRegistry | None = None,
               engine: StreamingRecommender | None = None) -> StreamrecFaustApp:
    """A fresh Faust app for ``settings`` (no network work until it is started)."""
    batch_guard.install()  # no record batch can crash the agents' or the replica's consumer
    registry = registry if registry is not None else CollectorRegistry()
    app = StreamrecFaustApp(
        settings.app_id,
        broker=faust_broker_urls(settings.bootstrap_servers),
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_rebalance_timeout=settings.rebalance_timeout_s,
        broker_heartbeat_interval=min(1.0, settings.session_timeout_s / 3),
        broker_request_timeout=max(30.0, settings.session_timeout_s + 5),
        producer_max_batch_size=1_048_576,
        producer_linger=0.0,
        stream_buffer_maxsize=max(4096, settings.batch_max * 2),
        web_enabled=True,
        web_port=settings.metrics_port,
        web_bind=settings.metrics_host,
        web_host=settings.metrics_host,
        table_standby_replicas=0,
        TableManager=PromptTableManager,
        broker_credentials=faust_security(settings),
        # With snapshots on, every commit first writes one (stream.durability): commit on a clock
        # at the snapshot interval, not every N messages.
        **({"broker_commit_interval": settings.snapshot_interval_s, "broker_commit_every": 1 << 40}
           if settings.snapshot_interval_s > 0 else {}),
    )
    app.fetch_max_wait_ms = settings.fetch_max_wait_ms
    metrics = WorkerMetrics.create(registry)
    setup_prometheus_sensors(app, pattern="/metrics", registry=registry, name_prefix="streamrec_faust")
    app.monitor = PerBatchPrometheusMonitor(metrics=app.monitor._metrics)
    processor = EventProcessor(settings, engine, metrics)
    # The aiokafka producer inside Faust's: sending through it (not a second producer) is what makes
    # Faust's flush-before-commit cover our lists. ``_ensure_producer`` is faust-streaming 0.11-0.15 API.
    sender = BatchSender(lambda: app.producer._ensure_producer(),
                         on_error=lambda exc: log.error("publishing lists failed: %r", exc))
    state_lock = asyncio.Lock()  # a micro-batch (learn + publish) and a snapshot never interleave
    handoff = PartitionHandoff(settings, processor) if settings.handoff_dir and settings.snapshot_interval_s > 0 \
        else None
    keeper = StateKeeper(settings, processor, state_lock, flush=lambda: app.producer.flush(), handoff=handoff)
    keeper.restore()
    app.before_commit = keeper.before_commit
    # consumer lag per partition, blend weights, delivery and snapshot counts (HR/NDCG: per batch)
    install_periodic_metrics(app, metrics, processor, keeper=keeper)

    replica = ReplicaReader(settings, processor, state_lock, aiokafka_security(settings)) \
        if settings.learn_scope == "all" else None

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        """Take over the users (handoff) and stop learning as a replica what is now ours."""
        mine = {tp.partition for tp in assigned if tp.topic == settings.topic_events}
        async with state_lock:
            if handoff is not None:
                handoff.on_assigned(mine)
            if replica is not None:
                replica.on_assigned(mine)

    if replica is not None:
        @app.task
        async def learn_other_partitions() -> None:
            await replica.run()

    events_topic = app.topic(settings.topic_events, partitions=settings.partitions)
    updates_topic = app.topic(settings.topic_model_updates, partitions=1)
    encoder = EncoderHandover(processor, metrics, settings.encoder_weight)
    requests_topic = app.topic(settings.topic_requests, partitions=settings.partitions)

    async def publish(result: Any) -> None:
        await sender.send(result.recommendations + result.dead_letters)
        now = time.time()  # handed to the producer; the broker acknowledges asynchronously
        observe = metrics.event_to_recommendation.observe
        for out in result.recommendations:
            if out.source_ts is not None:
                observe(max(0.0, now - out.source_ts))

    @app.agent(events_topic, name="streamrec.learn_and_push")
    async def learn_and_push(stream: Any) -> None:
        async for batch in stream.take_events(settings.batch_max, within=settings.batch_within_s):
            async with state_lock:
                started = time.perf_counter()
                messages = [_raw(event) for event in batch]
                oldest = min((m.timestamp for m in messages if m.timestamp is not None), default=None)
                if oldest is not None:
                    metrics.batch_wait.observe(max(0.0, time.time() - oldest))
                result = processor.process_events(messages)
                metrics.batch_processing.observe(time.perf_counter() - started)
                await publish(result)

    @app.agent(requests_topic, name="streamrec.answer_requests")
    async def answer_requests(stream: Any) -> None:
        async for batch in stream.take_events(settings.batch_max, within=settings.batch_within_s):
            await publish(processor.process_requests([_raw(event) for event in batch]))

    @app.agent(updates_topic, name="streamrec.swap_encoder")
    async def swap_encoder(stream: Any) -> None:
        async for raw in stream:
            await encoder.handle(raw)

    if settings.tuner:
        tuning_key = f"{settings.app_id}:{os.uname().nodename}:{os.getpid()}".encode()

        @app.timer(settings.tuner_publish_s)
        async def publish_tuning() -> None:
            """The tuner's state: to the gauges and, as JSON, to the ``tuning`` topic."""
            snapshot = processor.engine.tuning_snapshot()
            record_tuning(metrics, snapshot)
            snapshot = {**snapshot, "worker": tuning_key.decode(), "ts": time.time()}
            await sender.send([Output(settings.topic_tuning, tuning_key, json.dumps(snapshot).encode())])

    @app.timer(settings.encoder_poll_s)
    async def poll_checkpoints() -> None:
        await encoder.poll_directory(settings.trainer_dir)

    @app.page("/health/live")
    class Live(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "live"})

    @app.page("/health/ready")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            assigned = len(app.consumer.assignment()) if app._consumer is not None else 0
            body = {"status": "ready" if assigned else "starting", "assigned_partitions": assigned,
                    "events_learned": processor.engine.events_learned,
                    "duplicates_skipped": processor.duplicates, "replayed_skipped": processor.replayed,
                    "snapshots_written": keeper.snapshots_written,
                    "events_in_snapshot": keeper.events_in_snapshot, "snapshot_failures": keeper.failures,
                    "last_snapshot_seconds": keeper.last_seconds,
                    "last_snapshot_pause_seconds": keeper.last_pause_seconds}
            return self.json(body, status=200 if assigned else 503)

    return app
