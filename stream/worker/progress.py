"""Where the worker stands in each partition: one owner of the per-partition offsets.

Keyed by :class:`TopicPartition` (a ``(topic, partition)`` named tuple, equal to Faust's
``TP`` and aiokafka's ``TopicPartition`` for the same pair). Four facts per partition,
each written by the callers named here and nowhere else:

- **next offset**: one past the last message learned (:meth:`PartitionProgress.learned`, by
  the agent's micro-batches and the replica reader); what a snapshot covers (:meth:`covered`).
- **learned below**: messages below it are already in a restored state, from the worker's
  own snapshot (:meth:`restore`, ``stream.worker.durability``) or a partition file of the
  previous owner (:meth:`take_over`, ``stream.worker.handoff``); :meth:`already_learned`.
- **resume floor**: what the group had committed when that state was written. A first
  message below it means the topic was recreated or the group's offsets reset, so the
  restored offsets no longer mean what they meant and nothing is skipped.
- **answer only below**: a partition the group moved here after this worker had learned it
  as a replica (``stream.worker.replica``): messages below it are answered, not learned again.

Snapshot files keep string keys (``"topic/partition"``, :meth:`TopicPartition.key`);
convert with :meth:`TopicPartition.from_key` where they are read.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple


class TopicPartition(NamedTuple):
    topic: str
    partition: int

    def key(self) -> str:
        """``"topic/partition"``: how snapshot files store it (Kafka topic names hold no ``/``)."""
        return f"{self.topic}/{self.partition}"

    @classmethod
    def from_key(cls, key: str) -> TopicPartition:
        """The inverse of :meth:`key`; ``ValueError`` for anything else."""
        topic, sep, partition = key.rpartition("/")
        if not sep or not topic:
            raise ValueError(f"not a 'topic/partition' key: {key!r}")
        return cls(topic, int(partition))


def from_keys(offsets: Mapping[str, int]) -> dict[TopicPartition, int]:
    """``{"topic/partition": offset}`` (as a snapshot stores it) -> ``{TopicPartition: offset}``."""
    return {TopicPartition.from_key(key): int(offset) for key, offset in offsets.items()}


def to_keys(offsets: Mapping[TopicPartition, int]) -> dict[str, int]:
    """The inverse of :func:`from_keys`."""
    return {tp.key(): offset for tp, offset in offsets.items()}


class PartitionProgress:
    """The worker's offsets per partition: learned, restored, and handed over (see the module doc)."""

    __slots__ = ("_next", "_learned_below", "_resume_floor", "_answer_only_below")

    def __init__(self) -> None:
        self._next: dict[TopicPartition, int] = {}
        self._learned_below: dict[TopicPartition, int] = {}
        self._resume_floor: dict[TopicPartition, int] = {}
        self._answer_only_below: dict[TopicPartition, int] = {}

    # -- learning ------------------------------------------------------------------------
    def learned(self, tp: TopicPartition, offset: int) -> bool:
        """The message at ``offset`` is being learned: move the next offset past it.

        Returns False (and changes nothing) if this worker had already learned past it.
        """
        if offset < self._next.get(tp, 0):
            return False
        self._next[tp] = offset + 1
        return True

    def next_offset(self, tp: TopicPartition) -> int | None:
        """One past the last message of ``tp`` learned; None if none was."""
        return self._next.get(tp)

    def covered(self) -> dict[TopicPartition, int]:
        """A copy of the next offsets: what a snapshot taken now covers."""
        return dict(self._next)

    # -- restart and takeover --------------------------------------------------------------
    def restore(self, covered: Mapping[TopicPartition, int],
                committed: Mapping[TopicPartition, int] | None = None) -> None:
        """Continue from a snapshot that covers ``covered``, taken when the group had ``committed``."""
        self._next = dict(covered)
        self._learned_below = dict(covered)
        self._resume_floor = dict(committed or {})

    def take_over(self, tp: TopicPartition, covered: int, committed: int | None) -> None:
        """Another worker's state of ``tp``, covering messages below ``covered``, was imported."""
        self._learned_below[tp] = covered
        if committed is not None:
            self._resume_floor[tp] = committed
        else:
            self._resume_floor.pop(tp, None)

    def already_learned(self, tp: TopicPartition, offset: int) -> bool:
        """Whether a re-read message is already in the restored state (:meth:`restore`, :meth:`take_over`).

        The first message of ``tp`` decides whether its restored offsets still hold (not below the
        resume floor); checking stops for good once a partition is past them.
        """
        learned_below = self._learned_below
        if not learned_below:
            return False
        below = learned_below.get(tp)
        if below is None:
            return False
        floor = self._resume_floor.pop(tp, None)
        if (floor is not None and offset < floor) or offset >= below:
            del learned_below[tp]  # a new topic incarnation, or caught up: stop checking
            return False
        return True

    # -- a replica's partition becomes ours ---------------------------------------------------
    def answer_only_below(self, tp: TopicPartition, offset: int) -> None:
        """Messages of ``tp`` below ``offset`` were learned as a replica: answer them, do not learn them."""
        self._answer_only_below[tp] = offset

    def answer_only(self, tp: TopicPartition, offset: int) -> bool:
        """Whether the message at ``offset`` is to be answered only (see :meth:`answer_only_below`)."""
        answer_only_below = self._answer_only_below
        return bool(answer_only_below) and offset < answer_only_below.get(tp, -1)
