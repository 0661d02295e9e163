"""No record batch can crash a reader: an undecodable batch becomes one marked record.

A Kafka consumer decodes what it fetches one *record batch* at a time: it checks the
batch's CRC, decompresses it with the codec its header names (gzip, snappy, lz4, zstd)
and parses the records. aiokafka (inside Faust, and our replica reader) and kafka-python
(the trainer, the clients) raise out of ``poll``/``getmany`` when any of that fails,
and since the failed batch is fetched again at the same offset, one batch with a codec
the process cannot decode, a corrupt payload or a bad CRC stops the reader for good:
a poison pill for the whole consumer group (issue: "No producer can kill a worker").

:func:`install` wraps the fetched bytes of both libraries (their ``MemoryRecords``,
built once per partition per fetch) in :class:`GuardedRecords`, which decodes each batch
eagerly, before the library iterates it. A batch that decodes is handed on unchanged. One
that does not is replaced by a batch holding a single synthetic record at the batch's
*last* offset whose value is an :class:`UndecodableBatch`: the raw batch bytes (a
``bytes`` subclass, so no producer can forge one) with the reason and the offset range.
The consumer's position therefore moves past the batch like past any record, and the
reader decides what to do with it: the worker dead-letters it (``stream.worker.processor``) and
commits its offsets only after the dead letter is flushed, like every other message;
readers that do not own the DLQ (trainer, replica reader, clients) count it and skip it.

The hook is process-wide and idempotent. It relies on both libraries building their
``MemoryRecords`` through a module-level name in their fetcher module (aiokafka 0.10-0.14,
kafka-python 2.x-3.x); :func:`install` fails loudly if that name is gone, and the
integration tests exercise it through a real broker.
"""
from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import Any

#: The ``reason`` of an undecodable batch, one per cause (the DLQ's ``error`` says more).
UNDECODABLE_REASON = "undecodable_batch"
#: Most raw bytes kept with an undecodable batch (a dead letter must fit a Kafka message).
MAX_RAW_BYTES = 256 * 1024

_BATCH_FRAMING = struct.Struct(">qi")  # base offset, length of the rest: every message format
_V2_LAST_OFFSET_DELTA = struct.Struct(">i")  # at byte 23 of a v2 batch header
_CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


class UndecodableBatch(bytes):
    """The raw bytes of a record batch that could not be decoded, with why and where.

    ``first_offset``/``last_offset`` are the batch's offset range (inclusive); ``records``
    is the record count its header declares (-1 when unknown); ``truncated`` says the bytes
    were cut at :data:`MAX_RAW_BYTES`.
    """

    error: str
    first_offset: int
    last_offset: int
    codec: str
    records: int
    truncated: bool

    def __new__(cls, raw: bytes, *, error: str, first_offset: int, last_offset: int, codec: str = "unknown",
                records: int = -1) -> UndecodableBatch:
        self = super().__new__(cls, bytes(raw[:MAX_RAW_BYTES]))
        self.error = error[:500]
        self.first_offset = first_offset
        self.last_offset = last_offset
        self.codec = codec
        self.records = records
        self.truncated = len(raw) > MAX_RAW_BYTES
        return self

    def describe(self) -> str:
        """One line for logs and the dead letter's ``error`` field."""
        return (f"offsets {self.first_offset}-{self.last_offset}, codec {self.codec}, "
                f"{self.records} records declared: {self.error}")


class _MarkerRecord:
    """A record as both libraries' fetchers read it, carrying an :class:`UndecodableBatch`."""

    __slots__ = ("offset", "timestamp", "timestamp_type", "key", "value", "headers", "checksum",
                 "size_in_bytes")

    def __init__(self, value: UndecodableBatch, timestamp: int | None) -> None:
        self.offset = value.last_offset
        self.timestamp = timestamp
        self.timestamp_type = 0
        self.key = None
        self.value = value
        self.headers: list = []
        self.checksum = None
        self.size_in_bytes = len(value)

    def validate_crc(self) -> bool:
        return True


class _DecodedBatch:
    """A batch whose records were decoded ahead; everything else is the library's batch.

    The header fields both fetchers read for every batch are copied once (an attribute
    lookup through ``__getattr__`` costs a Python call each); the rest is looked up lazily.
    """

    is_control_batch = False  # control batches are handed on unwrapped

    def __init__(self, batch: Any, records: list) -> None:
        self._batch = batch
        self._records = records
        if batch is not None:  # legacy (v0/v1) batches lack some of these: the libraries skip them there
            self.producer_id = getattr(batch, "producer_id", None)
            self.is_transactional = getattr(batch, "is_transactional", False)
            self.next_offset = getattr(batch, "next_offset", None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._records)

    def validate_crc(self) -> bool:
        return True  # checked by GuardedRecords before decoding


class _UndecodableBatchView(_DecodedBatch):
    """A batch that failed to decode, seen by the library as one marker record."""

    def __init__(self, batch: Any, marker: _MarkerRecord) -> None:
        super().__init__(batch, [marker])
        self.next_offset = marker.offset + 1
        if batch is None:
            self.producer_id, self.is_transactional = -1, False

    @property
    def last_offset(self) -> int:
        return self._records[0].offset

    def has_producer_id(self) -> bool:  # kafka-python asks; an unparsed batch has none we trust
        return self._batch is not None and self._batch.has_producer_id()


class GuardedRecords:
    """A library's ``MemoryRecords`` over one fetched buffer, with every batch pre-decoded."""

    def __init__(self, raw: bytes, inner: Any, check_crcs: bool = True) -> None:
        self._raw = memoryview(raw)
        self._inner = inner
        self._pos = 0  # start of the next batch in ``raw`` (Kafka's framing: offset, length)
        self._broken = False
        self.check_crcs = check_crcs

    def size_in_bytes(self) -> int:
        return self._inner.size_in_bytes()

    def has_next(self) -> bool:
        return not self._broken and self._inner.has_next()

    def next_batch(self, *args: Any, **kwargs: Any) -> Any:
        if self._broken:
            return None
        start = self._pos
        try:
            batch = self._inner.next_batch(*args, **kwargs)
        except Exception as exc:  # the framing itself is corrupt: nothing after it can be trusted
            self._broken = True
            return self._unframed(start, exc)
        if batch is None:
            return None
        base, length = _BATCH_FRAMING.unpack_from(self._raw, start)
        self._pos = start + _BATCH_FRAMING.size + length
        if getattr(batch, "is_control_batch", False):
            return batch  # transaction markers: tiny, never compressed, read by the library itself
        try:
            if self.check_crcs and not batch.validate_crc():
                raise ValueError("CRC mismatch: the batch was corrupted after its producer wrote it")
            return _DecodedBatch(batch, list(batch))
        except Exception as exc:
            return self._undecodable(batch, self._raw[start:self._pos], exc)

    def _undecodable(self, batch: Any, raw: memoryview, exc: Exception) -> _UndecodableBatchView:
        first = int(batch.base_offset)
        last = int(getattr(batch, "next_offset", first + 1)) - 1
        codec = _CODECS.get(int(getattr(batch, "compression_type", -1)), "unknown")
        declared = _declared_records(raw)
        timestamp = getattr(batch, "max_timestamp", None)
        value = UndecodableBatch(bytes(raw), error=f"{type(exc).__name__}: {exc}", first_offset=first,
                                 last_offset=max(first, last), codec=codec, records=declared)
        return _UndecodableBatchView(batch, _MarkerRecord(value, timestamp))

    def _unframed(self, start: int, exc: Exception) -> _UndecodableBatchView | None:
        """The rest of the buffer when its framing cannot be parsed: skip to the end of the batch
        that starts here if its v2 header says where that is, else past its first offset."""
        if len(self._raw) - start < 27:
            return None  # a partial batch at the end of a fetch is normal; the library refetches it
        base, _ = _BATCH_FRAMING.unpack_from(self._raw, start)
        (delta,) = _V2_LAST_OFFSET_DELTA.unpack_from(self._raw, start + 23)
        last = base + delta if 0 <= delta < 1 << 20 else base
        value = UndecodableBatch(bytes(self._raw[start:]), error=f"{type(exc).__name__}: {exc}",
                                 first_offset=base, last_offset=last)
        return _UndecodableBatchView(None, _MarkerRecord(value, None))

    # kafka-python iterates a MemoryRecords directly in a few places
    def __iter__(self) -> GuardedRecords:
        return self

    def __next__(self) -> Any:
        batch = self.next_batch()
        if batch is None:
            raise StopIteration
        return batch


def _declared_records(raw: memoryview) -> int:
    """The record count a v2 batch header declares (bytes 57-61), or -1."""
    if len(raw) >= 61 and raw[16] == 2:
        return struct.unpack_from(">i", raw, 57)[0]
    return -1


def _guarding(memory_records: type) -> Callable[[bytes], GuardedRecords]:
    def guarded(raw: bytes) -> GuardedRecords:
        return GuardedRecords(raw, memory_records(raw))

    guarded.streamrec_guard = True  # type: ignore[attr-defined]
    return guarded


def install() -> None:
    """Guard every aiokafka and kafka-python consumer of this process (idempotent)."""
    from aiokafka.consumer import fetcher as aiokafka_fetcher
    from kafka.consumer import fetcher as kafka_python_fetcher

    for module in (aiokafka_fetcher, kafka_python_fetcher):
        current = getattr(module, "MemoryRecords", None)
        if current is None:
            raise RuntimeError(f"{module.__name__} no longer builds MemoryRecords by name; "
                               "stream.kafka.batch_guard needs updating for this client version")
        if not getattr(current, "streamrec_guard", False):
            module.MemoryRecords = _guarding(current)

