"""What the encoder costs on the worker's own path: ``EventProcessor.process_events``, in-process (no Kafka).

Three variants, each a child process, alternating run by run, on ML-100K (or the demo's stream) as
single-event messages in micro-batches of ``--batch``:

- ``blend``: the learned blend (``STREAMREC_BLEND=default``) without an encoder;
- ``encoder``: the same blend with an encoder version in its slot (the ``small`` preset, ML-100K's
  catalogue; weights are random: the cost depends on the shapes only), served as the worker serves it
  (one batched forward pass per micro-batch, ``Blend.prepare``; states reused, one matrix for top-k);
- ``encoder-per-user``: the same, with ``Blend.prepare`` disabled: one forward pass per list, the
  serving path before this benchmark.

``--baseline-ref REF`` also measures ``encoder`` on another commit (a temporary ``git worktree``), in
the same rounds, as ``encoder@REF``: before and after a change, on the same machine at the same time.

The first ``--warm`` events are learned untimed (so histories and models are realistic), the next
``--events`` are timed: CPU seconds per event of the whole ``process_events`` (learning + lists) and of
the lists alone (``EventProcessor._list_for``). One thread for torch and for numpy's BLAS, as the worker's encoder handover sets.
The measurement of what the encoder adds (``STREAMREC_ENCODER_SHADOW_EVERY``, ``online.shadow``: a second
list, without the encoder, for one user in four) is off here, so the figures are serving alone.

    python benchmarks/encoder_serving.py --runs 3
    python benchmarks/encoder_serving.py --runs 5 --variants blend encoder --baseline-ref HEAD
    python benchmarks/encoder_serving.py --data generated      # the demo's stream (users interleaved)
    python benchmarks/encoder_serving.py --ranker weighted_sum   # the blend ranking by its weighted sum
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from baseline import baseline_tree

from online.registry import RANKERS

ROOT = Path(__file__).resolve().parents[1]
ML100K = ROOT.parent / "shared" / "data" / "ml-100k" / "u.data"
VARIANTS = ("blend", "encoder", "encoder-per-user")

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(1)
from threadpoolctl import threadpool_limits
threadpool_limits(limits=1, user_api="blas")  # as the worker serves (models.serving.serve_on_one_thread)
from models import EncoderConfig, EncoderScorer, SequenceEncoder
from online.blend import Blend
from stream.cli.datasets import generate, load
from stream.settings import Settings
from stream.wire.messages import RawMessage
from stream.wire.schema import event_payload
from stream.worker.processor import EventProcessor
path, warm, n, batch, variant, ranker = (sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]),
                                        sys.argv[6], sys.argv[7])
events = (load(path, "movielens") if path else generate(warm + n, seed=7))[:warm + n]
strings = {"blend": "default", "encoder_shadow_every": "0"}
try:
    settings = Settings().with_strings({**strings, "ranker": ranker} if ranker else strings)
except ValueError:  # a baseline commit from before the setting: it has one ranker, the weighted sum
    settings = Settings().with_strings(strings)
msgs = [RawMessage(json.dumps(event_payload(e)).encode(), e.user_id.encode(), "events", 0, i, 1.0)
        for i, e in enumerate(events)]
processor = EventProcessor(settings)
if variant != "blend":
    items = list(dict.fromkeys(e.item_id for e in events))
    torch.manual_seed(0)
    scorer = EncoderScorer(SequenceEncoder(EncoderConfig.small(n_items=len(items))), items, version=1)
    processor.engine.blend.fill("encoder", scorer, weight=settings.encoder.weight)
    if variant == "encoder-per-user":
        Blend.prepare = lambda self, requests: None
for start in range(0, warm, batch):
    processor.process_events(msgs[start:start + batch])
lists_cpu = [0.0]
list_for = processor._list_for
def timed(*a, **kw):
    began = time.process_time()
    try:
        return list_for(*a, **kw)
    finally:
        lists_cpu[0] += time.process_time() - began
processor._list_for = timed
began = time.process_time()
for start in range(warm, warm + n, batch):
    processor.process_events(msgs[start:start + batch])
total = time.process_time() - began
print(json.dumps({"us_per_event": 1e6 * total / n, "lists_us_per_event": 1e6 * lists_cpu[0] / n}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warm", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--data", choices=("ml100k", "generated"), default="ml100k",
                        help="ML-100K (sorted by time: a user's ratings come in bursts) or the demo's generated "
                             "stream (users interleaved); ML-100K falls back to generated when absent")
    parser.add_argument("--baseline-ref", help="also measure the encoder on this git commit (a temporary worktree)")
    parser.add_argument("--ranker", choices=RANKERS,
                        help="how the learned blend ranks its pool (default: the shipped setting; a baseline commit "
                             "from before the setting ranks by the weighted sum)")
    args = parser.parse_args()
    data = str(ML100K) if args.data == "ml100k" and ML100K.exists() else ""
    trees = [(variant, variant, ROOT) for variant in args.variants]
    with baseline_tree(args.baseline_ref) as base_tree:
        if base_tree is not None:
            trees.append((f"encoder@{args.baseline_ref}", "encoder", base_tree))
        results: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in trees}
        for _ in range(args.runs):
            for name, variant, tree in trees:
                out = subprocess.run([sys.executable, "-c", CHILD, str(tree), data, str(args.warm),
                                      str(args.events), str(args.batch), variant, args.ranker or ""],
                                     check=True, capture_output=True, text=True)
                results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = statistics.median(r["us_per_event"] for r in results.get("blend", [])) if "blend" in results else None
    base_lists = statistics.median(r["lists_us_per_event"] for r in results["blend"]) if base else None
    for variant, runs in results.items():
        total = statistics.median(r["us_per_event"] for r in runs)
        lists = statistics.median(r["lists_us_per_event"] for r in runs)
        ratio = f"  x{total / base:.2f} per event, x{lists / base_lists:.2f} per list" if base else ""
        # each run against the blend's run of the same round (they ran back to back): steadier on a noisy box
        paired = (f"; paired by round x{statistics.median(r['us_per_event'] / b['us_per_event'] for r, b in zip(runs, results['blend'])):.2f}"
                  if base and variant != "blend" else "")
        print(f"{variant:<22} median {total:7.1f} µs/event (lists {lists:7.1f}){ratio}{paired}  runs "
              + ", ".join(f"{r['us_per_event']:.0f}" for r in runs))
    print(json.dumps({"data": args.data if data else "generated", "batch": args.batch, "events": args.events,
                      "warm": args.warm, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
