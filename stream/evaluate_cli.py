"""``streamrec eval``: prequential test-then-train of the worker's engine on a data file.

Registered by ``stream.cli`` through :func:`add_parser`. The engine is built the
way the worker builds it (``Settings.from_env().engine_config()``), then
``--strategy`` / ``--weights`` may swap in a blend or a single strategy; the
replay itself is :func:`online.evaluation.iter_prequential`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from online.blend import STRATEGY_NAMES, BlendConfig
from online.engine import EngineConfig
from online.evaluation import iter_prequential

STRATEGY_CHOICES = ("engine", "blend") + tuple(name for name in STRATEGY_NAMES if name != "encoder")


class UsageError(Exception):
    """A problem with the command line or the input; printed as one line."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``eval`` subcommand to an ``argparse`` sub-parser collection."""
    from stream.datasets import FORMATS

    p = subparsers.add_parser(
        "eval", help="prequential (test-then-train) evaluation of the online engine on a data file",
        description="Replays interactions in time order through the engine the workers run: each event of a "
                    "user with history is ranked (top-k, seen items excluded) before it is learned. Reports "
                    "HR@k, NDCG@k, MRR@k, catalogue coverage, events/s and the HR@k curve over ten slices.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="interaction file")
    source.add_argument("--generated", type=int, metavar="N",
                        help="evaluate on N events of the demo's synthetic drifting stream instead")
    p.add_argument("--format", choices=FORMATS, help="format of --data")
    p.add_argument("--k", type=int, default=10, help="list length (default 10)")
    p.add_argument("--strategy", choices=STRATEGY_CHOICES, default="engine",
                   help="engine: as the worker is configured (default); blend: the strategy blend "
                        "(online.blend.BlendConfig defaults); or one strategy alone")
    p.add_argument("--weights", metavar="SPEC",
                   help="blend these strategies, e.g. 'popularity=0.2,cooccurrence=1,mf=0.3'")
    p.add_argument("--fixed-weights", action="store_true",
                   help="keep the blend weights fixed (default: learned online from the served lists)")
    p.add_argument("--batch-size", type=int, default=1,
                   help="events per micro-batch; lists are recomputed once per batch (default 1)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N events (after sorting)")
    p.add_argument("--seed", type=int, default=7, help="seed of --generated (default 7)")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_eval)
    return p


def engine_config_for(strategy: str, weights: str | None, fixed_weights: bool, k: int,
                      base: EngineConfig | None = None) -> EngineConfig:
    """The ``EngineConfig`` for ``--strategy`` / ``--weights`` on top of the worker's ``base``."""
    base = base or EngineConfig()
    learn = not fixed_weights
    if weights:
        blend = BlendConfig.parse(weights, learn_weights=learn)
    elif strategy == "engine":
        blend = base.blend
    elif strategy == "blend":
        blend = dataclasses.replace(base.blend or BlendConfig(), learn_weights=learn)
    else:
        blend = BlendConfig(weights=((strategy, 1.0),), learn_weights=False)
    return dataclasses.replace(base, k=k, blend=blend)


def _worker_engine_config() -> EngineConfig:
    from stream.settings import Settings

    return Settings.from_env().engine_config()


def _describe(config: EngineConfig) -> str:
    if config.blend is None:
        return (f"engine: popularity {config.popularity_weight:g} + next-item {config.next_item_weight:g} "
                f"(fixed)")
    blend = config.blend
    weights = ", ".join(f"{name}={weight:g}" for name, weight in blend.weights)
    return f"blend: {weights} ({'learned' if blend.learn_weights else 'fixed'} weights, {blend.normalise})"


def run_eval(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except UsageError as exc:
        print(f"streamrec eval: error: {exc}", file=sys.stderr)
        return 2


def _load(args: argparse.Namespace) -> tuple[list, str]:
    from stream.datasets import generate, load
    from stream.errors import DataFormatError

    if args.generated is not None:
        if args.generated < 1:
            raise UsageError("--generated needs a positive number of events")
        events = generate(args.generated, seed=args.seed)
        if args.limit is not None:
            events = events[: args.limit]
        return events, f"generated stream ({args.generated} events, seed {args.seed})"
    if args.format is None:
        raise UsageError("--data needs --format (movielens, csv, jsonl or sasrec)")
    try:
        events = load(args.data, args.format, limit=args.limit)
    except DataFormatError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot read {args.data}: {exc.strerror or exc}") from None
    return events, str(args.data)


def _run(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise UsageError("--k must be >= 1")
    if args.batch_size < 1:
        raise UsageError("--batch-size must be >= 1")
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be >= 1")
    try:
        config = engine_config_for(args.strategy, args.weights, args.fixed_weights, args.k,
                                   _worker_engine_config())
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    events, source = _load(args)
    if not events:
        raise UsageError(f"{source} holds no events")

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    console.print(f"[bold]streamrec eval[/bold] {source}: {len(events):,} events, k={args.k}, "
                  f"batch {args.batch_size}; {_describe(config)}")
    final: dict[str, Any] = {}
    progress = Progress(TextColumn("replaying"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("HR@{task.fields[k]} {task.fields[hr]:.4f}"), TimeRemainingColumn(),
                        console=console, disable=args.no_progress, transient=True)
    with progress:
        task = progress.add_task("replay", total=len(events), k=args.k, hr=0.0)
        for snap in iter_prequential(events, config, batch_size=args.batch_size, every=max(1, len(events) // 50),
                                     on_progress=lambda done, _total: progress.update(task, completed=done)):
            progress.update(task, hr=snap[f"hr@{args.k}"])
            final = snap
    report = _report(final, args, source, config)
    _print_table(report, args.k)
    if args.json is not None:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2) + "\n")
        except OSError as exc:
            raise UsageError(f"cannot write {args.json}: {exc.strerror or exc}") from None
        console.print(f"wrote {args.json}")
    return 0


def _report(final: dict[str, Any], args: argparse.Namespace, source: str, config: EngineConfig) -> dict[str, Any]:
    k = args.k
    report = {key: final[key] for key in ("events", "evaluated", "hits", f"hr@{k}", f"ndcg@{k}", f"mrr@{k}",
                                          "coverage", "events_per_s", "elapsed_s", "cpu_s", "batch_size", "k",
                                          "users", "items", "catalogue", "peak_rss_mb")}
    report["curve"] = [{"slice": c["slice"], "start": c["start"], "end": c["end"], "evaluated": c["evaluated"],
                        f"hr@{k}": c[f"hr@{k}"]} for c in final["curve"]]
    report["source"] = source
    report["strategy"] = args.weights or args.strategy
    report["engine"] = _describe(config)
    return report


def _print_table(report: dict[str, Any], k: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]prequential evaluation[/bold] of {report['engine']} on {report['source']}")
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, fmt in ((f"hr@{k}", "{:.4f}"), (f"ndcg@{k}", "{:.4f}"), (f"mrr@{k}", "{:.4f}"),
                     ("coverage", "{:.3f}"), ("events", "{:,}"), ("evaluated", "{:,}"),
                     ("events_per_s", "{:,.0f}"), ("batch_size", "{}"), ("peak_rss_mb", "{:.0f}")):
        table.add_row(key, fmt.format(report[key]))
    curve = Table(title=f"HR@{k} over ten slices of the stream", title_justify="left")
    curve.add_column("slice", justify="right")
    curve.add_column("events", justify="right")
    curve.add_column(f"HR@{k}", justify="right")
    for c in report["curve"]:
        curve.add_row(str(c["slice"]), f"{c['start']:,}-{c['end']:,}", f"{c[f'hr@{k}']:.4f}")
    console.print(table)
    console.print(curve)
