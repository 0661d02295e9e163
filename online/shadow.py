"""What one strategy adds to the lists, measured on the stream itself.

Beside a list it serves, the engine ranks the list the blend would have served without one strategy
(its weight at 0, its candidates left out): the *shadow* list, from the same models at the same
moment. When the user's next event arrives, both lists are scored against it. That gives HR@k with
and without the strategy on the same users at the same moments. A hit is *owed* to the strategy
when the served list had it and the shadow did not, and *lost* to it in the other case.

A list the strategy did not weigh in on (no version loaded, or weight 0) is its own shadow and costs
nothing extra; with ``unweighed=False`` such lists are not measured at all (a worker measures only
while the strategy serves, and pays nothing otherwise). Ranking a shadow costs a second list, so
``every`` keeps the measurement to one user in ``every`` (a stable choice per user); ``streamrec
eval`` measures every user and every list.

``streamrec eval --encoder on`` (``stream.cli.encoder_eval``) and the workers
(``stream.worker.processor``, metrics ``streamrec_encoder_shadow_*``) both use :class:`StrategyShadow`.
"""
from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

from online.base import Interaction, Ranking


def ranking_without(engine: Any, name: str, user_id: str, k: int | None, exclude: Iterable[str]) -> Ranking:
    """The list ``engine`` would serve ``user_id`` now without strategy ``name`` (weighed 0, proposing nothing),
    recorded nowhere.
    Ranked by the plain engine under its wrappers (the self-tuning loop's ``models``, the bandits'
    ``engine``), which takes other weights for one request."""
    from online.engine import StreamingRecommender

    models = getattr(engine, "models", engine)
    while not isinstance(models, StreamingRecommender) and hasattr(models, "engine"):
        models = models.engine
    from online.blend import StrategySlot

    weights = models.blend.weights
    weights[name] = 0.0
    # an empty slot in its place: it proposes no candidates either (a blend that learns its weights pools
    # every strategy's candidates, whatever its weight)
    return models.recommend(user_id, k, exclude, record=False, weights=weights,
                            substitutes={name: StrategySlot(name)})


class StrategyShadow:
    """HR@k of the served lists and of their shadows without strategy ``name`` (see the module docstring).

    Parameters
    ----------
    name
        The strategy whose contribution is measured (``"encoder"``).
    every
        Measure one user in ``every`` (1: all).
    max_users
        Users whose last pair of lists is kept (the least recently served are forgotten).
    unweighed
        Also measure the lists the strategy did not weigh in on (as their own shadows).

    Examples
    --------
    >>> shadow = StrategyShadow("encoder")
    >>> shadow.remember("u1", ["a", "b"], ["a", "c"])
    >>> shadow.score([Interaction("u1", "b", 0.0)])
    >>> shadow.hits, shadow.shadow_hits, shadow.owed
    (1, 0, 1)
    """

    def __init__(self, name: str = "encoder", every: int = 1, max_users: int = 100_000,
                 unweighed: bool = True) -> None:
        if every < 1 or max_users < 1:
            raise ValueError("every and max_users must be >= 1")
        self.name = name
        self.every = int(every)
        self.max_users = int(max_users)
        self.unweighed = unweighed
        # user -> (served, shadow): tuples of k items (lighter than sets; k is small)
        self._lists: OrderedDict[str, tuple[tuple[str, ...], tuple[str, ...]]] = OrderedDict()
        self.evaluated = self.hits = self.shadow_hits = self.owed = self.lost = 0
        self._window = [0, 0, 0, 0]  # evaluated, hits, shadow hits, owed since the last take_window()

    def measures(self, user_id: str) -> bool:
        """Whether ``user_id`` is one of the users measured (stable across processes and restarts)."""
        return self.every == 1 or zlib.crc32(user_id.encode()) % self.every == 0

    def observe(self, engine: Any, user_id: str, k: int | None, exclude: Iterable[str], ranking: Ranking) -> None:
        """``ranking`` was served to ``user_id``: rank its shadow if the strategy weighed in on it, keep both."""
        weighed = any(name == self.name for name, _ in ranking.versions)
        if not (weighed or self.unweighed):  # nothing to measure: costs nothing per list before a version serves
            if self._lists:
                self._lists.pop(user_id, None)  # this user's next event is not measured
            return
        if not self.measures(user_id):
            return
        served = [item for item, _ in ranking.items]
        if weighed:
            self.remember(user_id, served, [item for item, _ in
                                            ranking_without(engine, self.name, user_id, k, exclude).items])
        else:  # the strategy did not weigh in: the list is its own shadow
            self.remember(user_id, served, served)

    def remember(self, user_id: str, served: Sequence[str], shadow: Sequence[str]) -> None:
        lists = self._lists
        lists[user_id] = (tuple(served), tuple(shadow))
        lists.move_to_end(user_id)
        if len(lists) > self.max_users:
            lists.popitem(last=False)

    def score(self, interactions: Iterable[Interaction]) -> None:
        """Score each event against its user's last served list and its shadow (before it is learned)."""
        lists, window = self._lists, self._window
        if not lists:
            return
        for event in interactions:
            held = lists.get(event.user_id)
            if held is None:
                continue
            served, shadow = held
            hit, shadow_hit = event.item_id in served, event.item_id in shadow
            self.evaluated += 1
            self.hits += hit
            self.shadow_hits += shadow_hit
            self.owed += hit and not shadow_hit
            self.lost += shadow_hit and not hit
            window[0] += 1
            window[1] += hit
            window[2] += shadow_hit
            window[3] += hit and not shadow_hit

    def take_window(self) -> tuple[int, int, int, int]:
        """``(evaluated, hits, shadow hits, owed)`` since the last call (a timeline point)."""
        out = tuple(self._window)
        self._window = [0, 0, 0, 0]
        return out  # type: ignore[return-value]

    def snapshot(self) -> dict[str, float]:
        """Plain numbers: HR with and without the strategy, the hits owed to it and lost to it."""
        n = self.evaluated
        return {"evaluated": n, "hr": self.hits / n if n else 0.0,
                "hr_without": self.shadow_hits / n if n else 0.0,
                "hits": self.hits, "shadow_hits": self.shadow_hits, "owed": self.owed, "lost": self.lost}
