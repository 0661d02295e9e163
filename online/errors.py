"""Exceptions of the ``online`` package (one base class, as ``stream.errors`` has)."""
from __future__ import annotations


class OnlineError(Exception):
    """Base class of errors raised by ``online``."""


class SnapshotError(OnlineError):
    """A snapshot file is missing, not ours, from an incompatible version, or corrupt."""
