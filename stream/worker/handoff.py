"""Per-user state follows its partition from one worker to the next.

With ``STREAMREC_HANDOFF_DIR`` set to a folder every worker can read and write
(a shared volume), each snapshot (``stream.worker.durability``) also leaves, for every
events partition the worker owns, a file ``<dir>/<app_id>/<topic>/<partition>.users``
with those users' state, the offset it covers and the offset last committed.
A worker that is assigned a partition it did not own before (scale-out, or the
previous owner died) imports that file's users and skips the messages the file
already covers, exactly as it would after restoring its own snapshot.

A user's partition is not stored: it is what Kafka's default partitioner gives the user id
(``stream.wire.partitioner.partition_for``), which is how streamrec's publisher keys events. Producers that
key events otherwise scatter a user over partitions, and then no per-user state can follow one.

The files are pickles written by our own workers: keep the folder private to them.
"""
from __future__ import annotations

import logging
import os
import pickle
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from common.files import atomic_write_bytes
from online.handoff import export_users, held_users, import_users
from stream.settings import Settings
from stream.wire.partitioner import partition_for
from stream.worker.processor import EventProcessor
from stream.worker.progress import TopicPartition

log = logging.getLogger(__name__)

MAGIC = b"streamrec-partition-users\n"


class PartitionHandoff:
    """Writes the owned partitions' users at each snapshot; imports the users of newly assigned ones."""

    def __init__(self, settings: Settings, processor: EventProcessor) -> None:
        self.settings = settings
        self.processor = processor
        self.folder = Path(settings.durability.handoff_dir) / settings.kafka.app_id / settings.topics.events
        # Stable across restarts of the same worker (same host, same data_dir): its own files are
        # never newer than its own snapshot, so it does not import them.
        self.writer = f"{os.uname().nodename}:{os.path.abspath(settings.durability.data_dir)}"
        self.owned: set[int] = set()
        self.imported_users = 0

    def path(self, partition: int) -> Path:
        return self.folder / f"{partition}.users"

    def collect(self, covered: Mapping[TopicPartition, int],
                committed: Mapping[TopicPartition, int]) -> dict[int, bytes]:
        """File contents for every owned partition (call between two micro-batches, or in the
        snapshot's forked child, where the partitioner's cost holds nothing up)."""
        topic = self.settings.topics.events
        engine = self.processor.engine
        partitions = self.settings.kafka.partitions
        by_partition: dict[int, list[str]] = {p: [] for p in self.owned}
        for user_id in held_users(engine):
            users = by_partition.get(partition_for(user_id.encode(), partitions))
            if users is not None:
                users.append(user_id)
        out = {}
        for partition, users in by_partition.items():
            where = TopicPartition(topic, partition)
            payload = {"writer": self.writer, "created": time.time(), "covered": covered.get(where),
                       "committed": committed.get(where), "users": export_users(engine, users)}
            out[partition] = MAGIC + pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
        return out

    def write(self, files: dict[int, bytes]) -> None:
        for partition, data in files.items():
            atomic_write_bytes(self.path(partition), data)

    def on_assigned(self, partitions: Iterable[int]) -> None:
        """Import the users of partitions this worker did not own before."""
        partitions = set(partitions)
        for partition in sorted(partitions - self.owned):
            self._import(partition)
        self.owned = partitions

    def _import(self, partition: int) -> None:
        path = self.path(partition)
        try:
            with path.open("rb") as handle:
                if handle.read(len(MAGIC)) != MAGIC:
                    raise ValueError("not a streamrec partition-users file")
                payload: dict[str, Any] = pickle.load(handle)
        except FileNotFoundError:
            return
        except Exception as exc:  # a corrupt file costs the users' history, never the worker
            log.error("could not take over the users of partition %s from %s: %r", partition, path, exc)
            return
        if payload.get("writer") == self.writer:
            return  # our own, from before a revocation: our engine is newer
        processor = self.processor
        n = import_users(processor.engine, payload["users"])  # what we knew of them is older than the file
        covered, committed = payload.get("covered"), payload.get("committed")
        if covered is not None:  # messages below it are in the imported users' state (and were answered)
            processor.progress.take_over(TopicPartition(self.settings.topics.events, partition), covered, committed)
        self.imported_users += n
        log.info("took over %d users of partition %s from %s (covering offsets below %s)",
                 n, partition, payload.get("writer"), covered)
