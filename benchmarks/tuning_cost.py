"""What tuning costs on the worker's own path (``EventProcessor.process_events``), fixed vs tuned.

``benchmarks/tuning.py`` measures the cost at batch size 1 in ``eval``; a worker learns
micro-batches and builds one list per user per batch, where the tuner also scores its arms.
Both processors run the same blend (``tuned_engine_config``: popularity, co-occurrence,
next-item, mf), one with fixed weights and rate, one tuned; batches are interleaved so both
see the same machine load, and CPU time (not wall time) is compared.

    python benchmarks/tuning_cost.py --events 30000 --batch 200
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from online.engine import StreamingRecommender  # noqa: E402
from online.tuning import tuned_engine_config  # noqa: E402
from stream.cli.datasets import generate, load  # noqa: E402
from stream.settings import Settings  # noqa: E402
from stream.wire.messages import RawMessage  # noqa: E402
from stream.wire.schema import event_payload  # noqa: E402
from stream.worker.processor import EventProcessor  # noqa: E402

ML100K = ROOT.parent / "shared" / "data" / "ml-100k" / "u.data"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--batch", type=int, default=200, help="events per micro-batch")
    parser.add_argument("--per-message", type=int, default=20, help="events per Kafka message (JSON array)")
    args = parser.parse_args()
    if ML100K.exists():
        name, events = "ML-100K", load(ML100K, "movielens")[: args.events]
    else:
        name, events = "generated", generate(args.events, seed=7)
    batches = []
    for start in range(0, len(events), args.batch):
        chunk = events[start:start + args.batch]
        batches.append([RawMessage(json.dumps([event_payload(e) for e in chunk[j:j + args.per_message]]).encode(),
                                   b"k", "events", 0, start + j, 1.0)
                        for j in range(0, len(chunk), args.per_message)])
    settings = Settings.of(tuner=True)
    processors = {"fixed": EventProcessor(settings, engine=StreamingRecommender(
                      tuned_engine_config(settings.engine_config()))),
                  "tuned": EventProcessor(settings)}
    cpu = dict.fromkeys(processors, 0.0)
    for batch in batches:
        for key, processor in processors.items():
            started = time.process_time()
            processor.process_events(batch)
            cpu[key] += time.process_time() - started
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, python {platform.python_version()}; "
          f"{name}, {len(events):,} events, micro-batches of {args.batch}")
    for key, processor in processors.items():
        print(f"{key:6} {1e6 * cpu[key] / len(events):6.0f} CPU µs/event   "
              f"HR@10 {processor.engine.prequential.snapshot()['hr']:.4f}")
    print(f"throughput cost of tuning: {1 - cpu['fixed'] / cpu['tuned']:.1%} (target < 30%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
