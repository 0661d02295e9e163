"""What a warm config swap costs serving: batch latency p99 while a new engine is built and swapped in.

A worker's loop in-process (no Kafka): a ``SelfTunedRecommender`` learns ML-100K (or the demo's
stream) in micro-batches of ``--batch`` events and builds a list for every user of each batch;
each batch's wall time is one "serving latency". Part-way through, a new config (the learned
blend with other knobs, so the engine must be rebuilt) is built from the kept events in another
process (``online.search.loop.build`` in a ``ProcessPoolExecutor``, as the worker does) while
batches keep being served; at the first batch boundary after it is ready the swap is committed
(the events that arrived meanwhile are learned a slice per batch, as the worker does; then
``commit``: every user moved in O(1), checks). Batches while the
build runs and the commit batch are "during the swap"; the others are steady state. With
``--rate``, batches arrive at that rate, latency counts from a batch's arrival (queueing
included), and the backlog is learned in the time between batches, as a worker's handover
takes the agent's lock between two batches. Target (the
self-tuning issue): p99 during a swap within 20% of steady state.

    python benchmarks/config_swap.py [--events 60000] [--batch 20] [--swaps 3]
"""
from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from online.blend import BlendConfig  # noqa: E402
from online.engine import EngineConfig, StreamingRecommender  # noqa: E402
from online.search import Schedule, SelfTunedRecommender  # noqa: E402
from online.search.loop import build_encoded  # noqa: E402
from stream.worker.config_handover import CATCH_UP_PER_BATCH  # noqa: E402

ML100K = ROOT.parent / "shared" / "data" / "ml-100k" / "u.data"


class InPlace:
    """A build in this process, a slice at a time (``--in-process``): the engine learns the kept
    events in slices between batches; ``done()`` once all are learned (then the backlog follows)."""

    def __init__(self, config: EngineConfig, events: list, slice_: int) -> None:
        self.fresh, self.events, self.slice, self.at = StreamingRecommender(config), events, slice_, 0

    def step(self) -> None:
        self.fresh.learn_many(self.events[self.at:self.at + self.slice])
        self.at += self.slice

    def done(self) -> bool:
        return self.at >= len(self.events)

    def result(self) -> StreamingRecommender:
        return self.fresh


def advance(engine: SelfTunedRecommender, pending: tuple, slice_: int, builds: list) -> tuple | None:
    """One step of a built engine towards serving: a slice of the build (in process), a slice of the
    backlog, or the commit when it is small; returns what is still pending (None once committed)."""
    future, position, build_began, behind = pending
    if isinstance(future, InPlace) and not future.done():
        future.step()
        return pending
    fresh = future.result()
    if engine.events - position > slice_:
        return future, engine.catch_up(fresh, position, slice_), build_began, behind or engine.events - position
    swap = engine.commit(fresh, position, {"config": "benchmark"})
    builds.append((time.perf_counter() - build_began, swap.applied, behind))
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--swaps", type=int, default=3)
    parser.add_argument("--keep", type=int, default=50_000)
    parser.add_argument("--rate", type=float, default=0.0,
                        help="events per second arriving (0: saturated, every batch right after the last); with "
                             "a rate, latency counts from a batch's arrival and the backlog is learned while idle")
    parser.add_argument("--in-process", action="store_true",
                        help="build in this process, a slice at a time between batches, instead of in another process")
    parser.add_argument("--slice", type=int, default=CATCH_UP_PER_BATCH,
                        help="backlog events learned per batch boundary (default: the worker's)")
    args = parser.parse_args()
    from stream.cli.datasets import generate, load

    events = (load(ML100K, "movielens") if ML100K.exists() else generate(args.events, seed=7))[: args.events]
    configs = [EngineConfig(blend=BlendConfig()).replace(cooc_window=w, history_len=h)
               for w, h in ((4, 30), (12, 80), (6, 50))]
    engine = SelfTunedRecommender(EngineConfig(blend=BlendConfig()), searcher=None,
                                  schedule=Schedule(first=10**9, window=args.keep, keep=args.keep))
    starts = [int(len(events) * (i + 1) / (args.swaps + 1)) for i in range(args.swaps)]
    steady, during, builds = [], [], []
    pending = None
    with ProcessPoolExecutor(max_workers=1) as pool:
        pool.submit(int, 0).result()  # the process is up before measuring
        interval = args.batch / args.rate if args.rate else 0.0
        clock = time.perf_counter()
        for n, start in enumerate(range(0, len(events), args.batch)):
            arrives = clock + n * interval if interval else time.perf_counter()
            while interval and time.perf_counter() < arrives:  # idle until the batch arrives: the backlog's time
                if pending is not None and (pending[0].done() or isinstance(pending[0], InPlace)):
                    pending = advance(engine, pending, args.slice, builds)
                else:
                    time.sleep(min(0.0005, max(0.0, arrives - time.perf_counter())))
            began = max(arrives, time.perf_counter()) if interval else time.perf_counter()
            batch = events[start:start + args.batch]
            engine.learn_many(batch)
            for user in dict.fromkeys(e.user_id for e in batch):
                engine.recommend(user)
            swapping = pending is not None
            if not interval and pending is not None and (pending[0].done() or isinstance(pending[0], InPlace)):
                pending = advance(engine, pending, args.slice, builds)
            (during if swapping else steady).append(time.perf_counter() - (arrives if interval else began))
            if starts and start >= starts[0] and pending is None:
                starts.pop(0)
                config = configs[len(builds) % len(configs)]
                if args.in_process:
                    position, kept_events = engine.kept()
                    work: Any = InPlace(config, kept_events, args.slice)
                else:
                    position, kept = engine.kept_encoded()  # as the worker's process path ships them
                    work = pool.submit(build_encoded, config, kept)
                pending = (work, position, time.perf_counter(), 0)
    p = lambda xs, q: float(np.percentile(np.array(xs) * 1e3, q))  # noqa: E731
    print(f"{len(steady) + len(during):,} batches of {args.batch}; {len(builds)} swaps "
          f"(build+commit {', '.join(f'{s:.1f} s' for s, _, _ in builds)}; applied {[a for _, a, _ in builds]}; "
          f"events caught up at commit {[n for _, _, n in builds]})")
    print(f"steady:      p50 {p(steady, 50):6.2f} ms  p99 {p(steady, 99):6.2f} ms  ({len(steady):,} batches)")
    print(f"during swap: p50 {p(during, 50):6.2f} ms  p99 {p(during, 99):6.2f} ms  ({len(during):,} batches)")
    print(f"p99 ratio during/steady: {p(during, 99) / p(steady, 99):.2f} (target <= 1.20)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
