"""Versioned encoder checkpoints that are safe to hand from the trainer to the workers.

Why it is built this way:

- **weights-only loading.** A checkpoint crosses process (and machine)
  boundaries, so it is read with ``torch.load(weights_only=True)``: tensors and
  plain containers only, never arbitrary pickled objects. That is why the
  config is a dict and the vocabulary one JSON string (a ``list[str]`` once
  decoded: one string keeps the pure-Python weights-only unpickler fast).
- **atomic and checked.** The file is written to a temporary name and
  ``os.replace``-d into place; its sha256 is written first, beside it, in
  ``sha256sum`` format (``<hex>  <name>``). A reader that finds the checkpoint
  therefore also finds its checksum, and a truncated or corrupted file fails
  the check instead of half-loading.
- **one file per version.** ``encoder-v00000012.pt``: versions are monotonic
  ints, files are never overwritten, so a reader can't see a new checksum
  next to an old file.
- **typed failures.** :class:`~models.errors.CheckpointError` for damaged or
  missing files, :class:`~models.errors.IncompatibleCheckpoint` for files this
  code cannot use (format, config or weight shapes).
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from common.files import atomic_write_bytes
from models.config import EncoderConfig
from models.encoder import SequenceEncoder
from models.errors import CheckpointError, IncompatibleCheckpoint

FORMAT_VERSION = 1
_REQUIRED = ("format_version", "version", "config", "items", "state_dict", "metrics")
_NAME = re.compile(r"^encoder-v(\d+)\.pt$")


@dataclass(frozen=True)
class Checkpoint:
    """A loaded, checked checkpoint (weights on CPU)."""

    version: int
    config: EncoderConfig
    items: list[str]
    state_dict: dict[str, torch.Tensor]
    metrics: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0
    format_version: int = FORMAT_VERSION
    path: Path | None = None
    sha256: str = ""
    optimizer: dict[str, Any] | None = None


def checkpoint_path(directory: str | Path, version: int) -> Path:
    """Where version ``version`` lives in ``directory``."""
    return Path(directory) / f"encoder-v{int(version):08d}.pt"


def checksum_path(path: str | Path) -> Path:
    """The sidecar holding ``path``'s sha256."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def list_versions(directory: str | Path) -> list[tuple[int, Path]]:
    """``(version, path)`` of the checkpoint files in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def next_version(directory: str | Path) -> int:
    """One more than the newest version in ``directory`` (1 for an empty one)."""
    versions = list_versions(directory)
    return versions[-1][0] + 1 if versions else 1


def latest_checkpoint(directory: str | Path) -> Path | None:
    """Newest checkpoint file in ``directory`` whose checksum sidecar exists."""
    for _, path in reversed(list_versions(directory)):
        if checksum_path(path).is_file():
            return path
    return None


def _plain(value: Any) -> Any:
    """Metrics as plain Python data (numpy scalars would need pickle to load)."""
    if value is None:
        return None
    for kind in (bool, int, float, str):  # exact builtins: numpy.float64 subclasses float but pickles as numpy
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):  # numpy / torch scalars
        try:
            return _plain(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)


def save_checkpoint(path: str | Path, *, state_dict: Mapping[str, torch.Tensor], config: EncoderConfig,
                    items: list[str], version: int, metrics: Mapping[str, Any] | None = None,
                    optimizer: Mapping[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically, with its sha256 sidecar; returns ``path``.

    ``metrics`` must hold plain numbers/strings (it is stored as data).
    """
    path = Path(path)
    if config.n_items != len(items):
        raise ValueError(f"config.n_items={config.n_items} but the vocabulary has {len(items)} items")
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(f"version must be a non-negative int, got {version!r}")
    payload: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "version": version,
        "created": time.time(),
        "config": config.to_dict(),
        "items": json.dumps([str(i) for i in items]),  # one string: the weights-only unpickler is pure
        # Python, and a list of a million strings would take seconds to load on every hot swap
        "state_dict": {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state_dict.items()},
        "metrics": _plain(dict(metrics or {})),
    }
    if optimizer is not None:
        payload["optimizer"] = dict(optimizer)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(checksum_path(path), f"{digest}  {path.name}\n".encode())  # checksum first: see module doc
    atomic_write_bytes(path, data)
    return path


def read_checksum(path: str | Path) -> str:
    """The sha256 recorded beside ``path``; ``CheckpointError`` if absent or malformed."""
    side = checksum_path(path)
    try:
        text = side.read_text().split()
    except OSError as exc:
        raise CheckpointError(f"no checksum file {side} for {path}") from exc
    if not text or not re.fullmatch(r"[0-9a-f]{64}", text[0]):
        raise CheckpointError(f"malformed checksum file {side}")
    return text[0]


def load_checkpoint(path: str | Path, *, verify: bool = True) -> Checkpoint:
    """Read, verify and validate a checkpoint (tensors end up on CPU).

    Raises ``CheckpointError`` when the file is missing, fails its checksum or
    can't be decoded; ``IncompatibleCheckpoint`` when it decodes but does not fit
    this code.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if verify:
        expected = read_checksum(path)
        if digest != expected:
            raise CheckpointError(f"checksum mismatch for {path}: the file is corrupt or truncated")
    try:
        raw = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ... for bad bytes
        raise CheckpointError(f"cannot decode checkpoint {path}: {type(exc).__name__}: {exc}") from exc
    return _validate(raw, path, digest)


def _validate(raw: Any, path: Path, digest: str) -> Checkpoint:
    if not isinstance(raw, dict):
        raise IncompatibleCheckpoint(f"{path} is not an encoder checkpoint (top level is {type(raw).__name__})")
    missing = [key for key in _REQUIRED if key not in raw]
    if missing:
        raise IncompatibleCheckpoint(f"{path} is not an encoder checkpoint (missing {', '.join(missing)})")
    fmt = raw["format_version"]
    if fmt != FORMAT_VERSION:
        raise IncompatibleCheckpoint(f"{path} has format_version {fmt!r}; this code reads {FORMAT_VERSION}")
    try:
        config = EncoderConfig.from_dict(raw["config"])
    except (TypeError, ValueError) as exc:
        raise IncompatibleCheckpoint(f"{path} has an unusable config: {exc}") from exc
    state, version = raw["state_dict"], raw["version"]
    try:
        items = json.loads(raw["items"]) if isinstance(raw["items"], str) else None
    except ValueError:
        items = None
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise IncompatibleCheckpoint(f"{path}: the vocabulary is not a JSON list of strings")
    if len(items) != config.n_items or len(set(items)) != len(items):
        raise IncompatibleCheckpoint(f"{path}: {len(items)} vocabulary entries for n_items={config.n_items}")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise IncompatibleCheckpoint(f"{path}: state_dict is not a dict of tensors")
    if isinstance(version, bool) or not isinstance(version, int):
        raise IncompatibleCheckpoint(f"{path}: version {version!r} is not an int")
    metrics = raw["metrics"] if isinstance(raw["metrics"], dict) else {}
    return Checkpoint(version=version, config=config, items=items, state_dict=state, metrics=metrics,
                      created=float(raw.get("created", 0.0)), format_version=fmt, path=path, sha256=digest,
                      optimizer=raw.get("optimizer"))


def build_model(checkpoint: Checkpoint) -> SequenceEncoder:
    """A fresh encoder in eval mode with the checkpoint's weights (strict).

    Examples
    --------
    >>> import tempfile, torch
    >>> from models.config import EncoderConfig
    >>> cfg = EncoderConfig.tiny(n_items=3)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = save_checkpoint(checkpoint_path(d, 1), state_dict=SequenceEncoder(cfg).state_dict(),
    ...                         config=cfg, items=["a", "b", "c"], version=1)
    ...     ckpt = load_checkpoint(p)
    >>> ckpt.version, ckpt.items, build_model(ckpt).training
    (1, ['a', 'b', 'c'], False)
    """
    model = SequenceEncoder(checkpoint.config, init_weights=False, device="meta")  # no memory, no init
    try:
        model.load_state_dict(checkpoint.state_dict, strict=True, assign=True)
    except RuntimeError as exc:
        raise IncompatibleCheckpoint(f"weights do not fit the encoder: {str(exc).splitlines()[0]}") from exc
    return model.eval()
