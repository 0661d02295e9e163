"""One base exception for ``models``, and the few kinds callers catch.

The worker's hot-swap path needs to tell "this file is damaged, try the next
announcement" (:class:`CheckpointError`) from "this file was written by a
different code version" (:class:`IncompatibleCheckpoint`, a subclass, so a
single ``except CheckpointError`` still catches both) from "training went
wrong" (:class:`NonFiniteLoss`). Everything derives from :class:`ModelError`
so ``stream/`` can catch the whole package at its boundary.
"""
from __future__ import annotations


class ModelError(Exception):
    """Base class for errors raised by ``models``."""


class CheckpointError(ModelError):
    """A checkpoint file is missing, truncated, corrupt or fails its checksum."""


class IncompatibleCheckpoint(CheckpointError):
    """A checkpoint reads fine but does not fit this code (format, config or weights)."""


class NonFiniteLoss(ModelError):
    """The training loss became NaN or infinite; the run is stopped, nothing is saved."""
