"""Load a newer encoder version, safely, for the caller to serve (gorse's load-then-swap).

There is one slot class: the blend's ``online.blend.StrategySlot``. It holds the serving
scorer and swaps it in one reference assignment (``Blend.fill("encoder", scorer)``), and
it pins each request to the scorer held when the request began, so a request that
started on one version finishes on it while another is swapped in. Holding a version
here as well would put it in two slots that can disagree.

:class:`EncoderLoader` therefore holds nothing served. :meth:`EncoderLoader.load_if_newer`
does the slow and fallible work outside the slot (read, checksum, decode, build a *fresh*
model, warm-up forward, build the scorer), one load at a time, and hands the new
:class:`~models.serving.EncoderScorer` back in a :class:`SwapResult`; the caller serves it
(``stream.worker.encoder_handover`` puts ``result.scorer`` into the blend's slot). On any
failure nothing is built, the reason comes back in the result (it is also logged), and
whatever the caller serves stays as it is. The loader remembers the newest version it
loaded, so stale announcements are skipped without reading the file.
"""
from __future__ import annotations

import logging
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.checkpoint import build_model, checkpoint_path, load_checkpoint, save_checkpoint
from models.config import EncoderConfig
from models.encoder import SequenceEncoder
from models.errors import CheckpointError, ModelError
from models.kernel_cache import compile_in_a_child
from models.kernels import load_shortlists
from models.serving import EncoderScorer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SwapResult:
    """What :meth:`EncoderLoader.load_if_newer` did; serving ``scorer`` is up to the caller.

    ``loaded`` is True only when a newer version was read, checked and warmed up:
    ``scorer`` then holds it, ready to swap into the blend's slot (``None`` otherwise).
    ``version`` is the newest version the loader has loaded afterwards, ``previous`` the
    one before, ``candidate`` the version the file (or the announcement) claimed
    (``None`` if it could not be read). ``error`` holds the exception when the load failed
    (a :class:`~models.errors.ModelError`); a stale version is skipped with ``error``
    ``None``. ``trained_at`` is when the loaded version was trained (its checkpoint's write
    time, Unix seconds) if the checkpoint records it, so the worker can report how old the
    encoder it serves is.
    """

    loaded: bool
    version: int | None
    previous: int | None
    candidate: int | None
    reason: str
    error: ModelError | None = None
    trained_at: float | None = None
    scorer: EncoderScorer | None = None


class EncoderLoader:
    """Loads encoder checkpoints into fresh, warmed-up scorers, newest first, one at a time.

    It serves nothing: put each ``result.scorer`` into the blend's slot
    (``online.blend.Blend.fill`` / ``StrategySlot.swap``).

    Examples
    --------
    >>> loader = EncoderLoader()
    >>> result = loader.load_if_newer("/nonexistent/encoder-v00000001.pt")
    >>> result.loaded, type(result.error).__name__, result.scorer, loader.version, loader.failures
    (False, 'CheckpointError', None, None, 1)
    """

    def __init__(self, *, normalize: bool = True, cache_mb: float = 128.0) -> None:
        self._version: int | None = None
        self._load_lock = threading.Lock()  # one load at a time
        self.normalize = normalize
        self.cache_mb = cache_mb  # each scorer's memory for users' states (models.incremental)
        self.loads = 0
        self.failures = 0

    @property
    def version(self) -> int | None:
        """The newest version loaded so far (``None`` before the first)."""
        return self._version

    def load_if_newer(self, path: str | Path, version: int | None = None) -> SwapResult:
        """Load ``path`` if its version is newer than the newest loaded; the result carries the scorer.

        ``version`` (e.g. from the ``model-updates`` announcement) lets a stale
        announcement be skipped without reading the file. Never raises for a bad
        file: the result says why nothing was loaded.
        """
        with self._load_lock:
            previous = self._version
            if version is not None and previous is not None and version <= previous:
                return SwapResult(False, previous, previous, version, f"version {version} is not newer than {previous}")
            candidate: int | None = None
            try:
                checkpoint = load_checkpoint(path)
                candidate = checkpoint.version
                if previous is not None and candidate <= previous:
                    return SwapResult(False, previous, previous, candidate,
                                      f"version {candidate} is not newer than {previous}")
                model = build_model(checkpoint)  # a fresh object; a served model is never touched
                scorer = EncoderScorer(model, checkpoint.items, version=candidate, normalize=self.normalize,
                                       cache_mb=self.cache_mb)
                self._warm_up(scorer)
            except ModelError as exc:
                return self._failed(previous, candidate, exc)
            except Exception as exc:  # anything else is still a bad model, not a reason to crash the worker
                return self._failed(previous, candidate, ModelError(f"{type(exc).__name__}: {exc}"))
            self._version = candidate
            self.loads += 1
            log.info("encoder version %s loaded (was %s): %s", candidate, previous, path)
            return SwapResult(True, candidate, previous, candidate, "loaded",
                              trained_at=checkpoint.created if checkpoint.created > 0 else None, scorer=scorer)

    def prepare(self) -> None:
        """Do now, on a throwaway three-item model, what only a process's first load pays: the imports,
        torch's lazy set-up, the checkpoint reader, the compiled kernel read from its cache.

        That first load holds the interpreter lock in stretches of up to ~0.3 s on the 2-vCPU VM
        (``benchmarks/first_encoder_load.py``), and every list the worker is building waits
        through them. A worker calls this while it joins its group, when no list is waiting; a later
        first version then loads in ~20 ms. Nothing is served or remembered: :attr:`version` is unchanged.
        """
        config = EncoderConfig.tiny(n_items=3)
        items = ["warm-up-a", "warm-up-b", "warm-up-c"]
        with tempfile.TemporaryDirectory(prefix="streamrec-encoder-prepare-") as directory:
            path = save_checkpoint(checkpoint_path(directory, 0), state_dict=SequenceEncoder(config).state_dict(),
                                   config=config, items=items, version=0)
            checkpoint = load_checkpoint(path)
        scorer = EncoderScorer(build_model(checkpoint), checkpoint.items, version=0, normalize=self.normalize,
                               cache_mb=1.0)
        self._warm_up(scorer)

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
        # the serving path's own step too: its compiled kernel (models.kernels) loads here, in the loader's
        # thread, not on the first list; compiled once per machine in a child (models.kernel_cache), so
        # that this process only loads it from the cache and never holds the GIL for seconds of compiling
        compile_in_a_child()
        state, _ = scorer.states.states([None], [(1,)])
        load_shortlists()  # the other kernel of the serving path, each list's shortlist
        if not bool(np.isfinite(state).all()):
            raise CheckpointError("warm-up produced a NaN/inf user state: the weights are not usable")

    def _failed(self, previous: int | None, candidate: int | None, exc: ModelError) -> SwapResult:
        self.failures += 1
        log.warning("encoder version %s not loaded (newest loaded stays %s): %s", candidate, previous, exc)
        return SwapResult(False, previous, previous, candidate, str(exc), exc)
