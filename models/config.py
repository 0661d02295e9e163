"""Frozen, validated hyper-parameters for the encoder and its trainer.

Plain data only: no environment reading here (``stream/settings.py`` is the one
env reader), no argparse namespaces. Configs are stored inside checkpoints as
plain dicts (:meth:`EncoderConfig.to_dict`) so that loading never needs pickle.
Presets say what each size is for: ``tiny`` for CPU tests, ``paper`` for the
SASRec paper's setting (the baseline we compare against), ``large`` for a GPU.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

DEVICES = ("auto", "cpu", "cuda")
LOSSES = ("ce", "bce")
PRESETS = ("tiny", "small", "paper", "large")


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__} expects a dict, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
    return cls(**data)


@dataclass(frozen=True)
class EncoderConfig:
    """Shape of the SASRec-family encoder.

    Parameters
    ----------
    n_items
        Catalogue size (ids ``1..n_items``; 0 is padding). ``0`` means "not known
        yet": the trainer fills it from the data's vocabulary.
    hidden
        Embedding and model width; must be divisible by ``n_heads``.
    n_blocks, n_heads
        Transformer blocks and attention heads per block.
    max_len
        How many of a user's most recent items the encoder reads.
    dropout
        Dropout on embeddings, attention and feed-forward outputs.
    ffn_mult
        Feed-forward width as a multiple of ``hidden`` (SASRec uses 1).

    Examples
    --------
    >>> cfg = EncoderConfig.tiny(n_items=100)
    >>> cfg.hidden, cfg.max_len
    (32, 50)
    >>> cfg.copy(hidden=64).hidden
    64
    >>> EncoderConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    n_items: int = 0
    hidden: int = 64
    n_blocks: int = 2
    n_heads: int = 1
    max_len: int = 50
    dropout: float = 0.2
    ffn_mult: int = 1

    def __post_init__(self) -> None:
        for name in ("n_items", "hidden", "n_blocks", "n_heads", "max_len", "ffn_mult"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"EncoderConfig.{name} must be an int, got {value!r}")
        if self.n_items < 0:
            raise ValueError("EncoderConfig.n_items must be >= 0 (0 = fill from the data)")
        if min(self.hidden, self.n_blocks, self.n_heads, self.max_len, self.ffn_mult) < 1:
            raise ValueError("EncoderConfig sizes (hidden, n_blocks, n_heads, max_len, ffn_mult) must be >= 1")
        if self.hidden % self.n_heads:
            raise ValueError(f"hidden={self.hidden} is not divisible by n_heads={self.n_heads}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError("EncoderConfig.dropout must be in [0, 1)")

    @classmethod
    def tiny(cls, n_items: int = 0) -> EncoderConfig:
        """A few thousand parameters plus embeddings: 1-epoch CPU tests and CI."""
        return cls(n_items=n_items, hidden=32, n_blocks=2, n_heads=1, max_len=50, dropout=0.2)

    @classmethod
    def small(cls, n_items: int = 0) -> EncoderConfig:
        """What the stream trainer runs on CPU: hidden 64, 2 blocks, 1 head, L=50 (chosen on ML-100K in the stream)."""
        return cls(n_items=n_items, hidden=64, n_blocks=2, n_heads=1, max_len=50, dropout=0.2)

    @classmethod
    def paper(cls, n_items: int = 0) -> EncoderConfig:
        """The SASRec paper's MovieLens setting (hidden 50, 2 blocks, 1 head, L=200)."""
        return cls(n_items=n_items, hidden=50, n_blocks=2, n_heads=1, max_len=200, dropout=0.2)

    @classmethod
    def large(cls, n_items: int = 0) -> EncoderConfig:
        """Big enough to keep a GPU busy: hidden 256, 4 blocks, 4 heads, L=200, 4x FFN."""
        return cls(n_items=n_items, hidden=256, n_blocks=4, n_heads=4, max_len=200, dropout=0.2, ffn_mult=4)

    @classmethod
    def preset(cls, name: str, n_items: int = 0) -> EncoderConfig:
        """``tiny`` | ``small`` | ``paper`` | ``large`` by name (for CLIs and settings)."""
        if name not in PRESETS:
            raise ValueError(f"unknown encoder preset {name!r}; choose one of {', '.join(PRESETS)}")
        return getattr(cls, name)(n_items=n_items)

    def copy(self, **changes: Any) -> EncoderConfig:
        """A changed copy; validation runs again."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain ints/floats, safe for ``torch.load(weights_only=True)`` and JSON."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncoderConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        return _from_dict(cls, data)


@dataclass(frozen=True)
class TrainerConfig:
    """How to train: device, loss, optimiser and bookkeeping.

    Parameters
    ----------
    device
        ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    loss
        ``ce``: cross-entropy over the whole catalogue (or sampled softmax when
        ``ce_negatives > 0``), the stronger choice for SASRec. ``bce``: the
        paper's binary cross-entropy with ``bce_negatives`` sampled negatives.
    batch_size
        Sequences per optimiser step *per process* (under DDP the global batch is
        ``batch_size x world_size``).
    amp
        bf16 autocast on CUDA (ignored on CPU). bf16 keeps fp32's exponent
        range, so no ``GradScaler`` is needed (that is for fp16).
    grad_clip
        Max global gradient norm; ``0`` disables clipping.
    compile
        Wrap the model in ``torch.compile`` (CUDA only; falls back to eager if
        compilation fails).
    checkpoint_every_steps
        Call the trainer's checkpoint hook every N optimiser steps; ``0`` = only at the end.
    nan_check_every
        Check the loss for NaN/inf every N steps (each check syncs the GPU).
    progress
        Show a ``rich`` progress bar on stderr.

    Examples
    --------
    >>> TrainerConfig(loss="bce").bce_negatives
    1
    >>> TrainerConfig(device="tpu")
    Traceback (most recent call last):
    ...
    ValueError: TrainerConfig.device must be one of auto, cpu, cuda, got 'tpu'
    """

    device: str = "auto"
    loss: str = "ce"
    ce_negatives: int = 0
    bce_negatives: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 1
    amp: bool = True
    grad_clip: float = 1.0
    compile: bool = False
    seed: int = 0
    checkpoint_every_steps: int = 0
    nan_check_every: int = 1
    progress: bool = True

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"TrainerConfig.device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"TrainerConfig.loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.ce_negatives < 0 or self.bce_negatives < 1:
            raise ValueError("ce_negatives must be >= 0 and bce_negatives >= 1")
        if not self.lr > 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("lr must be > 0; weight_decay and grad_clip >= 0")
        if self.batch_size < 1 or self.epochs < 0 or self.nan_check_every < 1 or self.checkpoint_every_steps < 0:
            raise ValueError("batch_size and nan_check_every must be >= 1; epochs, checkpoint_every_steps >= 0")

    def copy(self, **changes: Any) -> TrainerConfig:
        """A changed copy; validation runs again."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainerConfig:
        return _from_dict(cls, data)
