"""What one list costs the default engine, in two checkouts of the code, alternating.

The structure work replaced the default engine's hand-written ranking loop by the blend's
one ranking path (a fixed-weight blend with the same numbers). The pipeline benchmark is
too noisy on a 2-vCPU machine to resolve a few microseconds per list, so this measures
the list itself: each checkout's ``StreamingRecommender(EngineConfig())`` learns the same
stream in micro-batches and builds one list per user of each batch (what a worker does);
only the ``recommend`` calls are timed, in CPU time. Checkouts run in child processes,
alternating, and the lists they build are compared too (they must be identical).

    git worktree add /tmp/before <commit>
    python benchmarks/ranking_cost.py --trees /tmp/before . --rounds 3
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ML100K = ROOT.parent / "shared" / "data" / "ml-100k" / "u.data"

CHILD = r"""
import hashlib, json, sys, time
sys.path.insert(0, sys.argv[1])
from online.engine import EngineConfig, StreamingRecommender
from stream.cli.datasets import generate, load
path, events_wanted, batch = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
events = (load(path, "movielens") if path else generate(events_wanted, seed=7))[:events_wanted]
engine = StreamingRecommender(EngineConfig())
digest, lists, cpu = hashlib.sha256(), 0, 0.0
for start in range(0, len(events), batch):
    chunk = events[start:start + batch]
    engine.learn_many(chunk)
    users = list(dict.fromkeys(e.user_id for e in chunk))
    began = time.process_time()
    out = [engine.recommend(user) for user in users]
    cpu += time.process_time() - began
    for ranked in out:
        items = getattr(ranked, "items", ranked)  # a Ranking now, a plain list before
        digest.update("|".join(item for item, _ in items).encode())
    lists += len(users)
print(json.dumps({"lists": lists, "cpu_us_per_list": 1e6 * cpu / lists, "digest": digest.hexdigest()[:16]}))
"""


def run(tree: Path, data: str, events: int, batch: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(tree), data, str(events), str(batch)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", nargs="+", type=Path, default=[ROOT], help="checkouts to compare (first: baseline)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=100, help="events per micro-batch")
    args = parser.parse_args()
    data = str(ML100K) if ML100K.exists() else ""
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {platform.processor() or platform.machine()}, "
          f"{'ML-100K' if data else 'generated stream'}, {args.events} events, batch {args.batch}")
    results: dict[Path, list[dict]] = {tree: [] for tree in args.trees}
    for round_ in range(args.rounds):
        for tree in args.trees:
            started = time.perf_counter()
            row = run(tree.resolve(), data, args.events, args.batch)
            results[tree].append(row)
            print(f"round {round_ + 1}  {str(tree):<20} {row['cpu_us_per_list']:7.1f} µs/list  "
                  f"({row['lists']:,} lists, digest {row['digest']}, {time.perf_counter() - started:.0f} s)")
    base = statistics.median(r["cpu_us_per_list"] for r in results[args.trees[0]])
    for tree, rows in results.items():
        median = statistics.median(r["cpu_us_per_list"] for r in rows)
        same = {r["digest"] for r in rows} == {r["digest"] for r in results[args.trees[0]]}
        print(f"{str(tree):<20} median {median:7.1f} µs/list  ratio to {args.trees[0]} {median / base:.3f}  "
              f"lists identical: {'yes' if same else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
