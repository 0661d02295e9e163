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

from models.checkpoint import (
    FORMAT_VERSION,
    Checkpoint,
    build_model,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    next_version,
    save_checkpoint,
)
from models.config import EncoderConfig, TrainerConfig
from models.data import ItemVocab, SequenceBuffer, Sequences, build_sequences, leave_one_out, training_windows
from models.encoder import SequenceEncoder
from models.errors import CheckpointError, IncompatibleCheckpoint, ModelError, NonFiniteLoss
from models.evaluate import evaluate
from models.hot_swap import EncoderLoader, SwapResult
from models.refresh import EncoderVersion, RefreshConfig, RefreshResult, StreamLog, refresh_encoder
from models.replay import Cadence, ReplayedTrainer
from models.serving import EncoderScorer
from models.trainer import EpochReport, Trainer, pick_device, train_offline

__all__ = [
    "FORMAT_VERSION",
    "Cadence",
    "EncoderVersion",
    "RefreshConfig",
    "RefreshResult",
    "ReplayedTrainer",
    "StreamLog",
    "refresh_encoder",
    "Checkpoint",
    "CheckpointError",
    "EncoderConfig",
    "EncoderLoader",
    "EncoderScorer",
    "EpochReport",
    "IncompatibleCheckpoint",
    "ItemVocab",
    "ModelError",
    "NonFiniteLoss",
    "SequenceBuffer",
    "SequenceEncoder",
    "Sequences",
    "SwapResult",
    "Trainer",
    "TrainerConfig",
    "build_model",
    "build_sequences",
    "checkpoint_path",
    "evaluate",
    "latest_checkpoint",
    "leave_one_out",
    "load_checkpoint",
    "next_version",
    "pick_device",
    "save_checkpoint",
    "train_offline",
    "training_windows",
]
