"""How the embedded broker (Tansu 0.6, memory storage) slows down as record batches pile up.

The demo's latency tail grows over a run, and a fixed-rate demo can fall behind late in the run
(issue 16). This isolates the broker: one producer (kafka-python, one produce request per batch)
sends records at a fixed rate, one tailing consumer (manual assignment, ``fetch_max_wait_ms=10``,
as the worker's) reads them, and nothing else runs. Each record carries its send time; per block
of records the script prints the produce -> consume latency (p50, p99) and the broker's CPU.

Two shapes at the same record rate, each on a fresh broker: one record per batch (what a
low-rate stream sends) and ``--batch`` records per batch. If the latency follows the number of
batches rather than of records, the broker's fetch cost grows with its batch count
(``../shared/notes/pipe-findings.md``, 5d), and larger batches are what keep it young.

    python benchmarks/broker_aging.py --records 20000 --rate 200 --batch 10 --json aging.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import struct
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402

from stream.kafka.broker import EmbeddedBroker, TopicSpec  # noqa: E402

TOPIC = "aging"
RECORD = struct.Struct("!qd")  # sequence number, send time (time.time())
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def run(records: int, rate: float, batch: int, partitions: int, block: int) -> dict[str, Any]:
    """One fresh broker, ``records`` records at ``rate``/s in batches of ``batch``."""
    with EmbeddedBroker(topics=[TopicSpec(TOPIC, partitions)]) as broker:
        arrived: list[tuple[int, float]] = []  # (sequence, latency s)
        done = threading.Event()

        def consume() -> None:
            consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                                     fetch_max_wait_ms=10, auto_offset_reset="earliest")
            consumer.assign([TopicPartition(TOPIC, p) for p in range(partitions)])
            while not done.is_set() or len(arrived) < records:
                for batch_records in consumer.poll(timeout_ms=100).values():
                    now = time.time()
                    for record in batch_records:
                        seq, sent = RECORD.unpack(record.value)
                        arrived.append((seq, now - sent))
                if done.is_set() and len(arrived) >= records:
                    break
            consumer.close()

        reader = threading.Thread(target=consume, daemon=True)
        reader.start()
        time.sleep(1.0)  # the consumer is assigned and polling
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0, acks=1)
        cpu_marks = [(0, cpu_seconds(broker.pid), time.monotonic())]
        start = time.monotonic()
        for first in range(0, records, batch):
            due = start + first / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            now = time.time()
            for seq in range(first, min(records, first + batch)):
                producer.send(TOPIC, RECORD.pack(seq, now), partition=(first // batch) % partitions)
            producer.flush()  # one produce request: one batch
            if (first + batch) % block < batch:
                cpu_marks.append((first + batch, cpu_seconds(broker.pid), time.monotonic()))
        behind_s = time.monotonic() - (start + records / rate)
        done.set()
        reader.join(timeout=120)
        producer.close()
    by_seq = np.full(records, np.nan)  # a record that never arrived has no latency: counted as missing
    for seq, latency in arrived:
        by_seq[seq] = latency
    rows = []
    for (a, cpu_a, t_a), (b, cpu_b, t_b) in zip(cpu_marks, cpu_marks[1:]):
        lat = by_seq[a:b]
        got = lat[~np.isnan(lat)]
        rows.append({"records": b, "batches": b // batch, "missing": int(lat.size - got.size),
                     "p50_ms": round(float(np.percentile(got, 50)) * 1e3, 1) if got.size else None,
                     "p99_ms": round(float(np.percentile(got, 99)) * 1e3, 1) if got.size else None,
                     "broker_cpu": round((cpu_b - cpu_a) / max(1e-9, t_b - t_a), 3)})
    return {"batch": batch, "rate": rate, "partitions": partitions, "records": records,
            "received": len(arrived), "producer_behind_s": round(behind_s, 2), "blocks": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=200.0, help="records/s (default 200)")
    parser.add_argument("--batch", type=int, default=10, help="records per batch of the second shape (default 10)")
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--block", type=int, default=2_000, help="records per printed row (default 2,000)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"command": " ".join(sys.argv), "machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
                              "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "runs": []}
    for batch in (1, args.batch):
        print(f"\n== {args.records:,} records at {args.rate:.0f}/s, {batch} per batch, {args.partitions} partition(s), "
              "fresh broker", flush=True)
        out = run(args.records, args.rate, batch, args.partitions, args.block)
        print(f"{'records':>8} {'batches':>8} {'missing':>8} {'p50 ms':>8} {'p99 ms':>8} {'broker CPU':>10}")
        for row in out["blocks"]:
            p50, p99 = (f"{row[q]:>8.1f}" if row[q] is not None else f"{'-':>8}" for q in ("p50_ms", "p99_ms"))
            print(f"{row['records']:>8,} {row['batches']:>8,} {row['missing']:>8,} {p50} {p99} "
                  f"{row['broker_cpu']:>10.0%}", flush=True)
        print(f"received {out['received']:,} of {out['records']:,}; producer finished "
              f"{out['producer_behind_s']:.1f} s behind schedule")
        result["runs"].append(out)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
