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
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

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
    return write_snapshot_bytes(snapshot_bytes(engine, offsets=offsets, metadata=metadata), path)


def snapshot_bytes(engine: Any, *, offsets: Mapping[str, Any] | None = None,
                   metadata: Mapping[str, Any] | None = None) -> bytes:
    """The snapshot file's content, taken now.

    Split from :func:`write_snapshot_bytes` so that a worker can freeze its state between two
    micro-batches (this step, in memory) and do the slow disk write without holding up learning.
    """
    payload = {"format": FORMAT_VERSION, "created": time.time(), "engine": engine,
               "offsets": dict(offsets or {}), "metadata": dict(metadata or {})}
    return MAGIC + pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)


def write_snapshot_bytes(data: bytes, path: str | os.PathLike[str]) -> Path:
    """Write ``data`` to ``path`` atomically: temporary file in the same folder, fsync, rename, fsync the folder.

    The same steps as ``models.checkpoint._atomic_write``; ``online`` and ``models`` may not import each
    other (``tests/test_layering.py``), so each keeps its own twelve lines.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable, as models.checkpoint does; not every file system allows it
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError:
        pass
    return path


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
