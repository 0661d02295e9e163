"""Cutting what the consumer fetched into micro-batches of about ``batch_max`` events.

A fetch may hold thousands of messages, and a message may be one event or a JSON array of
hundreds. A micro-batch is learned as one and answered with one list per user, so its size sets
how long the event loop is busy before the lists go out (latency, and the health and metrics pages
waiting) and how many lists an event costs. Events per message are only known after decoding, so
the cut uses the running mean of events per message seen so far: a fetch of single-event messages
is cut every ``batch_max`` messages, one of 200-event arrays every ``batch_max / 200``.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


class MicroBatches:
    """Cuts a fetch's messages into micro-batches of about ``max_events`` events each."""

    def __init__(self, max_events: int, smoothing: float = 0.2) -> None:
        if max_events < 1:
            raise ValueError(f"max_events must be at least 1, not {max_events}")
        self.max_events = max_events
        self.smoothing = smoothing
        self.events_per_message = 1.0  # until a batch says otherwise: the smaller cut, never a huge one

    def cut(self, messages: Sequence[T]) -> Iterator[Sequence[T]]:
        """Consecutive slices of ``messages`` (in order, each message once)."""
        size = max(1, int(self.max_events / max(1.0, self.events_per_message)))
        for start in range(0, len(messages), size):
            yield messages[start:start + size]

    def observe(self, messages: int, events: int) -> None:
        """A micro-batch of ``messages`` messages held ``events`` events (bad ones included)."""
        if messages > 0:
            self.events_per_message += self.smoothing * (events / messages - self.events_per_message)
