"""The control topics: encoder versions on ``model-updates``, tuner states on ``tuning``.

Both are JSON objects, encoded with the standard library's ``json.dumps`` (so what the
trainer prints is byte for byte what it announces). The trainer encodes
:class:`ModelUpdate` and workers decode it; workers encode their tuner's snapshot,
dashboards and tests read it back with :func:`decode_tuning`.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelUpdate:
    """A new encoder version: its checkpoint's path and, from the trainer, when and how it was trained.

    Only ``version`` and ``path`` are required on the wire; ``ts`` (Unix time of the
    announcement) and ``metrics`` (training figures) are informational.
    """

    version: int
    path: str
    ts: float | None = None
    metrics: Mapping[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON object on the wire (unset optional fields left out)."""
        out: dict[str, Any] = {"version": self.version, "path": self.path}
        if self.ts is not None:
            out["ts"] = self.ts
        if self.metrics is not None:
            out["metrics"] = dict(self.metrics)
        return out


def encode_model_update(update: ModelUpdate) -> bytes:
    return json.dumps(update.as_dict()).encode()


def decode_model_update(raw: bytes | None) -> ModelUpdate:
    """The announcement in ``raw``; ``ValueError`` (saying what is wrong) for anything unreadable:
    not JSON, not an object, no ``path`` or ``version``, a ``version`` that is not a whole number
    (``1e999``, ``NaN``, ``true``, ``1.5``), nesting too deep to parse. Anyone can produce to the
    topic, so nothing in it may raise anything else out of here."""
    try:
        note = json.loads(raw or b"")
        path, version = note["path"], note["version"]
        if isinstance(version, str):
            version = int(version)  # "2" has always been accepted
        if isinstance(version, bool) or not isinstance(version, (int, float)) or version != int(version):
            raise ValueError(f"version {version!r} is not a whole number")
        if not isinstance(path, str) or not path:
            raise ValueError(f"path {path!r} is not a non-empty string")
        return ModelUpdate(int(version), path, note.get("ts"), note.get("metrics"))
    except (KeyError, TypeError, OverflowError, RecursionError) as exc:  # no such field, not an object, ...
        raise ValueError(f"{type(exc).__name__}: {exc}") from exc


def encode_tuning(snapshot: Mapping[str, Any], *, worker: str, ts: float) -> bytes:
    """A worker's tuner snapshot (``online.tuning.TunedRecommender.tuning_snapshot``), signed
    with the worker's identity and the time it was taken."""
    return json.dumps({**snapshot, "worker": worker, "ts": ts}).encode()


def decode_tuning(raw: bytes) -> dict[str, Any]:
    return json.loads(raw)
