"""What the batch guard costs a reader: fetch-side parsing with and without ``stream.kafka.batch_guard``.

The guard decodes every record batch eagerly (to catch a failure before the client
library does) and wraps it in a small proxy, so its cost is per batch, not per record.
This script parses the same fetched buffers through the libraries' own fetch-side code
(aiokafka's ``PartitionRecords``, which Faust runs; kafka-python's, which the trainer
and the clients run) with and without the guard, alternating, and prints CPU µs per
record and the ratio. Buffers: ~120-byte JSON events, in batches of 1 (a producer with
no linger), 10 and 200 records, uncompressed and lz4.

    python benchmarks/batch_guard.py [--records 200000] [--repeats 5] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka.consumer.fetcher import PartitionRecords as AioPartitionRecords  # noqa: E402
from aiokafka.record.default_records import DefaultRecordBatchBuilder  # noqa: E402
from aiokafka.record.memory_records import MemoryRecords as AioMemoryRecords  # noqa: E402
from aiokafka.structs import TopicPartition as AioTopicPartition  # noqa: E402
from kafka.consumer.fetcher import Fetcher as KafkaPythonFetcher  # noqa: E402
from kafka.record.memory_records import MemoryRecords as KafkaPythonMemoryRecords  # noqa: E402
from kafka.structs import TopicPartition as KafkaPythonTopicPartition  # noqa: E402

from stream.kafka.batch_guard import GuardedRecords  # noqa: E402

CODECS = {"none": 0, "lz4": 3}


def fetch_buffer(records: int, per_batch: int, codec: int) -> bytes:
    out = bytearray()
    for start in range(0, records, per_batch):
        builder = DefaultRecordBatchBuilder(magic=2, compression_type=codec, is_transactional=0, producer_id=-1,
                                            producer_epoch=-1, base_sequence=-1, batch_size=1 << 22)
        for delta in range(min(per_batch, records - start)):
            n = start + delta
            value = json.dumps({"user_id": f"u{n % 5000}", "item_id": f"i{n % 3000}", "type": "click",
                                "ts": 1_700_000_000 + n, "event_id": f"e{n}"}).encode()
            builder.append(delta, timestamp=1_700_000_000_000 + n, key=f"u{n % 5000}".encode(), value=value,
                           headers=[])
        raw = bytearray(builder.build())
        struct.pack_into(">q", raw, 0, start)
        out += raw
    return bytes(out)


def parse_aiokafka(raw: bytes, guarded: bool) -> int:
    records = GuardedRecords(raw, AioMemoryRecords(raw)) if guarded else AioMemoryRecords(raw)
    return sum(1 for _ in AioPartitionRecords(AioTopicPartition("events", 0), records, [], 0, None, None, True, 0))


def parse_kafka_python(raw: bytes, guarded: bool) -> int:
    records = GuardedRecords(raw, KafkaPythonMemoryRecords(raw)) if guarded else KafkaPythonMemoryRecords(raw)
    partition = KafkaPythonFetcher.PartitionRecords(0, KafkaPythonTopicPartition("events", 0), records)
    n = 0
    while partition:  # falsy once drained
        n += len(partition.take(10_000))
    return n


def measure(parse, raw: bytes, guarded: bool) -> float:
    started = time.process_time()
    n = parse(raw, guarded)
    return (time.process_time() - started) / n * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    print(f"{'client':<13}{'codec':<6}{'batch':>6}{'plain µs/rec':>14}{'guarded µs/rec':>16}{'ratio':>8}")
    for client, parse in (("aiokafka", parse_aiokafka), ("kafka-python", parse_kafka_python)):
        for codec_name, codec in CODECS.items():
            for per_batch in (1, 10, 200):
                records = args.records if client == "aiokafka" else args.records // 4
                raw = fetch_buffer(records, per_batch, codec)
                plain, guarded = [], []
                for _ in range(args.repeats):  # alternate, so drift on a noisy machine hits both
                    plain.append(measure(parse, raw, False))
                    guarded.append(measure(parse, raw, True))
                p, g = statistics.median(plain), statistics.median(guarded)
                rows.append({"client": client, "codec": codec_name, "records_per_batch": per_batch,
                             "records": records, "plain_us_per_record": p, "guarded_us_per_record": g,
                             "ratio": g / p})
                print(f"{client:<13}{codec_name:<6}{per_batch:>6}{p:>14.2f}{g:>16.2f}{g / p:>8.2f}")
    if args.json:
        args.json.write_text(json.dumps({"machine": platform.platform(), "python": platform.python_version(),
                                         "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                         "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
