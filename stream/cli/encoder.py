"""CLI glue for the sequence encoder: ``streamrec train`` and ``streamrec encoder-eval``.

Thin on purpose: read the file with :func:`stream.cli.datasets.load`, hand plain
arrays to ``models``, print the result. ``stream/cli/main.py`` registers these with
:func:`add_parsers`; each subcommand's ``func(args)`` returns an exit code
(0 ok, 1 the run failed, 2 bad input) and reports user errors as one line on
stderr, never a traceback.

Data-parallel training runs the same command under ``torchrun``::

    torchrun --nproc_per_node 2 -m stream.cli.encoder train --data u.data --format movielens --device cuda
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stream.cli.datasets import FORMATS, load
from stream.errors import DataFormatError

PRESETS = ("tiny", "paper", "large")


def add_parsers(subparsers: Any) -> None:
    """Add ``train`` and ``encoder-eval`` to an ``argparse`` sub-parser collection."""
    train = subparsers.add_parser(
        "train", help="train the sequence encoder offline and write a checkpoint",
        description="Train the SASRec-family encoder on an interaction file; prints the checkpoint path.")
    train.add_argument("--data", required=True, type=Path, help="interaction file")
    train.add_argument("--format", required=True, choices=FORMATS, help="file format")
    train.add_argument("--epochs", type=int, default=20, help="training epochs (default 20)")
    train.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default auto")
    train.add_argument("--out", type=Path, default=Path("checkpoints"), help="checkpoint directory")
    train.add_argument("--config", choices=PRESETS, default="tiny",
                       help="encoder size: tiny (CPU), paper (SASRec's hidden 50, L=200), large (GPU)")
    train.add_argument("--loss", choices=("ce", "bce"), default="ce",
                       help="ce: cross-entropy over the catalogue (default); bce: the paper's, one negative")
    train.add_argument("--ce-negatives", type=int, default=0,
                       help="sampled softmax with this many shared negatives (0 = full catalogue)")
    train.add_argument("--batch-size", type=int, default=None,
                       help="default 128 on CUDA, 32 on CPU (more optimiser steps per CPU second)")
    train.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    train.add_argument("--max-len", type=int, default=None, help="override the preset's sequence length")
    train.add_argument("--holdout", type=int, choices=(0, 2), default=2,
                       help="2: keep each user's last two items out (the papers' split); 0: train on all")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--json", type=Path, default=None, help="also write a JSON report here")
    train.set_defaults(func=run_train)

    ev = subparsers.add_parser(
        "encoder-eval", help="evaluate an encoder checkpoint offline",
        description="NDCG@10 / HR@10 of a checkpoint under the papers' leave-one-out protocol or full ranking.")
    ev.add_argument("--data", required=True, type=Path, help="interaction file")
    ev.add_argument("--format", required=True, choices=FORMATS, help="file format")
    ev.add_argument("--checkpoint", required=True, type=Path, help="checkpoint file (encoder-v*.pt)")
    ev.add_argument("--protocol", choices=("sasrec", "full"), default="sasrec",
                    help="sasrec: target vs 100 sampled negatives; full: whole catalogue minus history")
    ev.add_argument("--split", choices=("test", "valid"), default="test")
    ev.add_argument("--negatives", type=int, default=100, help="negatives for --protocol sasrec")
    ev.add_argument("--max-users", type=int, default=None, help="evaluate a seeded sample of users")
    ev.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--json", type=Path, default=None, help="also write the metrics as JSON here")
    ev.set_defaults(func=run_encoder_eval)


def _error(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in payload.items()}
    path.write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n")


def run_train(args: argparse.Namespace) -> int:
    """``streamrec train``: returns 0 and prints the checkpoint path."""
    from models import EncoderConfig, ModelError, TrainerConfig, load_checkpoint, pick_device, train_offline

    try:
        pick_device(args.device)
    except ModelError as exc:
        return _error(str(exc))
    try:
        events = load(args.data, args.format)
    except DataFormatError as exc:
        return _error(str(exc))
    if not events:
        return _error(f"{args.data} has no interactions")
    try:
        enc = EncoderConfig.preset(args.config)
        if args.max_len is not None:
            enc = enc.copy(max_len=args.max_len)
        cuda = args.device == "cuda" or (args.device == "auto" and _cuda_available())
        batch = args.batch_size if args.batch_size is not None else (128 if cuda else 32)
        trainer_cfg = TrainerConfig(device=args.device, loss=args.loss, ce_negatives=args.ce_negatives,
                                    lr=args.lr, batch_size=batch, epochs=args.epochs, seed=args.seed,
                                    compile=args.compile, progress=not args.no_progress and sys.stderr.isatty())
    except ValueError as exc:
        return _error(str(exc))
    reports: list[dict[str, Any]] = []
    try:
        path = train_offline([e.user_id for e in events], [e.item_id for e in events], enc, trainer_cfg,
                             args.out, holdout=args.holdout, on_epoch_end=lambda r: reports.append(r.as_dict()))
    except ModelError as exc:
        return _error(str(exc), 1)
    except OSError as exc:
        return _error(f"cannot write to {args.out}: {exc.strerror or exc}", 1)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    print(path)
    if args.json is not None:
        ckpt = load_checkpoint(path)
        _write_json(args.json, {"checkpoint": str(path), "version": ckpt.version, "config": ckpt.config.to_dict(),
                                "trainer": trainer_cfg.to_dict(), **ckpt.metrics, "epoch_reports": reports})
    return 0


def run_encoder_eval(args: argparse.Namespace) -> int:
    """``streamrec encoder-eval``: prints the metrics, optionally writes them as JSON."""
    from models import ModelError, build_model, load_checkpoint, pick_device
    from models.data import ItemVocab, build_sequences
    from models.evaluate import evaluate

    try:
        ckpt = load_checkpoint(args.checkpoint)
        model = build_model(ckpt).to(pick_device(args.device))
    except ModelError as exc:  # CheckpointError and IncompatibleCheckpoint included
        return _error(str(exc))
    try:
        events = load(args.data, args.format)
    except DataFormatError as exc:
        return _error(str(exc))
    seqs = build_sequences([e.user_id for e in events], [e.item_id for e in events], ItemVocab(ckpt.items),
                           grow=False)
    try:
        metrics = evaluate(model, seqs.seqs, args.protocol, k=10, n_negatives=args.negatives, seed=args.seed,
                           split=args.split, max_users=args.max_users)
    except ValueError as exc:
        return _error(str(exc))
    if metrics["users"] == 0:
        return _error(f"no user in {args.data} has 3 or more items known to checkpoint v{ckpt.version}")
    metrics.update(checkpoint=str(args.checkpoint), version=ckpt.version)
    print(f"{args.protocol} {args.split}: NDCG@10 {metrics['ndcg@10']:.4f}  HR@10 {metrics['hr@10']:.4f}  "
          f"users {metrics['users']}  (checkpoint v{ckpt.version})")
    if args.json is not None:
        try:
            _write_json(args.json, metrics)
        except OSError as exc:
            return _error(f"cannot write {args.json}: {exc.strerror or exc}", 1)
    return 0


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point (``python -m stream.cli.encoder``, e.g. under ``torchrun``)."""
    parser = argparse.ArgumentParser(prog="streamrec")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
