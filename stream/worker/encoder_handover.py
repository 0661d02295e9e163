"""Encoder versions, announced on ``model-updates`` or found in the checkpoint directory, served in the blend."""
from __future__ import annotations

import asyncio
import gc
import logging
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
    served one as it is. torch is imported on the first announcement, so workers without an
    encoder start fast.

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

    def _new_loader(self) -> Any:
        from models import EncoderLoader
        from models.serving import serve_on_one_thread

        serve_on_one_thread()  # serving shares the core with the agent
        return EncoderLoader(cache_mb=self.cache_mb)

    async def load(self, path: str, version: int | None) -> None:
        if self.freeze_imports:  # the first load: what it imports, out of the collector's way
            self.freeze_imports = False
            with gc_pauses.late_import_frozen():
                result = await self._load(path, version)
            log.info("%d objects frozen after the encoder's first load", gc.get_freeze_count())
        else:
            result = await self._load(path, version)
        self._serve(result)

    async def _load(self, path: str, version: int | None) -> Any:
        if self.loader is None:  # importing torch takes seconds: never on the event loop
            loader = await asyncio.to_thread(self._new_loader)
            if self.loader is None:  # another announcement may have made one meanwhile
                self.loader = loader
        return await asyncio.to_thread(self.loader.load_if_newer, path, version)

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
