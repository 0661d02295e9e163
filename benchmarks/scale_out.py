"""What splitting the stream over N workers costs in quality (issue 7), measured prequentially.

A worker sees only its partitions. Events are keyed by user, so every user's
history is whole on exactly one worker, but item-level state (popularity,
co-occurrence, item factors) is learned from that worker's share of the
stream only. This script replays a data set the way N workers would see it —
users partitioned with Kafka's murmur2 over ``--partitions`` partitions,
partitions dealt to workers round-robin as the group's assignor does — runs one
engine per worker, and pools their hits. ``workers=1`` is also the upper bound of
any scheme that shares item state perfectly (each user still lives on one worker).

    python benchmarks/scale_out.py                       # ML-100K (read in place) and the generated stream
    python benchmarks/scale_out.py --workers 1,2,4 --engines fast,blend --json out.json
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from online.evaluation import run_prequential  # noqa: E402
from stream.datasets import generate, load  # noqa: E402
from stream.sender import partition_for  # noqa: E402
from stream.settings import Settings  # noqa: E402

ML100K = ROOT.parent / "shared" / "data" / "ml-100k" / "u.data"


def engine_config(name: str):
    if name == "fast":
        return Settings().engine_config()  # what a worker runs by default
    if name == "blend":
        return Settings(blend="default").engine_config()
    raise SystemExit(f"unknown engine {name!r} (fast or blend)")


def split(events, workers: int, partitions: int):
    shares = [[] for _ in range(workers)]
    cache: dict[str, int] = {}
    for event in events:
        p = cache.get(event.user_id)
        if p is None:
            p = cache[event.user_id] = partition_for(event.user_id.encode(), partitions)
        shares[p % workers].append(event)
    return shares


def measure(events, workers: int, partitions: int, engine: str) -> dict:
    started = time.perf_counter()
    hits = evaluated = 0
    per_worker = []
    for share in split(events, workers, partitions):
        final = run_prequential(share, engine_config(engine), batch_size=1)
        hits += final["hits"]
        evaluated += final["evaluated"]
        per_worker.append(len(share))
    return {"workers": workers, "engine": engine, "hr@10": hits / evaluated if evaluated else 0.0,
            "evaluated": evaluated, "events_per_worker": per_worker,
            "seconds": round(time.perf_counter() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2,4", help="worker counts to compare (default 1,2,4)")
    parser.add_argument("--engines", default="fast,blend", help="fast (worker default), blend (STREAMREC_BLEND=default)")
    parser.add_argument("--partitions", type=int, default=Settings().partitions)
    parser.add_argument("--generated-events", type=int, default=50_000)
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    data = []
    if ML100K.exists():
        data.append(("ml-100k", load(ML100K, "movielens")))
    else:
        print(f"skipping ML-100K: {ML100K} is absent (MovieLens is read in place, never copied)")
    data.append((f"generated {args.generated_events:,}", generate(args.generated_events, seed=7)))
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, python {platform.python_version()}, "
          f"{args.partitions} partitions, prequential HR@10, batch 1")
    rows = []
    for name, events in data:
        for engine in args.engines.split(","):
            base = None
            for workers in (int(w) for w in args.workers.split(",")):
                row = measure(events, workers, args.partitions, engine) | {"data": name}
                base = row["hr@10"] if base is None else base
                row["ratio_to_first"] = row["hr@10"] / base if base else 0.0
                rows.append(row)
                print(f"{name:18} {engine:6} workers={workers}  HR@10 {row['hr@10']:.4f}  "
                      f"(x{row['ratio_to_first']:.3f} of {args.workers.split(',')[0]} worker)  "
                      f"events/worker {row['events_per_worker']}  {row['seconds']} s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
