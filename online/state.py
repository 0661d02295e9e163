"""Engine snapshots: the whole learned state on disk, and back.

A snapshot is one file: a magic line, then a pickled dict
``{"format", "created", "engine", "offsets", "metadata"}``. ``engine`` is the
:class:`~online.engine.StreamingRecommender` with its user state, strategies
and blend; ``offsets`` are the Kafka offsets the state covers (``stream/``
passes them in and resumes from them), so a restarted worker restores the
snapshot and replays only what came after (the checkpoint idea of Flink).
Writes are atomic: a temporary file in the same folder, fsync, rename.

Security: **pickle runs code while loading**. Only load snapshots this project
wrote itself, from a folder only the workers can write; never a file that came
from users, the network or another tenant. The magic line and ``format``
guard against accidents, not against tampering.

The heavy encoder held by an ``encoder`` :class:`~online.blend.StrategySlot`
is not part of a snapshot; it is restored from its own checkpoint.
"""
from __future__ import annotations

import os
import pickle
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.files import atomic_write_bytes
from online.engine import StreamingRecommender
from online.errors import SnapshotError

MAGIC = b"streamrec-engine-snapshot\n"
FORMAT_VERSION = 2  # 2: per-user state pickles as a tuple (UserState.__getstate__)


@dataclass
class Snapshot:
    """What :func:`load_snapshot` returns."""

    engine: StreamingRecommender
    offsets: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0
    format: int = FORMAT_VERSION


def save_snapshot(engine: StreamingRecommender, path: str | os.PathLike[str], *,
                  offsets: Mapping[str, Any] | None = None,
                  metadata: Mapping[str, Any] | None = None) -> Path:
    """Write ``engine`` (and the offsets it covers) to ``path`` atomically; returns the path.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from online.base import Interaction
    >>> engine = StreamingRecommender()
    >>> engine.learn_many([Interaction("u1", "a", 0.0), Interaction("u1", "b", 1.0)])
    >>> folder = tempfile.mkdtemp()
    >>> path = save_snapshot(engine, pathlib.Path(folder) / "engine.snap", offsets={"events/0": 2})
    >>> restored = load_snapshot(path)
    >>> restored.offsets, restored.engine.n_users, restored.engine.recommend("u2") == engine.recommend("u2")
    ({'events/0': 2}, 1, True)
    """
    return atomic_write_bytes(path, snapshot_bytes(engine, offsets=offsets, metadata=metadata))


def snapshot_bytes(engine: Any, *, offsets: Mapping[str, Any] | None = None,
                   metadata: Mapping[str, Any] | None = None) -> bytes:
    """The snapshot file's content, taken now.

    Split from the write (``common.files.atomic_write_bytes``) so that a worker can freeze its state
    between two micro-batches (this step, in memory) and do the slow disk write without holding up learning.
    """
    payload = {"format": FORMAT_VERSION, "created": time.time(), "engine": engine,
               "offsets": dict(offsets or {}), "metadata": dict(metadata or {})}
    return MAGIC + pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)


def load_snapshot(path: str | os.PathLike[str]) -> Snapshot:
    """Read a snapshot written by :func:`save_snapshot` (ours only: see the module docstring).

    Raises :class:`~online.errors.SnapshotError` when the file is missing, is not a
    streamrec snapshot, comes from another format version, or is corrupt.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            if handle.read(len(MAGIC)) != MAGIC:
                raise SnapshotError(f"{path} is not a streamrec engine snapshot")
            payload = pickle.load(handle)
    except FileNotFoundError:
        raise SnapshotError(f"no snapshot at {path}") from None
    except SnapshotError:
        raise
    except Exception as exc:  # truncated or corrupt pickles raise many types
        raise SnapshotError(f"{path} is corrupt: {type(exc).__name__}: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise SnapshotError(f"{path} has snapshot format {found!r}; this version reads {FORMAT_VERSION}")
    engine = payload.get("engine")
    if not (callable(getattr(engine, "learn_many", None)) and callable(getattr(engine, "recommend", None))):
        raise SnapshotError(f"{path} holds no engine (found {type(engine).__name__})")
    return Snapshot(engine=engine, offsets=payload.get("offsets", {}), metadata=payload.get("metadata", {}),
                    created=payload.get("created", 0.0), format=payload["format"])
