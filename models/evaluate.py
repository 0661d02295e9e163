"""Offline quality of an encoder: the SASRec papers' protocol and full ranking.

``protocol="sasrec"`` is the papers' leave-one-out: for every user with at
least 3 items, the last item is the test target (second-to-last: validation),
and it is ranked against ``n_negatives`` (100) items sampled uniformly from
those the user never touched. Numbers are comparable to the papers' and to the
reference implementation's. ``protocol="full"`` ranks the target against the
whole catalogue minus the items in the user's history, which is harder and
closer to serving.

A metric counts ties against the model (a tie ranks the target below), so a
constant model scores zero rather than a lucky number.
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from models.data import Example, leave_one_out, pad_right, sample_negatives
from models.encoder import SequenceEncoder

PROTOCOLS = ("sasrec", "full")
SPLITS = ("test", "valid")


def _ranks_sasrec(model: SequenceEncoder, examples: Sequence[Example], seqs: Sequence[np.ndarray],
                  n_negatives: int, rng: np.random.Generator, batch_size: int,
                  device: torch.device) -> np.ndarray:
    n_items = model.config.n_items
    ranks = np.empty(len(examples), dtype=np.int64)
    for start in range(0, len(examples), batch_size):
        chunk = examples[start: start + batch_size]
        cands = np.stack([np.concatenate(([ex.target], sample_negatives(rng, n_items, n_negatives,
                                                                         exclude=seqs[ex.user])))
                          for ex in chunk])  # [b, 1 + n_negatives], target first
        seq = torch.from_numpy(pad_right([ex.history for ex in chunk], model.config.max_len)).to(device)
        scores = model.predict(seq, torch.from_numpy(cands).to(device)).float()  # [b, 1 + n_negatives]
        ranks[start: start + len(chunk)] = (scores[:, 1:] >= scores[:, :1]).sum(1).cpu().numpy()
    return ranks


def _ranks_full(model: SequenceEncoder, examples: Sequence[Example], batch_size: int,
                device: torch.device) -> np.ndarray:
    ranks = np.empty(len(examples), dtype=np.int64)
    for start in range(0, len(examples), batch_size):
        chunk = examples[start: start + batch_size]
        seq = torch.from_numpy(pad_right([ex.history for ex in chunk], model.config.max_len)).to(device)
        scores = model.full_sort_predict(seq).float()  # [b, N], column j = item j + 1
        targets = torch.tensor([ex.target - 1 for ex in chunk], device=device)
        rows = torch.arange(len(chunk), device=device)
        target_score = scores[rows, targets].clone()
        for r, ex in enumerate(chunk):  # exclude seen items (the target itself stays in)
            scores[r, torch.from_numpy(np.asarray(ex.history) - 1).to(device)] = float("-inf")
        scores[rows, targets] = float("-inf")
        ranks[start: start + len(chunk)] = (scores >= target_score[:, None]).sum(1).cpu().numpy()
    return ranks


def evaluate(encoder: SequenceEncoder, sequences: Sequence[np.ndarray], protocol: str = "sasrec", k: int = 10,
             n_negatives: int = 100, seed: int = 0, split: str = "test", max_users: int | None = None,
             batch_size: int = 256) -> dict[str, Any]:
    """NDCG@k and HR@k of ``encoder`` on full per-user id sequences.

    ``sequences`` are the users' whole sequences (train + validation + test
    items, ids ``1..N``); the split is done here. ``max_users`` evaluates a
    seeded random subset (the papers' code caps at 10,000 users). Metrics at 10
    are always included.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from models.config import EncoderConfig
    >>> _ = torch.manual_seed(0)
    >>> model = SequenceEncoder(EncoderConfig.tiny(n_items=200))
    >>> seqs = [np.arange(1, 8) + u for u in range(5)]
    >>> out = evaluate(model, seqs, protocol="sasrec", n_negatives=20)
    >>> out["protocol"], out["users"], 0.0 <= out["hr@10"] <= 1.0
    ('sasrec', 5, True)
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    loo = leave_one_out(sequences)
    examples = loo.test if split == "test" else loo.valid
    if max_users is not None and len(examples) > max_users:
        keep = np.sort(rng.choice(len(examples), size=max_users, replace=False))
        examples = [examples[i] for i in keep]
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    try:
        with torch.inference_mode():
            if not examples:
                ranks = np.empty(0, dtype=np.int64)
            elif protocol == "sasrec":
                ranks = _ranks_sasrec(encoder, examples, sequences, n_negatives, rng, batch_size, device)
            else:
                ranks = _ranks_full(encoder, examples, batch_size, device)
    finally:
        encoder.train(was_training)
    out: dict[str, Any] = {"protocol": protocol, "split": split, "users": int(len(examples)), "k": k}
    for cut in sorted({k, 10}):
        hit = ranks < cut
        gains = np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0)
        out[f"ndcg@{cut}"] = float(gains.mean()) if len(ranks) else math.nan
        out[f"hr@{cut}"] = float(hit.mean()) if len(ranks) else math.nan
    if protocol == "sasrec":
        out["n_negatives"] = n_negatives
    out["seconds"] = round(time.perf_counter() - started, 3)
    return out
