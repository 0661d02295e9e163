"""What a worker's full garbage collection walks, and how long it takes, as its user base grows.

Builds the worker's default engine (``stream.worker.processor.EventProcessor`` with default settings: the
fixed mix inside the self-tuning loop), freezes everything alive before the first event (as a worker does at
start-up, ``stream.worker.gc_pauses``), lets it learn three events per user for N distinct users, then counts
the objects the collector tracks, by type, and times two full collections. In a running worker a full
collection comes each time the objects that survived into the oldest generation grow by a quarter, and it
holds up every list meanwhile.

    python benchmarks/gc_census.py --users 100000,400000
"""
from __future__ import annotations

import argparse
import collections
import gc
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from online.base import Interaction  # noqa: E402
from stream.settings import Settings  # noqa: E402
from stream.worker.processor import EventProcessor  # noqa: E402


def census(users: int, items: int, seed: int) -> dict:
    engine = EventProcessor(Settings.of()).engine
    gc.collect()
    gc.freeze()
    rng = np.random.default_rng(seed)
    order = np.concatenate([np.arange(users)] * 3)
    picks = rng.integers(0, items, size=order.size)
    for start in range(0, order.size, 500):
        engine.learn_many([Interaction(f"u{u}", f"i{i}", float(start + n))
                           for n, (u, i) in enumerate(zip(order[start:start + 500], picks[start:start + 500]))])
    gc.collect()
    tracked = gc.get_objects()
    by_type = collections.Counter(type(obj).__name__ for obj in tracked).most_common(5)
    count = len(tracked)
    del tracked
    pauses = []
    for _ in range(2):
        started = time.perf_counter()
        gc.collect()
        pauses.append(1000 * (time.perf_counter() - started))
    gc.unfreeze()
    return {"users": users, "tracked": count, "by_type": by_type, "full_collection_ms": min(pauses),
            "events": engine.events}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", default="100000,400000", help="comma-separated user counts")
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, Python {platform.python_version()}")
    for users in (int(n) for n in args.users.split(",")):
        row = census(users, args.items, args.seed)
        print(f"{row['users']:>9,} users ({row['events']:,} events): {row['tracked']:>10,} tracked objects "
              f"({row['tracked'] / row['users']:.1f} per user), full collection {row['full_collection_ms']:6.1f} ms; "
              f"most: {', '.join(f'{name} {n:,}' for name, n in row['by_type'])}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
