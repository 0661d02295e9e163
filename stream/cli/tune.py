"""``streamrec tune``: the tuner's search, offline, on a data file; prints the winner as environment lines.

The same search ``streamrec tuner`` runs on the live stream (:func:`online.search.search`):
the last ``--window`` events of the file (default ``search_window``) are replayed by every
trial, the worker's configured engine (``STREAMREC_*``) is the serving config it must beat,
and the winner is printed as the ``STREAMREC_*`` lines that make a worker serve it (only
those that differ from the defaults). ``--storage`` keeps the study (any Optuna storage URL),
so ``optuna-dashboard`` can open it and a later run continues it; ``--plot`` draws every
trial's HR@k against the serving config's.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from stream.cli.evaluate import UsageError, add_source_arguments, settings_with_sets
from stream.settings import Settings


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "tune", help="search the engine's whole config on a data file (the tuner's search, offline)",
        description="Replays the last --window events of a file through each trial of a Bayesian search (Optuna TPE "
                    "with successive halving) over every knob the registry declares, against the worker's "
                    "configured engine, and prints the winner as STREAMREC_* environment lines.")
    add_source_arguments(p)
    p.add_argument("--window", type=int, default=None, metavar="N",
                   help="replay the last N events of the file (default: search_window)")
    p.add_argument("--trials", type=int, default=None, help="trials (default: search_trials)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="default: search_timeout_s")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="keep the study in this Optuna storage (e.g. sqlite:///tune.db); default: in memory")
    p.add_argument("--study", default=None, help="study name in --storage (default: search_study)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE",
                   help="set one setting by its flat name first (the serving config, search_* settings)")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the result as JSON")
    p.add_argument("--plot", type=Path, default=None, metavar="PATH", help="PNG of every trial's HR@k")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_tune)
    return p


def run_tune(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except UsageError as exc:
        print(f"streamrec tune: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import dataclasses

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from online.search import search
    from online.search.study import create_study
    from stream.cli.evaluate import _load

    settings = settings_with_sets(Settings.from_env(), args.sets)
    config = settings.search_config()
    try:
        if args.trials is not None:
            config = dataclasses.replace(config, trials=args.trials)
        if args.timeout is not None:
            config = dataclasses.replace(config, timeout_s=args.timeout)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    args.limit = None
    events, source = _load(args)
    size = args.window or settings.search.window
    if size < 2:
        raise UsageError("--window must be >= 2")
    window = events[-size:]
    serving = settings.engine_config()
    console = Console(stderr=True)
    console.print(f"[bold]streamrec tune[/bold] {source}: the last {len(window):,} of {len(events):,} events, "
                  f"{config.trials} trials (or {config.timeout_s or 'no'} s), "
                  f"strategies {', '.join(config.strategies)}")
    try:
        study = create_study(config, storage=args.storage, study_name=args.study or settings.search.study)
    except Exception as exc:  # a bad URL, a locked file: say which
        raise UsageError(f"cannot open the study in {args.storage}: {exc}") from None
    progress = Progress(TextColumn("trials"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("best HR@k {task.fields[best]:.4f} (serving {task.fields[serving]})"),
                        TimeElapsedColumn(), console=console, disable=args.no_progress, transient=True)
    best = 0.0
    with progress:
        task = progress.add_task("search", total=config.trials, best=0.0, serving="measuring")

        def on_trial(record: Any, n: int) -> None:
            nonlocal best
            if record.hr is not None:
                best = max(best, record.hr)
            progress.update(task, completed=n, best=best)

        result = search(window, serving, config, study=study, on_trial=on_trial)
    evidence = result.evidence()
    console.print(f"serving HR@{serving.k} {result.serving.hr:.4f}; best {evidence['best_hr'] or 0:.4f} "
                  f"({evidence['trials']} trials, {evidence['pruned']} pruned, {result.cpu_s:.0f} CPU s): "
                  f"{result.reason}")
    lines: list[str] = []
    if result.best_config is not None:
        defaults = Settings().to_env()
        winner = settings.with_engine(result.best_config).to_env()
        lines = [f"{name}={value}" for name, value in winner.items() if defaults.get(name) != value]
        verdict = "the winner (accepted)" if result.accepted else f"the best trial (not accepted: {result.reason})"
        print(f"# {verdict}")
        print("\n".join(lines))
    if args.plot is not None:
        _plot(result, args.plot, f"streamrec tune on {source}")
        console.print(f"wrote {args.plot}")
    if args.json is not None:
        report = {"source": source, "window": len(window), **evidence, "environment": lines,
                  "trials_detail": [dataclasses.asdict(t) for t in result.trials]}
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        console.print(f"wrote {args.json}")
    return 0


def _plot(result: Any, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [t for t in result.trials if t.hr is not None]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.scatter([t.number for t in done], [t.hr for t in done], s=14, label="trial HR@k")
    running, best = [], 0.0
    for t in done:
        best = max(best, t.hr)
        running.append(best)
    ax.plot([t.number for t in done], running, color="tab:green", label="best so far")
    ax.axhline(result.serving.hr, color="tab:red", linestyle="--", label="serving config")
    ax.set_xlabel("trial")
    ax.set_ylabel("HR@k on the window")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
