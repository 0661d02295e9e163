"""The composition root: builds the Faust app, its agents, metrics and web pages.

Only this module wires the worker's runtime (``stream.worker``: the learning, the
snapshots, the encoder handover, the config handover) to Kafka (``stream.kafka``). Agents are a few lines
each: take a micro-batch of raw messages, hand it to :class:`EventProcessor`,
publish what it returns with :class:`BatchSender`, and only then let Faust ack
(and later commit) the input offsets.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from faust.sensors.prometheus import setup_prometheus_sensors
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry

from online import compiled
from online.engine import StreamingRecommender
from stream.kafka import batch_guard
from stream.kafka.security import aiokafka_security, faust_security
from stream.kafka.sender import BatchSender
from stream.kafka.transport import PerBatchPrometheusMonitor, PromptTableManager, StreamrecFaustApp
from stream.settings import Settings
from stream.wire.announcements import encode_tuning
from stream.wire.messages import Output
from stream.worker import gc_pauses
from stream.worker.config_handover import ConfigHandover, export_knobs
from stream.worker.durability import StateKeeper
from stream.worker.encoder_handover import EncoderHandover
from stream.worker.handoff import PartitionHandoff
from stream.worker.metrics import WorkerMetrics, install_periodic_metrics, record_tuning
from stream.worker.microbatch import MicroBatches
from stream.worker.processor import EventProcessor
from stream.worker.replica import ReplicaReader
from stream.worker.sharing import DeltaReader

log = logging.getLogger(__name__)


def faust_broker_urls(bootstrap_servers: str) -> list[str]:
    return [f"kafka://{host.strip()}" for host in bootstrap_servers.split(",") if host.strip()]


def create_app(settings: Settings, *, registry: CollectorRegistry | None = None,
               engine: StreamingRecommender | None = None, owns_process: bool = False) -> StreamrecFaustApp:
    """A fresh Faust app for ``settings`` (no network work until it is started). ``owns_process``: the
    app is the process's only one (``streamrec worker``), so it may tune process-wide things: the
    garbage collector's pauses are measured and the start-up heap is frozen (``stream.worker.gc_pauses``)."""
    batch_guard.install()  # no record batch can crash the agents' or the replica's consumer
    registry = registry if registry is not None else CollectorRegistry()
    app = StreamrecFaustApp(
        settings.kafka.app_id,
        broker=faust_broker_urls(settings.kafka.bootstrap_servers),
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.kafka.session_timeout_s,
        broker_rebalance_timeout=settings.kafka.rebalance_timeout_s,
        broker_heartbeat_interval=min(1.0, settings.kafka.session_timeout_s / 3),
        broker_request_timeout=max(30.0, settings.kafka.session_timeout_s + 5),
        producer_max_batch_size=1_048_576,
        # a fetch (stream.kafka.transport.FetchedBatch) holds at most as many messages as a micro-batch events
        broker_max_poll_records=settings.serving.batch_max,
        producer_linger=0.0,
        stream_buffer_maxsize=max(4096, settings.serving.batch_max * 2),
        web_enabled=True,
        web_port=settings.metrics.port,
        web_bind=settings.metrics.host,
        web_host=settings.metrics.host,
        table_standby_replicas=0,
        TableManager=PromptTableManager,
        broker_credentials=faust_security(settings),
        # With snapshots on, every commit first writes one (stream.worker.durability): commit on a clock
        # at the snapshot interval, not every N messages.
        **({"broker_commit_interval": settings.durability.snapshot_interval_s, "broker_commit_every": 1 << 40}
           if settings.durability.snapshot_interval_s > 0 else {}),
    )
    app.fetch_max_wait_ms = settings.kafka.fetch_max_wait_ms
    # Events and requests reach their agents as whole fetched batches (stream.kafka.transport.FetchedBatch)
    app.whole_batch_topics = frozenset({settings.topics.events, settings.topics.requests})
    metrics = WorkerMetrics.create(registry)
    setup_prometheus_sensors(app, pattern="/metrics", registry=registry, name_prefix="streamrec_faust")
    app.monitor = PerBatchPrometheusMonitor(metrics=app.monitor._metrics)
    processor = EventProcessor(settings, engine, metrics)
    # The aiokafka producer inside Faust's: sending through it (not a second producer) is what makes
    # Faust's flush-before-commit cover our lists. ``_ensure_producer`` is faust-streaming 0.11-0.15 API.
    sender = BatchSender(lambda: app.producer._ensure_producer(),
                         on_error=lambda exc: log.error("publishing lists failed: %r", exc))
    state_lock = asyncio.Lock()  # a micro-batch (learn + publish) and a snapshot never interleave
    durability = settings.durability
    handoff = PartitionHandoff(settings, processor) if durability.handoff_dir and durability.snapshot_interval_s > 0 \
        else None
    keeper = StateKeeper(settings, processor, state_lock, flush=lambda: app.producer.flush(), handoff=handoff)
    keeper.restore()
    # said once the worker runs: logging is configured only when Faust's worker starts, after this function
    started_with = [f"list building: {compiled.describe()}"]
    if owns_process:
        started_with.append(f"froze {gc_pauses.freeze_startup()} start-up objects out of the garbage collector's way")
        gc_pauses.install(metrics.gc_pauses)  # after the start-up collection: the pauses while serving

    @app.task
    async def say_how_it_started() -> None:
        for line in started_with:
            log.info("%s", line)
    app.before_commit = keeper.before_commit
    export_knobs(metrics, settings, processor.engine.config)
    # consumer lag per partition, blend weights, delivery and snapshot counts (HR/NDCG: per batch)
    install_periodic_metrics(app, metrics, processor, keeper=keeper)

    replica = ReplicaReader(settings, processor, state_lock, aiokafka_security(settings)) \
        if settings.durability.learn_scope == "all" else None
    deltas = DeltaReader(settings, processor, state_lock, aiokafka_security(settings)) \
        if processor.sharing else None

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        """Take over the users (handoff) and stop learning as a replica what is now ours."""
        mine = {tp.partition for tp in assigned if tp.topic == settings.topics.events}
        async with state_lock:
            if handoff is not None:
                handoff.on_assigned(mine)
            if replica is not None:
                replica.on_assigned(mine)
        if deltas is not None:
            processor.on_assigned(mine, settings.kafka.partitions)
            deltas.on_assigned()

    if replica is not None:
        @app.task
        async def learn_other_partitions() -> None:
            await replica.run()

    if deltas is not None:
        @app.task
        async def apply_item_deltas() -> None:
            await deltas.run()

    events_topic = app.topic(settings.topics.events, partitions=settings.kafka.partitions)
    updates_topic = app.topic(settings.topics.model_updates, partitions=1)
    encoder = EncoderHandover(processor, metrics, settings.encoder.weight, settings.encoder.cache_mb,
                              freeze_imports=owns_process)
    if owns_process and processor.engine.config.blend is not None:  # a learned blend: an encoder will be served
        encoder.start_preparing()  # its imports stall while Faust starts and joins, not while lists wait

        @app.task
        async def say_when_the_encoder_is_prepared() -> None:
            await encoder.prepared()
    requests_topic = app.topic(settings.topics.requests, partitions=settings.kafka.partitions)

    async def publish(result: Any, received: float | None) -> None:
        ready = time.time()  # the lists are built and encoded: the worker's own share ends here
        await sender.send(result.recommendations + result.dead_letters + result.deltas)
        now = time.time()  # handed to the producer; the broker acknowledges asynchronously
        # aiokafka takes a partition's next batch once the broker took the previous one: broker time
        metrics.producer_wait.observe(now - ready)
        observe = metrics.event_to_recommendation.observe
        for out in result.recommendations:
            if out.source_ts is not None:
                observe(max(0.0, now - out.source_ts))
        if received is not None and result.recommendations:  # the worker's own share: receipt -> lists ready
            worker_share = max(0.0, ready - received)
            observe_share = metrics.worker_share.observe
            for _ in result.recommendations:
                observe_share(worker_share)

    # Each stream event is what one fetch returned (stream.kafka.transport.FetchedBatch), cut into
    # micro-batches of about batch_max events, and acked (every offset it covers) once its lists are
    # handed over. The ack is ours: Faust's compiled stream iterator would ack only one offset of it.
    micro_batches = MicroBatches(settings.serving.batch_max)

    @app.agent(events_topic, name="streamrec.learn_and_push")
    async def learn_and_push(stream: Any) -> None:
        stream.enable_acks = False
        async for fetched in stream.events():
            if deltas is not None:  # another worker's deltas for a partition we just gained come first
                await deltas.wait_caught_up(timeout=max(10.0, settings.kafka.session_timeout_s))
            received = fetched.message.received
            for messages in micro_batches.cut(fetched.value):
                async with state_lock:
                    started = time.perf_counter()
                    oldest = min((m.timestamp for m in messages if m.timestamp is not None), default=None)
                    if oldest is not None:
                        metrics.batch_wait.observe(max(0.0, time.time() - oldest))
                    result = processor.process_events(messages, received=received)
                    metrics.batch_processing.observe(time.perf_counter() - started)
                    micro_batches.observe(len(messages), result.events + len(result.dead_letters))
                    await publish(result, received)
            await stream.ack(fetched)

    @app.agent(requests_topic, name="streamrec.answer_requests")
    async def answer_requests(stream: Any) -> None:
        stream.enable_acks = False
        async for fetched in stream.events():
            received = fetched.message.received
            await publish(processor.process_requests(fetched.value, received=received), received)
            await stream.ack(fetched)

    @app.agent(updates_topic, name="streamrec.swap_encoder")
    async def swap_encoder(stream: Any) -> None:
        async for raw in stream:
            await encoder.handle(raw)

    if callable(getattr(processor.engine, "commit", None)):  # self-tuning: serve the tuner's configs
        configs = ConfigHandover(settings, processor, metrics, state_lock, aiokafka_security(settings))

        @app.task
        async def follow_config_updates() -> None:
            await configs.run()

    if settings.tuner.enabled:
        tuning_key = f"{settings.kafka.app_id}:{os.uname().nodename}:{os.getpid()}".encode()

        @app.timer(settings.tuner.publish_s)
        async def publish_tuning() -> None:
            """The tuner's state: to the gauges and, as JSON, to the ``tuning`` topic."""
            snapshot = processor.engine.tuning_snapshot()
            record_tuning(metrics, snapshot)
            value = encode_tuning(snapshot, worker=tuning_key.decode(), ts=time.time())
            await sender.send([Output(settings.topics.tuning, tuning_key, value)])

    @app.timer(settings.encoder.poll_s)
    async def poll_checkpoints() -> None:
        await encoder.poll_directory(settings.encoder.trainer_dir)

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
                    "deltas_published": processor.deltas_published,
                    "deltas_applied": getattr(processor.engine, "deltas_applied", 0),
                    "events_shared_in": getattr(processor.engine, "events_shared_in", 0),
                    "events_known": processor.events_known,
                    "item_events": getattr(processor.engine, "item_events", 0),
                    "delta_lag_mean_s": deltas.lag_sum_s / deltas.lag_count if deltas and deltas.lag_count else None,
                    "duplicates_skipped": processor.duplicates, "replayed_skipped": processor.replayed,
                    "snapshots_written": keeper.snapshots_written,
                    "events_in_snapshot": keeper.events_in_snapshot, "snapshot_failures": keeper.failures,
                    "last_snapshot_seconds": keeper.last_seconds,
                    "last_snapshot_pause_seconds": keeper.last_pause_seconds}
            return self.json(body, status=200 if assigned else 503)

    return app
