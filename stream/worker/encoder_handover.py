"""Encoder versions, announced on ``model-updates`` or found in the checkpoint directory, served in the blend."""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from stream.wire.announcements import decode_model_update
from stream.worker.metrics import WorkerMetrics, record_encoder_swap
from stream.worker.processor import EventProcessor

log = logging.getLogger(__name__)


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
        if self.slot is None or (self.slot.version or 0) < version:
            await self.load(str(path), version)

    async def load(self, path: str, version: int | None) -> None:
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
