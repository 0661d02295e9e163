"""Score one engine config on a window of past events: what a search trial measures.

The window is split in two. The engine learns the first part (``warm``) in micro-batches
without serving anything; on the rest it runs the worker's loop, test-then-train: before a
micro-batch is learned each of its events is scored against the last list served to its
user, then the batch is learned and every user in it gets a fresh list. That is the
prequential HR@k / NDCG@k of ``streamrec eval`` and the worker, measured only on events the
search may see.

The outcome is kept per scored event (``-1``: the user had no list yet; otherwise the
event's NDCG gain, ``0`` for a miss), so two configs are compared on the same events:
paired evidence, far less noisy than two totals. ``report(fraction, hr)`` is called at
``checkpoints`` points of the scored part; it may raise (Optuna's ``TrialPruned``) to stop a
trial that is losing.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from online.base import Interaction
from online.engine import EngineConfig, StreamingRecommender

#: Events per ``learn_many`` call in the warm part (nothing is served there).
_WARM_CHUNK = 1_000


@dataclass(frozen=True)
class WindowScore:
    """What one config scored on one window: totals, and the per-event outcomes behind them."""

    hr: float
    ndcg: float
    evaluated: int
    outcomes: np.ndarray  # one per scored event: -1 not evaluated, else its NDCG gain (0: miss)
    cpu_s: float
    engine: StreamingRecommender | None = None  # the engine at the window's end, when asked for

    def hr_between(self, start: int = 0, stop: int | None = None) -> float:
        """HR@k over the scored events ``start:stop`` (those evaluated)."""
        part = self.outcomes[start:stop]
        seen = part[part >= 0]
        return float((seen > 0).mean()) if len(seen) else 0.0

    def paired(self, other: WindowScore, start: int = 0, stop: int | None = None) -> tuple[float, float, int]:
        """``(mean HR difference, its standard error, events)`` of this config minus ``other`` on the
        scored events ``start:stop`` both evaluated."""
        mine, theirs = self.outcomes[start:stop], other.outcomes[start:stop]
        both = (mine >= 0) & (theirs >= 0)
        n = int(both.sum())
        if n < 2:
            return 0.0, math.inf, n
        diff = (mine[both] > 0).astype(float) - (theirs[both] > 0).astype(float)
        return float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(n)), n


def split(window: Sequence[Interaction], warm_fraction: float) -> int:
    """Where the scored part of ``window`` begins."""
    if not 0.0 <= warm_fraction < 1.0:
        raise ValueError("warm_fraction must be in [0, 1)")
    return int(len(window) * warm_fraction)


def score_window(config: EngineConfig, window: Sequence[Interaction], *, warm_fraction: float = 0.5,
                 batch: int = 1, checkpoints: int = 4, report: Callable[[float, float], None] | None = None,
                 keep_engine: bool = False) -> WindowScore:
    """Replay ``window`` through a fresh engine built from ``config``; see the module docstring.

    Examples
    --------
    >>> from online.base import Interaction
    >>> events = [Interaction(f"u{n % 3}", f"i{n % 4}", float(n)) for n in range(40)]
    >>> score = score_window(EngineConfig(k=2), events)
    >>> 0.0 <= score.hr <= 1.0, len(score.outcomes)
    (True, 20)
    """
    if batch < 1 or checkpoints < 1:
        raise ValueError("batch and checkpoints must be >= 1")
    # A search explores: some configs diverge (an MF learning rate at the top of its range). Their
    # scores turn non-finite, the blend ranks those last, and the trial simply scores low.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _replay(config, window, warm_fraction, batch, checkpoints, report, keep_engine)


def _replay(config: EngineConfig, window: Sequence[Interaction], warm_fraction: float, batch: int,
            checkpoints: int, report: Callable[[float, float], None] | None, keep_engine: bool) -> WindowScore:
    started = time.process_time()
    engine = StreamingRecommender(config)
    begin = split(window, warm_fraction)
    for start in range(0, begin, _WARM_CHUNK):
        engine.learn_many(window[start:min(start + _WARM_CHUNK, begin)])
    scored = window[begin:]
    outcomes = np.full(len(scored), -1.0)
    k = config.k
    hits = evaluated = 0
    next_report = 1
    for start in range(0, len(scored), batch):
        chunk = scored[start:start + batch]
        for offset, event in enumerate(chunk):
            state = engine.user_state(event.user_id)
            served = state.last_list if state is not None else None
            if served is None:
                continue
            evaluated += 1
            try:
                rank = served.index(event.item_id, 0, k)
            except ValueError:
                outcomes[start + offset] = 0.0
            else:
                outcomes[start + offset] = 1.0 / math.log2(rank + 2)
                hits += 1
        engine.learn_many(chunk)
        for user_id in dict.fromkeys(event.user_id for event in chunk):
            engine.recommend(user_id)
        done = start + len(chunk)
        if report is not None and next_report < checkpoints and done >= next_report * len(scored) / checkpoints:
            report(next_report / checkpoints, hits / evaluated if evaluated else 0.0)
            next_report += 1
    gains = outcomes[outcomes >= 0]
    return WindowScore(hr=hits / evaluated if evaluated else 0.0, ndcg=float(gains.mean()) if evaluated else 0.0,
                       evaluated=evaluated, outcomes=outcomes, cpu_s=time.process_time() - started,
                       engine=engine if keep_engine else None)
