"""Whether a change moves any list: a digest of every list served, on every stream we have, for two checkouts.

A change meant to make lists cheaper must leave them as they were, on streams unlike the one it was measured on.
For each stream (``benchmarks/streams.py``: news with fast item turnover, a stable catalogue, the demo's drifting
stream; and ML-100K when ``../shared/data`` has it) and each engine (the fixed mix; the fixed mix with tables
bounded at 300 items, so evictions happen; the learned blend), the engine learns the stream in micro-batches of
20 and serves every user of each micro-batch a list; the digest covers every item and score (12 significant
digits). ``--baseline-ref REF`` runs REF's checkout too (its compiled loops built in a temporary worktree) and
compares; the exit status is 1 when any digest differs.

    python benchmarks/list_digests.py --baseline-ref 30c3096
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from baseline import baseline_tree

ROOT = Path(__file__).resolve().parents[1]
ML100K = ROOT.parent / "shared" / "data" / "ml-100k" / "u.data"

# Runs in a child process with the checkout under test first on sys.path.
CHILD = r"""
import hashlib, json, sys
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
from online.blend import BlendConfig
from online.engine import EngineConfig, StreamingRecommender
from stream.cli.datasets import load
import streams
n, ml100k = int(sys.argv[3]), sys.argv[4]
data = {"news": streams.news(n), "catalogue": streams.catalogue(n), "drifting": streams.drifting(n)}
if ml100k:
    data["ml100k"] = load(ml100k, "movielens")[:n]
engines = {"fixed": EngineConfig(k=10), "fixed, 300 items": EngineConfig(k=10, max_items=300),
           "learned blend": EngineConfig(k=10).replace(blend=BlendConfig())}
out = {}
for stream, events in data.items():
    for name, config in engines.items():
        engine, digest = StreamingRecommender(config), hashlib.sha256()
        for start in range(0, len(events), 20):
            chunk = events[start:start + 20]
            engine.learn_many(chunk)
            for user in dict.fromkeys(event.user_id for event in chunk):
                for item, score in engine.recommend(user).items:
                    digest.update(f"{item}:{score:.12g}|".encode())
        out[f"{stream} / {name}"] = [digest.hexdigest()[:16], round(engine.prequential.snapshot()["hr"], 4)]
print(json.dumps(out))
"""


def digests(tree: Path, events: int) -> dict[str, list]:
    data = str(ML100K) if ML100K.exists() else ""
    done = subprocess.run([sys.executable, "-c", CHILD, str(tree), str(tree / "benchmarks"), str(events), data],
                          check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-ref", help="also run this git commit (a temporary worktree) and compare")
    parser.add_argument("--events", type=int, default=20_000, help="events of each stream")
    args = parser.parse_args()
    if not ML100K.exists():
        print(f"(ML-100K is absent at {ML100K}: the generated streams only)")
    mine = digests(ROOT, args.events)
    with baseline_tree(args.baseline_ref) as base:
        theirs = digests(base, args.events) if base is not None else None
    differ = 0
    for key, (digest, hr) in mine.items():
        line = f"{key:<32} {digest}  HR@10 {hr:.4f}"
        if theirs is not None:
            same = theirs.get(key, [None])[0] == digest
            differ += not same
            line += "  same" if same else f"  DIFFERS from {args.baseline_ref} ({theirs.get(key)})"
        print(line)
    if theirs is not None:
        print("every list the same" if not differ else f"{differ} digest(s) differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
