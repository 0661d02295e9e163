"""The trainer process replayed in stream events, for evaluating the encoder in the stream.

The live trainer (``stream.trainer.StreamTrainer``) refreshes when at least
``min_new_events`` arrived *and* ``refresh_s`` seconds passed since its last refresh ended;
a refresh takes its training time, during which events keep arriving, and the version
reaches the workers when it ends. :class:`ReplayedTrainer` runs the same refresh
(:func:`models.refresh.refresh_encoder`) at the same cadence, with seconds turned into
events at a stated stream ``rate`` (events/s):

- refresh ``k`` starts at event ``t_k`` on the log of everything before it;
- it takes ``S_k`` seconds (its measured CPU time on a CPU, its wall time on a GPU, whose
  kernels run while the host waits; or ``train_seconds`` when given), so the
  version is served from event ``r_k = t_k + ceil(S_k * rate)`` on;
- the next refresh starts at ``t_{k+1} = max(t_k + min_new_events, r_k + ceil(refresh_s * rate))``
  (the live trainer counts the events that arrived while it trained as new).

A version the refresh keeps from serving (worse than its predecessor on the newest events)
is never delivered. Nothing here knows about the engine or the blend: :meth:`observe`
returns the versions that are ready, and the caller serves them.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from models.config import EncoderConfig, TrainerConfig
from models.refresh import EncoderVersion, RefreshConfig, RefreshResult, StreamLog, refresh_encoder
from models.trainer import pick_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cadence:
    """When the trainer refreshes, in events: at least ``min_new_events`` new events and
    ``refresh_s`` seconds (at ``rate`` events/s) since the last refresh ended."""

    min_new_events: int = 1_000
    refresh_s: float = 60.0
    rate: float = 100.0
    train_seconds: float | None = None  # a fixed training time instead of the measured one

    def __post_init__(self) -> None:
        if self.min_new_events < 1 or self.refresh_s < 0 or not self.rate > 0:
            raise ValueError("Cadence: min_new_events >= 1, refresh_s >= 0, rate > 0")

    def events(self, seconds: float) -> int:
        return int(math.ceil(seconds * self.rate))


@dataclass
class ReplayRecord:
    """One refresh of the replay: when it started and when its version reached serving."""

    started_at: int
    ready_at: int
    result: RefreshResult
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"started_at": self.started_at, "ready_at": self.ready_at, **self.result.as_dict(), **self.extra}


class ReplayedTrainer:
    """Feed it the stream's ``(user, item)`` pairs in order; it returns each served version when it is ready.

    Examples
    --------
    >>> from models.config import EncoderConfig, TrainerConfig
    >>> trainer = ReplayedTrainer(EncoderConfig.tiny(), TrainerConfig(device="cpu", progress=False),
    ...                           RefreshConfig(max_epochs=1), Cadence(min_new_events=40, refresh_s=0,
    ...                           train_seconds=0.1, rate=100))
    >>> pairs = [(f"u{n % 4}", f"i{n % 7}") for n in range(60)]
    >>> ready = trainer.observe(pairs[:40]) + trainer.observe(pairs[40:45]) + trainer.observe(pairs[45:])
    >>> [(r.started_at, r.ready_at) for r in trainer.records], [v.version for v in ready]
    ([(40, 50)], [1])
    """

    def __init__(self, encoder_cfg: EncoderConfig, trainer_cfg: TrainerConfig,
                 refresh_cfg: RefreshConfig | None = None, cadence: Cadence | None = None, *,
                 history: int = 200, max_users: int = 1_000_000) -> None:
        self.encoder_cfg = encoder_cfg
        self.trainer_cfg = trainer_cfg
        self.refresh_cfg = refresh_cfg or RefreshConfig()
        self.cadence = cadence or Cadence()
        self.log = StreamLog(history, max_users)
        self.served: EncoderVersion | None = None  # the newest version that reached serving
        self._base: EncoderVersion | None = None  # what the next refresh warm-starts from
        self._pending: list[tuple[int, EncoderVersion]] = []
        self.records: list[ReplayRecord] = []
        self._last_start: int | None = None
        self._ready_at = 0
        self._next = max(self.cadence.min_new_events, self.cadence.events(self.cadence.refresh_s))
        self.cpu_s = 0.0
        # known before the first refresh: a trainer asked for CUDA without one fails here, not 6,000 events in
        self._on_gpu = pick_device(trainer_cfg.device).type == "cuda"

    def observe(self, pairs: Iterable[tuple[str, str]]) -> list[EncoderVersion]:
        """Add events; returns the versions that reach serving by the end of them (oldest first)."""
        ready: list[EncoderVersion] = []
        for user_id, item_id in pairs:
            self.log.add(user_id, item_id)
            position = self.log.position
            while self._pending and self._pending[0][0] <= position:
                ready.append(self._deliver(self._pending.pop(0)[1]))
            if position >= self._next:
                self._refresh(position)
                while self._pending and self._pending[0][0] <= position:
                    ready.append(self._deliver(self._pending.pop(0)[1]))
        return ready

    def _measured(self, result: RefreshResult) -> float:
        """A refresh's training time: CPU seconds on a CPU (wall time on a shared box is noise), wall
        seconds on a GPU (the host's CPU time there counts neither the kernels nor the waits for them)."""
        return result.seconds if self._on_gpu else result.cpu_s

    def _deliver(self, version: EncoderVersion) -> EncoderVersion:
        self.served = version
        return version

    def _refresh(self, position: int) -> None:
        cad = self.cadence
        result = refresh_encoder(self.log, self._base, self.encoder_cfg, self.trainer_cfg, self.refresh_cfg,
                                 version=len(self.records) + 1)
        self.cpu_s += result.cpu_s
        seconds = cad.train_seconds if cad.train_seconds is not None else self._measured(result)
        ready_at = position + cad.events(seconds)
        self.records.append(ReplayRecord(position, ready_at, result, {"train_seconds": round(seconds, 3)}))
        if result.serve:
            self._base = result.candidate
            self._pending.append((ready_at, result.candidate))
        self._last_start, self._ready_at = position, ready_at
        log.info("refresh at event %d: %s, served from %d; %s", position, result.as_dict(), ready_at, result.reason)
        self._next = max(position + cad.min_new_events, ready_at + cad.events(cad.refresh_s))
