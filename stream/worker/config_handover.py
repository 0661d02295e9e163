"""The tuner's winning engine configs, announced on ``config-updates``, served warm by every worker.

``streamrec tuner`` searches the whole engine config on the recent stream and announces each
winner it accepts (``stream.wire.config_updates``). Every worker reads the topic itself: a
group-less consumer on partition 0, from the beginning, keeping the newest version (a
consumer group would hand each announcement to one worker only). On a newer version:

1. build a fresh engine under the new config on the engine's kept events
   (``SelfTunedRecommender.kept``), a slice at a time between two micro-batches of the agent, so
   no batch waits for more than one slice (``processes=True`` builds in a separate process
   instead, from the events encoded per batch; measured worse for serving p99, section 9 of
   BENCHMARKS.md);
2. at the next micro-batch boundary (under the agent's state lock, like a snapshot) hand it
   to ``SelfTunedRecommender.commit``: it learns the events that arrived meanwhile, takes over
   every user in O(1) and serves if its checks pass; otherwise the old engine keeps serving.

A change of blend weights or of knobs the live models take (``SelfTunedRecommender.apply_in_place``)
is applied in place, with no build. A served encoder version moves into the rebuilt engine's blend. Each announcement
counts once in ``streamrec_config_swaps_total{result}`` (``applied``, or ``refused``: unreadable,
not buildable, failing its checks); ``streamrec_config_version`` is the version served and
``streamrec_engine_knob{knob}`` every numeric knob of the config served.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import signal
from collections.abc import Iterable
from typing import Any

from online.registry import search_space
from stream.kafka.readers import group_less_consumer
from stream.settings import Settings
from stream.wire.config_updates import ConfigUpdate, decode_config_update
from stream.worker.metrics import WorkerMetrics, record_engine_knobs
from stream.worker.processor import EventProcessor

log = logging.getLogger(__name__)

#: Events of the backlog (those that arrived while the new engine was built) it learns per micro-batch
#: boundary before the swap: a few milliseconds each, so serving latency does not jump at the swap.
CATCH_UP_PER_BATCH = 200


def engine_knobs(settings: Settings, config: Any) -> dict[str, float]:
    """Every numeric knob of ``config`` by flat name (booleans as 0/1), and its blend weights as
    ``weight:<strategy>``: what ``streamrec_engine_knob`` plots."""
    flat = settings.with_engine(config).flat()
    out: dict[str, float] = {}
    for name in search_space():
        value = flat.get(name)
        if isinstance(value, (bool, int, float)):
            out[name] = float(value)
    if config.blend is not None:
        for name, weight in config.blend.weights:
            out[f"weight:{name}"] = float(weight)
    return out


def export_knobs(metrics: WorkerMetrics, settings: Settings, config: Any) -> None:
    """Set ``streamrec_engine_knob`` to ``config``'s knobs (every worker, self-tuning or not)."""
    try:
        record_engine_knobs(metrics, engine_knobs(settings, config))
    except Exception as exc:  # metrics must never stop a worker or a swap
        log.error("exporting the engine's knobs failed: %r", exc)


def _ignore_interrupts() -> None:
    """In the build process: Ctrl-C and SIGTERM are for the worker, which ends its pool itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class ConfigHandover:
    """Follows ``config-updates`` and swaps ``processor``'s self-tuned engine to each newer config."""

    def __init__(self, settings: Settings, processor: EventProcessor, metrics: WorkerMetrics,
                 lock: asyncio.Lock, consumer_kwargs: dict[str, Any] | None = None, *,
                 processes: bool = False) -> None:
        self.settings = settings
        self.processor = processor
        self.metrics = metrics
        self.lock = lock
        self.consumer_kwargs = consumer_kwargs or {}
        self.processes = processes
        self.version = 0  # the newest version handled (served or refused: a refused one is not retried)
        self._defaults = Settings()  # parses announcements: they carry every engine setting
        self._executor: concurrent.futures.Executor | None = None
        self._warned = False

    # -- the topic ------------------------------------------------------------------------
    async def run(self) -> None:
        """Read ``config-updates`` from the beginning until cancelled; connection problems are
        logged and retried (the served config stays meanwhile)."""
        from aiokafka import TopicPartition

        s = self.settings
        try:
            while True:
                consumer = group_less_consumer(s, "config", self.consumer_kwargs)
                try:
                    await consumer.start()
                    partition = TopicPartition(s.topics.config_updates, 0)
                    consumer.assign([partition])
                    await consumer.seek_to_beginning(partition)
                    while True:
                        batches = await consumer.getmany(timeout_ms=1_000)
                        raws = [record.value for records in batches.values() for record in records]
                        if raws:
                            await self.handle(raws)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.error("reading %s failed, retrying in 2 s: %r", s.topics.config_updates, exc)
                    await asyncio.sleep(2.0)
                finally:
                    await consumer.stop()
        finally:
            self.close()

    async def handle(self, raws: Iterable[bytes | None]) -> Any:
        """Announcements read together: serve the newest one newer than what serves (older ones are
        history: a restarted worker reads them all). Returns the ``Swap``, or None."""
        newest: ConfigUpdate | None = None
        for raw in raws:
            try:
                update = decode_config_update(raw, self._defaults)
            except ValueError as exc:
                self.metrics.config_swaps.labels("refused").inc()
                log.error("unreadable config-updates message %r: %s", bytes(raw or b"")[:200], exc)
                continue
            if update.version > self.version and (newest is None or update.version > newest.version):
                newest = update
        return await self.serve(newest) if newest is not None else None

    # -- the swap -------------------------------------------------------------------------
    async def serve(self, update: ConfigUpdate) -> Any:
        """Swap to ``update.config`` warm (see the module docstring); returns the ``Swap`` or None."""
        self.version = update.version
        engine = self.processor.engine
        if not callable(getattr(engine, "commit", None)):
            if not self._warned:
                self._warned = True
                log.warning("config version %d announced but not served: this worker does not self-tune "
                            "(STREAMREC_SELF_TUNE is off, or the bandit tuner runs)", update.version)
            return None
        evidence = {**update.evidence, "version": update.version}
        if update.config == engine.config:  # e.g. restored from a snapshot taken after this swap
            self.metrics.config_version.set(update.version)
            return None
        async with self.lock:  # blend weights and in-place knobs go to the live models: no build
            swap = engine.apply_in_place(update.config, evidence)
        if swap is not None:
            return self._record(swap, update.version)
        log.info("building the engine under config version %d on the kept events", update.version)
        try:
            if self.processes:
                position, blobs = engine.kept_encoded()  # encoded: far cheaper to ship than pickled tuples
                fresh = await self._build(update.config, blobs)
            else:
                position, events = engine.kept()
                shared = engine.kept_shared(position - len(events))  # other workers' deltas among them
                fresh = await self._build_in_slices(update.config, events, shared, engine)
                if fresh is None:
                    return None
        except Exception as exc:  # a config that cannot even be built must never take the worker down
            self.metrics.config_swaps.labels("refused").inc()
            log.error("config version %d refused, keeping the serving config: building it failed: %r",
                      update.version, exc)
            return None
        while True:
            async with self.lock:  # between two micro-batches (the events agent holds the lock for each)
                if self.processor.engine is not engine:
                    self.metrics.config_swaps.labels("refused").inc()
                    log.error("config version %d refused: the engine was replaced while it was built", update.version)
                    return None
                if engine.events - position > CATCH_UP_PER_BATCH:
                    # The events that arrived during the build, a slice per boundary: no batch waits for all.
                    try:
                        position = engine.catch_up(fresh, position, CATCH_UP_PER_BATCH)
                    except ValueError as exc:
                        self.metrics.config_swaps.labels("refused").inc()
                        log.error("config version %d refused: %s", update.version, exc)
                        return None
                else:
                    encoder = _served_encoder(engine)
                    if encoder is not None and fresh.blend is not None:  # checked and served with its encoder
                        fresh.blend.fill("encoder", encoder, weight=self.settings.encoder.weight)
                    swap = engine.commit(fresh, position, evidence)
                    break
            await asyncio.sleep(0)  # let the events agent take the lock for its next batch
        return self._record(swap, update.version)

    async def _build_in_slices(self, config: Any, events: list, shared: list, engine: Any) -> Any:
        """A fresh engine under ``config`` that learns ``events`` (and the other workers' deltas in
        ``shared`` where they fell among them, ``online.search.loop.learn_among``) a slice at a time between
        two micro-batches of the agent (``None`` if the engine was replaced meanwhile). The worker's own
        idle time does the build: no process to start, nothing to ship back, and a batch waits at most for
        one slice (``benchmarks/config_swap.py --in-process``: p99 during a swap at or below steady state at
        a rate the worker keeps up with)."""
        from online.engine import StreamingRecommender
        from online.search.loop import in_slices, learn_among

        fresh = StreamingRecommender(config)
        for chunk, among in in_slices(events, shared, CATCH_UP_PER_BATCH):
            async with self.lock:
                if self.processor.engine is not engine:
                    self.metrics.config_swaps.labels("refused").inc()
                    log.error("config version refused: the engine was replaced while it was built")
                    return None
                learn_among(fresh, chunk, among)
            await asyncio.sleep(0)  # let the events agent take the lock for its next batch
        return fresh

    def _record(self, swap: Any, version: int) -> Any:
        if swap.applied:
            self.metrics.config_swaps.labels("applied").inc()
            self.metrics.config_version.set(version)
            self.record_knobs()
            log.info("serving config version %d (%s, %.2f s): %s", version, swap.how, swap.seconds,
                     swap.evidence.get("config"))
        else:
            self.metrics.config_swaps.labels("refused").inc()
        return swap

    def record_knobs(self) -> None:
        export_knobs(self.metrics, self.settings, self.processor.engine.config)

    async def _build(self, config: Any, events: list) -> Any:
        """``online.search.loop.build_encoded(config, events)`` off the event loop: in the build process,
        or a thread where processes cannot be started."""
        from online.search.loop import build_encoded

        loop = asyncio.get_running_loop()
        try:
            pending = loop.run_in_executor(self._executor_now(), build_encoded, config, events)
        except (OSError, RuntimeError, NotImplementedError) as exc:  # the process could not be started
            self._no_processes(exc)
            pending = loop.run_in_executor(self._executor_now(), build_encoded, config, events)
        try:
            return await pending
        except concurrent.futures.process.BrokenProcessPool:
            self.close()  # the build process died (out of memory?): the next build starts a fresh one
            raise

    def _executor_now(self) -> concurrent.futures.Executor:
        if self._executor is None and self.processes:
            try:
                self._executor = concurrent.futures.ProcessPoolExecutor(
                    max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_ignore_interrupts)
            except (OSError, NotImplementedError, ImportError) as exc:
                self._no_processes(exc)
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="config-build")
        return self._executor

    def _no_processes(self, exc: BaseException) -> None:
        log.warning("no build process (%r): configs are built in a thread of the worker", exc)
        self.close()
        self.processes = False

    def close(self) -> None:
        """End the build process (a build in progress is abandoned)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


def _served_encoder(engine: Any) -> Any:
    """The encoder version ``engine``'s blend serves (it lives outside snapshots and configs), or None."""
    blend = engine.blend
    slot = blend.strategies.get("encoder") if blend is not None else None
    return getattr(slot, "strategy", None)
