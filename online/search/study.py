"""One search over the whole engine on a window of past events, and the evidence for its winner.

Optuna's TPE sampler (multivariate, so knobs that only matter together are sampled together)
proposes configs from :class:`~online.search.space.SearchSpace`; each trial is
:func:`~online.search.replay.score_window` on the window, valued relative to the serving
config's HR@k on the same events (so a stored study's trials from earlier windows stay
comparable), and a successive-halving pruner
stops trials that lose at the checkpoints of their replay, so a search costs minutes. The
serving config and the shipped default blend are enqueued as the first trials, so the search
starts from what runs and can only add to it.

A winner is *accepted* only on paired evidence that did not choose it. The scored events are
split in time: trials are ranked (and the sampler guided) by HR@k on the earlier part; the
most recent ``holdout`` share is kept out of the choice, and on it the winner must beat the
serving config's HR@k by ``min_gain`` (relative) and by ``z`` standard errors of the
per-event difference. The best of forty trials on the same events would beat anything by
luck (the winner's curse); on events it was not chosen on, it has to be better. The caller
serves an accepted config from then on; the window never holds an event after the moment the
search started (no hindsight).

Studies persist in any Optuna storage (``sqlite:///tuner.db``, a database URL several tuners
share); a study that already holds trials continues where it stopped (a killed tuner loses
at most its running trial), and ``optuna-dashboard`` opens it.
"""
from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from online.base import Interaction
from online.blend import BlendConfig
from online.engine import EngineConfig
from online.search.replay import WindowScore, score_window
from online.search.space import SEARCHED, Candidate, SearchSpace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchConfig:
    """How one search runs (plain data; the tuner section of the settings fills it).

    ``trials`` and ``timeout_s`` bound a search (whichever comes first); ``warm_fraction`` of
    the window is learned before scoring starts; ``batch`` is the micro-batch of the replay
    (1: every event scored against a list served after the user's previous event, as
    ``streamrec eval``); ``checkpoints`` per replay feed the pruner; trials are ranked on the
    scored events before the last ``holdout`` share, on which a winner then needs ``min_gain``
    relative HR@k and ``z`` paired standard errors over the serving config.
    """

    trials: int = 40
    timeout_s: float | None = 600.0
    warm_fraction: float = 0.5
    batch: int = 1
    checkpoints: int = 4
    min_gain: float = 0.02
    z: float = 2.0
    holdout: float = 0.34
    seed: int | None = 0
    strategies: tuple[str, ...] = SEARCHED
    startup_trials: int = 10

    def __post_init__(self) -> None:
        if self.trials < 1 or self.checkpoints < 1 or self.batch < 1 or self.startup_trials < 0:
            raise ValueError("trials, checkpoints and batch must be >= 1, startup_trials >= 0")
        if not 0.0 <= self.warm_fraction < 1.0:
            raise ValueError("warm_fraction must be in [0, 1)")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ValueError("timeout_s must be > 0 (or None: no limit)")
        if not (self.min_gain >= 0 and self.z >= 0):
            raise ValueError("min_gain and z must be >= 0")
        if not 0.0 < self.holdout < 1.0:
            raise ValueError("holdout must be in (0, 1)")
        SearchSpace(self.strategies)  # validates the names


@dataclass(frozen=True)
class TrialRecord:
    """One finished trial, as a report or a plot shows it."""

    number: int
    state: str  # "complete", "pruned" or "failed"
    hr: float | None
    ndcg: float | None
    cpu_s: float
    params: dict[str, Any]


@dataclass(frozen=True)
class SearchResult:
    """What a search found and the evidence for it.

    ``accepted`` says whether ``best`` should replace the serving config. ``gain`` is the
    relative HR@k gain of the best trial over the serving config on the held-out events of the
    same window, ``diff``/``se`` the paired per-event difference there and its standard error;
    ``reason`` says why a winner was or was not accepted.
    """

    accepted: bool
    reason: str
    serving: WindowScore
    best: WindowScore | None
    best_config: EngineConfig | None
    best_candidate: Candidate | None
    gain: float
    diff: float
    se: float
    trials: list[TrialRecord] = field(default_factory=list)
    window_events: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0

    def evidence(self) -> dict[str, Any]:
        """Plain data for the announcement and the report."""
        return {"accepted": self.accepted, "reason": self.reason, "window_events": self.window_events,
                "serving_hr": self.serving.hr, "serving_ndcg": self.serving.ndcg,
                "best_hr": self.best.hr if self.best else None, "best_ndcg": self.best.ndcg if self.best else None,
                "gain": self.gain, "diff": self.diff, "se": self.se, "trials": len(self.trials),
                "pruned": sum(1 for t in self.trials if t.state == "pruned"), "cpu_s": self.cpu_s,
                "wall_s": self.wall_s,
                "config": self.best_candidate.describe() if self.best_candidate else None}


def _optuna():
    import optuna  # imported on first search: workers that never search do not pay for it

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def create_study(config: SearchConfig, *, storage: str | None = None, study_name: str = "streamrec") -> Any:
    """A TPE study with a successive-halving pruner, in ``storage`` (memory if ``None``); an existing
    study of that name is continued."""
    optuna = _optuna()
    with warnings.catch_warnings():  # multivariate/group/constant_liar are "experimental" in Optuna's terms
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=config.seed, multivariate=True, group=True,
                                             n_startup_trials=config.startup_trials, constant_liar=True)
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner, storage=storage,
                               study_name=study_name, load_if_exists=True)


def search(window: Sequence[Interaction], serving: EngineConfig, config: SearchConfig | None = None, *,
           study: Any = None, on_trial: Callable[[TrialRecord, int], None] | None = None) -> SearchResult:
    """Search the space on ``window`` (events strictly before now) against the ``serving`` config.

    ``study`` continues an existing Optuna study (a tuner's stored one); a fresh in-memory one
    otherwise. ``on_trial(record, trials_so_far)`` follows the search (progress bars, metrics).
    """
    config = config or SearchConfig()
    optuna = _optuna()
    space = SearchSpace(config.strategies)
    started_wall, started_cpu = time.perf_counter(), time.process_time()
    replay = dict(warm_fraction=config.warm_fraction, batch=config.batch, checkpoints=config.checkpoints)
    serving_score = score_window(serving, window, **replay)
    serving_at = _hr_at_checkpoints(serving_score, config.checkpoints)
    study = study if study is not None else create_study(config)
    for point in (serving, EngineConfig(k=serving.k, blend=BlendConfig())):
        params = space.params_of(point)
        if params is not None:
            study.enqueue_trial(params, skip_if_exists=True)
    scores: dict[int, tuple[WindowScore, Candidate]] = {}
    records: list[TrialRecord] = []

    def objective(trial: Any) -> float:
        candidate = space.sample(trial)

        def report(fraction: float, hr: float) -> None:
            if fraction > 1.0 - config.holdout:
                return  # the held-out events choose nothing, not even which trials go on
            step = round(fraction * config.checkpoints)
            trial.report(_relative(hr, serving_at[step]), step=step)
            if trial.should_prune():
                raise optuna.TrialPruned()

        score = score_window(candidate.config(serving), window, report=report, **replay)
        cut = _cut(score, config.holdout)
        trial.set_user_attr("hr", score.hr)
        trial.set_user_attr("hr_select", score.hr_between(0, cut))
        trial.set_user_attr("ndcg", score.ndcg)
        trial.set_user_attr("cpu_s", score.cpu_s)
        trial.set_user_attr("window_events", len(window))
        scores[trial.number] = (score, candidate)
        return _relative(score.hr_between(0, cut), serving_score.hr_between(0, cut))

    def follow(study_: Any, trial: Any) -> None:
        state = {"COMPLETE": "complete", "PRUNED": "pruned"}.get(trial.state.name, "failed")
        record = TrialRecord(trial.number, state, trial.user_attrs.get("hr") if state == "complete" else None,
                             trial.user_attrs.get("ndcg"), float(trial.user_attrs.get("cpu_s", 0.0)),
                             dict(trial.params))
        records.append(record)
        if on_trial is not None:
            on_trial(record, len(records))

    study.optimize(objective, n_trials=config.trials, timeout=config.timeout_s, callbacks=[follow],
                   catch=(ValueError, ArithmeticError))
    wall, cpu = time.perf_counter() - started_wall, time.process_time() - started_cpu
    return _decide(serving_score, scores, config, serving, records, len(window), cpu, wall)


def _cut(score: WindowScore, holdout: float) -> int:
    """Where the held-out (most recent) scored events begin."""
    return int(len(score.outcomes) * (1.0 - holdout))


def searcher(config: SearchConfig, *, study: Any = None,
             on_trial: Callable[[TrialRecord, int], None] | None = None) -> Callable[..., SearchResult]:
    """A searcher for :class:`~online.search.loop.SelfTunedRecommender`: :func:`search` with one study
    kept across its searches (in memory unless ``study`` is given), so each search starts from what
    the earlier ones learned about the space (trial values are relative, so they stay comparable)."""
    kept = study if study is not None else create_study(config)

    def run(window: Sequence[Interaction], serving: EngineConfig) -> SearchResult:
        return search(window, serving, config, study=kept, on_trial=on_trial)

    return run


def _relative(hr: float, serving_hr: float) -> float:
    """A trial's value: its HR@k relative to the serving config's on the same events, so values
    from searches on different windows (one stored study) stay comparable."""
    return hr / serving_hr if serving_hr > 0 else 1.0 + hr


def _hr_at_checkpoints(score: WindowScore, checkpoints: int) -> dict[int, float]:
    """The serving config's HR@k over the first ``step / checkpoints`` of the scored events."""
    outcomes = score.outcomes
    out = {}
    for step in range(1, checkpoints + 1):
        part = outcomes[: math.ceil(len(outcomes) * step / checkpoints)]
        seen = part[part >= 0]
        out[step] = float((seen > 0).mean()) if len(seen) else 0.0
    return out


def _decide(serving: WindowScore, scores: dict[int, tuple[WindowScore, Candidate]], config: SearchConfig,
            base: EngineConfig, records: list[TrialRecord], events: int, cpu: float, wall: float) -> SearchResult:
    """The best trial of this search, accepted only on paired evidence against the serving config."""
    common = dict(serving=serving, trials=records, window_events=events, cpu_s=cpu, wall_s=wall)
    if not scores:
        return SearchResult(False, "no trial completed", best=None, best_config=None, best_candidate=None,
                            gain=0.0, diff=0.0, se=math.inf, **common)
    cut = _cut(serving, config.holdout)
    number = max(scores, key=lambda n: scores[n][0].hr_between(0, cut))  # chosen before the held-out events
    best, candidate = scores[number]
    diff, se, _ = best.paired(serving, cut)  # judged on them only
    held_best, held_serving = best.hr_between(cut), serving.hr_between(cut)
    gain = held_best / held_serving - 1.0 if held_serving > 0 else (math.inf if held_best > 0 else 0.0)
    if gain < config.min_gain:
        accepted, reason = False, f"held-out gain {gain:+.1%} is below the {config.min_gain:.0%} a swap needs"
    elif not diff > config.z * se:
        accepted, reason = False, (f"held-out gain {gain:+.1%} is within {config.z:g} paired standard errors "
                                   f"({se:.4f})")
    else:
        accepted, reason = True, (f"held-out gain {gain:+.1%}, {diff / se if se > 0 else math.inf:.1f} paired "
                                  f"standard errors")
    log.info("search on %d events: serving HR %.4f, best HR %.4f (trial %d): %s", events, serving.hr, best.hr,
             number, reason)
    return SearchResult(accepted, reason, best=best, best_config=candidate.config(base), best_candidate=candidate,
                        gain=gain, diff=diff, se=se, **common)
