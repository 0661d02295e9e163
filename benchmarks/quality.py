"""Quality benchmark (issue 3): streamrec's strategies and blend beside baselines, prequential, ML-100K.

Protocol (the same for every row): the ratings of ``u.data`` sorted by timestamp
(stable), every rating an interaction; for each event of a user who has an
earlier event, rank top-10 over the items seen so far, excluding the user's own
items, before learning the event (test-then-train). Rows:

- ``baseline popularity``: all-time counts, implemented here.
- ``baseline river FunkMF``: ``river.reco.FunkMF`` (10 factors, SGD) learned per
  event from the positive plus 4 negatives drawn uniformly from the known items,
  ranked over all known items; one run per learning rate of ``--lr-grid``, the
  best reported (best in hindsight), every grid point in the JSON.
- ``streamrec ...``: :func:`online.evaluation.run_prequential`, i.e. the engine
  the workers run (``learn_many`` + one ``recommend`` per user per batch).

Each row runs in its own child process, so ``peak_rss_mb`` is that row's peak
(including the loaded events every child inherits; the parent reports that size). ``cpu_us`` is
CPU time per event, steadier than events/s on a shared machine.

    python benchmarks/quality.py                    # everything (~10 minutes on 2 shared cores)
    python benchmarks/quality.py --quick            # first 20,000 events, two grid points
    python benchmarks/quality.py --json out.json --batch-sizes 1,100

MovieLens is read in place from ``../shared/data/ml-100k/u.data`` (relative to the
repository root) and never copied; without it the benchmark says so and exits 0.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import multiprocessing
import platform
import resource
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from online.base import Interaction  # noqa: E402
from online.blend import BlendConfig  # noqa: E402
from online.engine import EngineConfig  # noqa: E402
from online.evaluation import run_prequential  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared/data/ml-100k/u.data"
K = 10
EVENTS: list[Interaction] = []  # loaded once in the parent; forked children inherit it


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Scoreboard:
    """HR/NDCG/MRR@k and coverage for the baselines (the engine keeps its own)."""

    def __init__(self, k: int) -> None:
        self.k, self.evaluated, self.hits, self.ndcg, self.mrr = k, 0, 0, 0.0, 0.0
        self.recommended: set[int] = set()

    def record(self, top: list[int], target: int) -> None:
        self.evaluated += 1
        self.recommended.update(top)
        if target in top:
            rank = top.index(target)
            self.hits += 1
            self.ndcg += 1.0 / np.log2(rank + 2)
            self.mrr += 1.0 / (rank + 1)

    def result(self, n_items: int) -> dict[str, Any]:
        n = self.evaluated or 1
        return {"evaluated": self.evaluated, f"hr@{self.k}": self.hits / n, f"ndcg@{self.k}": self.ndcg / n,
                f"mrr@{self.k}": self.mrr / n, "coverage": len(self.recommended) / max(n_items, 1)}


def _ids(events: list[Interaction]) -> tuple[np.ndarray, np.ndarray, int]:
    users: dict[str, int] = {}
    items: dict[str, int] = {}
    u = np.fromiter((users.setdefault(e.user_id, len(users)) for e in events), dtype=np.intp, count=len(events))
    i = np.fromiter((items.setdefault(e.item_id, len(items)) for e in events), dtype=np.intp, count=len(events))
    return u, i, len(items)


def _top_unseen(scores: np.ndarray, seen: list[int], k: int) -> list[int]:
    """Top-k indices of ``scores`` (over known items) excluding ``seen``."""
    scores = scores.copy()
    if seen:
        scores[seen] = -np.inf
    want = min(k, len(scores))
    top = np.argpartition(-scores, want - 1)[:want]
    top = top[np.argsort(-scores[top], kind="stable")]
    return [int(t) for t in top if np.isfinite(scores[t])]


def baseline_popularity(events: list[Interaction], k: int) -> dict[str, Any]:
    users, items, n_items = _ids(events)
    counts = np.zeros(n_items)
    known = 0  # items are numbered in order of first appearance, so the known ones are 0..known-1
    seen: dict[int, list[int]] = {}
    board = Scoreboard(k)
    started, cpu = time.perf_counter(), time.process_time()
    for u, i in zip(users.tolist(), items.tolist()):
        history = seen.get(u)
        if history is not None:
            board.record(_top_unseen(counts[:known], history, k), i)
        else:
            history = seen[u] = []
        counts[i] += 1
        known = max(known, i + 1)
        history.append(i)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {**board.result(n_items), "events": len(events), "events_per_s": len(events) / elapsed,
            "cpu_us": cpu / len(events) * 1e6}


def baseline_funk_mf(events: list[Interaction], k: int, lr: float, negatives: int = 4,
                     n_factors: int = 10, seed: int = 0) -> dict[str, Any]:
    from river import optim, reco

    users, items, n_items = _ids(events)
    model = reco.FunkMF(n_factors=n_factors, optimizer=optim.SGD(lr),
                        initializer=optim.initializers.Normal(mu=0.0, sigma=0.1, seed=seed), seed=seed)
    Q = np.zeros((n_items, n_factors))  # mirror of river's item latents, for ranking in one product
    rng = np.random.default_rng(seed)
    known = 0
    seen: dict[int, list[int]] = {}
    board = Scoreboard(k)
    started, cpu = time.perf_counter(), time.process_time()
    for u, i in zip(users.tolist(), items.tolist()):
        history = seen.get(u)
        if history is not None:
            p = model.u_latents.get(u)
            scores = Q[:known] @ p if p is not None and known else np.zeros(known)
            board.record(_top_unseen(scores, history, k), i)
        else:
            history = seen[u] = []
        known = max(known, i + 1)
        model.learn_one(u, i, 1.0)
        Q[i] = model.i_latents[i]
        if known > 1:
            for j in rng.integers(0, known, size=negatives).tolist():
                if j != i:
                    model.learn_one(u, j, 0.0)
                    Q[j] = model.i_latents[j]
        history.append(i)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {**board.result(n_items), "events": len(events), "events_per_s": len(events) / elapsed,
            "cpu_us": cpu / len(events) * 1e6, "lr": lr}


def streamrec(events: list[Interaction], k: int, config: EngineConfig, batch_size: int = 1) -> dict[str, Any]:
    result = run_prequential(events, dataclasses.replace(config, k=k), batch_size=batch_size)
    out = {key: result[key] for key in ("evaluated", f"hr@{k}", f"ndcg@{k}", f"mrr@{k}", "coverage", "events",
                                        "events_per_s")}
    out["cpu_us"] = result["cpu_s"] / result["events"] * 1e6
    out["curve"] = [round(c[f"hr@{k}"], 4) for c in result["curve"]]
    return out


def _child(name: str, fn: Callable[..., dict[str, Any]], args: tuple) -> dict[str, Any]:
    out = fn(EVENTS, *args)
    out["peak_rss_mb"] = _rss_mb()
    out["name"] = name
    return out


def _single(name: str) -> EngineConfig:
    return EngineConfig(blend=BlendConfig(weights=((name, 1.0),), learn_weights=False))


def plan(args: argparse.Namespace) -> list[tuple[str, Callable[..., dict[str, Any]], tuple]]:
    k = args.k
    rows: list[tuple[str, Callable[..., dict[str, Any]], tuple]] = [
        ("baseline popularity (all-time)", baseline_popularity, (k,))]
    for lr in args.lr_grid:
        rows.append((f"baseline river FunkMF lr={lr:g}", baseline_funk_mf, (k, lr)))
    singles = ["popularity", "next_item", "cooccurrence", "mf"] + (["river_mf"] if args.river_mf else [])
    for name in singles:
        rows.append((f"streamrec {name}", streamrec, (k, _single(name))))
    blend = BlendConfig()
    for batch in args.batch_sizes:
        suffix = f", batch {batch}" if batch != 1 else ""
        rows.append((f"streamrec engine default (popularity + next-item){suffix}", streamrec,
                     (k, EngineConfig(), batch)))
        rows.append((f"streamrec blend (learned weights){suffix}", streamrec, (k, EngineConfig(blend=blend), batch)))
    rows.append(("streamrec blend (fixed weights)", streamrec,
                 (k, EngineConfig(blend=dataclasses.replace(blend, learn_weights=False)))))
    rows.append(("streamrec blend + mf (learned weights)", streamrec,
                 (k, EngineConfig(blend=blend.with_weights(mf=0.3)))))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help=f"u.data (default {DATA})")
    parser.add_argument("--k", type=int, default=K)
    parser.add_argument("--limit", type=int, default=None, help="only the first N events")
    parser.add_argument("--lr-grid", type=lambda s: [float(x) for x in s.split(",")],
                        default=[0.02, 0.05, 0.1, 0.2, 0.5], help="FunkMF learning rates (comma-separated)")
    parser.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1],
                        help="micro-batch sizes for the engine and blend rows (default 1)")
    parser.add_argument("--river-mf", action=argparse.BooleanOptionalAction, default=True,
                        help="include the river BiasedMF strategy row (slow)")
    parser.add_argument("--only", default=None, help="run only rows whose name contains this text")
    parser.add_argument("--quick", action="store_true", help="20,000 events and a two-point grid")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        print(f"skipped: {args.data} not found (MovieLens 100K is read in place from ../shared/data; "
              "it is never copied into the repository)")
        return 0
    if args.quick:
        args.limit = args.limit or 20_000
        args.lr_grid = args.lr_grid[:2] if len(args.lr_grid) > 2 else args.lr_grid

    from stream.cli.datasets import load

    EVENTS.extend(load(args.data, "movielens", limit=args.limit))
    data_mb = _rss_mb()
    rows = [row for row in plan(args) if args.only is None or args.only in row[0]]
    print(f"{len(EVENTS):,} events from {args.data}; {len(rows)} rows, one child process each "
          f"(parent RSS after loading {data_mb:.0f} MB)", flush=True)
    results = []
    context = multiprocessing.get_context("fork")
    for name, fn, fargs in rows:
        with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            result = pool.submit(_child, name, fn, fargs).result()
        results.append(result)
        print(f"  {name:<58} HR@{args.k} {result[f'hr@{args.k}']:.4f}  NDCG@{args.k} "
              f"{result[f'ndcg@{args.k}']:.4f}  {result['events_per_s']:>8,.0f} ev/s", flush=True)
    funk = [r for r in results if r["name"].startswith("baseline river FunkMF")]
    best = max(funk, key=lambda r: r[f"hr@{args.k}"]) if funk else None
    _print_table(results, best, args.k)
    if args.json is not None:
        report = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                  "command": " ".join([Path(sys.executable).name, *sys.argv]),
                  "machine": {"python": platform.python_version(), "platform": platform.platform(),
                              "cpus": multiprocessing.cpu_count(), "numpy": np.__version__,
                              "river": __import__("river").__version__},
                  "events": len(EVENTS), "k": args.k, "data_rss_mb": data_mb,
                  "best_funk_mf": best, "rows": results}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _print_table(results: list[dict[str, Any]], best: dict[str, Any] | None, k: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"prequential top-{k}, ML-100K in time order (test-then-train)", title_justify="left")
    for column in ("row", f"HR@{k}", f"NDCG@{k}", f"MRR@{k}", "coverage", "events/s", "CPU µs/event",
                   "peak RSS MB"):
        table.add_column(column, justify="left" if column == "row" else "right")
    for r in results:
        name = r["name"]
        if best is not None and r is best:
            name += "  <- best FunkMF lr"
        table.add_row(name, f"{r[f'hr@{k}']:.4f}", f"{r[f'ndcg@{k}']:.4f}", f"{r[f'mrr@{k}']:.4f}",
                      f"{r['coverage']:.3f}", f"{r['events_per_s']:,.0f}", f"{r['cpu_us']:.0f}",
                      f"{r['peak_rss_mb']:.0f}")
    Console(width=160).print(table)


if __name__ == "__main__":
    sys.exit(main())
