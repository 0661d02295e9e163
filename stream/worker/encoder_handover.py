"""Encoder versions, announced on ``model-updates`` or found in the checkpoint directory, served in the blend."""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import logging
import threading
import time
from pathlib import Path
from typing import Any

from stream.wire.announcements import decode_model_update
from stream.worker import gc_pauses
from stream.worker.metrics import WorkerMetrics, record_encoder_swap
from stream.worker.processor import EventProcessor

log = logging.getLogger(__name__)


class EncoderHandover:
    """Loads announced encoder versions with a ``models.EncoderLoader`` and serves each in the blend.

    Loading (checksum, weights-only load, warm-up) runs in a thread so the event loop keeps
    serving; the loader keeps nothing served, and a version that fails to load leaves the
    served one as it is. A worker serving a learned blend imports torch and warms the serving
    path while it starts and joins its group (:meth:`start_preparing`); others import it on the
    first announcement, so workers without an encoder start fast.

    Each version that loads fills the blend's ``encoder`` slot (``online.blend.Blend.fill``),
    the one place a version is held: the slot ``STREAMREC_BLEND`` declared, with its declared
    weight, or, for a blend that does not list the encoder, one slot added with ``weight``
    (``STREAMREC_ENCODER_WEIGHT``).
    """

    def __init__(self, processor: EventProcessor, metrics: WorkerMetrics, weight: float,
                 cache_mb: float = 128.0, freeze_imports: bool = False) -> None:
        self.processor = processor
        self.metrics = metrics
        self.weight = weight
        self.cache_mb = cache_mb  # each version's memory for users' states
        self.loader: Any = None  # a models.EncoderLoader from the first announcement on
        # the worker owns its process: what the first load imports is kept out of the garbage collector's
        # walks (stream.worker.gc_pauses.late_import_frozen)
        self.freeze_imports = freeze_imports
        self._preparing: concurrent.futures.Future | None = None  # start_preparing's (loader, seconds)

    async def handle(self, raw: bytes | None) -> None:
        """An announcement from ``model-updates``."""
        try:
            update = decode_model_update(raw)
        except ValueError as exc:
            self.metrics.encoder_swaps.labels("rejected").inc()
            log.error("unreadable model-updates message %r: %s", (raw or b"")[:200], exc)
            return
        await self.load(update.path, update.version)

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
        if self.loader is None or (self.loader.version or 0) < version:
            await self.load(str(path), version)

    def _new_loader(self, prepare: bool) -> Any:
        from models import EncoderLoader
        from models.serving import serve_on_one_thread

        serve_on_one_thread()  # serving shares the core with the agent
        loader = EncoderLoader(cache_mb=self.cache_mb)
        if prepare:
            loader.prepare()
        return loader

    def start_preparing(self) -> None:
        """Import and warm the encoder's serving path in a thread of its own, starting now
        (``models.EncoderLoader.prepare``); the first load waits for it.

        A process's first load holds the interpreter lock in stretches of up to ~0.3 s, ~0.6 s in all
        (``benchmarks/first_encoder_load.py``): in the demo, that stall made its slowest ~1% of lists. A
        worker that serves a learned blend starts this before Faust starts, so the stretches fall on its
        start-up and its group join, when no list waits; its first version then loads in ~20 ms.
        """
        if self._preparing is not None or self.loader is not None:
            return
        preparing = self._preparing = concurrent.futures.Future()
        imports = self._first_imports()
        began = time.perf_counter()

        def prepare() -> None:
            try:
                with imports:
                    loader = self._new_loader(prepare=True)
                preparing.set_result((loader, time.perf_counter() - began))
            except BaseException as exc:  # noqa: BLE001 - handed to whoever awaits the loader
                preparing.set_exception(exc)

        threading.Thread(target=prepare, name="streamrec-encoder-prepare", daemon=True).start()

    async def prepared(self) -> None:
        """Wait for :meth:`start_preparing`'s thread and say how it went (nothing if none was started)."""
        preparing = self._preparing
        if preparing is None:
            return
        failure: Exception | None = None
        try:
            loader, seconds = await asyncio.wrap_future(preparing)
        except Exception as exc:  # never a reason to stop serving: the first version's load tries again
            failure = exc
        if self._preparing is not preparing:  # another caller awaited it too and said it
            return
        self._preparing = None
        if failure is not None:
            log.warning("preparing the encoder's serving path failed (the first version will pay it): %r", failure)
            return
        log.info("encoder serving path prepared in %.1f s, before the first version (%d objects frozen)",
                 seconds, gc.get_freeze_count())
        if self.loader is None:
            self.loader = loader

    async def load(self, path: str, version: int | None) -> None:
        first = self.freeze_imports
        with self._first_imports():
            result = await self._load(path, version)
        if first:
            log.info("%d objects frozen after the encoder's first load", gc.get_freeze_count())
        self._serve(result)

    async def _load(self, path: str, version: int | None) -> Any:
        loader = await self._loader()
        return await asyncio.to_thread(loader.load_if_newer, path, version)

    async def _loader(self) -> Any:
        """The loader, made on first use in a thread: importing torch takes seconds, never on the event loop."""
        await self.prepared()
        if self.loader is None:
            loader = await asyncio.to_thread(self._new_loader, False)
            if self.loader is None:  # another announcement may have made one meanwhile
                self.loader = loader
        return self.loader

    def _first_imports(self) -> contextlib.AbstractContextManager:
        """The first time (in a worker that owns its process): the encoder's first imports kept out of the
        collector's way (``gc_pauses.late_import_frozen``), as the worker's start-up imports are; then nothing."""
        if not self.freeze_imports:
            return contextlib.nullcontext()
        self.freeze_imports = False
        return gc_pauses.late_import_frozen()

    def _serve(self, result: Any) -> None:
        if result.loaded:
            self.metrics.encoder_swaps.labels("swapped").inc()
            if self.loader.version != result.version:  # a newer version loaded meanwhile; its own load serves it
                return
            record_encoder_swap(self.metrics, result.version, result.trained_at)
            engine = self.processor.engine
            if engine.config.blend is None:
                log.warning("encoder version %s loaded but not served: the worker runs the fixed mix of "
                            "popularity and next-item, not a learned blend (set STREAMREC_BLEND)", result.version)
            else:
                engine.blend.fill("encoder", result.scorer, weight=self.weight)
            log.info("serving encoder version %s (was %s)", result.version, result.previous)
        else:
            stale = result.error is None
            self.metrics.encoder_swaps.labels("stale" if stale else "rejected").inc()
            log.log(logging.INFO if stale else logging.ERROR, "encoder version %s not loaded: %s",
                    result.candidate, result.reason)
