"""A river bandit policy over a small fixed set of arms, with the numbers a tuner needs.

river's policies (``river.bandit``) choose an arm with ``pull`` and learn with
``update``; they do not say *how likely* each arm was. A tuner needs that twice:
as the propensity logged with a served choice (so that the arms that were not
served can be estimated by importance weighting, IPS) and as data for the
dashboards. :class:`ArmPolicy` computes it from the policy's own state (exact
for Exp3 and epsilon-greedy, by drawing from Thompson's Beta posteriors with a
generator of its own, by asking UCB's rule), so looking at the probabilities
never changes a decision; it mixes in a floor
``explore / n_arms`` so that no arm's propensity is ever 0, and samples the
served arm from that explicit distribution.

Rewards are in [0, 1]. ``thompson`` uses a Beta posterior, so its rewards are
hits (booleans); the others keep river's running mean.

Examples
--------
>>> policy = ArmPolicy("ucb", ["x0.5", "x1", "x2"], seed=1)
>>> for _ in range(50):
...     policy.update_all({"x0.5": 0.1, "x1": 0.2, "x2": 0.6})
>>> policy.best()
'x2'
>>> probs = policy.probabilities()
>>> round(sum(probs.values()), 6), min(probs.values()) > 0
(1.0, True)
"""
from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

import numpy as np
from river import bandit, proba

from online.tuning.config import POLICIES


def make_policy(name: str, seed: int | None = 0, burn_in: int = 0) -> bandit.base.Policy:
    """A fresh river policy by name (the ``tuner_policy`` setting)."""
    if name == "thompson":
        return bandit.ThompsonSampling(reward_obj=proba.Beta(), burn_in=burn_in, seed=seed)
    if name == "ucb":
        return bandit.UCB(delta=0.5, burn_in=burn_in, seed=seed)
    if name == "exp3":
        return bandit.Exp3(gamma=0.1, burn_in=burn_in, seed=seed)
    if name == "epsilon":
        return bandit.EpsilonGreedy(epsilon=0.1, burn_in=burn_in, seed=seed)
    raise ValueError(f"policy must be one of {', '.join(POLICIES)} (got {name!r})")


class ArmPolicy:
    """One decision (which learning rate, which weight vector) as a river policy over labelled arms.

    Parameters
    ----------
    name
        ``"thompson"``, ``"ucb"``, ``"exp3"`` or ``"epsilon"``.
    arms
        Fixed arm labels (they become metric label values).
    explore
        Share of the serving distribution spread uniformly over the arms that are not barred.
    samples
        Draws of the policy's choice rule used to estimate its probabilities.
    seed
        Seed of the policy and of serving draws.
    """

    def __init__(self, name: str, arms: Sequence[str], explore: float = 0.05, samples: int = 200,
                 seed: int | None = 0) -> None:
        if not arms:
            raise ValueError("a policy needs at least one arm")
        if not 0.0 <= explore <= 1.0:
            raise ValueError("explore must be in [0, 1]")
        self.name = name
        self.arms = list(arms)
        self.explore = float(explore)
        self.samples = int(samples)
        self.seed = seed
        self._rng = random.Random(seed)
        self._mc_rng = np.random.default_rng(seed)  # for estimates only: looking never changes a decision
        self._resets = 0
        self.policy = make_policy(name, seed)
        self.barred: set[str] = set()
        self._sums = dict.fromkeys(self.arms, 0.0)  # rewards since the last reset, for `means`
        self._counts = dict.fromkeys(self.arms, 0)
        self._diff = dict.fromkeys(self.arms, 0.0)  # paired differences to the reference arm
        self._diff2 = dict.fromkeys(self.arms, 0.0)
        self._cache: dict[str, float] | None = None

    # -- learning ---------------------------------------------------------------------------------
    def update(self, arm: str, reward: float) -> None:
        """Reward of one arm for one event (full information: call it for every arm)."""
        reward = min(1.0, max(0.0, float(reward)))
        if self.name == "thompson":
            self.policy.update(arm, reward >= 0.5)
        elif self.name == "exp3":
            # river's Exp3 divides by the arm's probability (IPS for bandit feedback). Under full
            # information every arm is observed, so the division is undone here.
            prob = self._exp3_probability(arm)
            self.policy.update(arm, reward * prob)
            self._rescale_exp3()
        else:
            self.policy.update(arm, reward)
        self._sums[arm] += reward
        self._counts[arm] += 1
        self._cache = None

    def update_all(self, rewards: Mapping[str, float], reference: str | None = None) -> None:
        """One full-information event: every arm's reward.

        With ``reference`` (the served arm), each arm's paired difference to it is kept too:
        the arms were scored on the same event, so differences are far less noisy than means.
        """
        for arm, reward in rewards.items():
            self.update(arm, reward)
        if reference is not None:
            base = rewards[reference]
            diffs, squares = self._diff, self._diff2
            for arm, reward in rewards.items():
                d = reward - base
                diffs[arm] += d
                squares[arm] += d * d

    def beats(self, arm: str, reference: str, z: float) -> bool:
        """Paired test: is ``arm``'s mean reward above ``reference``'s by ``z`` standard errors?"""
        n = self._counts[arm]
        if arm == reference or n < 2:
            return False
        mean = self._diff[arm] / n
        var = max(self._diff2[arm] / n - mean * mean, 0.0)
        return mean > 0 and mean > z * math.sqrt(var / n)

    def update_served(self, arm: str, reward: float) -> None:
        """Bandit feedback: only the served arm is observed (Exp3 applies its own IPS)."""
        if self.name == "exp3":
            self._exp3_probability(arm)
            self.policy.update(arm, min(1.0, max(0.0, float(reward))))
            self._rescale_exp3()
            self._sums[arm] += reward
            self._counts[arm] += 1
            self._cache = None
        else:
            self.update(arm, reward)

    def _exp3_probability(self, arm: str) -> float:
        """The probability river's Exp3 will divide ``arm``'s reward by; set over every arm when it
        has none for it yet (before its first pull, or after a pull among the open arms only)."""
        probs = self.policy._probabilities
        if arm not in probs:
            weights, gamma = self.policy._weights, self.policy.gamma
            total = sum(weights[a] for a in self.arms)
            probs = self.policy._probabilities = {
                a: (1.0 - gamma) * weights[a] / total + gamma / len(self.arms) for a in self.arms}
        return probs[arm]

    def _rescale_exp3(self) -> None:
        """Exp3's weights only grow; dividing them all by the largest keeps the same probabilities finite."""
        weights = self.policy._weights
        top = max(weights.values(), default=1.0)
        if top > 1e100:
            for arm in list(weights):
                weights[arm] /= top

    def reset(self) -> None:
        """Forget every reward: exploration re-opens (after a drift or when the arms change meaning)."""
        self._resets += 1
        seed = None if self.seed is None else self.seed + self._resets
        self.policy = make_policy(self.name, seed)
        self._sums = dict.fromkeys(self.arms, 0.0)
        self._counts = dict.fromkeys(self.arms, 0)
        self._diff = dict.fromkeys(self.arms, 0.0)
        self._diff2 = dict.fromkeys(self.arms, 0.0)
        self._cache = None

    # -- barring (the probabilities are cached: every change goes through here) --------------------
    def bar(self, arm: str) -> None:
        self.barred.add(arm)
        self._cache = None

    def unbar(self, arm: str) -> None:
        self.barred.discard(arm)
        self._cache = None

    def clear_bars(self) -> None:
        self.barred.clear()
        self._cache = None

    # -- deciding ---------------------------------------------------------------------------------
    def open_arms(self) -> list[str]:
        arms = [arm for arm in self.arms if arm not in self.barred]
        return arms or list(self.arms)

    def policy_probabilities(self) -> dict[str, float]:
        """How often the river policy's own rule picks each open arm (barred arms: 0)."""
        if self._cache is not None:
            return dict(self._cache)
        arms = self.open_arms()
        out = dict.fromkeys(self.arms, 0.0)
        untried = [arm for arm in arms if self._counts[arm] == 0]
        if untried:  # nothing known yet about these: river's burn-in would pull them first
            for arm in untried:
                out[arm] = 1.0 / len(untried)
        elif self.name == "exp3":  # Exp3's own formula over its weights
            weights, gamma = self.policy._weights, self.policy.gamma
            total = sum(weights[arm] for arm in arms)
            for arm in arms:
                out[arm] = (1.0 - gamma) * weights[arm] / total + gamma / len(arms)
        elif self.name == "thompson":  # P(arm's posterior draw is the largest), by drawing from the posteriors
            posteriors = [self.policy._rewards[arm] for arm in arms]
            draws = self._mc_rng.beta([b.alpha for b in posteriors], [b.beta for b in posteriors],
                                      size=(self.samples, len(arms)))
            wins = np.bincount(draws.argmax(axis=1), minlength=len(arms))
            for arm, count in zip(arms, wins.tolist()):
                out[arm] = count / self.samples
        elif self.name == "epsilon":  # explore uniformly with epsilon, else the best mean (ties split)
            eps = self.policy.current_epsilon
            means = {arm: self.policy._rewards[arm].get() for arm in arms}
            top = max(means.values())
            best = [arm for arm in arms if means[arm] == top]
            for arm in arms:
                out[arm] = eps / len(arms) + ((1.0 - eps) / len(best) if arm in best else 0.0)
        else:  # ucb: deterministic up to ties; ask its rule, then give its random generator back
            state = self.policy._rng.getstate()
            for _ in range(self.samples):
                out[self.policy._pull(arms)] += 1.0 / self.samples
            self.policy._rng.setstate(state)
        self._cache = out
        return dict(out)

    def probabilities(self) -> dict[str, float]:
        """The serving distribution: the policy's, with ``explore`` spread over the open arms; sums to 1."""
        arms = self.open_arms()
        base = self.policy_probabilities()
        floor = self.explore / len(arms)
        out = {arm: (1.0 - self.explore) * base[arm] + (floor if arm in arms else 0.0) for arm in self.arms}
        total = sum(out.values())
        return {arm: p / total for arm, p in out.items()}

    def sample(self) -> tuple[str, float]:
        """Draw a served arm from :meth:`probabilities`; returns ``(arm, propensity)``."""
        probs = self.probabilities()
        arms = list(probs)
        arm = self._rng.choices(arms, weights=[probs[a] for a in arms])[0]
        return arm, probs[arm]

    def choose(self) -> str:
        """The arm the policy pulls now (river's ``pull``, barred arms left out)."""
        arms = self.open_arms()
        untried = [arm for arm in arms if self._counts[arm] == 0]
        if untried:
            return untried[0]
        return self.policy.pull(arms)

    def means(self) -> dict[str, float]:
        """Mean reward of each arm since the last reset (0 for an arm with none)."""
        return {arm: self._sums[arm] / self._counts[arm] if self._counts[arm] else 0.0 for arm in self.arms}

    def counts(self) -> dict[str, int]:
        return dict(self._counts)

    def best(self) -> str:
        """The open arm with the highest mean reward since the last reset."""
        means = self.means()
        return max(self.open_arms(), key=lambda arm: (means[arm], -self.arms.index(arm)))

    def entropy(self) -> float:
        """Entropy (nats) of :meth:`policy_probabilities`: high while exploring, 0 once settled."""
        return -sum(p * math.log(p) for p in self.policy_probabilities().values() if p > 0)
