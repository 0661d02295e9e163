"""Self-tuning of the whole engine vs the shipped defaults vs the best fixed config in hindsight.

On each stream (ML-100K when present, and generated streams that differ the way domains do:
``news`` with fast item turnover, ``catalogue`` with a stable catalogue and long-range
co-occurrence, ``drifting``, the demo's stream; see ``benchmarks/streams.py``):

- **default**: the shipped default engine, fixed (``--self-tune off``);
- **self-tuned**: the same defaults under the production loop (``online.search.SelfTunedRecommender``
  with the shipped ``search_*`` settings: searches on the past only, warm swaps);
- **grid**: a small grid of fixed configs, each replayed over the whole stream; the best of them
  is "the best fixed config in hindsight" (it knows the whole stream's outcome; the self-tuned
  engine never does).

Every row is a prequential replay at batch size 1 (``streamrec eval``'s default), HR@10 and
NDCG@10. Rows run in parallel processes (``--jobs``); the self-tuned rows report the search's
CPU seconds and when each swap happened. Targets (the self-tuning issue): on every stream
≥ 0.97× the best fixed config and ≥ the fixed default; on average ≥ +10% over the default.

    python benchmarks/self_tuning.py --json self_tuning.json
    python benchmarks/self_tuning.py --streams news,catalogue --events 20000 --trials 10   # smoke
    python benchmarks/self_tuning.py --bandits --grid off   # the in-loop bandits inside self-tuning vs without
"""
from __future__ import annotations

import argparse
import dataclasses
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

from benchmarks import streams as generated  # noqa: E402
from online.blend import BlendConfig  # noqa: E402
from online.engine import EngineConfig  # noqa: E402

ML100K = ROOT.parent / "shared" / "data" / "ml-100k" / "u.data"
STREAMS = ("ml-100k", "news", "catalogue", "drifting")


def grid() -> dict[str, EngineConfig]:
    """The fixed configs of the hindsight grid: the defaults and one-step structural changes of them
    (which strategies run, memory lengths, decays, windows), the kind of change a person would try."""
    blend = EngineConfig(blend=BlendConfig())
    return {
        "fixed mix (default)": EngineConfig(),
        "blend (shipped)": blend,
        "cooccurrence alone": EngineConfig(blend=BlendConfig(weights=(("cooccurrence", 1.0),), learn_weights=False)),
        "blend + mf": EngineConfig(blend=BlendConfig().with_weights(mf=0.3)),
        "blend, short popularity memory": blend.replace(half_life=500.0),
        "blend, long popularity memory": blend.replace(half_life=100_000.0),
        "blend, cooc window 2": blend.replace(cooc_window=2),
        "blend, cooc window 30": blend.replace(cooc_window=30),
        "blend, cooc forgets": blend.replace(cooc_half_life=5_000.0),
        "blend, short histories": blend.replace(history_len=10),
    }


def load_stream(name: str, events: int) -> list:
    if name == "ml-100k":
        from stream.cli.datasets import load

        return load(ML100K, "movielens")[:events] if events else load(ML100K, "movielens")
    return getattr(generated, name)(events or 50_000)


def run_row(stream: str, events: int, label: str, config: EngineConfig | None, trials: int | None,
            bandits: bool = False) -> dict[str, Any]:
    """One replay; ``config`` ``None`` means the self-tuned defaults (``bandits``: with the in-loop
    bandits of ``online.tuning`` inside, as a worker runs them with ``STREAMREC_TUNER=true``)."""
    from online.evaluation import iter_prequential
    from online.search import SelfTunedRecommender, searcher
    from stream.settings import Settings

    data = load_stream(stream, events)
    started = time.process_time()
    if config is None:
        settings = Settings()
        search_config = settings.search_config()
        if trials is not None:
            search_config = dataclasses.replace(search_config, trials=trials)
        start, bandit = EngineConfig(), None
        if bandits:
            from functools import partial

            from online.tuning import TunedRecommender, tuned_engine_config

            start = tuned_engine_config(start)  # what a worker with the tuner on starts from
            bandit = partial(TunedRecommender, config=settings.tuner_config())
        engine: Any = SelfTunedRecommender(start, schedule=settings.schedule(), searcher=searcher(search_config),
                                           bandit=bandit)
        final = list(iter_prequential(data, engine=engine))[-1]
        extra = {"search_cpu_s": engine.search_cpu_s, "searches": [
            {"at": at, "gain": e["gain"], "accepted": e["accepted"], "serving_hr": e["serving_hr"],
             "best_hr": e["best_hr"], "config": e["config"]} for at, e in engine.results],
                 "swaps": [{"at": s.at, "applied": s.applied, "how": s.how} for s in engine.swaps]}
    else:
        final = list(iter_prequential(data, config))[-1]
        extra = {}
    return {"stream": stream, "label": label, "events": len(data), "hr": final["hr@10"], "ndcg": final["ndcg@10"],
            "cpu_s": time.process_time() - started, **extra}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default=",".join(STREAMS))
    parser.add_argument("--events", type=int, default=0, help="events per stream (0: all of ML-100K, 50k generated)")
    parser.add_argument("--trials", type=int, default=None, help="trials per search (default: search_trials)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--bandits", action="store_true",
                        help="also run self-tuning with the in-loop bandits inside (STREAMREC_TUNER=true)")
    parser.add_argument("--grid", choices=("on", "off"), default="on",
                        help="off: only the fixed default of the grid (the self-tuned rows' baseline)")
    args = parser.parse_args()
    names = [name.strip() for name in args.streams.split(",") if name.strip()]
    if "ml-100k" in names and not ML100K.exists():
        print(f"skipping ml-100k: {ML100K} is absent (MovieLens is read from ../shared/data, never copied)")
        names.remove("ml-100k")
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {platform.processor() or platform.machine()}, "
          f"jobs {args.jobs}")
    jobs = [(stream, args.events, "self-tuned (from defaults)", None, args.trials, False) for stream in names]
    if args.bandits:
        jobs += [(stream, args.events, "self-tuned + bandits", None, args.trials, True) for stream in names]
    fixed_rows = grid() if args.grid == "on" else {"fixed mix (default)": EngineConfig()}
    jobs += [(stream, args.events, label, config, None, False) for stream in names for label, config in fixed_rows.items()]
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(run_row, *zip(*jobs)))
    summary = []
    for stream in names:
        mine = [row for row in rows if row["stream"] == stream]
        tuned = next(row for row in mine if row["label"] == "self-tuned (from defaults)")
        with_bandits = next((row for row in mine if row["label"] == "self-tuned + bandits"), None)
        fixed = [row for row in mine if not row["label"].startswith("self-tuned")]
        default = next(row for row in fixed if row["label"] == "fixed mix (default)")
        best = max(fixed, key=lambda row: row["hr"])
        print(f"\n{stream} ({tuned['events']:,} events)")
        for row in sorted(mine, key=lambda row: -row["hr"]):
            print(f"  {row['label']:<34} HR@10 {row['hr']:.4f}  NDCG@10 {row['ndcg']:.4f}  cpu {row['cpu_s']:6.0f} s")
        swaps = [f"{s['at']:,} ({s['how']})" for s in tuned["swaps"]]
        print(f"  self-tuned: {tuned['hr'] / default['hr']:.3f}x the default, {tuned['hr'] / best['hr']:.3f}x the best "
              f"fixed ({best['label']}); searches {len(tuned['searches'])}, search CPU {tuned['search_cpu_s']:.0f} s, "
              f"swaps at {', '.join(swaps) or 'none'}")
        summary.append({"stream": stream, "vs_default": tuned["hr"] / default["hr"], "vs_best": tuned["hr"] / best["hr"],
                        "best_fixed": best["label"]})
        if with_bandits is not None:
            print(f"  self-tuned + bandits: HR@10 {with_bandits['hr'] / tuned['hr']:.3f}x, NDCG@10 "
                  f"{with_bandits['ndcg'] / tuned['ndcg']:.3f}x self-tuning alone; {with_bandits['hr'] / default['hr']:.3f}x "
                  f"the default")
            summary[-1]["bandits_vs_self_tuned"] = with_bandits["hr"] / tuned["hr"]
    mean_gain = sum(s["vs_default"] for s in summary) / len(summary) - 1 if summary else 0.0
    print(f"\naverage over streams: {mean_gain:+.1%} over the fixed default; "
          f"worst vs best fixed {min((s['vs_best'] for s in summary), default=0):.3f}x; {time.perf_counter() - started:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary, "mean_gain": mean_gain}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
