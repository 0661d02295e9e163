"""An undecodable record batch becomes one marked record at its last offset, in both clients.

Each test builds real Kafka v2 record batches, forges the faults a hostile or broken
producer can cause (a corrupt compressed payload with a valid CRC, a flipped bit that
breaks the CRC, a codec id Kafka does not define, a codec whose library is missing) and
feeds the fetched bytes through the *libraries' own* fetch-side parsing
(``aiokafka.consumer.fetcher.PartitionRecords``, kafka-python's
``Fetcher.PartitionRecords``), once without the guard (which raises: the poison pill)
and once with it.
"""
from __future__ import annotations

import struct

import pytest
from aiokafka.consumer.fetcher import PartitionRecords as AioPartitionRecords
from aiokafka.record.memory_records import MemoryRecords as AioMemoryRecords
from aiokafka.structs import TopicPartition as AioTopicPartition
from kafka.consumer.fetcher import Fetcher as KafkaPythonFetcher
from kafka.record.memory_records import MemoryRecords as KafkaPythonMemoryRecords
from kafka.structs import TopicPartition as KafkaPythonTopicPartition

from stream.kafka import batch_guard
from stream.kafka.batch_guard import MAX_RAW_BYTES, GuardedRecords, UndecodableBatch
from tests.forged_batches import (
    GZIP,
    LZ4,
    SNAPPY,
    ZSTD,
    corrupt_payload,
    fix_crc,
    flip_last_byte,
    record_batch,
    unknown_codec,
)

READ_UNCOMMITTED, READ_COMMITTED = 0, 1


def aiokafka_read(raw: bytes, guarded: bool, isolation: int = READ_UNCOMMITTED, aborted=()):
    """(records, next fetch offset) as aiokafka's fetcher hands them to Faust."""
    records = GuardedRecords(raw, AioMemoryRecords(raw)) if guarded else AioMemoryRecords(raw)
    partition = AioPartitionRecords(AioTopicPartition("events", 0), records, list(aborted), 0, None, None, True,
                                    isolation)
    return list(partition), partition.next_fetch_offset


def kafka_python_read(raw: bytes, guarded: bool):
    records = GuardedRecords(raw, KafkaPythonMemoryRecords(raw)) if guarded else KafkaPythonMemoryRecords(raw)
    partition = KafkaPythonFetcher.PartitionRecords(0, KafkaPythonTopicPartition("events", 0), records)
    out = []
    while partition:
        taken = partition.take()
        if not taken:
            break
        out.extend(taken)
    return out, partition.next_fetch_offset


READERS = [pytest.param(aiokafka_read, id="aiokafka"), pytest.param(kafka_python_read, id="kafka-python")]
FAULTS = [pytest.param(lambda: corrupt_payload(record_batch(2, [b"x" * 100, b"y" * 100, b"z"], LZ4)),
                       "lz4", id="corrupt-lz4-payload"),
          pytest.param(lambda: corrupt_payload(record_batch(2, [b"x" * 100, b"y" * 100, b"z"], ZSTD)),
                       "zstd", id="corrupt-zstd-payload"),
          pytest.param(lambda: corrupt_payload(record_batch(2, [b"x" * 100, b"y" * 100, b"z"], GZIP)),
                       "gzip", id="corrupt-gzip-payload"),
          pytest.param(lambda: unknown_codec(record_batch(2, [b"x", b"y", b"z"])), "unknown", id="unknown-codec"),
          pytest.param(lambda: flip_last_byte(record_batch(2, [b"x", b"y", b"z"])), "none", id="crc-mismatch")]


def stream_with(fault: bytearray) -> bytes:
    """Offsets 0-1 good (snappy), 2-4 the fault, 5-6 good (zstd)."""
    return bytes(record_batch(0, [b"a", b"b"], SNAPPY) + fault + record_batch(5, [b"f", b"g"], ZSTD))


@pytest.mark.parametrize("read", READERS)
@pytest.mark.parametrize("make_fault, codec", FAULTS)
def test_unguarded_clients_raise_on_the_batch_and_would_refetch_it_forever(read, make_fault, codec):
    with pytest.raises(Exception):  # noqa: B017 - whatever each client raises: any exception is the pill
        records, _ = read(stream_with(make_fault()), guarded=False)
        assert len(records) == 7  # kafka-python defers the error to the next take(); it never gets past


@pytest.mark.parametrize("read", READERS)
@pytest.mark.parametrize("make_fault, codec", FAULTS)
def test_a_guarded_reader_gets_the_good_records_and_one_marker_for_the_bad_batch(read, make_fault, codec):
    fault = make_fault()
    records, next_offset = read(stream_with(fault), guarded=True)

    assert [r.offset for r in records] == [0, 1, 4, 5, 6]
    assert [r.value for r in records if not isinstance(r.value, UndecodableBatch)] == [b"a", b"b", b"f", b"g"]
    marker = records[2].value
    assert isinstance(marker, UndecodableBatch)
    assert (marker.first_offset, marker.last_offset, marker.records) == (2, 4, 3)
    assert marker.codec == codec
    assert bytes(marker) == bytes(fault)  # the raw batch, for the dead letter
    assert next_offset == 7  # the consumer's position moved past the batch: no poison pill


@pytest.mark.parametrize("read", READERS)
def test_good_batches_of_every_codec_pass_through_unchanged(read):
    raw = b"".join(bytes(record_batch(3 * i, [b"%d-%d" % (i, j) for j in range(3)], codec))
                   for i, codec in enumerate([0, GZIP, SNAPPY, LZ4, ZSTD]))
    guarded, guarded_next = read(raw, guarded=True)
    plain, plain_next = read(raw, guarded=False)
    assert [(r.offset, r.value, r.timestamp) for r in guarded] == [(r.offset, r.value, r.timestamp) for r in plain]
    assert guarded_next == plain_next == 15


def test_a_missing_codec_library_is_an_undecodable_batch_not_a_crash(monkeypatch):
    """The field report: a worker without the lz4 library met an lz4 batch and died."""
    from aiokafka import codec

    raw = bytes(record_batch(0, [b"a"]) + record_batch(1, [b"x", b"y"], LZ4)  # a producer that has lz4
                + record_batch(3, [b"b"]))
    monkeypatch.setattr(codec, "cramjam", None)  # read where the library is missing
    records, next_offset = aiokafka_read(raw, guarded=True)
    assert [r.value for r in records if not isinstance(r.value, UndecodableBatch)] == [b"a", b"b"]
    marker = records[1].value
    assert isinstance(marker, UndecodableBatch) and "lz4" in marker.error.lower()
    assert next_offset == 4


def test_aborted_transactions_are_still_skipped_under_read_committed():
    """The guard must not undo the library's transaction handling (it passes markers through)."""
    from aiokafka.record.default_records import DefaultRecordBatchBuilder as Builder

    aborted = record_batch(0, [b"never", b"learned"], LZ4, producer_id=7, transactional=True)
    marker = Builder(magic=2, compression_type=0, is_transactional=1, producer_id=7, producer_epoch=0,
                     base_sequence=-1, batch_size=1 << 16)
    marker.append(0, timestamp=1, key=struct.pack(">hh", 0, 0), value=struct.pack(">hi", 0, 0), headers=[])
    control = bytearray(marker.build())
    struct.pack_into(">q", control, 0, 2)
    struct.pack_into(">h", control, 21, 0b110000)  # transactional + control batch
    fix_crc(control)
    raw = bytes(aborted + control + record_batch(3, [b"kept"]))
    records, next_offset = aiokafka_read(raw, guarded=True, isolation=READ_COMMITTED, aborted=[(7, 0)])
    assert [r.value for r in records] == [b"kept"]
    assert next_offset == 4


def test_a_huge_undecodable_batch_keeps_a_bounded_prefix():
    import os

    big = corrupt_payload(record_batch(0, [os.urandom(200_000) for _ in range(3)], LZ4))  # incompressible
    records, _ = aiokafka_read(bytes(big), guarded=True)
    marker = records[0].value
    assert len(marker) == MAX_RAW_BYTES < len(big) and marker.truncated


def test_install_is_idempotent_and_guards_both_clients():
    from aiokafka.consumer import fetcher as aiokafka_fetcher
    from kafka.consumer import fetcher as kafka_python_fetcher

    batch_guard.install()
    first = aiokafka_fetcher.MemoryRecords, kafka_python_fetcher.MemoryRecords
    batch_guard.install()
    assert (aiokafka_fetcher.MemoryRecords, kafka_python_fetcher.MemoryRecords) == first
    assert isinstance(aiokafka_fetcher.MemoryRecords(bytes(record_batch(0, [b"a"]))), GuardedRecords)
    assert isinstance(kafka_python_fetcher.MemoryRecords(bytes(record_batch(0, [b"a"]))), GuardedRecords)
