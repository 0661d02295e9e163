"""``streamrec eval --encoder on``: the engine with the trainer replayed beside it, and what the encoder adds.

:class:`EncoderInTheLoop` wraps the engine ``eval`` replays. Every micro-batch it learns is
also fed to a :class:`models.replay.ReplayedTrainer` (the trainer process's refresh,
``models.refresh.refresh_encoder``, at its cadence in events); each version it delivers is
served the way a worker serves it (``Blend.fill("encoder", scorer, weight)``, the scorer a
``models.EncoderScorer``), from the event it would have reached a worker. A self-tuning swap
rebuilds the engine from a config whose blend has no encoder slot: the slot is filled again
after every micro-batch in which that happened (the worker's ``config_handover`` does the same).

It also measures the encoder's contribution on the same stream (``online.shadow.StrategyShadow``, as
the workers do): for every list it serves it ranks the list the blend would have served with the
encoder's weight at 0 (same models, same moment), and scores both against the user's next event.
``HR without the encoder`` is the hit rate of those shadow lists; a hit is *owed to the encoder* when
the served list had it and the shadow list did not. The served list's hit rate is the run's ordinary HR@k.

The encoder's gate (``online.shadow.StrategyGate``, ``STREAMREC_ENCODER_GATE_Z``) runs as in a worker: while
the record of hits owed to and lost to the encoder says its lists lose significantly more than they win,
its slot is muted and the lists are served without it; the measurement then ranks the list *with* it
beside each, so "HR with" and "HR without" keep their meaning and the run's HR@k is what was served.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from online.base import Interaction, Ranking
from online.shadow import StrategyGate, StrategyShadow

ENCODER = "encoder"


class EncoderInTheLoop:
    """An engine (``learn_many`` / ``recommend``, with a ``blend``) whose blend serves the replayed
    trainer's versions. Delegates everything else to the engine."""

    def __init__(self, engine: Any, trainer: Any, weight: float, *, shadow: bool = True,
                 cache_mb: float = 128.0, gate_z: float = 0.0, gate_carry: float = 0.5) -> None:
        self.inner = engine
        self.trainer = trainer
        self.weight = float(weight)
        self.shadow = shadow
        #: mutes the encoder while the measured lists say it costs hits, as a worker's (0: never; needs shadow)
        self.gate = StrategyGate(gate_z, gate_carry) if shadow and gate_z > 0 else None
        self.lists_muted = self.lists = 0  # served lists, and those served while the gate had the encoder muted
        self.cache_mb = cache_mb  # each version's memory for users' states, as a worker's
        self.scorer: Any = None  # the EncoderScorer served now
        self.encoder_swaps: list[dict[str, Any]] = []  # (event, version) each time a version reached serving
        self.measured = StrategyShadow(ENCODER, max_users=10_000_000)  # every user, every list
        self.timeline: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:  # config, blend, prequential, n_users, tuning_snapshot, ...
        return getattr(self.inner, name)

    # -- the engine contract ------------------------------------------------------------------
    def learn_many(self, interactions: Sequence[Interaction]) -> None:
        owed, lost = self.measured.score(interactions) if self.shadow else (0, 0)
        self.inner.learn_many(interactions)
        for version in self.trainer.observe((e.user_id, e.item_id) for e in interactions):
            self._serve(version)
        if self.scorer is not None:
            slot = self.inner.blend.strategies.get(ENCODER)
            if slot is None or getattr(slot, "strategy", None) is not self.scorer:  # a config swap emptied it
                slot = self._fill()
            if self.gate is not None:  # the next lists: muted or served by the record so far
                self.gate.steer(slot, owed, lost)
            # as the worker does before a micro-batch's lists: one forward pass for all its users
            inner = self.inner
            inner.blend.prepare([(user_id, state.history) for user_id in dict.fromkeys(e.user_id for e in interactions)
                                 if (state := inner.user_state(user_id)) is not None])

    def recommend(self, user_id: str, k: int | None = None, exclude: Iterable[str] = (), record: bool = True,
                  rec_id: str | None = None) -> Ranking:
        ranking = self.inner.recommend(user_id, k, exclude, record, rec_id)
        if record:
            muted = self.muted
            self.lists += 1
            self.lists_muted += muted
            if self.shadow:
                self.measured.observe(self.inner, user_id, k, exclude, ranking, muted=muted)
        return ranking

    @property
    def muted(self) -> bool:
        """Whether the gate has the encoder muted now (its lists served without it)."""
        return self.gate is not None and self.scorer is not None and not self.gate.serving

    # -- serving versions -----------------------------------------------------------------------
    def _serve(self, version: Any) -> None:
        from models.serving import EncoderScorer

        self.scorer = EncoderScorer(version.model, version.items, version=version.version, cache_mb=self.cache_mb)
        self._fill()
        self.encoder_swaps.append({"event": self.trainer.log.position, "version": version.version})

    def _fill(self) -> Any:
        return self.inner.blend.fill(ENCODER, self.scorer, weight=self.weight)

    # -- measuring ------------------------------------------------------------------------------
    def point(self, events: int) -> dict[str, Any]:
        """A timeline point: HR with and without the encoder since the previous point, its weight, version."""
        n, hits, shadow_hits, owed = self.measured.take_window()
        weight = self.inner.blend.weights.get(ENCODER, 0.0)
        served = self.trainer.served
        point = {"events": events, "evaluated": n, "hr": hits / n if n else 0.0,
                 "hr_without_encoder": shadow_hits / n if n else 0.0, "owed": owed,
                 "encoder_weight": weight, "encoder_version": served.version if served else None,
                 "encoder_muted": self.muted}
        self.timeline.append(point)
        return point

    def report(self, k: int) -> dict[str, Any]:
        m = self.measured
        n = m.evaluated
        return {"on": True, "evaluated": n, f"hr@{k}": m.hits / n if n else 0.0,
                f"hr@{k}_without_encoder": m.shadow_hits / n if n else 0.0,
                "hits": m.hits, "hits_without_encoder": m.shadow_hits,
                "hits_owed_to_encoder": m.owed, "hits_lost_to_encoder": m.lost,
                "encoder_share_of_hits": m.owed / m.hits if m.hits else 0.0,
                "encoder_weight": self.inner.blend.weights.get(ENCODER, 0.0),
                "gate": None if self.gate is None else {**self.gate.snapshot(), "z_mute": self.gate.z_mute,
                                                        "lists_muted": self.lists_muted, "lists": self.lists},
                "swaps": self.encoder_swaps, "refreshes": [r.as_dict() for r in self.trainer.records],
                "trainer_cpu_s": round(self.trainer.cpu_s, 1), "timeline": self.timeline}


def replayed_trainer(settings: Any, rate: float, train_seconds: float | None = None) -> Any:
    """The trainer process of ``settings`` (its ``trainer_*`` settings), replayed at ``rate`` events/s."""
    from models import EncoderConfig
    from models.replay import Cadence, ReplayedTrainer
    from models.serving import serve_on_one_thread
    from stream.trainer.trainer import refresh_config, trainer_config

    # One intra-op thread, as a worker serves: on a shared box two OpenMP threads that lose a core spin
    # at every barrier, and the measured training time (the version's delay in events) would be noise.
    serve_on_one_thread()
    enc = settings.encoder
    return ReplayedTrainer(EncoderConfig.preset(enc.trainer_size),
                           trainer_config(settings),
                           refresh_config(settings),
                           Cadence(enc.trainer_min_new_events, enc.trainer_refresh_s, rate, train_seconds),
                           history=enc.trainer_history, max_users=settings.engine.max_users)


def print_encoder(report: dict[str, Any], k: int) -> None:
    """The encoder's part of an eval run: HR@k with and without it, its share of hits, its weight over time."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    n = report["evaluated"]
    console.print(f"[bold]encoder in the stream[/bold]: HR@{k} {report[f'hr@{k}']:.4f} with it, "
                  f"{report[f'hr@{k}_without_encoder']:.4f} without it (same moments; its weight 0, its "
                  f"candidates left out), "
                  f"over {n:,} events; hits owed to it {report['hits_owed_to_encoder']:,} "
                  f"({report['encoder_share_of_hits']:.1%} of hits), lost to it {report['hits_lost_to_encoder']:,}; "
                  f"final weight {report['encoder_weight']:.3f}; trainer CPU {report['trainer_cpu_s']:.0f} s")
    gate = report.get("gate")
    if gate is not None:
        share = gate["lists_muted"] / gate["lists"] if gate["lists"] else 0.0
        console.print(f"[bold]encoder gate[/bold] (muted while McNemar's z, owed vs lost, < -{gate['z_mute']:g}): "
                      f"{share:.1%} of lists served with it muted, muted {gate['mutes']} times; final z "
                      f"{gate['z']:+.2f} ({'serving' if gate['serving'] else 'muted'})")
    table = Table(title="encoder refreshes (in events: started, served from)", title_justify="left")
    for column in ("version", "started", "served from", "epochs (best)", "windows", "held-out HR", "previous",
                   "cpu s", "served"):
        table.add_column(column, justify="right")
    for r in report["refreshes"]:
        table.add_row(str(r["version"]), f"{r['started_at']:,}", f"{r['ready_at']:,}" if r["serve"] else "-",
                      f"{r['epochs']} ({r['best_epoch']})", f"{r['windows']:,}",
                      "-" if r["holdout_hr"] is None else f"{r['holdout_hr']:.4f}",
                      "-" if r["previous_hr"] is None else f"{r['previous_hr']:.4f}", f"{r['cpu_s']:.1f}",
                      "yes" if r["serve"] else "no")
    console.print(table)
    timeline = Table(title=f"HR@{k} with and without the encoder (since the previous row)", title_justify="left")
    for column in ("events", "version", "weight", "gate", f"HR@{k} with", "without", "owed hits"):
        timeline.add_column(column, justify="right")
    points = report["timeline"]
    step = max(1, len(points) // 10)
    for p in points[step - 1::step]:
        timeline.add_row(f"{p['events']:,}", str(p["encoder_version"] or "-"), f"{p['encoder_weight']:.3f}",
                         "muted" if p.get("encoder_muted") else "served",
                         f"{p['hr']:.4f}", f"{p['hr_without_encoder']:.4f}", str(p["owed"]))
    console.print(timeline)
