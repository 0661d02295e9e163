"""The heavy sequence encoder: PyTorch and numpy only, no Kafka, no ``online``.

A SASRec-family transformer (:class:`SequenceEncoder`), its batch trainer
(:func:`train_offline`, :class:`Trainer`), the refresh a stream trainer runs (:func:`refresh_encoder`:
warm start, vocabulary growth, early stopping on the newest events; :class:`ReplayedTrainer` replays it
at the trainer's cadence for ``streamrec eval``), versioned checkpoints, the loader that
checks and warms up each new version (:class:`EncoderLoader`; it serves nothing)
and the CPU scorer that plugs into the blend as a strategy (:class:`EncoderScorer`),
which the blend's encoder slot holds. ``stream/`` wires these to Kafka and the CLI;
nothing here knows about either.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

# Public name -> the module that defines it (``__all__`` is its keys). Imported on first use (PEP 562):
# ``import models.errors`` (every CLI command catches ModelError) or ``from models import EncoderLoader``
# loads only what it needs, and a worker that never serves an encoder never pays for torch and numba (~2 s
# and ~1,000 modules at start-up). ``evaluate`` is not among them: the submodule of that name would shadow
# it; ``from models.evaluate import evaluate``.
_WHERE = {
    "FORMAT_VERSION": "checkpoint", "Checkpoint": "checkpoint", "build_model": "checkpoint",
    "checkpoint_path": "checkpoint", "latest_checkpoint": "checkpoint", "load_checkpoint": "checkpoint",
    "next_version": "checkpoint", "save_checkpoint": "checkpoint",
    "EncoderConfig": "config", "TrainerConfig": "config",
    "ItemVocab": "data", "SequenceBuffer": "data", "Sequences": "data", "build_sequences": "data",
    "leave_one_out": "data", "training_windows": "data",
    "SequenceEncoder": "encoder",
    "CheckpointError": "errors", "IncompatibleCheckpoint": "errors", "ModelError": "errors",
    "NonFiniteLoss": "errors",
    "EncoderLoader": "hot_swap", "SwapResult": "hot_swap",
    "EncoderVersion": "refresh", "RefreshConfig": "refresh", "RefreshResult": "refresh", "StreamLog": "refresh",
    "refresh_encoder": "refresh",
    "Cadence": "replay", "ReplayedTrainer": "replay",
    "EncoderScorer": "serving",
    "EpochReport": "trainer", "Trainer": "trainer", "pick_device": "trainer", "train_offline": "trainer",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    value = getattr(import_module(f"models.{module}"), name)
    globals()[name] = value  # the next look-up is a plain one
    return value


def __dir__() -> list[str]:
    return __all__

