"""What push mode costs the worker per event and per list, in-process (no broker).

The pipeline benchmark's batch phase (``benchmarks/pipeline.py``, row 3 of BENCHMARKS.md) runs the
worker on JSON-array messages of 200 generated events from ~20,000 users; almost every event is from
another user, so push mode builds and encodes about one list per event. This feeds the same kind of
messages straight to :class:`stream.worker.processor.EventProcessor` (default settings: the fixed mix
inside the self-tuning loop; ``--engine default`` for the learned blend), twice over the same stream,
once with push on and once with push off, and reports process CPU per event for each, and the
difference per list built. Both processors first learn a warm-up prefix of the stream with push off
(not timed), so lists are built against a state of realistic size.

A digest of every list (user, items, scores rounded to 1e-9) says whether two checkouts build the
same lists: ``--baseline-ref`` runs the same measurement on another commit (a temporary ``git
worktree``), alternating with this checkout, and compares the digests.

    python benchmarks/list_building.py                          # this checkout, fixed mix
    python benchmarks/list_building.py --engine default         # the learned blend
    python benchmarks/list_building.py --baseline-ref HEAD      # before/after, same run
    python benchmarks/list_building.py --tree /tmp/base         # another checkout only
    python benchmarks/list_building.py --compare-python         # compiled loops against their Python twins

``--compare-python`` also measures this checkout with ``STREAMREC_PURE_PYTHON=1`` (``online.compiled``: the
Python twins of the fixed mix's compiled loops), alternating; the digests must agree.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from baseline import baseline_tree

ROOT = Path(__file__).resolve().parents[1]

# Runs in a child process with the checkout under test first on sys.path; only public names that
# every checkout since the processor existed has.
CHILD = r"""
import hashlib, json, sys, time
sys.path.insert(0, sys.argv[1])
args = json.loads(sys.argv[2])
from stream.cli.datasets import generate
from stream.settings import Settings
from stream.wire import schema
from stream.wire.messages import RawMessage
from stream.worker.processor import EventProcessor

events = generate(args["warmup"] + args["events"], n_users=args["users"], n_items=args["items"], seed=args["seed"])
per = args["per_message"]
messages = [RawMessage(schema.encode([schema.event_payload(e) for e in events[i:i + per]]), None, "events", 0,
                       n, 1.0) for n, i in enumerate(range(0, len(events), per))]
warm = args["warmup"] // per
batch = args["messages_per_batch"]
flat = {} if args["engine"] == "fixed" else {"blend": args["engine"]}

def run(push):
    # a fixed clock: "ts" is the only field that would differ between runs
    processor = EventProcessor(Settings.of(**flat), clock=lambda: 1_700_000_000.0)
    off = Settings.of(push=False, **flat)
    on = Settings.of(push=push, **flat)
    processor.settings = off
    for start in range(0, warm, batch):
        processor.process_events(messages[start:min(start + batch, warm)])
    processor.settings = on
    digest, lists = hashlib.sha256(), 0
    began = time.process_time()
    outs = []
    for start in range(warm, len(messages), batch):
        outs.append(processor.process_events(messages[start:start + batch]).recommendations)
    cpu = time.process_time() - began
    for recs in outs:
        for out in recs:
            rec = schema.decode_recommendation(out.value)
            digest.update(rec["user_id"].encode())
            for entry in rec["items"]:
                digest.update(f"|{entry['item_id']}:{entry['score']:.9f}".encode())
            digest.update(f"|{rec['strategy']}|{rec['arm']}|{rec['model_version']}|{rec['event_id']}\n".encode())
            lists += 1
    return cpu, lists, digest.hexdigest()[:16]

measured = len(events) - args["warmup"]
rows = {}
for push in args["order"]:
    cpu, lists, digest = run(push)
    rows["on" if push else "off"] = {"cpu_s": cpu, "lists": lists, "digest": digest}
on, off = rows["on"], rows["off"]
try:
    from online import compiled
    loops = None if compiled.fixed_mix is None else compiled.fixed_mix.__file__
except ImportError:  # a checkout from before the compiled loops
    loops = None
print(json.dumps({"events": measured, "lists": on["lists"], "digest": on["digest"], "compiled": loops,
                  "us_per_event_on": 1e6 * on["cpu_s"] / measured, "us_per_event_off": 1e6 * off["cpu_s"] / measured,
                  "us_per_list": 1e6 * (on["cpu_s"] - off["cpu_s"]) / max(1, on["lists"])}))
"""


def measure(tree: Path, args: argparse.Namespace, order: list[bool], pure_python: bool = False) -> dict:
    spec = {"warmup": args.warmup, "events": args.events, "users": args.users, "items": args.items,
            "seed": args.seed, "per_message": args.per_message, "messages_per_batch": args.messages_per_batch,
            "engine": args.engine, "order": order}
    env = {**os.environ, "STREAMREC_PURE_PYTHON": "1" if pure_python else ""}
    out = subprocess.run([sys.executable, "-c", CHILD, str(tree), json.dumps(spec)], check=True,
                         capture_output=True, text=True, env=env)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    if row["compiled"] is not None and not Path(row["compiled"]).resolve().is_relative_to(tree.resolve()):
        raise RuntimeError(f"{tree} ran compiled loops from {row['compiled']}, not its own")
    return row


def line(name: str, row: dict) -> str:
    return (f"{name:<14} push on {row['us_per_event_on']:6.1f} µs/event ({1e6 / row['us_per_event_on']:8,.0f} ev/s)  "
            f"push off {row['us_per_event_off']:5.1f} µs/event  ->  {row['us_per_list']:5.1f} µs/list  "
            f"({row['lists']:,} lists, digest {row['digest']})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", default="fixed", help="'fixed' (the default fixed mix) or a blend spec "
                        "such as 'default'")
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout to measure (default: this one)")
    parser.add_argument("--baseline-ref", help="also measure this git commit (a temporary worktree), alternating")
    parser.add_argument("--compare-python", action="store_true",
                        help="also measure this checkout's Python twins of the compiled loops, alternating")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=40_000, help="events learned first, push off, not timed")
    parser.add_argument("--events", type=int, default=40_000, help="events timed")
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--per-message", type=int, default=200, help="events per JSON-array message")
    parser.add_argument("--messages-per-batch", type=int, default=1, help="messages per micro-batch")
    args = parser.parse_args()
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {platform.machine()}, engine {args.engine}, "
          f"{args.warmup:,} warm-up + {args.events:,} timed events, {args.users:,} users, {args.items:,} items, "
          f"{args.per_message} events/message, {args.messages_per_batch} message(s)/batch")
    trees: list[tuple[str, Path, bool]] = [("this", args.tree.resolve(), False)]
    if args.compare_python:
        trees.insert(0, ("this, Python", args.tree.resolve(), True))
    with baseline_tree(args.baseline_ref) as base:
        if base is not None:
            trees.insert(0, (args.baseline_ref, base, False))
        results: dict[str, list[dict]] = {name: [] for name, _, _ in trees}
        for round_ in range(args.rounds):
            for name, tree, pure_python in trees:
                order = [True, False] if round_ % 2 == 0 else [False, True]
                row = measure(tree, args, order, pure_python)
                results[name].append(row)
                print(line(name, row), flush=True)
    if args.rounds > 1:  # on a shared machine the least-disturbed run says the most
        for label, pick in (("medians", statistics.median), ("best", min)):
            print(f"{label}:")
            for name, rows in results.items():
                picked = {key: pick(row[key] for row in rows)
                          for key in ("us_per_event_on", "us_per_event_off", "us_per_list")}
                print(line(name, {**rows[0], **picked}))
    if len(trees) > 1:
        # Paired by round: each round runs every variant back to back, so a ratio within one round cancels most
        # of what the machine's load did to both (the medians above do not pair them).
        first, *others = results
        for name in others:
            for key, what in (("us_per_event_on", "per event, push on"), ("us_per_list", "per list")):
                ratios = sorted(mine[key] / theirs[key] for mine, theirs in zip(results[name], results[first]))
                print(f"{name} ÷ {first}, {what}: median ×{statistics.median(ratios):.2f} over {len(ratios)} "
                      f"round(s) (×{ratios[0]:.2f}-×{ratios[-1]:.2f})")
        digests = {name: {row["digest"] for row in rows} for name, rows in results.items()}
        same = len(set().union(*digests.values())) == 1
        print("the same lists from every variant" if same else f"LISTS DIFFER: {digests}")
        return 0 if same else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
