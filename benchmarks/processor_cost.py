"""CPU per event on the worker's own path, in-process (no Kafka): ``EventProcessor.process_events``.

The pipeline benchmark cannot resolve a few microseconds per event on a noisy 2-vCPU machine (the
bare Faust pipe alone moves ±13% between runs); this isolates the part the code controls. Each run
is a child process (``--tree`` picks the checkout, for before/after comparisons), alternating, on
ML-100K (or the demo's stream) as single-event messages, ``--batch`` per micro-batch.

    python benchmarks/processor_cost.py --runs 5                          # this checkout
    python benchmarks/processor_cost.py --trees /tmp/before . --runs 5    # two checkouts
    python benchmarks/processor_cost.py --set self_tune=false --set self_tune=true
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ML100K = ROOT.parent / "shared" / "data" / "ml-100k" / "u.data"

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from stream.cli.datasets import generate, load
from stream.settings import Settings
from stream.wire.messages import RawMessage
from stream.wire.schema import event_payload
from stream.worker.processor import EventProcessor
path, n, batch, sets = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
events = (load(path, "movielens") if path else generate(n, seed=7))[:n]
raw = dict(item.split("=", 1) for item in sets.split(";") if item)
settings = Settings().with_strings(raw) if raw else Settings()
msgs = [RawMessage(json.dumps(event_payload(e)).encode(), e.user_id.encode(), "events", 0, i, 1.0)
        for i, e in enumerate(events)]
processor = EventProcessor(settings)
began = time.process_time()
for start in range(0, len(msgs), batch):
    processor.process_events(msgs[start:start + batch])
print(1e6 * (time.process_time() - began) / len(msgs))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", nargs="+", type=Path, default=[ROOT])
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE",
                        help="a variant per --set (compared against each other on every tree)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--batch", type=int, default=20)
    args = parser.parse_args()
    data = str(ML100K) if ML100K.exists() else ""
    variants = [(tree, item) for tree in args.trees for item in (args.sets or [""])]
    results: dict[tuple, list[float]] = {variant: [] for variant in variants}
    for _ in range(args.runs):
        for tree, item in variants:
            out = subprocess.run([sys.executable, "-c", CHILD, str(tree.resolve()), data, str(args.events),
                                  str(args.batch), item], check=True, capture_output=True, text=True)
            results[(tree, item)].append(float(out.stdout.strip().splitlines()[-1]))
    for (tree, item), values in results.items():
        print(f"{str(tree):<16} {item or '(defaults)':<22} median {statistics.median(values):6.1f} µs/event  "
              f"runs {', '.join(f'{v:.1f}' for v in values)}")
    print(json.dumps({f"{tree}|{item}": values for (tree, item), values in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
