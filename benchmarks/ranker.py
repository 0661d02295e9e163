"""The network ranker (``online.ranker``) against the weighted sum it reads, on streams that differ the way
domains do: HR@10, NDCG@10 and CPU per event of the learned blend, both rankers in the same run.

Streams: ML-100K (when present) and ``benchmarks/streams.py``'s news (fast item turnover), catalogue (stable,
long-range co-occurrence) and drifting (the demo's generated stream). Every row is a prequential
replay (``online.evaluation.run_prequential``, ``streamrec eval``'s protocol) of the shipped learned blend
(``BlendConfig()``) with ``ranker`` set; rows run in parallel processes (``--jobs``), each stream's two rows
side by side, so CPU figures are compared within a stream, as ratios.

Also ``--pool-recall``: how often the user's next item was in the pool last served to them (what any
ranking of the pool can reach), beside the HR@10 each ranker makes of it.

    python benchmarks/ranker.py
    python benchmarks/ranker.py --events 20000 --streams news,catalogue   # smoke
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ML100K = ROOT.parent / "shared" / "data" / "ml-100k" / "u.data"
STREAMS = ("ml-100k", "news", "catalogue", "drifting")
from online.registry import RANKERS  # noqa: E402


def load_stream(name: str, events: int) -> list[Any]:
    from benchmarks import streams
    from stream.cli.datasets import load

    if name == "ml-100k":
        return load(ML100K, "movielens")
    return getattr(streams, name)(events)


def row(stream: str, ranker: str, events: int, batch: int, pool_recall: bool) -> dict[str, Any]:
    from online.blend import BlendConfig
    from online.engine import EngineConfig
    from online.evaluation import run_prequential
    from online.ranker import PoolRanker
    from online.rerank import LearnedWeights

    data = load_stream(stream, events)
    seen = {"events": 0, "in_pool": 0}
    if pool_recall:  # count, before either learner learns an event, whether the event's item was pooled
        cls = PoolRanker if ranker == "network" else LearnedWeights
        learn = cls.learn_many

        def counting(self, interactions):
            for event in interactions:
                pool = self._pools.get(event.user_id)
                if pool is not None:
                    seen["events"] += 1
                    seen["in_pool"] += event.item_id in pool[0]
            return learn(self, interactions)

        cls.learn_many = counting
    began = time.process_time()
    result = run_prequential(data, EngineConfig(blend=BlendConfig(ranker=ranker)), batch_size=batch)
    cpu = time.process_time() - began
    out = {"stream": stream, "ranker": ranker, "events": len(data), "hr@10": result["hr@10"],
           "ndcg@10": result["ndcg@10"], "cpu_us_per_event": 1e6 * cpu / len(data)}
    if pool_recall:
        out["pool_recall"] = seen["in_pool"] / max(1, seen["events"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default=",".join(STREAMS), help=f"comma-separated, of {', '.join(STREAMS)}")
    parser.add_argument("--events", type=int, default=50_000, help="events of each generated stream")
    parser.add_argument("--batch-size", type=int, default=1, help="events per micro-batch (1: streamrec eval's)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--pool-recall", action="store_true", help="also how often the next item was pooled")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.streams.split(",") if name.strip()]
    unknown = sorted(set(names) - set(STREAMS))
    if unknown:
        parser.error(f"unknown streams {unknown} (choose from {', '.join(STREAMS)})")
    if "ml-100k" in names and not ML100K.exists():
        print(f"skipping ml-100k: {ML100K} is absent")
        names.remove("ml-100k")
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, batch {args.batch_size}, "
          f"generated streams {args.events:,} events", flush=True)
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = {(name, ranker): pool.submit(row, name, ranker, args.events, args.batch_size, args.pool_recall)
                   for name in names for ranker in RANKERS}
        rows = {key: future.result() for key, future in futures.items()}
    print(f"{'stream':<11}{'HR@10 sum':>11}{'network':>9}{'ratio':>8}{'NDCG sum':>10}{'network':>9}{'ratio':>8}"
          f"{'CPU µs/event sum':>18}{'network':>9}{'ratio':>8}" + ("   pool recall" if args.pool_recall else ""))
    for name in names:
        base, net = rows[(name, "weighted_sum")], rows[(name, "network")]
        line = (f"{name:<11}{base['hr@10']:>11.4f}{net['hr@10']:>9.4f}{net['hr@10'] / base['hr@10']:>8.3f}"
                f"{base['ndcg@10']:>10.4f}{net['ndcg@10']:>9.4f}{net['ndcg@10'] / base['ndcg@10']:>8.3f}"
                f"{base['cpu_us_per_event']:>18.0f}{net['cpu_us_per_event']:>9.0f}"
                f"{net['cpu_us_per_event'] / base['cpu_us_per_event']:>8.2f}")
        if args.pool_recall:
            line += f"   {base['pool_recall']:.3f} / {net['pool_recall']:.3f}"
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(list(rows.values()), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
