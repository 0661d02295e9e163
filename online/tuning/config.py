"""The tuner's hyper-parameters as one frozen record (plain values; ``stream/settings.py`` fills it)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

#: river bandit policies a decision can use (``online.tuning.policy.make_policy`` builds them).
POLICIES = ("thompson", "ucb", "exp3", "epsilon")
FEEDBACK = ("full", "bandit")


@dataclass(frozen=True)
class TunerConfig:
    """How :class:`~online.tuning.TunedRecommender` tunes.

    Parameters
    ----------
    policy
        river bandit policy of every decision: ``thompson``, ``ucb``, ``exp3`` or ``epsilon``.
    seed
        Seed of the policies and of serving draws.
    feedback
        ``"full"``: every learned event is a user's next item, and every arm's list is
        scored on it (replay, prequential, and live streams where each event answers
        the user's last list). ``"bandit"``: only events that name a served list
        (``feedback(rec_id, ...)``) reward the arm that served it; the served arm is
        drawn with a logged propensity and the others are estimated by IPS.
    params
        ``(model, hyper-parameter)`` pairs to tune with shadows; models missing from
        the blend are skipped. ``(("mf", "lr"),)`` by default; ``("mf", "l2")`` works too.
    lr_step, lr_low, lr_high
        Shadows sit at ``value / lr_step`` and ``value * lr_step``; bounds of the search.
    period
        Events between two learning-rate decisions. With ``max_evidence`` this is close to
        follow-the-leader over the last ~5,000 events, which the issue's replays found to
        capture most of what switching can gain.
    tune_weights, weight_step, weight_period, floor
        Strategy-weight search: on/off, the share a move adds to one strategy (then
        renormalised), events between moves, smallest share a strategy keeps.
    explore
        Share of the serving distribution spread over all open arms (bandit feedback).
    check_every, bar_events, max_norm, collapse
        Safety: how often models are checked, how long a reset arm is barred, the
        parameter norm that counts as diverged, the reward ratio that counts as collapse.
    min_evidence
        Scored events each arm needs before a decision is taken (else it waits).
    gate, max_evidence
        The policy proposes a move; it is taken only if the proposed arm beats the served
        one on the same events by ``gate`` standard errors (paired). Evidence accumulates
        across periods up to ``max_evidence`` scored events per arm.
    drift_delta
        ADWIN's confidence on the served reward; a detected change re-opens exploration
        (every policy forgets, the next decision comes after a quarter period).
    reward_window
        Events in the recent reward rate.
    """

    policy: str = "thompson"
    seed: int | None = 0
    feedback: str = "full"
    params: tuple[tuple[str, str], ...] = (("mf", "lr"),)
    lr_step: float = 2.0
    lr_low: float = 1e-4
    lr_high: float = 5.0
    period: int = 1_000
    tune_weights: bool = True
    weight_step: float = 0.2
    weight_period: int = 1_000
    floor: float = 0.02
    explore: float = 0.05
    check_every: int = 200
    bar_events: int = 10_000
    max_norm: float = 1e3
    collapse: float = 0.25
    min_evidence: int = 50
    gate: float = 1.0
    max_evidence: int = 5_000
    drift_delta: float = 0.0002
    reward_window: int = 1_000
    max_pending: int = 100_000

    def __post_init__(self) -> None:
        problems = []
        if self.policy not in POLICIES:
            problems.append(f"policy must be one of {', '.join(POLICIES)} (got {self.policy!r})")
        if self.feedback not in FEEDBACK:
            problems.append(f"feedback must be one of {', '.join(FEEDBACK)}")
        if self.lr_step <= 1 or not 0 < self.weight_step <= 1:
            problems.append("lr_step must be > 1 and weight_step in (0, 1]")
        if not 0 < self.lr_low < self.lr_high:
            problems.append("need 0 < lr_low < lr_high")
        for name in ("period", "weight_period", "check_every", "reward_window", "max_pending"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        if not 0 <= self.explore <= 1 or not 0 <= self.floor < 0.5:
            problems.append("explore must be in [0, 1] and floor in [0, 0.5)")
        if problems:
            raise ValueError("invalid tuner config: " + "; ".join(problems))

    def replace(self, **changes: Any) -> TunerConfig:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)
