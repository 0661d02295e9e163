"""Prequential (test-then-train) evaluation with the engine the workers run.

Events are replayed in time order through :class:`~online.engine.StreamingRecommender`
exactly as the Faust worker drives it: ``learn_many(batch)`` (which first scores
every event against the list last served to its user, then learns it) followed
by one ``recommend`` per distinct user of the batch. With ``batch_size=1`` every
event of a user with history is ranked against a top-k computed from everything
before it; larger batches measure what a worker with that micro-batch serves.

:func:`iter_prequential` yields snapshot dicts while it runs (the river
``progressive_val_score`` shape); :func:`run_prequential` returns the last one.
Nothing here prints: progress goes to an optional callback.
"""
from __future__ import annotations

import dataclasses
import resource
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from online.base import Interaction
from online.engine import EngineConfig, StreamingRecommender

ProgressCallback = Callable[[int, int], None]


def _peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB (process-wide, not per engine)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def iter_prequential(events: Iterable[Interaction], config: EngineConfig | None = None, *,
                     engine: StreamingRecommender | None = None, k: int | None = None,
                     batch_size: int = 1, slices: int = 10, every: int | None = None,
                     on_progress: ProgressCallback | None = None) -> Iterator[dict[str, Any]]:
    """Replay ``events`` test-then-train and yield snapshots.

    Parameters
    ----------
    events
        Interactions in time order (materialised into a list to know its length).
    config, engine
        The engine to evaluate: a fresh one built from ``config`` (default
        ``EngineConfig()``), or an existing ``engine``.
    k
        List length; defaults to the engine's ``config.k``. A fresh engine is
        built with this ``k``; an existing one must already use it.
    batch_size
        Events per ``learn_many`` call (1 = every event ranked before it is learned).
    slices
        Number of equal slices of the stream for the HR@k curve.
    every
        Yield a snapshot each ``every`` events (default: once per slice); the
        last snapshot (``"final": True``) always comes, with the full curve.
    on_progress
        Called as ``on_progress(events_done, events_total)`` about 200 times.

    Examples
    --------
    >>> from online.base import Interaction
    >>> stream = [Interaction("u1", "a", 0), Interaction("u1", "b", 1), Interaction("u2", "a", 2),
    ...           Interaction("u2", "b", 3)]
    >>> final = list(iter_prequential(stream, EngineConfig(k=1)))[-1]
    >>> final["evaluated"], final["hr@1"]  # u2's "b" was predicted from "a" -> "b"
    (2, 0.5)
    """
    if batch_size < 1 or slices < 1:
        raise ValueError("batch_size and slices must be >= 1")
    if engine is None:
        config = config or EngineConfig()
        if k is not None and k != config.k:
            config = dataclasses.replace(config, k=k)
        engine = StreamingRecommender(config)
    elif k is not None and k != engine.config.k:
        raise ValueError(f"engine serves k={engine.config.k}, asked to evaluate k={k}")
    k = engine.config.k
    events = events if isinstance(events, Sequence) else list(events)
    total = len(events)
    every = every or max(1, -(-total // slices))
    stats = engine.prequential
    base_eval, base_hits, base_ndcg, base_mrr = stats.evaluated, stats.hits, stats.ndcg_sum, stats.mrr_sum
    bounds = [round(total * (i + 1) / slices) for i in range(slices)]
    curve: list[dict[str, Any]] = []
    slice_start, slice_eval, slice_hits = 0, base_eval, base_hits
    recommended: set[str] = set()
    catalogue: set[str] = set()
    progress_step = max(1, total // 200)
    next_progress, next_snapshot = progress_step, every
    learn, recommend = engine.learn_many, engine.recommend
    done = 0
    elapsed = cpu = 0.0
    started, cpu_started = time.perf_counter(), time.process_time()

    def snapshot(final: bool) -> dict[str, Any]:
        n = stats.evaluated - base_eval
        out: dict[str, Any] = {
            "events": done, "evaluated": n, "hits": stats.hits - base_hits,
            f"hr@{k}": (stats.hits - base_hits) / n if n else 0.0,
            f"ndcg@{k}": (stats.ndcg_sum - base_ndcg) / n if n else 0.0,
            f"mrr@{k}": (stats.mrr_sum - base_mrr) / n if n else 0.0,
            "coverage": len(recommended) / len(catalogue) if catalogue else 0.0,
            "catalogue": len(catalogue), "recommended_items": len(recommended),
            "events_per_s": done / elapsed if elapsed > 0 else 0.0,
            "elapsed_s": elapsed, "cpu_s": cpu, "k": k, "batch_size": batch_size,
            "users": engine.n_users, "items": engine.n_items, "final": final,
            "curve": list(curve),
        }
        if final:
            out["peak_rss_mb"] = _peak_rss_mb()
        return out

    for start in range(0, total, batch_size):
        batch = events[start:start + batch_size]
        learn(batch)
        for user in dict.fromkeys([event.user_id for event in batch]):
            for item, _ in recommend(user).items:
                recommended.add(item)
        for event in batch:
            catalogue.add(event.item_id)
        done = start + len(batch)
        elapsed += time.perf_counter() - started
        cpu += time.process_time() - cpu_started
        while len(curve) < slices and done >= bounds[len(curve)]:
            n = stats.evaluated - slice_eval
            curve.append({"slice": len(curve) + 1, "start": slice_start, "end": done, "evaluated": n,
                          f"hr@{k}": (stats.hits - slice_hits) / n if n else 0.0})
            slice_start, slice_eval, slice_hits = done, stats.evaluated, stats.hits
        if on_progress is not None and done >= next_progress:
            on_progress(done, total)
            next_progress = done + progress_step
        if done >= next_snapshot and done < total:
            yield snapshot(False)
            next_snapshot = done + every
        # time spent in callbacks and in the consumer of the snapshots is not counted
        started, cpu_started = time.perf_counter(), time.process_time()
    if on_progress is not None:
        on_progress(done, total)
    yield snapshot(True)


def run_prequential(events: Iterable[Interaction], config: EngineConfig | None = None,
                    **kwargs: Any) -> dict[str, Any]:
    """The final snapshot of :func:`iter_prequential` (same arguments)."""
    snapshots = deque(iter_prequential(events, config, **kwargs), maxlen=1)
    return snapshots[0] if snapshots else {}
