"""What the item-level models cost to learn, per event, on their own: a worker's micro-batches and another
worker's deltas (issues 15 and 16).

Every event a worker learns, and every event another worker's deltas summarise (``learn_scope=shared``),
goes through the item-level models: ``DecayedPopularity`` (``learn_many``, ``add_counts``) and
``NextItem`` (``learn_pairs``, ``add_pairs``). This times each of those four calls alone, in micro-batches
of ``--batch`` events of a skewed generated stream (``stream.cli.datasets.generate``), as process CPU per
event, best of ``--rounds``; the deltas are those ``online.sharing.DeltaCollector`` seals for the same
batches. A digest of every model's final ranking (top items, strongest followers) says whether two
checkouts learn the same models.

    python benchmarks/item_learning.py                                  # this checkout
    python benchmarks/item_learning.py --baseline-ref HEAD --rounds 3   # before/after in the same run
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from baseline import baseline_tree

ROOT = Path(__file__).resolve().parents[1]

# Runs in a child process with the checkout under test first on sys.path (public names only).
CHILD = r"""
import hashlib, json, sys, time
from collections import Counter
sys.path.insert(0, sys.argv[1])
args = json.loads(sys.argv[2])
from stream.cli.datasets import generate
from online.engine import StreamingRecommender
from online.popularity import DecayedPopularity
from online.sequential import NextItem
from online.sharing import NEXT_ITEM, DeltaCollector

events = generate(args["events"], n_users=args["users"], n_items=args["items"], seed=args["seed"])
batch = args["batch"]
chunks = [events[i:i + batch] for i in range(0, len(events), batch)]
owner = StreamingRecommender()  # the engine whose collector seals each batch's deltas
deltas = []
for n, chunk in enumerate(chunks):
    collector = DeltaCollector(0)
    collector.cover(n * batch, n * batch + len(chunk) - 1)
    owner.learn_many(chunk, deltas=collector)
    deltas.append(collector.seal())
pairs = []  # each batch's (previous item, item) pairs, as the engine hands them to NextItem.learn_pairs
last = {}
for chunk in chunks:
    batch_pairs = []
    for event in chunk:
        prev = last.get(event.user_id)
        if prev is not None:
            batch_pairs.append((prev, event.item_id))
        last[event.user_id] = event.item_id
    pairs.append(batch_pairs)

probe = [item for item, _ in Counter(event.item_id for event in events).most_common(200)]

def digest(pop, seq):  # the popularity ranking, and the scores and strongest followers of the 200 commonest items
    h = hashlib.sha256(repr(pop.top(200)).encode())
    for item in probe:
        h.update(f"{item}:{pop.score_of(item):.12g}|{seq.strongest(item)!r}".encode())
    return h.hexdigest()[:16]

def timed(step):
    pop, seq = DecayedPopularity(), NextItem()
    began = time.process_time()
    for i in range(len(chunks)):
        step(pop, seq, i)
    return (time.process_time() - began) / len(events) * 1e6, digest(pop, seq)

def learn_pop(pop, seq, i): pop.learn_many(chunks[i])
def learn_pairs(pop, seq, i): seq.learn_pairs(pairs[i])
def add_counts(pop, seq, i):
    d = deltas[i]
    pop.add_counts([d.items[j] for j in d.pop_items], d.pop_counts, d.events)
def add_pairs(pop, seq, i):
    d = deltas[i]
    p = d.pairs[NEXT_ITEM]
    seq.add_pairs([d.items[j] for j in p.prev], [d.items[j] for j in p.nxt], p.weight, d.events)

out = {}
for name, step in (("popularity.learn_many", learn_pop), ("next_item.learn_pairs", learn_pairs),
                   ("popularity.add_counts", add_counts), ("next_item.add_pairs", add_pairs)):
    out[name] = timed(step)
print(json.dumps(out))
"""


def measure(tree: Path, args: argparse.Namespace) -> dict:
    spec = {"events": args.events, "users": args.users, "items": args.items, "seed": args.seed, "batch": args.batch}
    done = subprocess.run([sys.executable, "-c", CHILD, str(tree), json.dumps(spec)], check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout to measure (default: this one)")
    parser.add_argument("--baseline-ref", help="also measure this git commit (a temporary worktree), alternating")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--batch", type=int, default=200, help="events per micro-batch (and per delta)")
    args = parser.parse_args()
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {platform.machine()}, {args.events:,} events "
          f"({args.users:,} users, {args.items:,} items) in batches of {args.batch}; CPU µs per event, best of "
          f"{args.rounds}")
    trees: list[tuple[str, Path]] = [("this", args.tree.resolve())]
    best: dict[str, dict[str, tuple[float, str]]] = {}
    with baseline_tree(args.baseline_ref) as base:
        if base is not None:
            trees.insert(0, (args.baseline_ref, base))
        for _ in range(args.rounds):
            for label, tree in trees:
                for call, (us, digest) in measure(tree, args).items():
                    kept = best.setdefault(label, {}).get(call)
                    if kept is None or us < kept[0]:
                        best[label][call] = (us, digest)
    calls = list(next(iter(best.values())))
    print(f"{'call':<24}" + "".join(f"{label:>22}" for label, _ in trees) + ("   ratio" if len(trees) > 1 else ""))
    same = True
    for call in calls:
        row = [best[label][call] for label, _ in trees]
        ratio = f"   ×{row[-1][0] / row[0][0]:.2f}" if len(row) > 1 else ""
        print(f"{call:<24}" + "".join(f"{us:8.2f} ({digest[:8]})" for us, digest in row) + ratio)
        same &= len({digest for _, digest in row}) == 1
    if len(trees) > 1:
        print("the same models as the baseline's" if same else "MODELS DIFFER from the baseline's")
        return 0 if same else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
