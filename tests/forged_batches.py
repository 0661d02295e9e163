"""Kafka v2 record batches as a broken or hostile producer writes them, for the batch-guard tests.

Built with aiokafka's own batch builder, then damaged the way real faults damage them: a
corrupt compressed payload under a CRC that matches it, a codec id Kafka does not define,
a flipped bit that breaks the CRC. :func:`produce_raw_batch` sends such bytes through a
real broker unchanged.
"""
from __future__ import annotations

import struct

from aiokafka.record._crc32c import crc as crc32c
from aiokafka.record.default_records import DefaultRecordBatchBuilder

NONE, GZIP, SNAPPY, LZ4, ZSTD = 0, 1, 2, 3, 4


def record_batch(base_offset: int, values: list[bytes], codec: int = NONE, *, producer_id: int = -1,
                 transactional: bool = False, keys: list[bytes | None] | None = None) -> bytearray:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=codec, is_transactional=int(transactional),
                                        producer_id=producer_id, producer_epoch=0 if producer_id >= 0 else -1,
                                        base_sequence=0 if producer_id >= 0 else -1, batch_size=1 << 22)
    for delta, value in enumerate(values):
        key = keys[delta] if keys is not None else None
        builder.append(delta, timestamp=1_700_000_000_000 + delta, key=key, value=value, headers=[])
    raw = bytearray(builder.build())
    struct.pack_into(">q", raw, 0, base_offset)
    return raw


def fix_crc(raw: bytearray) -> bytearray:
    """What a producer that wrote a broken payload does: a CRC that matches it."""
    struct.pack_into(">I", raw, 17, crc32c(bytes(raw[21:])))
    return raw


def corrupt_payload(raw: bytearray) -> bytearray:
    raw[61 + (len(raw) - 61) // 2] ^= 0xFF  # the middle of the (compressed) records
    return fix_crc(raw)


def unknown_codec(raw: bytearray) -> bytearray:
    struct.pack_into(">h", raw, 21, 5)  # attributes: compression id 5 is not defined by Kafka
    return fix_crc(raw)


def flip_last_byte(raw: bytearray) -> bytearray:
    raw[-1] ^= 1
    return raw


async def produce_raw_batch(bootstrap: str, topic: str, partition: int, raw: bytes) -> int:
    """Send ``raw`` as one record batch to ``topic``/``partition``; its base offset in the log.

    aiokafka's producer sends whatever its batch builder built; here the built bytes are
    replaced before the send (test-only: this is the producer from hell).
    """
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, enable_idempotence=False)
    await producer.start()
    try:
        batch = producer.create_batch()
        batch.append(key=None, value=b"placeholder", timestamp=None)
        batch._buffer = bytearray(raw)  # noqa: SLF001 - what BatchBuilder._build() returns when set
        future = await producer.send_batch(batch, topic, partition=partition)
        return (await future).offset
    finally:
        await producer.stop()
