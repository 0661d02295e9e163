"""Benchmark of the sequence encoder: throughput, time to quality, quality under both protocols.

Runs, on each data set, our encoder recipe and the paper-configuration baseline
(SASRec's hidden 50, 2 blocks, 1 head, L=200, BCE with one negative, lr 1e-3,
batch 128) for a fixed *training-time* budget each, evaluating on the papers'
leave-one-out protocol at epoch ends (evaluation time is not counted as
training time). Reports:

- throughput: training sequences (windows) per second, tokens per second, and
  model FLOPs utilisation when on CUDA;
- time to quality: training seconds until test NDCG@10 (sasrec protocol)
  reaches the reference implementation's figures on ML-100K (from
  ``../shared/notes/encoder-reference.md``: 0.3633 at 98 s, 0.4128 at 193 s,
  0.4474 at 450 s, same CPU machines), and until it reaches the paper
  baseline's final quality;
- final quality: NDCG@10 / HR@10 on the test split under ``sasrec`` (100
  sampled negatives) and ``full`` (whole catalogue minus history);
- optionally (``--swap``) serving latency p99 of the scorer, steady and while
  new checkpoints are being hot-swapped in.

Usage::

    python benchmarks/encoder.py --data ml100k generated --device cpu --budget-s 240 --json out.json

MovieLens is read in place from ``../shared/data/ml-100k`` and never copied.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from models.checkpoint import checkpoint_path, save_checkpoint  # noqa: E402
from models.config import EncoderConfig, TrainerConfig  # noqa: E402
from models.data import build_sequences, leave_one_out, training_windows  # noqa: E402
from models.encoder import SequenceEncoder  # noqa: E402
from models.evaluate import evaluate  # noqa: E402
from models.hot_swap import EncoderLoader  # noqa: E402
from models.trainer import EpochReport, Trainer, pick_device  # noqa: E402
from online.blend import StrategySlot  # noqa: E402
from stream.cli.datasets import generate, load  # noqa: E402

ML100K = ROOT.parent / "shared" / "data" / "ml-100k" / "u.data"
REFERENCE_ML100K = [(98.0, 0.3633), (193.0, 0.4128), (450.0, 0.4474)]  # (reference seconds, test NDCG@10)


@dataclass
class Variant:
    name: str
    encoder: EncoderConfig
    trainer: TrainerConfig
    note: str = ""


@dataclass
class Run:
    variant: Variant
    curve: list[dict[str, Any]] = field(default_factory=list)
    reports: list[EpochReport] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)


def variants(device: str, cuda: bool, compile_model: bool = True) -> list[Variant]:
    paper = Variant("paper-baseline", EncoderConfig.paper(),
                    TrainerConfig(device=device, loss="bce", bce_negatives=1, lr=1e-3, batch_size=128,
                                  grad_clip=0.0, progress=False, epochs=10_000),
                    "SASRec paper setting: hidden 50, 2 blocks, 1 head, L=200, dropout 0.2, BCE + 1 negative, "
                    "batch 128, lr 1e-3")
    batch = 128 if cuda else 32
    same_size = Variant("ce-paper-size", EncoderConfig.paper(),
                        TrainerConfig(device=device, loss="ce", lr=1e-3, batch_size=batch, progress=False,
                                      epochs=10_000, compile=cuda and compile_model),
                        f"the baseline's model; full-catalogue cross-entropy, length-bucketed batches of {batch}")
    out = [paper, same_size]
    if cuda:
        out.append(Variant("large-ce", EncoderConfig.large(),
                           TrainerConfig(device=device, loss="ce", lr=1e-3, batch_size=256, progress=False,
                                         epochs=10_000, compile=compile_model),
                           "hidden 256, 4 blocks, 4 heads, L=200, 4x FFN, bf16"
                           + (", torch.compile" if compile_model else ", eager")))
    else:
        out.append(Variant("ce-short", EncoderConfig(hidden=64, n_blocks=2, n_heads=1, max_len=50, dropout=0.2),
                           TrainerConfig(device=device, loss="ce", lr=1e-3, batch_size=32, progress=False,
                                         epochs=10_000),
                           "CPU recipe: hidden 64, 2 blocks, L=50 (long users split into several windows), "
                           "full cross-entropy, batch 32"))
    return out


def load_data(name: str, n_events: int) -> tuple[list[str], list[str]]:
    if name == "ml100k":
        if not ML100K.is_file():
            raise FileNotFoundError(f"MovieLens 100K not found at {ML100K} (never bundled; see its README)")
        events = load(ML100K, "movielens")
    else:
        events = generate(n_events=n_events, n_users=1_000, n_items=2_000, seed=7)
    return [e.user_id for e in events], [e.item_id for e in events]


def train_variant(variant: Variant, seqs: list[np.ndarray], n_items: int, budget_s: float,
                  eval_every_s: float, seed: int) -> Run:
    enc = variant.encoder.copy(n_items=n_items)
    run = Run(Variant(variant.name, enc, variant.trainer.copy(seed=seed), variant.note))
    torch.manual_seed(seed)
    model = SequenceEncoder(enc)
    windows = training_windows(leave_one_out(seqs).train, enc.max_len)
    trainer = Trainer(model, run.variant.trainer)
    state = {"train_s": 0.0, "last_eval": -1e9}

    def on_epoch_end(report: EpochReport) -> bool:
        run.reports.append(report)
        state["train_s"] += report.seconds
        done = state["train_s"] >= budget_s
        if done or state["train_s"] - state["last_eval"] >= eval_every_s:
            state["last_eval"] = state["train_s"]
            test = evaluate(model, seqs, "sasrec", split="test", seed=seed)
            valid = evaluate(model, seqs, "sasrec", split="valid", seed=seed)
            point = {"epoch": report.epoch, "train_s": round(state["train_s"], 2), "loss": round(report.loss, 4),
                     "valid_ndcg@10": round(valid["ndcg@10"], 4), "valid_hr@10": round(valid["hr@10"], 4),
                     "test_ndcg@10": round(test["ndcg@10"], 4), "test_hr@10": round(test["hr@10"], 4)}
            run.curve.append(point)
            print(f"  {variant.name:15s} epoch {report.epoch:4d}  train {state['train_s']:7.1f}s  "
                  f"loss {report.loss:.4f}  seq/s {report.sequences_per_s:7.1f}  "
                  f"test NDCG@10 {test['ndcg@10']:.4f} HR@10 {test['hr@10']:.4f}", flush=True)
        return done

    trainer.fit(windows, on_epoch_end=on_epoch_end)
    for protocol in ("sasrec", "full"):
        run.final[protocol] = evaluate(model, seqs, protocol, split="test", seed=seed)
    return run


def throughput(run: Run) -> dict[str, Any]:
    reports = run.reports[1:] or run.reports  # the first epoch pays warm-up / compilation
    seconds = sum(r.seconds for r in reports)
    mfus = [r.mfu for r in reports if r.mfu is not None]
    return {"sequences_per_s": round(sum(r.sequences for r in reports) / seconds, 1),
            "tokens_per_s": round(sum(r.tokens for r in reports) / seconds, 1),
            "seconds_per_epoch": round(seconds / len(reports), 3),
            "epochs": len(run.reports), "train_seconds": round(sum(r.seconds for r in run.reports), 2),
            "mfu": round(float(np.mean(mfus)), 4) if mfus else None}


def time_to(curve: list[dict[str, Any]], threshold: float, key: str = "test_ndcg@10") -> float | None:
    for point in curve:
        if point[key] >= threshold:
            return point["train_s"]
    return None


def swap_latency(run: Run, seqs: list[np.ndarray], items: list[str], seconds: float, seed: int) -> dict[str, Any]:
    """Serving latency (candidates + score for one request) during hot swaps vs. outside them.

    Served as the worker serves: through the blend's ``encoder``
    :class:`~online.blend.StrategySlot`, each request pinned to the scorer held
    when it began. One thread serves requests back to back for ``seconds``;
    another loads a new checkpoint every 0.4 s with an
    :class:`~models.hot_swap.EncoderLoader` and swaps its scorer into the slot. A
    request "during a swap" overlaps a load and its swap; both groups come from
    the same run, so other load on the machine affects them alike.
    """
    cfg = run.variant.encoder
    rng = random.Random(seed)
    histories = [[items[i - 1] for i in s[-cfg.max_len:]] for s in seqs if len(s) >= 3]
    n_swaps = int(seconds / 0.4) + 2
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for version in range(1, n_swaps + 2):
            torch.manual_seed(version)
            state = SequenceEncoder(cfg).state_dict()
            paths.append(save_checkpoint(checkpoint_path(tmp, version), state_dict=state, config=cfg, items=items,
                                         version=version))
        loader = EncoderLoader()
        slot = StrategySlot("encoder")
        slot.swap(loader.load_if_newer(paths[0]).scorer)
        stop = threading.Event()
        windows: list[tuple[float, float]] = []

        def swapper() -> None:
            for path in paths[1:]:
                if stop.wait(0.4):
                    break
                t0 = time.perf_counter()
                result = loader.load_if_newer(path)
                if result.loaded:
                    slot.swap(result.scorer)
                windows.append((t0, time.perf_counter()))

        def serve(duration: float) -> list[tuple[float, float]]:
            spans, end = [], time.perf_counter() + duration
            while time.perf_counter() < end:
                history = rng.choice(histories)
                t0 = time.perf_counter()
                scorer = slot.scorer("u", history)  # pinned to the version held now
                scorer.score(scorer.candidates(50))
                spans.append((t0, time.perf_counter()))
            return spans

        serve(0.5)  # warm-up
        thread = threading.Thread(target=swapper)
        thread.start()
        spans = serve(seconds)
        stop.set()
        thread.join()
    during = [b - a for a, b in spans if any(a < w1 and b > w0 for w0, w1 in windows)]
    steady = [b - a for a, b in spans if not any(a < w1 and b > w0 for w0, w1 in windows)]

    def pct(values: list[float], q: float) -> float | None:
        return round(float(np.percentile(values, q)) * 1e3, 3) if values else None

    p99_steady, p99_swap = pct(steady, 99), pct(during, 99)
    return {"steady_p50_ms": pct(steady, 50), "steady_p99_ms": p99_steady, "swap_p50_ms": pct(during, 50),
            "swap_p99_ms": p99_swap, "p99_ratio": round(p99_swap / p99_steady, 3) if p99_swap and p99_steady else None,
            "requests_steady": len(steady), "requests_during_swaps": len(during), "swaps": len(windows),
            "swap_ms_mean": round(float(np.mean([b - a for a, b in windows])) * 1e3, 1) if windows else None}


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", choices=("ml100k", "generated"), default=["ml100k", "generated"])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--budget-s", type=float, default=240.0, help="training seconds per variant and data set")
    parser.add_argument("--eval-every-s", type=float, default=20.0, help="evaluate after this much training")
    parser.add_argument("--variants", nargs="*", default=None, help="subset of variant names")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    parser.add_argument("--generated-events", type=int, default=50_000)
    parser.add_argument("--swap", action="store_true", help="also measure serving latency during hot swaps")
    parser.add_argument("--compile", choices=("on", "off"), default="off",
                        help="torch.compile the CUDA variants (default off: on an H200 the first epoch took 58-81 s "
                             "compiled against 0.06 s eager, one compilation per length bucket)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    device = pick_device(args.device)
    cuda = device.type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
               "device": torch.cuda.get_device_name(device) if cuda else f"cpu ({os.cpu_count()} cores)",
               "torch_threads": torch.get_num_threads(),
               "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
    print(f"encoder benchmark on {machine['device']}, torch {machine['torch']}, "
          f"{machine['torch_threads']} threads, budget {args.budget_s:.0f}s per variant", flush=True)
    results: dict[str, Any] = {"machine": machine, "budget_s": args.budget_s, "command": " ".join(sys.argv),
                               "data": {}}
    for name in args.data:
        try:
            users, items = load_data(name, args.generated_events)
        except FileNotFoundError as exc:
            print(f"skipping {name}: {exc}", flush=True)
            continue
        built = build_sequences(users, items)
        n_items = len(built.vocab)
        lengths = [len(s) for s in built.seqs]
        print(f"\n== {name}: {len(built)} users, {n_items} items, {len(users)} events, "
              f"mean sequence {np.mean(lengths):.1f}", flush=True)
        runs = []
        for variant in variants(device.type, cuda, args.compile == "on"):
            if args.variants and variant.name not in args.variants:
                continue
            runs.append(train_variant(variant, built.seqs, n_items, args.budget_s, args.eval_every_s, args.seed))
        block: dict[str, Any] = {"users": len(built), "items": n_items, "events": len(users), "variants": {}}
        for run in runs:
            entry = {"note": run.variant.note, "encoder": run.variant.encoder.to_dict(),
                     "trainer": run.variant.trainer.to_dict(), "throughput": throughput(run),
                     "final": {p: {k: v for k, v in m.items() if k in ("ndcg@10", "hr@10", "users", "seconds")}
                               for p, m in run.final.items()},
                     "curve": run.curve}
            if name == "ml100k":
                entry["time_to_reference"] = {f"ndcg>={q} (reference {s:.0f}s)": time_to(run.curve, q)
                                              for s, q in REFERENCE_ML100K}
            block["variants"][run.variant.name] = entry
        names = [r.variant.name for r in runs]
        if "paper-baseline" in names and len(runs) > 1:
            base = block["variants"]["paper-baseline"]
            target = base["curve"][-1]["test_ndcg@10"]
            for other in names:
                if other == "paper-baseline":
                    continue
                entry = block["variants"][other]
                reached = time_to(entry["curve"], target)
                ours, theirs = entry["final"], base["final"]
                entry["vs_paper_baseline"] = {
                    "sasrec_ndcg@10_ratio": _ratio(ours["sasrec"]["ndcg@10"], theirs["sasrec"]["ndcg@10"]),
                    "sasrec_hr@10_ratio": _ratio(ours["sasrec"]["hr@10"], theirs["sasrec"]["hr@10"]),
                    "full_ndcg@10_ratio": _ratio(ours["full"]["ndcg@10"], theirs["full"]["ndcg@10"]),
                    "sequences_per_s_ratio": _ratio(entry["throughput"]["sequences_per_s"],
                                                    base["throughput"]["sequences_per_s"]),
                    "seconds_to_baseline_final_ndcg": reached,
                    "baseline_seconds": base["throughput"]["train_seconds"],
                }
        if args.swap and runs:
            best = runs[-1]
            block["swap_latency"] = swap_latency(best, built.seqs, built.vocab.items, 10.0, args.seed)
        results["data"][name] = block
        print(json.dumps({k: v for k, v in block.items() if k != "variants"}, indent=1))
        for vname, entry in block["variants"].items():
            shown = {k: entry[k] for k in entry if k not in ("curve", "encoder", "trainer")}
            print(f"-- {vname}: " + json.dumps(shown))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
