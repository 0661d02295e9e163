"""The worker's learned state survives a crash: snapshot before every offset commit, restore at start.

The rule that makes "nothing accepted is lost" and "state continues" hold together:
**an input offset is committed only after the state that learned it is on disk and
the lists it produced are acknowledged by the broker.** Faust calls
:meth:`StateKeeper.before_commit` from inside its commit (``stream.kafka.transport``); it

1. freezes the engine between two micro-batches (under the agent's lock), together with
   the offsets it covers and the recent event ids: by default it forks, and the child
   pickles its copy-on-write image while the worker goes on learning
   (``STREAMREC_SNAPSHOT_FORK``); otherwise it pickles in place;
2. flushes the producer, so every list of those batches is acknowledged;
3. waits until the file is written atomically (temporary file, fsync, rename);
4. lets Faust commit, clamping the events topic's offsets to what the snapshot covers.

After ``kill -9`` the worker restores the last snapshot; Faust resumes from the committed
offsets, which are never ahead of it. Messages below the snapshot's offsets (committed
or not) are already in the state and are skipped; the rest are learned again, so each
event changes the state exactly once and each list is published at least once.

The file is ``<data_dir>/engine.snap``: one per worker, so ``data_dir`` must not be shared
between workers. It is a pickle (``online.state``): only ever load the worker's own files.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from common.files import atomic_write_bytes
from online.errors import SnapshotError
from online.state import load_snapshot, snapshot_bytes
from stream.settings import Settings
from stream.worker.processor import EventProcessor, build_engine
from stream.worker.progress import TopicPartition, from_keys, to_keys

log = logging.getLogger(__name__)

SNAPSHOT_NAME = "engine.snap"


class StateKeeper:
    """Snapshots ``processor``'s engine before commits and restores it when the worker starts."""

    def __init__(self, settings: Settings, processor: EventProcessor, lock: asyncio.Lock,
                 flush: Callable[[], Awaitable[Any]], handoff: Any = None) -> None:
        self.settings = settings
        self.handoff = handoff  # a stream.worker.handoff.PartitionHandoff, or None
        self.processor = processor
        self.lock = lock
        self.flush = flush
        self.path = Path(settings.durability.data_dir) / SNAPSHOT_NAME
        self.snapshots_written = 0
        self.failures = 0
        self.last_written: float | None = None
        self.last_seconds: float | None = None
        self.last_pause_seconds: float | None = None  # how long learning waited for the snapshot
        self._configured_config: Any = None
        self.events_in_snapshot = 0  # the engine's events_learned when the last snapshot was taken
        self.committed: dict[TopicPartition, int] = {}  # offset last handed to Faust to commit

    @property
    def enabled(self) -> bool:
        return self.settings.durability.snapshot_interval_s > 0

    def restore(self) -> bool:
        """Continue from ``<data_dir>/engine.snap`` if it is there and fits the settings.

        A snapshot made under other engine settings is set aside (renamed ``.stale-<time>``):
        changing the settings is taken as asking for a fresh start. An unreadable one is set
        aside as ``.corrupt-<time>`` and the worker starts cold, saying so in the log.
        """
        if not self.enabled or not self.path.exists():
            return False
        try:
            snapshot = load_snapshot(self.path)
        except SnapshotError as exc:
            self._set_aside("corrupt")
            log.error("could not restore the learned state, starting cold: %s", exc)
            return False
        fresh = self.processor.engine  # built from the current settings (stream.worker.processor.build_engine)
        # A self-tuned engine serves the tuner's config, not the configured one: what must match is the
        # configuration it started from (recorded with the snapshot), not the one it swapped to since.
        wanted = (type(fresh), self._configured())
        found = (type(snapshot.engine), snapshot.metadata.get("configured", getattr(snapshot.engine, "config", None)))
        source = snapshot.metadata.get("source")
        if found != wanted or source != self._source():
            self._set_aside("stale")
            log.warning("the snapshot was made with other engine settings or another topic; starting cold "
                        "(%s from %s; now %s from %s)", found, source, wanted, self._source())
            return False
        try:  # the file keeps "topic/partition" keys
            covered, committed = from_keys(snapshot.offsets), from_keys(snapshot.metadata.get("committed", {}))
        except (ValueError, TypeError, AttributeError) as exc:
            self._set_aside("corrupt")
            log.error("could not restore the learned state, starting cold: unreadable offsets: %r", exc)
            return False
        self.committed = committed
        self.processor.restore(snapshot.engine, covered, list(snapshot.metadata.get("recent_ids", ())),
                               self.committed)
        self.processor.restore_deltas(snapshot.metadata.get("unacked_deltas", ()))
        log.info("restored the learned state of %s events (%d users) from %s, offsets %s",
                 snapshot.engine.events_learned, snapshot.engine.n_users, self.path, snapshot.offsets)
        return True

    async def before_commit(self, offsets: Mapping[Any, int]) -> dict[Any, int] | None:
        """Make the state behind ``offsets`` durable; return the offsets safe to commit, or None.

        ``offsets`` maps Faust ``TP(topic, partition)`` to the next offset to read. Returning
        None skips this commit (the snapshot failed): the events are read again after a
        restart, which at-least-once allows, while a commit ahead of the state would lose them.
        """
        if not self.enabled:
            return dict(offsets)
        started = time.perf_counter()
        processor = self.processor
        async with self.lock:  # between two micro-batches: the engine and its offsets agree
            covered = processor.progress.covered()
            unacked = len(processor.unacked_deltas)  # in the snapshot; acknowledged once the flush below succeeds
            events_learned = processor.engine.events_learned
            paused = time.perf_counter()
            if self.settings.durability.snapshot_fork and hasattr(os, "fork"):
                child = self._fork_writer(covered)  # the child pickles a copy-on-write image
                data, handed = None, {}
            else:
                child = None
                data = snapshot_bytes(processor.engine, offsets=to_keys(covered), metadata=self._metadata())
                handed = self.handoff.collect(covered, self.committed) if self.handoff is not None else {}
            self.last_pause_seconds = time.perf_counter() - paused
        try:
            await self.flush()  # every list of the batches in the snapshot is acknowledged
            if child is not None:
                await self._wait_for(child)
            else:
                await asyncio.to_thread(atomic_write_bytes, self.path, data)
                if handed:
                    await asyncio.to_thread(self.handoff.write, handed)
        except Exception as exc:  # disk full, broker gone: do not commit past the durable state
            self.failures += 1
            log.error("snapshot before commit failed, offsets not committed: %r", exc)
            if child is not None:
                try:
                    await self._wait_for(child)  # reap it; what it wrote is consistent, just not committed
                except Exception:
                    pass
            return None
        processor.deltas_acknowledged(unacked)
        self.snapshots_written += 1
        self.events_in_snapshot = events_learned
        self.last_written = time.time()
        self.last_seconds = time.perf_counter() - started
        events_topic = self.settings.topics.events
        safe = {}
        for tp, offset in offsets.items():
            topic, partition = tp[0], tp[1]
            if topic == events_topic:
                where = TopicPartition(topic, partition)
                offset = min(offset, covered.get(where, offset))
                self.committed[where] = offset
            safe[tp] = offset
        return safe

    def _metadata(self) -> dict[str, Any]:
        """What a snapshot carries beside the engine (built in the child when the writer forks)."""
        return {"recent_ids": self.processor.recent_ids.export(), "committed": to_keys(self.committed),
                "source": self._source(), "configured": self._configured(),
                # item deltas of the covered batches that the producer may not have delivered (learn scope shared)
                "unacked_deltas": [(out.key, out.value) for out in self.processor.unacked_deltas]}

    def _configured(self) -> Any:
        """The config the worker's engine is built with from its settings (before any swap)."""
        if self._configured_config is None:
            self._configured_config = build_engine(self.settings).config
        return self._configured_config

    def _fork_writer(self, covered: dict[TopicPartition, int]) -> int:
        """Fork; the child writes the snapshot (and the handoff files) and exits. Returns its pid.

        The Redis way: ``fork`` copies the page tables, not the heap, so learning pauses for
        milliseconds instead of the seconds pickling a million users takes. The child touches no
        socket, lock or event loop: it pickles, writes with fsync and leaves with ``os._exit``.
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # "multi-threaded process": see above
            pid = os.fork()
        if pid == 0:
            code = 1
            try:
                atomic_write_bytes(self.path, snapshot_bytes(self.processor.engine, offsets=to_keys(covered),
                                                             metadata=self._metadata()))
                if self.handoff is not None:
                    self.handoff.write(self.handoff.collect(covered, self.committed))
                code = 0
            except BaseException as exc:  # report through stderr: logging may hold a parent's lock
                try:
                    os.write(2, f"streamrec snapshot writer failed: {exc!r}\n".encode())
                except OSError:
                    pass
            finally:
                os._exit(code)
        return pid

    async def _wait_for(self, pid: int, timeout: float = 600.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                code = os.waitstatus_to_exitcode(status)
                if code != 0:
                    raise OSError(f"the snapshot writer exited with {code}")
                return
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                raise TimeoutError(f"the snapshot writer took more than {timeout:.0f} s")
            await asyncio.sleep(0.02)

    def _source(self) -> str:
        """Where the state came from: a snapshot is only resumed against the same topic and group."""
        s = self.settings
        return f"{s.kafka.bootstrap_servers}|{s.topics.events}|{s.kafka.app_id}"

    def _set_aside(self, why: str) -> None:
        target = self.path.with_name(f"{self.path.name}.{why}-{int(time.time())}")
        try:
            self.path.rename(target)
        except OSError as exc:
            log.error("could not move %s aside: %s", self.path, exc)
