"""The batch trainer: device, bf16 autocast, clipping, NaN checks, DDP, checkpoints.

Kept apart from the model (RecBole's split): the encoder knows its loss, the
trainer knows how to run it. Choices that matter for speed ("keep the GPU fed"):

- the whole training set (``[S, L+1]`` id windows) is moved to the device once;
  batches are gathered there by index, so there is no DataLoader and no host
  copy per step;
- batches group windows of similar length and are trimmed to their longest
  row (a multiple of 8 for tensor cores), so short histories don't pay for
  long ones;
- no host sync per step: the loss is checked for NaN/inf every
  ``nan_check_every`` steps and read back once per epoch;
- bf16 autocast on CUDA (no ``GradScaler``: bf16 has fp32's range), fused Adam,
  optional ``torch.compile``.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the same code runs data parallel with
DDP: every rank walks the same seeded batch order and takes every
``world_size``-th batch, so all ranks make the same number of steps.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models import distributed
from models.checkpoint import checkpoint_path, next_version, save_checkpoint
from models.config import EncoderConfig, TrainerConfig
from models.data import batch_order, build_sequences, leave_one_out, training_negatives, training_windows
from models.encoder import SequenceEncoder
from models.errors import ModelError, NonFiniteLoss
from models.evaluate import evaluate
from models.flops import peak_flops, train_flops

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochReport:
    """What one epoch did (plain numbers: ``stream/trainer/metrics.py`` exports them)."""

    epoch: int
    loss: float
    first_loss: float
    last_loss: float
    steps: int
    total_steps: int
    sequences: int
    tokens: int
    seconds: float
    sequences_per_s: float
    tokens_per_s: float
    mfu: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available else CPU; ``cuda`` without CUDA is a ``ModelError``."""
    if name not in ("auto", "cpu", "cuda"):
        raise ModelError(f"unknown device {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ModelError("device 'cuda' requested but CUDA is not available (use --device cpu or auto)")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())  # the rank's GPU under torchrun (set_device)


class _LossModule(nn.Module):
    """Puts ``calculate_loss`` behind ``forward`` so DDP's gradient hooks run."""

    def __init__(self, encoder: SequenceEncoder, loss: str) -> None:
        super().__init__()
        self.encoder = encoder
        self.loss = loss

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.encoder.calculate_loss(batch, self.loss)


class Trainer:
    """Trains a :class:`SequenceEncoder` on ``[S, L+1]`` windows (``models.data.training_windows``).

    ``on_checkpoint(trainer)`` is called on the main rank every
    ``config.checkpoint_every_steps`` steps.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from models.config import EncoderConfig, TrainerConfig
    >>> _ = torch.manual_seed(0)
    >>> model = SequenceEncoder(EncoderConfig.tiny(n_items=9))
    >>> windows = training_windows([np.arange(1, 10)] * 8, max_len=50)
    >>> trainer = Trainer(model, TrainerConfig(device="cpu", batch_size=4, progress=False))
    >>> [r.steps for r in trainer.fit(windows, epochs=2)]
    [2, 2]
    """

    def __init__(self, model: SequenceEncoder, config: TrainerConfig,
                 on_checkpoint: Callable[[Trainer], None] | None = None) -> None:
        self.config = config
        self.device = pick_device(config.device)
        self.model = model.to(self.device)
        self.on_checkpoint = on_checkpoint
        self.rank, self.world_size = distributed.rank_and_world()
        self.step = 0
        module: nn.Module = _LossModule(self.model, config.loss)
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            module = DistributedDataParallel(module, device_ids=ids)
        self._eager = module
        if config.compile and self.device.type == "cuda":
            try:
                module = torch.compile(module)  # type: ignore[assignment]
            except Exception as exc:  # compile is an optimisation: never fail the run for it
                log.warning("torch.compile unavailable (%s); training eagerly", exc)
        self._module = module
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, betas=(0.9, 0.98),
                                          weight_decay=config.weight_decay,
                                          fused=self.device.type == "cuda")
        self._generator = torch.Generator(device=self.device)
        self._generator.manual_seed(config.seed * 7919 + self.rank)
        self._autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) \
            if config.amp and self.device.type == "cuda" else contextlib.nullcontext
        self._peak = peak_flops(torch.cuda.get_device_name(self.device)) if self.device.type == "cuda" else None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The bare encoder's weights (no DDP/compile prefixes)."""
        return self.model.state_dict()

    def _batch(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg, n_items = self.config, self.model.config.n_items
        batch = {"input": rows[:, :-1], "target": rows[:, 1:]}
        if cfg.loss == "bce":
            batch["negatives"] = training_negatives(rows, n_items, cfg.bce_negatives, self._generator)
        elif cfg.ce_negatives:
            batch["negatives"] = torch.randint(1, n_items + 1, (cfg.ce_negatives,), device=self.device,
                                               generator=self._generator)
        return batch

    def _forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        try:
            return self._module(batch)
        except Exception as exc:
            if self._module is self._eager:
                raise
            # torch.compile compiles lazily, so its failures surface here: fall back once, for good
            log.warning("torch.compile failed (%s: %s); training eagerly", type(exc).__name__, exc)
            self._module = self._eager
            return self._module(batch)

    def _check_finite(self, losses: list[torch.Tensor]) -> None:
        finite = torch.isfinite(torch.stack(losses)).all().to(torch.int32)
        if self.world_size > 1:  # every rank must stop together, or the others hang in all-reduce
            finite = distributed.all_min(finite)
        if not bool(finite):
            raise NonFiniteLoss(f"training loss became NaN/inf at step {self.step}; lower lr or check the data")

    def fit(self, windows: np.ndarray, epochs: int | None = None,
            on_epoch_end: Callable[[EpochReport], bool | None] | None = None) -> list[EpochReport]:
        """Train for ``epochs`` (default ``config.epochs``); returns one report per epoch.

        ``on_epoch_end(report)`` runs on the main rank; returning ``True`` stops early.
        """
        cfg = self.config
        epochs = cfg.epochs if epochs is None else epochs
        if len(windows) == 0:
            raise ModelError("no training sequences (every user needs at least 2 items)")
        max_idx = int(windows.max())
        if max_idx > self.model.config.n_items or int(windows.min()) < 0:
            raise ModelError(f"item id {max_idx} outside the encoder's 1..{self.model.config.n_items}")
        torch.manual_seed(cfg.seed + self.rank)
        data = torch.from_numpy(np.ascontiguousarray(windows)).to(self.device)  # [S, L+1], stays on device
        lengths = (windows != 0).sum(1)
        reports: list[EpochReport] = []
        progress = self._progress() if cfg.progress and self.is_main else None
        with progress or contextlib.nullcontext():
            for epoch in range(1, epochs + 1):
                report = self._epoch(epoch, data, lengths, progress)
                reports.append(report)
                stop = on_epoch_end(report) if on_epoch_end is not None and self.is_main else False
                if distributed.broadcast_flag(bool(stop), self.device):
                    break
        return reports

    def _progress(self) -> Any:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        return Progress(TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(),
                        console=Console(stderr=True), transient=False)

    def _epoch(self, epoch: int, data: torch.Tensor, lengths: np.ndarray, progress: Any) -> EpochReport:
        cfg = self.config
        full_width = data.shape[1]
        rng = np.random.default_rng([cfg.seed, epoch])
        batches = batch_order(lengths, cfg.batch_size, rng)
        if self.world_size > 1:
            per_rank = len(batches) // self.world_size
            if per_rank == 0:
                raise ModelError(f"{len(batches)} batches cannot feed {self.world_size} ranks")
            batches = batches[self.rank: per_rank * self.world_size: self.world_size]
        task = progress.add_task("train", total=len(batches), epoch=epoch, loss="-") if progress else None
        self._module.train()
        losses: list[torch.Tensor] = []
        sequences = tokens = 0
        flops = 0.0
        pending = 0
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        started = time.perf_counter()
        for idx in batches:
            width = int(lengths[idx].max())
            width = min(full_width, 1 + 8 * math.ceil((width - 1) / 8))  # input width: a multiple of 8
            rows = data[torch.from_numpy(idx).to(self.device, non_blocking=True), :width]  # [b, width]
            batch = self._batch(rows)
            with self._autocast():
                loss = self._forward(batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            self.step += 1
            losses.append(loss.detach())
            sequences += len(idx)
            tokens += int((lengths[idx] - 1).clip(min=0).sum())
            flops += train_flops(self.model.config, len(idx), width - 1, cfg.loss,
                                 cfg.ce_negatives if cfg.loss == "ce" else cfg.bce_negatives)
            pending += 1
            if pending >= cfg.nan_check_every:
                self._check_finite(losses[-pending:])
                pending = 0
            if task is not None and (self.step % 10 == 0 or len(losses) == len(batches)):
                progress.update(task, completed=len(losses), loss=f"{float(loss):.4f}")
            if cfg.checkpoint_every_steps and self.step % cfg.checkpoint_every_steps == 0 \
                    and self.on_checkpoint is not None and self.is_main:
                self.on_checkpoint(self)
        if pending:
            self._check_finite(losses[-pending:])
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - started
        values = torch.stack(losses).float().cpu().tolist()
        mfu = flops / seconds / self._peak if self._peak and seconds > 0 else None
        return EpochReport(epoch=epoch, loss=float(np.mean(values)), first_loss=values[0], last_loss=values[-1],
                           steps=len(values), total_steps=self.step, sequences=sequences * self.world_size,
                           tokens=tokens * self.world_size, seconds=seconds,
                           sequences_per_s=sequences * self.world_size / seconds if seconds else 0.0,
                           tokens_per_s=tokens * self.world_size / seconds if seconds else 0.0, mfu=mfu)


def train_offline(user_ids: Sequence[Any], item_ids: Sequence[Any], encoder_cfg: EncoderConfig,
                  trainer_cfg: TrainerConfig, out_dir: str | Path, *, holdout: int = 2,
                  version: int | None = None, on_epoch_end: Callable[[EpochReport], bool | None] | None = None,
                  eval_users: int | None = 10_000) -> Path:
    """Train on interaction arrays (in time order) and write one checkpoint; returns its path.

    ``holdout=2`` keeps every user's last two items out of training (the
    papers' split) and stores validation NDCG/HR@10 in the checkpoint's
    metrics; ``holdout=0`` trains on everything (bootstrapping serving).
    ``encoder_cfg.n_items`` is replaced by the data's vocabulary size. Under
    ``torchrun`` this runs DDP; only rank 0 writes.
    """
    if holdout not in (0, 2):
        raise ValueError("holdout must be 0 (train on everything) or 2 (leave-one-out)")
    seqs = build_sequences(user_ids, item_ids)
    if not len(seqs.vocab):
        raise ModelError("no interactions to train on")
    cfg = encoder_cfg.copy(n_items=len(seqs.vocab))
    train = leave_one_out(seqs.seqs).train if holdout else seqs.seqs
    windows = training_windows(train, cfg.max_len)
    if len(windows) == 0:
        raise ModelError("not enough interactions: no user has 2 items to learn a transition from")
    started_dist = distributed.init_from_env(trainer_cfg.device)
    try:
        torch.manual_seed(trainer_cfg.seed)
        model = SequenceEncoder(cfg)
        items = seqs.vocab.items
        out_dir = Path(out_dir)

        def save(trainer: Trainer, metrics: dict[str, Any], at: int | None = None) -> int:
            number = at if at is not None else next_version(out_dir)
            save_checkpoint(checkpoint_path(out_dir, number), state_dict=trainer.state_dict(), config=cfg,
                            items=items, version=number, metrics=metrics)
            return number

        trainer = Trainer(model, trainer_cfg, on_checkpoint=lambda t: save(t, {"step": t.step}))
        started = time.perf_counter()
        reports = trainer.fit(windows, on_epoch_end=on_epoch_end)
        seconds = time.perf_counter() - started
        written = 0
        if trainer.is_main:
            metrics: dict[str, Any] = {"epochs": len(reports), "steps": trainer.step,
                                       "train_seconds": round(seconds, 3), "train_sequences": int(len(windows)),
                                       "users": len(seqs), "holdout": holdout}
            if reports:
                metrics.update(loss=reports[-1].loss, sequences_per_s=reports[-1].sequences_per_s)
            if holdout:
                try:
                    quality = evaluate(model, seqs.seqs, "sasrec", split="valid", seed=trainer_cfg.seed,
                                       max_users=eval_users)
                except ValueError:  # catalogue too small for 100 negatives outside some history
                    quality = evaluate(model, seqs.seqs, "full", split="valid", max_users=eval_users)
                metrics.update({f"valid_{key}": quality[key] for key in ("ndcg@10", "hr@10", "users", "protocol")})
            written = save(trainer, metrics, version)
        return checkpoint_path(out_dir, distributed.broadcast_int(written, trainer.device))
    finally:
        if started_dist:
            distributed.shutdown()
