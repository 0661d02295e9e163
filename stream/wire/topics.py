"""Topic names and partition counts: the one place the app, clients and broker read them."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TopicSpec:
    """A topic as streamrec declares it at start-up."""

    name: str
    partitions: int = 1
    replication: int = 1
