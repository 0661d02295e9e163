"""Champion and challengers: shadow copies of a model at other learning rates.

The served model (the champion, arm ``"x1"``) has shadows at ``x1 / step`` and
``x1 * step`` (arms ``"x0.5"`` and ``"x2"`` for ``step=2``). Every arm learns
the same events; each starts as a copy of the champion, so they differ only in
the rate they learn with from then on and share the same negative samples (a
paired comparison). Every ``period`` events the policy picks an arm; when it is
not the champion and beats it in a paired test, that shadow *becomes* the champion (its state and its rate)
and new shadows are copied from it. Repeated moves walk the rate along a log
scale with no edge (within ``[low, high]``), which is how a rate outside any
hand-made grid is found. The arm labels stay the same three strings.

Safety: every ``check_every`` events each arm's parameters are checked
(:func:`online.tuning.safety.diverged`). A diverged shadow is reset from the
champion and barred from promotion for ``bar_events``; a diverged champion is
replaced by its best healthy shadow. A shadow whose reward collapses (below
``collapse`` times the champion's over a period) counts as diverged too.

The same machinery tunes another whitelisted hyper-parameter (``l2``,
``negatives``) through ``param``; integers are rounded.
"""
from __future__ import annotations

import copy
from typing import Any

from online.mf import StackedMF, stackable
from online.tuning.policy import ArmPolicy
from online.tuning.safety import diverged


def arm_labels(step: float) -> tuple[str, str, str]:
    """The three fixed labels for a step: ``("x0.5", "x1", "x2")`` for 2."""
    return (f"x{1 / step:.3g}", "x1", f"x{step:.3g}")


class ShadowSearch:
    """Champion/challenger search over one mutable hyper-parameter of one model.

    Parameters
    ----------
    name
        The model's name in the blend (``"mf"``).
    champion
        The served model (anything with ``mutate`` and the parameter as an attribute).
    policy
        An :class:`ArmPolicy` over :func:`arm_labels` of ``step``.
    param
        The hyper-parameter (must be in the model's ``_mutable_attributes``).
    step, low, high
        Multiplicative distance of the shadows; bounds of the parameter.
    period, check_every, bar_events, max_norm, collapse
        See the module docstring.
    min_evidence
        Scored events every open arm needs before a decision (else the decision waits).
    gate, max_evidence
        The policy proposes, a paired test accepts: a shadow is promoted only when its
        reward beats the champion's on the same events by ``gate`` standard errors.
        Evidence is kept across periods until ``max_evidence`` scored events, then dropped.
    """

    def __init__(self, name: str, champion: Any, policy: ArmPolicy, param: str = "lr", step: float = 2.0,
                 low: float = 1e-4, high: float = 5.0, period: int = 2_000, check_every: int = 200,
                 bar_events: int = 10_000, max_norm: float = 1e3, collapse: float = 0.25,
                 min_evidence: int = 50, gate: float = 1.0, max_evidence: int = 5_000) -> None:
        if param not in getattr(champion, "_mutable_attributes", ()):
            raise ValueError(f"{param!r} is not a mutable attribute of {name}")
        if step <= 1.0:
            raise ValueError("step must be > 1")
        self.name, self.param, self.step = name, param, float(step)
        self.low, self.high = float(low), float(high)
        self.period, self.check_every, self.bar_events = int(period), int(check_every), int(bar_events)
        self.max_norm, self.collapse, self.min_evidence = float(max_norm), float(collapse), int(min_evidence)
        self.gate, self.max_evidence = float(gate), int(max_evidence)
        self.labels = arm_labels(self.step)
        self.policy = policy
        self.models: dict[str, Any] = {}
        self.resets = 0
        self.moves = 0
        self.events = 0
        self._since_move = 0
        self._since_check = 0
        self._barred_until: dict[str, int] = {}
        self.stack: StackedMF | None = None
        self._respawn(champion)

    # -- the arms ---------------------------------------------------------------------------------
    @property
    def champion(self) -> Any:
        return self.models["x1"]

    @property
    def value(self) -> float:
        """The served value of the parameter."""
        return getattr(self.champion, self.param)

    def values(self) -> dict[str, float]:
        return {label: getattr(model, self.param) for label, model in self.models.items()}

    def _cast(self, value: float, like: Any) -> float:
        value = min(self.high, max(self.low, value))
        if isinstance(like, int):
            return int(round(value))
        return value

    def _copy(self, source: Any, value: float) -> Any:
        model = copy.deepcopy(source)
        model.mutate({self.param: self._cast(value, getattr(source, self.param))})
        return model

    def _respawn(self, champion: Any) -> None:
        """``champion`` serves; fresh shadows are copied from it; the policy forgets (arms changed)."""
        low, mid, high = self.labels
        value = getattr(champion, self.param)
        if stackable(champion, self.param):  # aligned copies learned in one vectorised pass
            values = [self._cast(value / self.step, value), value, self._cast(value * self.step, value)]
            self.stack = StackedMF(champion, values, champion_slot=1, param=self.param)
            self.models = dict(zip(self.labels, self.stack.models))
        else:
            self.stack = None
            self.models = {low: self._copy(champion, value / self.step), mid: champion,
                           high: self._copy(champion, value * self.step)}
        self.policy.reset()
        self._since_move = 0

    def shadows(self) -> dict[str, Any]:
        return {label: model for label, model in self.models.items() if label != "x1"}

    # -- learning ---------------------------------------------------------------------------------
    @property
    def learns_champion(self) -> bool:
        """``True`` when :meth:`learn` also teaches the champion (its owner must not)."""
        return self.stack is not None

    def learn(self, interactions) -> None:
        """Every arm learns the batch: all at once when stacked, else the shadows one by one
        (the champion then is learned by its owner, the blend)."""
        if self.stack is not None:
            self.stack.learn_many(interactions)
            return
        for label, model in self.models.items():
            if label != "x1":
                model.learn_many(interactions)

    def after_batch(self, n_events: int) -> str | None:
        """Book-keeping after a learned batch: safety checks, unbarring, and a move every ``period``.

        Returns the label of a promoted shadow, or ``None``.
        """
        self.events += n_events
        self._since_move += n_events
        self._since_check += n_events
        for label, until in list(self._barred_until.items()):
            if self.events >= until:
                del self._barred_until[label]
                self.policy.unbar(label)
        if self._since_check >= self.check_every:
            self._since_check = 0
            self.check()
        if self._since_move >= self.period:
            return self.decide()
        return None

    def check(self) -> list[str]:
        """Reset and bar every diverged arm; returns their labels."""
        bad = [label for label, model in self.models.items() if diverged(model, self.max_norm)]
        means, counts = self.policy.means(), self.policy.counts()
        top = means["x1"]
        if counts["x1"] >= 200 and top > 0:
            bad += [label for label in self.shadows() if label not in bad and counts[label] >= 200
                    and means[label] < self.collapse * top]
        for label in bad:
            self._reset(label)
        return bad

    def _reset(self, label: str) -> None:
        if label not in self._barred_until:  # one incident, however often a barred arm is reset again
            self.resets += 1
        if label == "x1":  # the served model: the best healthy shadow takes over
            healthy = [other for other in self.shadows() if not diverged(self.models[other], self.max_norm)]
            if healthy:
                means = self.policy.means()
                self._promote(max(healthy, key=lambda other: means[other]))
            else:  # nothing to copy from: start over, untrained, at the lower rate
                fresh = self.champion.clone({self.param: self._cast(self.value / self.step, self.value)})
                self._respawn(fresh)
            return
        if self.stack is not None:
            self.stack.reset_slot(self.labels.index(label), 1)
        else:
            self.models[label] = self._copy(self.champion, getattr(self.models[label], self.param))
        self._barred_until[label] = self.events + self.bar_events
        self.policy.bar(label)

    def reopen(self) -> None:
        """After a change in reward: forget the evidence and decide again after a quarter period."""
        self.policy.reset()
        self._since_move = self.period - max(1, self.period // 4)

    def barred(self) -> set[str]:
        return set(self._barred_until)

    def decide(self) -> str | None:
        """The policy picks an arm; a shadow other than the champion is promoted."""
        counts = self.policy.counts()
        if min(counts[label] for label in self.policy.open_arms()) < self.min_evidence:
            return None  # too little evidence yet (few users with a served list came back): wait
        self._since_move = 0
        choice = self.policy.choose()
        if choice == "x1" or choice in self._barred_until or not self.policy.beats(choice, "x1", self.gate):
            if min(counts.values()) >= self.max_evidence:
                self.policy.reset()  # old evidence goes stale: start a fresh window
            return None
        self._promote(choice)
        return choice

    def _promote(self, label: str) -> None:
        self.moves += 1
        self._barred_until.clear()
        self.policy.clear_bars()
        self._respawn(self.models[label])

    def snapshot(self) -> dict[str, Any]:
        probs = self.policy.probabilities()
        means = self.policy.means()
        return {"learning_rate": float(self.value), "param": self.param,
                "arms": {label: {"probability": probs[label], "learning_rate": float(value),
                                 "reward": means[label]}
                         for label, value in self.values().items()},
                "resets": self.resets, "moves": self.moves, "barred": sorted(self._barred_until)}
