"""Swap in a newer encoder without stopping serving (gorse's load-then-swap).

:meth:`ModelSlot.load_if_newer` does all the slow and fallible work (read,
checksum, decode, build a *fresh* model, warm-up forward, build the scorer)
outside any lock that readers touch, then replaces one reference under a
``threading.Lock``. Readers take a single reference read (``slot.current``), so
they see either the old ``(version, scorer)`` pair or the new one, never a
half-loaded model, and never wait on a load. On any failure the old scorer stays
and the reason comes back in a :class:`SwapResult` (it is also logged).

The slot is itself a strategy (``name``, ``learn_many``, ``candidates``,
``score``) that forwards to whatever scorer is current, so the blend can hold
the slot once and pick up every swap.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models.checkpoint import build_model, load_checkpoint
from models.errors import CheckpointError, ModelError
from models.serving import EncoderScorer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SwapResult:
    """What :meth:`ModelSlot.load_if_newer` did.

    ``swapped`` is True only when the new version now serves. ``version`` is the
    version serving afterwards, ``previous`` the one before, ``candidate`` the
    version the file claimed (``None`` if it could not be read). ``error`` holds
    the exception when the load failed (a :class:`~models.errors.ModelError`).
    ``trained_at`` is when the version now serving was trained (its checkpoint's write
    time, Unix seconds) if the swap happened and the checkpoint records it, so the
    worker can report how old the encoder it serves is.
    """

    swapped: bool
    version: int | None
    previous: int | None
    candidate: int | None
    reason: str
    error: ModelError | None = None
    trained_at: float | None = None


class ModelSlot:
    """Holds the serving ``(version, scorer)`` pair and replaces it safely.

    Examples
    --------
    >>> slot = ModelSlot()
    >>> slot.version, slot.score("u", ["a"], ["b"])
    (None, [0.0])
    >>> result = slot.load_if_newer("/nonexistent/encoder-v00000001.pt")
    >>> result.swapped, type(result.error).__name__, slot.version
    (False, 'CheckpointError', None)
    """

    name = "encoder"

    def __init__(self, scorer: EncoderScorer | None = None, version: int | None = None, *,
                 normalize: bool = True) -> None:
        self._current: tuple[int | None, EncoderScorer | None] = (version, scorer)
        self._swap_lock = threading.Lock()
        self._load_lock = threading.Lock()  # one load at a time; readers never take it
        self.normalize = normalize
        self.swaps = 0
        self.failures = 0

    @property
    def current(self) -> tuple[int | None, EncoderScorer | None]:
        """The serving ``(version, scorer)``, read atomically."""
        return self._current

    @property
    def version(self) -> int | None:
        return self._current[0]

    @property
    def scorer(self) -> EncoderScorer | None:
        return self._current[1]

    def load_if_newer(self, path: str | Path, version: int | None = None) -> SwapResult:
        """Load ``path`` and serve it if its version is newer than the current one.

        ``version`` (e.g. from the ``model-updates`` announcement) lets a stale
        announcement be skipped without reading the file. Never raises for a bad
        file: the result says why nothing changed.
        """
        with self._load_lock:
            previous = self._current[0]
            if version is not None and previous is not None and version <= previous:
                return SwapResult(False, previous, previous, version, f"version {version} is not newer than {previous}")
            candidate: int | None = None
            try:
                checkpoint = load_checkpoint(path)
                candidate = checkpoint.version
                if previous is not None and candidate <= previous:
                    return SwapResult(False, previous, previous, candidate,
                                      f"version {candidate} is not newer than {previous}")
                model = build_model(checkpoint)  # a fresh object; the serving model is never touched
                scorer = EncoderScorer(model, checkpoint.items, version=candidate, normalize=self.normalize)
                self._warm_up(scorer)
            except ModelError as exc:
                return self._failed(previous, candidate, exc)
            except Exception as exc:  # anything else is still a bad model, not a reason to crash the worker
                return self._failed(previous, candidate, ModelError(f"{type(exc).__name__}: {exc}"))
            with self._swap_lock:
                self._current = (candidate, scorer)
            self.swaps += 1
            log.info("encoder swapped: version %s -> %s (%s)", previous, candidate, path)
            return SwapResult(True, candidate, previous, candidate, "swapped",
                              trained_at=checkpoint.created if checkpoint.created > 0 else None)

    @staticmethod
    def _warm_up(scorer: EncoderScorer) -> None:
        """One real forward: catches NaN weights and shape bugs before serving, and warms caches."""
        model = scorer.model
        with torch.inference_mode():
            out = model.full_sort_predict(torch.ones((1, 1), dtype=torch.int64))  # [1, N]
        if out.shape != (1, model.config.n_items):
            raise CheckpointError(f"warm-up produced shape {tuple(out.shape)}, expected (1, {model.config.n_items})")
        if not bool(torch.isfinite(out).all()):
            raise CheckpointError("warm-up produced NaN/inf scores: the weights are not usable")

    def _failed(self, previous: int | None, candidate: int | None, exc: ModelError) -> SwapResult:
        self.failures += 1
        log.warning("encoder not swapped, keeping version %s: %s", previous, exc)
        return SwapResult(False, previous, previous, candidate, str(exc), exc)

    # ---- strategy protocol, forwarded to the current scorer -------------------------------
    def learn_many(self, interactions: Sequence[Any]) -> None:
        """No-op (see :meth:`EncoderScorer.learn_many`)."""

    def candidates(self, user_id: str, history: Sequence[str], n: int) -> list[str]:
        scorer = self._current[1]
        return scorer.candidates(user_id, history, n) if scorer is not None else []

    def score(self, user_id: str, history: Sequence[str], items: Sequence[str]) -> list[float]:
        scorer = self._current[1]
        if scorer is None:
            try:
                return [0.0] * len(items)
            except TypeError:
                return []
        return scorer.score(user_id, history, items)
