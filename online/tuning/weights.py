"""Strategy weights by champion/challenger over weight vectors, scored on the served pools.

Every list the blend serves is a pool of candidates with each strategy's
normalised score (the ``pool`` that ``Blend.serve(..., keep_pool=True)`` returns with the list).
When the user's next item arrives, *any*
weight vector can be scored on that pool: rank the pool by ``features @ w`` and
see whether the item lands in the top ``k``. That is full information for every
weight vector at the cost of one small matrix product, so the arms here are
weight vectors:

- ``"keep"``: the served weights;
- ``"<strategy>"``: the served weights with ``step`` added to that strategy's
  weight, then renormalised (a move towards that strategy alone: a strategy at
  the floor can win a real share in one move, a large one grows by little).

Every ``period`` events the policy picks an arm and, when it beats ``"keep"``
in a paired test on the same pools, the served weights move there. Because the pool holds
every strategy's candidates (the tap makes the blend ask all of them) and every
arm is scored on every event, a strategy that starts scoring better later (the
heavy encoder after a refresh) wins its arm and gains weight without any
serving-time exploration. ``floor`` keeps every weight above a small share.

Examples
--------
>>> import numpy as np
>>> from online.tuning.policy import ArmPolicy
>>> search = WeightSearch({"pop": 0.6, "co": 0.4}, ArmPolicy("ucb", ["keep", "pop", "co"]), k=1, period=10,
...                       min_evidence=5)
>>> features = np.array([[1.0, 0.0], [0.0, 1.0]])    # pool of two items: pop likes "a", co likes "b"
>>> for _ in range(10):
...     _ = search.score(["a", "b"], ["pop", "co"], features, "b")
>>> search.after_batch(10)
'co'
>>> search.weights["co"] > search.weights["pop"]
True
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from online.tuning.policy import ArmPolicy

KEEP = "keep"


class WeightSearch:
    """Champion/challenger search over the blend's strategy weights.

    Parameters
    ----------
    weights
        Starting weights (normalised here).
    policy
        An :class:`ArmPolicy` over ``["keep", *strategies]``.
    k
        List length the reward is a hit in.
    step
        Share a challenger adds to its strategy's weight before renormalising (0 < step <= 1).
    period
        Events between moves.
    floor
        Smallest share of the total any strategy keeps.
    min_evidence
        Scored pools needed before a move (else the move waits).
    gate, max_evidence
        The policy proposes, a paired test accepts: the weights move only when the proposed
        arm beats ``"keep"`` on the same pools by ``gate`` standard errors; evidence is kept
        across periods until ``max_evidence`` scored pools, then dropped.
    """

    def __init__(self, weights: Mapping[str, float], policy: ArmPolicy, k: int = 10, step: float = 0.2,
                 period: int = 2_000, floor: float = 0.02, min_evidence: int = 50, gate: float = 1.0,
                 max_evidence: int = 5_000) -> None:
        if not 0.0 < step <= 1.0:
            raise ValueError("step must be in (0, 1]")
        self.names = list(weights)
        self.policy = policy
        self.k, self.step, self.period, self.floor = int(k), float(step), int(period), float(floor)
        self.min_evidence, self.gate, self.max_evidence = int(min_evidence), float(gate), int(max_evidence)
        self.weights = self._normalised(dict(weights))
        self.moves = 0
        self._since_move = 0
        self._arms = [KEEP, *self.names]
        self._matrix = self._arm_matrix()

    def _normalised(self, weights: dict[str, float]) -> dict[str, float]:
        total = sum(weights.values()) or 1.0
        out = {name: max(weights.get(name, 0.0) / total, self.floor) for name in self.names}
        total = sum(out.values())
        return {name: w / total for name, w in out.items()}

    def arm_weights(self, arm: str) -> dict[str, float]:
        """The weight vector an arm stands for."""
        if arm == KEEP:
            return dict(self.weights)
        changed = dict(self.weights)
        changed[arm] += self.step
        return self._normalised(changed)

    def _arm_matrix(self) -> np.ndarray:
        """[strategies, arms]: one weight column per arm, in ``self.names`` order."""
        return np.array([[self.arm_weights(arm)[name] for arm in self._arms] for name in self.names])

    def score(self, items: Sequence[str], names: Sequence[str], features: np.ndarray, target: str,
              index: Mapping[str, int] | None = None) -> dict[str, float] | None:
        """Every arm's hit@k for ``target`` on one served pool; ``None`` when it is not in the pool."""
        row = index.get(target) if index is not None else (items.index(target) if target in items else None)
        if row is None:
            return None
        if list(names) != self.names:  # the tap's column order differs: align it
            position = {name: n for n, name in enumerate(names)}
            features = features[:, [position[name] for name in self.names]]
        totals = features @ self._matrix  # [pool, arms]
        mine = totals[row]
        # rank = items scored strictly higher + half the ties (other than the item itself)
        above = (totals > mine).sum(axis=0) + 0.5 * ((totals == mine).sum(axis=0) - 1)
        hits = above < self.k
        rewards = {arm: float(hit) for arm, hit in zip(self._arms, hits.tolist())}
        self.policy.update_all(rewards, reference=KEEP)
        return rewards

    def after_batch(self, n_events: int) -> str | None:
        """Move the weights every ``period`` events; returns the strategy moved up, or ``None``."""
        self._since_move += n_events
        if self._since_move < self.period:
            return None
        if min(self.policy.counts().values()) < self.min_evidence:
            return None  # too little evidence yet: wait
        self._since_move = 0
        choice = self.policy.choose()
        if choice == KEEP or not self.policy.beats(choice, KEEP, self.gate):
            if min(self.policy.counts().values()) >= self.max_evidence:
                self.policy.reset()  # old evidence goes stale: start a fresh window
            return None
        self.policy.reset()
        self.weights = self.arm_weights(choice)
        self._matrix = self._arm_matrix()
        self.moves += 1
        return choice

    def reopen(self) -> None:
        """After a change in reward: forget the evidence and move again after a quarter period."""
        self.policy.reset()
        self._since_move = self.period - max(1, self.period // 4)

    def snapshot(self) -> dict[str, Any]:
        return {"weights": dict(self.weights), "probabilities": self.policy.probabilities(),
                "rewards": self.policy.means(), "moves": self.moves}
