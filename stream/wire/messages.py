"""The envelopes the layers pass around: a Kafka message as read, a message to publish."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RawMessage:
    """A Kafka message as the processor sees it (``timestamp`` in epoch seconds)."""

    value: bytes | None
    key: bytes | None = None
    topic: str = ""
    partition: int = 0
    offset: int = 0
    timestamp: float | None = None


@dataclass(frozen=True)
class Output:
    """A message to publish; ``source_ts`` is the triggering message's broker timestamp."""

    topic: str
    key: bytes | None
    value: bytes
    source_ts: float | None = None
    reason: str | None = None  # for dead letters: the DLQ reason, for the metric's label
