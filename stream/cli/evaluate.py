"""``streamrec eval``: prequential test-then-train of the worker's engine on a data file.

Registered by ``stream.cli.main`` through :func:`add_parser`. The engine is built the
way the worker builds it (``Settings.from_env().engine_config()``), then
``--strategy`` / ``--weights`` may swap in a blend or a single strategy and
``--set NAME=VALUE`` changes single settings (any flat name, parsed like the
environment variable) or strategy weights; the replay itself is
:func:`online.evaluation.iter_prequential`.

Tuning: ``--tuner`` defaults to what the worker would do (``STREAMREC_TUNER``,
off unless set), so ``streamrec eval`` measures the engine the worker runs.
``--tuner on`` wraps the engine in :class:`online.tuning.TunedRecommender` (and
adds ``mf``, the model whose rate it tunes, to the blend if missing: see
:func:`online.tuning.tuned_engine_config`); ``--tuner off`` runs one fixed
configuration. Either way the run prints the trajectory of learning rates,
strategy weights and reward, and ``--plot PATH`` draws it.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
from pathlib import Path
from typing import Any

from online.blend import STRATEGY_NAMES, BlendConfig
from online.engine import EngineConfig, StreamingRecommender
from online.evaluation import iter_prequential
from online.registry import STRATEGY_FIELDS
from stream.settings import Settings, parse_setting, setting

STRATEGY_CHOICES = ("engine", "blend") + tuple(name for name in STRATEGY_NAMES if name != "encoder")


class UsageError(Exception):
    """A problem with the command line or the input; printed as one line."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``eval`` subcommand to an ``argparse`` sub-parser collection."""

    p = subparsers.add_parser(
        "eval", help="prequential (test-then-train) evaluation of the online engine on a data file",
        description="Replays interactions in time order through the engine the workers run: each event of a "
                    "user with history is ranked (top-k, seen items excluded) before it is learned. Reports "
                    "HR@k, NDCG@k, MRR@k, catalogue coverage, events/s and the HR@k curve over ten slices.")
    add_source_arguments(p)
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
    p.add_argument("--tuner", choices=("on", "off"), default=None,
                   help="tune learning rates and strategy weights online with the in-loop bandits (default: as "
                        "the worker, STREAMREC_TUNER, off unless set); 'on' adds mf to the blend if missing; "
                        "with self-tuning on, the bandits tune inside the searched config")
    p.add_argument("--tuner-policy", choices=("thompson", "ucb", "exp3", "epsilon"), default=None,
                   help="bandit policy of the tuner (default: STREAMREC_TUNER_POLICY, thompson)")
    p.add_argument("--self-tune", choices=("on", "off"), default=None,
                   help="run the production loop: search the engine's whole config on the recent stream at the "
                        "tuner's cadence (search_* settings, in events) and swap to winners warm, strictly from "
                        "the past (default: as the worker, STREAMREC_SELF_TUNE, on)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE",
                   help="set one setting by its flat name (docs/configuration.md): a blend field (mf_lr=0.2), an "
                        "engine field (half_life=2000), a tuner field (tuner_period=500), ...; or a strategy "
                        "weight (cooccurrence=0.5); repeatable, applied in order")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="simulate a group of N workers, users split over max(N, partitions) partitions as Kafka "
                        "splits them, each worker learning its own (online.scaleout, the mechanism of the live "
                        "workers; default 1: one engine)")
    p.add_argument("--learn-scope", choices=("shared", "partitions"), default="shared",
                   help="with --workers: shared (item deltas between workers, the default) or partitions")
    p.add_argument("--share-delay", type=int, default=1_000, metavar="EVENTS",
                   help="with --workers: stream events before another worker's deltas arrive (default 1000)")
    p.add_argument("--share-every", type=int, default=100, metavar="EVENTS",
                   help="with --workers: stream events between two publications of deltas (default 100)")
    p.add_argument("--encoder", choices=("on", "off"), default="off",
                   help="replay the trainer beside the engine (its refresh at its cadence, trainer_* settings) and "
                        "serve each version in the blend from the event it would reach a worker; reports HR@k "
                        "with and without the encoder's contribution (stream.cli.encoder_eval). Turns the "
                        "default blend on if the engine has none")
    p.add_argument("--encoder-rate", type=float, default=100.0, metavar="EVENTS_PER_S",
                   help="with --encoder on: stream rate that turns trainer_refresh_s and the training time into "
                        "events (default 100)")
    p.add_argument("--encoder-train-s", type=float, default=None, metavar="SECONDS",
                   help="with --encoder on: take each refresh's training time as this many seconds instead of "
                        "its measured training time (CPU seconds on a CPU, wall seconds on a GPU; deterministic runs)")
    p.add_argument("--plot", type=Path, default=None, metavar="PATH",
                   help="write a PNG of learning rates, strategy weights and reward over the stream")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_eval)
    return p


def add_source_arguments(p: argparse.ArgumentParser) -> None:
    """Where the events come from (``--data`` + ``--format``, or ``--generated N`` + ``--seed``): the same for
    ``eval`` and ``tune``, read by :func:`_load`."""
    from stream.cli.datasets import FORMATS

    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="interaction file")
    source.add_argument("--generated", type=int, metavar="N",
                        help="use N events of the demo's synthetic drifting stream instead")
    p.add_argument("--format", choices=FORMATS, help="format of --data")
    p.add_argument("--seed", type=int, default=7, help="seed of --generated (default 7)")


def engine_config_for(strategy: str, weights: str | None, fixed_weights: bool, k: int,
                      base: EngineConfig | None = None, settings: Settings | None = None) -> EngineConfig:
    """The ``EngineConfig`` for ``--strategy`` / ``--weights`` on top of the worker's ``base``; a blend
    built here takes its hyper-parameters from ``settings`` (the engine section)."""
    settings = settings or Settings()
    base = base or settings.engine_config()
    learn = not fixed_weights
    if weights:
        blend = settings.blend_config(weights, learn_weights=learn)
    elif strategy == "engine":
        blend = base.blend
    elif strategy == "blend":
        blend = dataclasses.replace(base.blend or settings.blend_config(), learn_weights=learn)
    else:
        blend = settings.blend_config(f"{strategy}=1", learn_weights=False)
    return dataclasses.replace(base, k=k, blend=blend)


def _worker_settings() -> Settings:
    return Settings.from_env()


def _split(item: str) -> tuple[str, str]:
    name, sep, raw = item.partition("=")
    name = name.strip()
    if not sep or not name:
        raise UsageError(f"--set needs NAME=VALUE (got {item!r})")
    return name, raw


def settings_with_sets(settings: Settings, sets: list[str]) -> Settings:
    """``settings`` with every ``--set NAME=VALUE`` that names a setting (its flat name, see
    docs/configuration.md) applied through the one parser; strategy weights are :func:`apply_sets`'s.

    >>> settings_with_sets(Settings(), ["tuner_period=300", "mf=0.5"]).tuner.period
    300
    """
    raw = {}
    for item in sets:
        name, value = _split(item)
        if name in STRATEGY_NAMES:
            continue
        try:
            setting(name)
        except ValueError:
            raise UsageError(f"--set: unknown name {name!r} (a strategy weight or a setting's flat name, "
                             "see docs/configuration.md)") from None
        raw[name] = value
    try:
        return settings.with_strings(raw, source="--set")
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def apply_sets(config: EngineConfig, sets: list[str]) -> EngineConfig:
    """``--set name=value`` in order on the engine's record: a strategy weight, a ``BlendConfig`` field
    (either turns the blend on), a field of a strategy's config or an ``EngineConfig`` field, parsed by
    :func:`stream.settings.parse_setting`. Other settings (the tuner's, ...) reach the run through
    :func:`settings_with_sets`.

    >>> config = apply_sets(EngineConfig(blend=BlendConfig()), ["mf_lr=0.2", "mf=0.5", "k=5"])
    >>> config.strategies["mf"].lr, dict(config.blend.weights)["mf"], config.k
    (0.2, 0.5, 5)
    """
    blend_fields = {f.name for f in dataclasses.fields(BlendConfig)} - {"weights", "per_strategy"}
    engine_fields = {f.name for f in dataclasses.fields(EngineConfig)} - {"blend", "strategies"}
    engine_fields |= set(STRATEGY_FIELDS)
    for item in sets:
        name, raw = _split(item)
        try:
            if name in STRATEGY_NAMES:
                try:
                    weight = float(raw.strip())
                except ValueError:
                    raise UsageError(f"--set {name}: {raw!r} is not a valid weight (a float)") from None
                blend = config.blend or BlendConfig()
                config = dataclasses.replace(config, blend=blend.with_weights(**{name: weight}))
                continue
            leaf, value = parse_setting(name, raw, f"--set {name}")
            if leaf.flat in blend_fields:
                blend = config.blend or BlendConfig()
                config = dataclasses.replace(config, blend=dataclasses.replace(blend, **{name: value}))
            elif leaf.flat in engine_fields:
                config = config.replace(**{name: value})
        except ValueError as exc:
            raise UsageError(str(exc) if str(exc).startswith("--set") else f"--set {name}: {exc}") from None
    return config


def _describe(config: EngineConfig, tuner: bool = False) -> str:
    if config.blend is None:
        return (f"engine: popularity {config.popularity_weight:g} + next-item {config.next_item_weight:g} "
                f"(fixed)")
    blend = config.blend
    weights = ", ".join(f"{name}={weight:g}" for name, weight in blend.weights)
    how = "tuned" if tuner else "learned" if blend.learn_weights else "fixed"
    return f"blend: {weights} ({how} weights, {blend.normalise})"


def run_eval(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except UsageError as exc:
        print(f"streamrec eval: error: {exc}", file=sys.stderr)
        return 2


def _load(args: argparse.Namespace) -> tuple[list, str]:
    from stream.cli.datasets import generate, load
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
    settings = settings_with_sets(_worker_settings(), args.sets)
    tuner = (args.tuner == "on") if args.tuner is not None else bool(settings.tuner.enabled)
    self_tune = (args.self_tune == "on") if args.self_tune is not None else bool(settings.search.enabled)
    policy = args.tuner_policy or settings.tuner.policy
    try:
        config = engine_config_for(args.strategy, args.weights, args.fixed_weights, args.k,
                                   settings.engine_config(), settings)
        if tuner:
            from online.tuning import tuned_engine_config

            config = tuned_engine_config(config)
        config = apply_sets(config, args.sets)
        if args.encoder == "on" and config.blend is None:  # the encoder is served by a learned blend
            config = dataclasses.replace(config, blend=settings.blend_config())
        if config.k != args.k:
            raise UsageError("set the list length with --k, not --set k=")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    events, source = _load(args)
    if not events:
        raise UsageError(f"{source} holds no events")
    if args.workers != 1:
        return _run_workers(args, config, events, source, settings)

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    bandit = None  # the in-loop bandits (learning rates, weights), inside self-tuning when both are on
    if tuner:
        from online.tuning import TunedRecommender

        bandit = functools.partial(TunedRecommender, config=settings.tuner_config().replace(policy=policy))
    searching: dict[str, Any] = {}
    if self_tune:
        engine: Any = _self_tuned(config, settings, searching, bandit)
    else:
        engine = StreamingRecommender(config) if bandit is None else bandit(StreamingRecommender(config))
    if args.encoder == "on":
        from stream.cli.encoder_eval import EncoderInTheLoop, replayed_trainer

        engine = EncoderInTheLoop(engine, replayed_trainer(settings, args.encoder_rate, args.encoder_train_s),
                                  settings.encoder.weight, cache_mb=settings.encoder.cache_mb,
                                  gate_z=settings.encoder.gate_z, gate_carry=settings.encoder.gate_carry)
    console.print(f"[bold]streamrec eval[/bold] {source}: {len(events):,} events, k={args.k}, "
                  f"batch {args.batch_size}; {_describe(config, tuner)}; tuner {f'on ({policy})' if tuner else 'off'}; "
                  f"self-tuning {'on' if self_tune else 'off'}")
    final: dict[str, Any] = {}
    trajectory: list[dict[str, Any]] = []
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("HR@{task.fields[k]} {task.fields[hr]:.4f}"), TimeRemainingColumn(),
                        console=console, disable=args.no_progress, transient=True)
    with progress:
        task = progress.add_task("replaying", total=len(events), k=args.k, hr=0.0)
        searching["progress"], searching["task"] = progress, task
        for snap in iter_prequential(events, engine=engine, batch_size=args.batch_size,
                                     every=max(1, len(events) // 50),
                                     on_progress=lambda done, _total: progress.update(task, completed=done,
                                                                                   description="replaying")):
            progress.update(task, hr=snap[f"hr@{args.k}"])
            trajectory.append(_trajectory_point(engine, snap, trajectory, tuner))
            if args.encoder == "on":
                engine.point(snap["events"])
            final = snap
    report = _report(final, args, source, config, tuner)
    report["tuner"] = {"on": tuner, "policy": policy if tuner else None, "trajectory": trajectory}
    if tuner:
        report["tuner"]["final"] = engine.tuning_snapshot()
    report["self_tune"] = _self_tune_report(engine) if self_tune else {"on": False}
    report["encoder"] = engine.report(args.k) if args.encoder == "on" else {"on": False}
    if self_tune:
        report["engine_final"] = _describe(engine.config)
    _print_table(report, args.k)
    if self_tune:
        _print_searches(report["self_tune"], console)
    _print_trajectory(trajectory)
    if args.encoder == "on":
        from stream.cli.encoder_eval import print_encoder

        print_encoder(report["encoder"], args.k)
    if args.plot is not None:
        try:
            plot_trajectory(trajectory, args.plot, title=f"{report['engine']} on {source}")
        except OSError as exc:
            raise UsageError(f"cannot write {args.plot}: {exc.strerror or exc}") from None
        console.print(f"wrote {args.plot}")
    if args.json is not None:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2) + "\n")
        except OSError as exc:
            raise UsageError(f"cannot write {args.json}: {exc.strerror or exc}") from None
        console.print(f"wrote {args.json}")
    return 0


def _run_workers(args: argparse.Namespace, config: EngineConfig, events: list, source: str,
                 settings: Settings) -> int:
    """``--workers N``: the group simulated by ``online.scaleout`` (one engine per worker, no tuner)."""
    from online.scaleout import simulate_workers
    from stream.wire.partitioner import partition_for

    if args.workers < 1 or args.share_delay < 0 or args.share_every < 1:
        raise UsageError("--workers and --share-every must be >= 1, --share-delay >= 0")
    if args.batch_size != 1 or args.tuner == "on" or args.self_tune == "on":
        raise UsageError("--workers simulates the plain engine with batches of one (no --batch-size, tuner, "
                         "or self-tuning)")
    partitions = max(settings.kafka.partitions, args.workers)
    shards: dict[str, int] = {}

    def shard_of(user: str) -> int:
        found = shards.get(user)
        if found is None:
            found = shards[user] = partition_for(user.encode(), partitions)
        return found

    run = simulate_workers(events, config, workers=args.workers, shard_of=shard_of, shards=partitions,
                           mode=args.learn_scope, delay=args.share_delay, flush_every=args.share_every)
    k = config.k
    print(f"{source}: {args.workers} workers over {partitions} partitions, learn scope {args.learn_scope}"
          + (f" (deltas every {args.share_every} events, arriving {args.share_delay} events later)"
             if args.learn_scope == "shared" else "")
          + f"\nHR@{k} {run[f'hr@{k}']:.4f} over {run['evaluated']:,} evaluated events"
          + (f"; {run['bytes_per_event']:.0f} bytes of deltas per event, sharing/learning CPU (worst worker) "
             f"{max(run['share_to_learn']):.2f}" if args.learn_scope == "shared" and args.workers > 1 else ""))
    if args.json:
        args.json.write_text(json.dumps(run, indent=2))
    return 0


def _self_tuned(config: EngineConfig, settings: Settings, searching: dict[str, Any], bandit: Any) -> Any:
    """The production loop: the engine (in its bandits when the tuner is on), searched at the tuner's
    cadence by the tuner's search."""
    from online.search import SelfTunedRecommender, searcher

    search_config = settings.search_config()

    def on_trial(record: Any, n: int) -> None:
        progress, task = searching.get("progress"), searching.get("task")
        if progress is not None:
            progress.update(task, description=f"search: trial {n}/{search_config.trials}")

    return SelfTunedRecommender(config, searcher=searcher(search_config, on_trial=on_trial),
                                schedule=settings.schedule(), bandit=bandit)


def _self_tune_report(engine: Any) -> dict[str, Any]:
    """Each search (when, what it found, the evidence) and each swap, as plain data."""
    return {"on": True, "searches": [{"at": at, **evidence} for at, evidence in engine.results],
            "swaps": [{"at": swap.at, "applied": swap.applied, "how": swap.how, "seconds": swap.seconds,
                       "gain": swap.evidence.get("gain"), "config": swap.evidence.get("config")}
                      for swap in engine.swaps],
            "search_cpu_s": engine.search_cpu_s, "schedule": dataclasses.asdict(engine.schedule)}


def _print_searches(self_tune: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    if not self_tune["searches"]:
        console.print("self-tuning: no search was due (the stream is shorter than search_first)")
        return
    table = Table(title="self-tuning searches (each on the events before it)")
    for column in ("at event", "serving HR", "best HR", "gain", "trials (pruned)", "cpu s", "decision"):
        table.add_column(column)
    for found in self_tune["searches"]:
        best = found["best_hr"]
        table.add_row(f"{found['at']:,}", f"{found['serving_hr']:.4f}", "-" if best is None else f"{best:.4f}",
                      f"{found['gain']:+.1%}", f"{found['trials']} ({found['pruned']})", f"{found['cpu_s']:.0f}",
                      "swapped" if found["accepted"] else found["reason"])
    type(console)(stderr=False).print(table)


def _report(final: dict[str, Any], args: argparse.Namespace, source: str, config: EngineConfig,
            tuner: bool = False) -> dict[str, Any]:
    k = args.k
    report = {key: final[key] for key in ("events", "evaluated", "hits", f"hr@{k}", f"ndcg@{k}", f"mrr@{k}",
                                          "coverage", "events_per_s", "elapsed_s", "cpu_s", "batch_size", "k",
                                          "users", "items", "catalogue", "peak_rss_mb")}
    report["curve"] = [{"slice": c["slice"], "start": c["start"], "end": c["end"], "evaluated": c["evaluated"],
                        f"hr@{k}": c[f"hr@{k}"]} for c in final["curve"]]
    report["source"] = source
    report["strategy"] = args.weights or args.strategy
    report["engine"] = _describe(config, tuner)
    return report


def _trajectory_point(engine: Any, snap: dict[str, Any], so_far: list[dict[str, Any]], tuner: bool) -> dict[str, Any]:
    """Rates, weights and reward at one snapshot; reward is HR@k over the events since the last point."""
    hits, evaluated = snap["hits"], snap["evaluated"]
    before = so_far[-1] if so_far else {"hits": 0, "evaluated": 0}
    span = evaluated - before["evaluated"]
    point: dict[str, Any] = {"step": snap["events"], "hits": hits, "evaluated": evaluated,
                             "reward": (hits - before["hits"]) / span if span else 0.0,
                             "learning_rates": {}, "weights": {}, "drift_events": 0}
    if tuner:  # the in-loop bandits' state
        tuning = engine.tuning_snapshot()
        point["learning_rates"] = {name: m["learning_rate"] for name, m in tuning["models"].items()}
        point["weights"] = dict(tuning["strategies"]["weights"])
        point["drift_events"] = tuning["drift_events"]
        point["reward_rate"] = tuning["reward_rate"]
    elif engine.config.blend is not None:
        point["weights"] = engine.blend.weights
        point["learning_rates"] = {name: float(strategy.lr) for name, strategy in engine.blend.strategies.items()
                                   if "lr" in getattr(strategy, "_mutable_attributes", ())}
    return point


def _print_trajectory(trajectory: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    if not trajectory:
        return
    models = list(trajectory[-1]["learning_rates"])
    strategies = list(trajectory[-1]["weights"])
    table = Table(title="tuning trajectory (reward: HR over the events since the previous row)",
                  title_justify="left")
    table.add_column("events", justify="right")
    for name in models:
        table.add_column(f"{name} lr", justify="right")
    for name in strategies:
        table.add_column(f"w {name}", justify="right")
    table.add_column("reward", justify="right")
    table.add_column("drifts", justify="right")
    step = max(1, len(trajectory) // 10)
    rows = trajectory[step - 1::step]
    if rows[-1] is not trajectory[-1]:
        rows.append(trajectory[-1])
    for point in rows:
        table.add_row(f"{point['step']:,}", *[f"{point['learning_rates'].get(n, float('nan')):.4g}" for n in models],
                      *[f"{point['weights'].get(n, 0.0):.3f}" for n in strategies], f"{point['reward']:.4f}",
                      str(point["drift_events"]))
    Console().print(table)


def plot_trajectory(trajectory: list[dict[str, Any]], path: Path, title: str = "") -> None:
    """PNG with three panels over the stream: learning rates (log), strategy weights, reward; drifts dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [p["step"] for p in trajectory]
    fig, (ax_lr, ax_w, ax_r) = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    for name in (trajectory[-1]["learning_rates"] if trajectory else {}):
        ax_lr.plot(steps, [p["learning_rates"].get(name) for p in trajectory], label=name)
    ax_lr.set_yscale("log")
    ax_lr.set_ylabel("learning rate")
    for name in (trajectory[-1]["weights"] if trajectory else {}):
        ax_w.plot(steps, [p["weights"].get(name, 0.0) for p in trajectory], label=name)
    ax_w.set_ylabel("strategy weight")
    ax_r.plot(steps, [p["reward"] for p in trajectory], label="HR@k since previous point")
    cumulative = [p["hits"] / p["evaluated"] if p["evaluated"] else 0.0 for p in trajectory]
    ax_r.plot(steps, cumulative, label="cumulative HR@k")
    ax_r.set_ylabel("reward")
    ax_r.set_xlabel("events")
    drifts = [b["step"] for a, b in zip(trajectory, trajectory[1:]) if b["drift_events"] > a["drift_events"]]
    for n, step in enumerate(drifts):  # a change in reward detected (exploration re-opened) before this point
        for ax in (ax_lr, ax_w, ax_r):
            ax.axvline(step, color="grey", linestyle=":", linewidth=1, label="drift detected" if n == 0 else None)
    for ax in (ax_lr, ax_w, ax_r):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


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
