"""One encoder refresh on a stream: what the trainer process and ``streamrec eval`` both run.

A trainer that reads a stream holds each user's recent items with their stream positions
(:class:`StreamLog`). Every refresh (:func:`refresh_encoder`) turns that log into the next
version of the encoder:

- **warm start**: the new version starts from the last served one (its weights; the item
  table grown with the items seen since), and fine-tunes on the training windows that hold
  something new, with old windows replayed beside them (``replay`` old per new one) so it
  does not forget; without a previous version it trains from scratch on everything;
- **vocabulary growth**: the previous version's items keep their ids, new items are appended,
  and each new item's embedding starts as the mean embedding of the items that preceded it
  in users' sequences (the mean of the whole table when nothing known preceded it);
- **early stopping on the newest events**: the newest ``holdout`` share of the events since
  the previous version (bounded by ``holdout_min``/``holdout_max``) is kept out of training;
  each epoch is scored on it (HR@k, the user's history excluded, as the blend serves) and the
  best epoch's weights are kept; training stops after ``patience`` epochs without gain;
- **kept from serving when worse**: the previous version is scored on the same held-out
  events; a candidate that scores below it is not served (:attr:`RefreshResult.serve` False),
  and the next refresh starts again from the one that is.

Nothing here knows about Kafka or the blend: it takes a log and a previous version and
returns a model. The held-out events are learned by the next version (they are new to it).
"""
from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from models.config import EncoderConfig, TrainerConfig
from models.data import ItemVocab, pad_right
from models.encoder import SequenceEncoder
from models.errors import ModelError
from models.trainer import EpochReport, Trainer


class StreamLog:
    """Each user's most recent items with their positions in the stream (0, 1, 2, ...).

    Bounded: ``max_len`` items per user, ``max_users`` users (least recently active evicted).

    Examples
    --------
    >>> log = StreamLog(max_len=2, max_users=10)
    >>> for user, item in [("u", "a"), ("v", "b"), ("u", "c"), ("u", "d")]:
    ...     log.add(user, item)
    >>> log.position, log.user("u")
    (4, [('c', 2), ('d', 3)])
    """

    def __init__(self, max_len: int = 200, max_users: int = 1_000_000) -> None:
        if max_len < 2 or max_users < 1:
            raise ValueError("StreamLog needs max_len >= 2 and max_users >= 1")
        self.max_len = int(max_len)
        self.max_users = int(max_users)
        self.position = 0
        self._users: OrderedDict[str, deque[tuple[str, int]]] = OrderedDict()

    def add(self, user_id: str, item_id: str) -> None:
        seq = self._users.get(user_id)
        if seq is None:
            if len(self._users) >= self.max_users:
                self._users.popitem(last=False)
            seq = self._users[user_id] = deque(maxlen=self.max_len)
        else:
            self._users.move_to_end(user_id)
        seq.append((item_id, self.position))
        self.position += 1

    def extend(self, pairs: Iterable[tuple[str, str]]) -> None:
        for user_id, item_id in pairs:
            self.add(user_id, item_id)

    def user(self, user_id: str) -> list[tuple[str, int]]:
        return list(self._users.get(user_id, ()))

    def users(self) -> Iterable[tuple[str, deque[tuple[str, int]]]]:
        return self._users.items()

    def __len__(self) -> int:
        return len(self._users)


@dataclass(frozen=True)
class RefreshConfig:
    """How each refresh trains (see the module docstring).

    Examples
    --------
    >>> RefreshConfig().warm_start, RefreshConfig(max_epochs=0).max_epochs
    (True, 0)
    """

    max_epochs: int = 20
    patience: int = 2
    warm_start: bool = True
    replay: float = 1.0
    holdout: float = 0.1
    holdout_min: int = 200
    holdout_max: int = 2_000
    min_steps: int = 10
    k: int = 10

    def __post_init__(self) -> None:
        if self.max_epochs < 0 or self.patience < 1 or self.replay < 0 or self.k < 1 or self.min_steps < 1:
            raise ValueError("RefreshConfig: max_epochs >= 0, patience >= 1, replay >= 0, k >= 1, min_steps >= 1")
        if not 0.0 <= self.holdout < 1.0 or self.holdout_min < 0 or self.holdout_max < self.holdout_min:
            raise ValueError("RefreshConfig: holdout in [0, 1), 0 <= holdout_min <= holdout_max")


@dataclass
class EncoderVersion:
    """A trained version: the model (CPU, eval mode), its vocabulary, and the stream position it
    learned up to (events before ``position`` minus its held-out newest ones)."""

    model: SequenceEncoder
    items: list[str]
    version: int
    position: int
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RefreshResult:
    """What one refresh produced and whether to serve it."""

    candidate: EncoderVersion
    serve: bool
    reason: str
    holdout_hr: float | None
    previous_hr: float | None
    epochs: int
    best_epoch: int
    windows: int
    cpu_s: float
    seconds: float
    reports: list[EpochReport] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.candidate.version, "serve": self.serve, "reason": self.reason,
                "holdout_hr": self.holdout_hr, "previous_hr": self.previous_hr, "epochs": self.epochs,
                "best_epoch": self.best_epoch, "windows": self.windows, "cpu_s": round(self.cpu_s, 3),
                "seconds": round(self.seconds, 3), "items": len(self.candidate.items),
                "position": self.candidate.position}


# ------------------------------------------------------------------------------------------ pieces
def grow_model(previous: SequenceEncoder, n_items: int, new_rows: torch.Tensor | None = None) -> SequenceEncoder:
    """A copy of ``previous`` whose item table holds ``n_items`` items: the old rows keep their ids,
    the new ones are ``new_rows`` (``[n_new, H]``) or the mean of the old rows.

    Examples
    --------
    >>> _ = torch.manual_seed(0)
    >>> old = SequenceEncoder(EncoderConfig.tiny(n_items=3))
    >>> new = grow_model(old, 5)
    >>> new.config.n_items, bool(torch.equal(new.item_emb.weight[:4], old.item_emb.weight))
    (5, True)
    >>> bool(torch.allclose(new.item_emb.weight[4], old.item_emb.weight[1:].mean(0)))
    True
    """
    old_n = previous.config.n_items
    if n_items < old_n:
        raise ModelError(f"the vocabulary cannot shrink ({old_n} -> {n_items} items)")
    model = SequenceEncoder(previous.config.copy(n_items=n_items))
    state = {name: tensor.detach().clone() for name, tensor in previous.state_dict().items()}
    old = state.pop("item_emb.weight")  # [old_n + 1, H]
    n_new = n_items - old_n
    if new_rows is None:
        new_rows = old[1:].mean(0, keepdim=True).expand(n_new, -1) if old_n else torch.zeros(n_new, old.shape[1])
    if new_rows.shape != (n_new, old.shape[1]):
        raise ModelError(f"new item rows have shape {tuple(new_rows.shape)}, expected ({n_new}, {old.shape[1]})")
    state["item_emb.weight"] = torch.cat([old, new_rows.to(old.dtype)], dim=0)
    model.load_state_dict(state)
    return model


def new_item_rows(table: torch.Tensor, seqs: list[np.ndarray], old_n: int, n_items: int) -> torch.Tensor:
    """``[n_items - old_n, H]`` starting embeddings for ids ``old_n+1..n_items``: the mean of the known
    items' rows that preceded each new item in ``seqs`` (the table's mean row when none did).

    ``table`` is the previous model's ``[old_n + 1, H]`` item table (row 0 padding).

    Examples
    --------
    >>> table = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # two known items
    >>> new_item_rows(table, [np.array([1, 3]), np.array([3, 4])], old_n=2, n_items=4).tolist()  # 4: no known before
    [[1.0, 0.0], [0.5, 0.5]]
    """
    n_new = n_items - old_n
    h = table.shape[1]
    sums = torch.zeros(n_new, h, dtype=table.dtype)
    counts = torch.zeros(n_new, dtype=table.dtype)
    for seq in seqs:
        if len(seq) < 2:
            continue
        prev, nxt = seq[:-1], seq[1:]
        mask = (nxt > old_n) & (prev >= 1) & (prev <= old_n)
        if mask.any():
            targets = torch.from_numpy(nxt[mask] - old_n - 1)
            sums.index_add_(0, targets, table[torch.from_numpy(prev[mask])])
            counts.index_add_(0, targets, torch.ones(len(targets), dtype=table.dtype))
    fallback = table[1:].mean(0) if old_n else torch.zeros(h, dtype=table.dtype)
    rows = sums / counts.clamp(min=1).unsqueeze(1)
    rows[counts == 0] = fallback
    return rows


def _windows(seq: np.ndarray, pos: np.ndarray, max_len: int, new_from: int) -> tuple[list[np.ndarray], list[bool]]:
    """Training windows of one sequence (every transition once, cut from its end with an overlap of
    one item, as ``models.data.training_windows``) and whether each holds a target at or after
    ``new_from``."""
    rows, new = [], []
    span = max_len + 1
    end = len(seq)
    while end >= 2:
        start = max(0, end - span)
        rows.append(seq[start:end])
        new.append(bool(pos[end - 1] >= new_from))
        end = start + 1
        if start == 0:
            break
    return rows, new


def _stack(rows: list[np.ndarray], width: int) -> np.ndarray:
    out = np.zeros((len(rows), width), dtype=np.int64)
    for r, window in enumerate(rows):
        out[r, : len(window)] = window
    return out


@dataclass(frozen=True)
class Holdout:
    """Next-item cases of the newest events: ``histories[i]`` then ``targets[i]`` (string ids)."""

    histories: list[list[str]]
    targets: list[str]

    def __len__(self) -> int:
        return len(self.targets)


def holdout_hr(model: SequenceEncoder, vocab: ItemVocab, holdout: Holdout, k: int = 10,
               batch_size: int = 512) -> float:
    """HR@k of ``model`` on the held-out cases, each user's history excluded from the list (as the
    blend serves); a target the model does not know, or a case with no known history item, is a miss."""
    if not len(holdout):
        return 0.0
    hits = 0
    model.eval()
    max_len = model.config.max_len
    device = model.item_emb.weight.device  # the trainer's device while it trains (a GPU), else the CPU
    with torch.inference_mode():
        cases = [(vocab.encode(h), vocab.id_of(t)) for h, t in zip(holdout.histories, holdout.targets)]
        cases = [(ids, t) for ids, t in cases if ids and t]
        for start in range(0, len(cases), batch_size):
            chunk = cases[start:start + batch_size]
            seq = torch.from_numpy(pad_right([ids[-max_len:] for ids, _ in chunk], max_len)).to(device)
            scores = model.full_sort_predict(seq).float()  # [B, N]
            rows = torch.cat([torch.full((len(ids),), r, dtype=torch.int64) for r, (ids, _) in enumerate(chunk)])
            cols = torch.cat([torch.tensor(ids, dtype=torch.int64) - 1 for ids, _ in chunk])
            target = torch.tensor([t - 1 for _, t in chunk], device=device)
            target_score = scores[torch.arange(len(chunk), device=device), target].clone()
            scores[rows.to(device), cols.to(device)] = -torch.inf  # seen items are never served
            better = (scores > target_score.unsqueeze(1)).sum(1).cpu()
            seen_target = torch.tensor([t in set(ids) for ids, t in chunk])
            hits += int(((better < k) & ~seen_target).sum())
    return hits / len(holdout)


# ------------------------------------------------------------------------------------------ refresh
def refresh_encoder(log: StreamLog, previous: EncoderVersion | None, encoder_cfg: EncoderConfig,
                    trainer_cfg: TrainerConfig, config: RefreshConfig | None = None, *, version: int = 1,
                    on_epoch_end: Callable[[EpochReport], Any] | None = None) -> RefreshResult:
    """Train the next encoder version from ``log`` (see the module docstring); never mutates ``previous``.

    ``encoder_cfg`` shapes a version trained from scratch (its ``n_items`` is filled from the data);
    a warm-started one keeps the previous version's shape. ``trainer_cfg.epochs`` is ignored:
    ``config.max_epochs`` and early stopping decide.
    """
    config = config or RefreshConfig()
    started, cpu_started = time.perf_counter(), time.process_time()
    position = log.position
    since = previous.position if previous is not None else 0
    n_new_events = max(0, position - since)
    n_hold = int(round(config.holdout * n_new_events))
    n_hold = min(config.holdout_max, max(config.holdout_min, n_hold)) if config.holdout > 0 else 0
    n_hold = min(n_hold, n_new_events // 2)  # at least half of what is new is learned
    cut = position - n_hold  # events at or after `cut` are held out

    warm = previous is not None and config.warm_start
    vocab = ItemVocab(previous.items) if warm else ItemVocab()
    seqs: list[np.ndarray] = []
    poss: list[np.ndarray] = []
    histories: list[list[str]] = []
    targets: list[str] = []
    for _, entries in log.users():
        items = [item for item, _ in entries]
        pos = np.fromiter((p for _, p in entries), dtype=np.int64, count=len(entries))
        ids = np.asarray([vocab.add(item) for item in items], dtype=np.int64)
        train_len = int(np.searchsorted(pos, cut))
        for j in range(max(train_len, 1), len(items)):
            histories.append(items[:j])
            targets.append(items[j])
        seqs.append(ids[:train_len])
        poss.append(pos[:train_len])
    hold = Holdout(histories, targets)
    if previous is not None and warm:
        cfg = previous.model.config.copy(n_items=len(vocab))
        old_n = previous.model.config.n_items
        rows = new_item_rows(previous.model.item_emb.weight.detach(), seqs, old_n, len(vocab))
        model = grow_model(previous.model, len(vocab), rows)
    else:
        if not len(vocab):
            raise ModelError("no interactions to train on")
        cfg = encoder_cfg.copy(n_items=len(vocab))
        torch.manual_seed(trainer_cfg.seed + version)
        model = SequenceEncoder(cfg)

    new_rows: list[np.ndarray] = []
    old_rows: list[np.ndarray] = []
    new_from = since if warm else 0
    for seq, pos in zip(seqs, poss):
        rows, is_new = _windows(seq, pos, cfg.max_len, new_from)
        for row, fresh in zip(rows, is_new):
            (new_rows if fresh else old_rows).append(row)
    # an epoch is at least `min_steps` optimiser steps: old windows fill it up first, then everything repeats
    floor = config.min_steps * trainer_cfg.batch_size
    rng = np.random.default_rng([trainer_cfg.seed, version])
    if warm:
        n_old = max(int(round(config.replay * len(new_rows))), floor - len(new_rows)) if config.replay > 0 else 0
        picked = rng.choice(len(old_rows), size=min(len(old_rows), n_old), replace=False) if old_rows else []
        train_rows = new_rows + [old_rows[i] for i in picked]
    else:
        train_rows = new_rows + old_rows
    windows = _stack(train_rows, cfg.max_len + 1)
    if 0 < len(windows) < floor:
        windows = windows[np.resize(rng.permutation(len(windows)), floor)]

    prev_hr = None
    if previous is not None and len(hold):
        prev_hr = holdout_hr(previous.model, ItemVocab(previous.items), hold, config.k)
    best_hr = holdout_hr(model, vocab, hold, config.k) if len(hold) else None
    best_state = {name: t.detach().clone() for name, t in model.state_dict().items()}
    best_epoch, stale = 0, 0
    reports: list[EpochReport] = []
    trained_epochs = 0
    if len(windows) and config.max_epochs:
        trainer = Trainer(model, trainer_cfg.copy(device=trainer_cfg.device, progress=False))

        def after_epoch(report: EpochReport) -> bool:
            nonlocal best_hr, best_epoch, stale, best_state, trained_epochs
            trained_epochs = report.epoch
            if on_epoch_end is not None:
                on_epoch_end(report)
            if not len(hold):
                best_epoch = report.epoch
                return False
            hr = holdout_hr(trainer.model, vocab, hold, config.k)
            trainer.model.train()
            if best_hr is None or hr > best_hr:
                best_hr, best_epoch, stale = hr, report.epoch, 0
                best_state = {name: t.detach().clone() for name, t in trainer.model.state_dict().items()}
                return False
            stale += 1
            return stale >= config.patience

        reports = trainer.fit(windows, epochs=config.max_epochs, on_epoch_end=after_epoch)
        model = trainer.model.to("cpu")
        if len(hold) or best_epoch != trained_epochs:
            model.load_state_dict(best_state)
    model.eval()
    candidate = EncoderVersion(model, vocab.items, version, cut,
                               {"holdout_hr": best_hr, "previous_hr": prev_hr, "holdout_events": len(hold)})
    serve, reason = True, "first version" if previous is None else "no held-out events to compare on"
    if prev_hr is not None and best_hr is not None:
        serve = best_hr >= prev_hr
        reason = (f"held-out HR@{config.k} {best_hr:.4f} >= previous {prev_hr:.4f}" if serve else
                  f"held-out HR@{config.k} {best_hr:.4f} < previous {prev_hr:.4f}: kept from serving")
    return RefreshResult(candidate, serve, reason, best_hr, prev_hr, trained_epochs, best_epoch, len(windows),
                         time.process_time() - cpu_started, time.perf_counter() - started, reports)
