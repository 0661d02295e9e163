"""What one strategy adds to the lists, measured on the stream itself, and a gate that mutes it
while it costs hits.

Beside a list it serves, the engine ranks the list the blend would have served without one strategy
(its weight at 0, its candidates left out): the *shadow* list, from the same models at the same
moment. When the user's next event arrives, both lists are scored against it. That gives HR@k with
and without the strategy on the same users at the same moments. A hit is *owed* to the strategy
when the list with it had it and the list without it did not, and *lost* to it in the other case.

While :class:`StrategyGate` has the strategy muted (its slot held but not served,
``online.blend.StrategySlot.muted``), the served list is the one without it, and the measurement
ranks the list *with* it instead: the pair, and what is owed and lost, mean the same either way.

A list the strategy did not weigh in on (no version loaded, or weight 0) is its own shadow and costs
nothing extra; with ``unweighed=False`` such lists are not measured at all (a worker measures only
while the strategy serves or is muted, and pays nothing otherwise). Ranking a shadow costs a second
list, so ``every`` keeps the measurement to one user in ``every`` (a stable choice per user);
``streamrec eval`` measures every user and every list.

``streamrec eval --encoder on`` (``stream.cli.encoder_eval``) and the workers
(``stream.worker.processor``, metrics ``streamrec_encoder_shadow_*`` and ``streamrec_encoder_gate*``) both
use :class:`StrategyShadow` and :class:`StrategyGate`.
"""
from __future__ import annotations

import math
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

from online.base import Interaction, Ranking


def _plain(engine: Any) -> Any:
    """The plain engine under the wrappers (the self-tuning loop's ``models``, the bandits' ``engine``),
    which takes other weights and substitutes for one request."""
    from online.engine import StreamingRecommender

    models = getattr(engine, "models", engine)
    while not isinstance(models, StreamingRecommender) and hasattr(models, "engine"):
        models = models.engine
    return models


def strategy_slot(engine: Any, name: str) -> Any:
    """The :class:`~online.blend.StrategySlot` named ``name`` in ``engine``'s blend, or ``None`` (no blend,
    no such strategy, or a strategy that is not a slot)."""
    from online.blend import StrategySlot

    blend = getattr(_plain(engine), "blend", None)
    slot = blend.strategies.get(name) if blend is not None else None
    return slot if isinstance(slot, StrategySlot) else None


def ranking_without(engine: Any, name: str, user_id: str, k: int | None, exclude: Iterable[str]) -> Ranking:
    """The list ``engine`` would serve ``user_id`` now without strategy ``name`` (weighed 0, proposing nothing),
    recorded nowhere."""
    from online.blend import StrategySlot

    models = _plain(engine)
    weights = models.blend.weights
    weights[name] = 0.0
    # an empty slot in its place: it proposes no candidates either (a blend that learns its weights pools
    # every strategy's candidates, whatever its weight)
    return models.recommend(user_id, k, exclude, record=False, weights=weights,
                            substitutes={name: StrategySlot(name)})


def ranking_with(engine: Any, name: str, user_id: str, k: int | None, exclude: Iterable[str]) -> Ranking | None:
    """The list ``engine`` would serve ``user_id`` now with its muted slot ``name`` served (at its weight),
    recorded nowhere; ``None`` when the slot holds nothing."""
    slot = strategy_slot(engine, name)
    if slot is None or slot.strategy is None:
        return None
    return _plain(engine).recommend(user_id, k, exclude, record=False, substitutes={name: slot.unmuted()})


class StrategyShadow:
    """HR@k of the lists with strategy ``name`` and of their shadows without it (see the module docstring).

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
    >>> shadow.score([Interaction("u1", "b", 0.0)])  # (owed, lost) by these events
    (1, 0)
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

    def observe(self, engine: Any, user_id: str, k: int | None, exclude: Iterable[str], ranking: Ranking,
                muted: bool = False) -> None:
        """``ranking`` was served to ``user_id``: rank its shadow if the strategy weighed in on it (or,
        ``muted``, the list with the strategy: the served one is without it), keep both."""
        weighed = any(name == self.name for name, _ in ranking.versions)
        if not (weighed or muted or self.unweighed):  # nothing to measure: free before a version serves
            if self._lists:
                self._lists.pop(user_id, None)  # this user's next event is not measured
            return
        if not self.measures(user_id):
            return
        served = [item for item, _ in ranking.items]
        if weighed:
            self.remember(user_id, served, [item for item, _ in
                                            ranking_without(engine, self.name, user_id, k, exclude).items])
        elif muted:
            with_it = ranking_with(engine, self.name, user_id, k, exclude)
            if with_it is None:  # nothing held to serve: nothing to measure
                self._lists.pop(user_id, None)
                return
            self.remember(user_id, [item for item, _ in with_it.items], served)
        else:  # the strategy did not weigh in: the list is its own shadow
            self.remember(user_id, served, served)

    def remember(self, user_id: str, served: Sequence[str], shadow: Sequence[str]) -> None:
        """The user's pair of lists: ``served`` with the strategy, ``shadow`` without it."""
        lists = self._lists
        lists[user_id] = (tuple(served), tuple(shadow))
        lists.move_to_end(user_id)
        if len(lists) > self.max_users:
            lists.popitem(last=False)

    def score(self, interactions: Iterable[Interaction]) -> tuple[int, int]:
        """Score each event against its user's last pair of lists (before it is learned); returns the
        ``(owed, lost)`` hits of these events, :class:`StrategyGate`'s evidence."""
        lists, window = self._lists, self._window
        if not lists:
            return 0, 0
        owed, lost = self.owed, self.lost
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
        return self.owed - owed, self.lost - lost

    def take_window(self) -> tuple[int, int, int, int]:
        """``(evaluated, hits, shadow hits, owed)`` since the last call (a timeline point)."""
        out = tuple(self._window)
        self._window = [0, 0, 0, 0]
        return out  # type: ignore[return-value]

    def snapshot(self) -> dict[str, float]:
        """Plain numbers: HR with and without the strategy, the hits owed to it and lost to it (``hr`` is the
        served lists' only while the strategy is not muted)."""
        n = self.evaluated
        return {"evaluated": n, "hr": self.hits / n if n else 0.0,
                "hr_without": self.shadow_hits / n if n else 0.0,
                "hits": self.hits, "shadow_hits": self.shadow_hits, "owed": self.owed, "lost": self.lost}


class StrategyGate:
    """Whether a strategy is served, decided by its paired record on the stream: the hits owed to it
    and lost to it that :class:`StrategyShadow` counts.

    Only the discordant pairs carry evidence. If the strategy made no difference, each would be owed
    or lost with probability 1/2, so McNemar's statistic (with its continuity correction)
    ``z = (|owed - lost| - 1) / sqrt(owed + lost)``, signed like ``owed - lost``, says how sure the record
    is. The gate mutes the strategy while ``z < -z_mute`` (its lists lose significantly more hits than
    they win; 1.96: the two-sided 5% level) and serves it again as soon as that is no longer so. The
    measurement goes on while it is muted (the list with it is ranked beside the served one), so the
    record keeps growing either way and a strategy that starts to help comes back.

    A new version of the strategy is a new model, but close to the last one: the record is carried
    over at half weight (``carry``) each time the version changes, so a version is judged mostly on
    its own lists and a strategy that keeps losing stays muted across versions.

    The test is repeated after every batch, so a strategy that makes no difference is muted now and
    then by chance (briefly: the next pairs bring ``z`` back). That costs nothing on average, since
    its lists and the others' hit alike; a strategy that helps is muted far less often.

    Examples
    --------
    >>> gate = StrategyGate()
    >>> gate.add(owed=3, lost=12, version=1)
    >>> gate.serving, round(gate.z, 2)
    (False, -2.07)
    >>> gate.add(owed=10, lost=2, version=2)  # a new version: the record so far counts half
    >>> gate.serving, gate.owed, gate.lost
    (True, 11.5, 8.0)
    """

    def __init__(self, z_mute: float = 1.96, carry: float = 0.5) -> None:
        if not z_mute > 0:
            raise ValueError(f"z_mute must be > 0 (got {z_mute})")
        if not 0.0 <= carry <= 1.0:
            raise ValueError(f"carry must be in [0, 1] (got {carry})")
        self.z_mute = float(z_mute)
        self.carry = float(carry)
        self.owed = self.lost = 0.0  # the record: hits owed to and lost to the strategy
        self.version: Any = None  # the version the record is mostly about
        self.mutes = 0  # times the gate went from serving to muted

    @property
    def z(self) -> float:
        """McNemar's statistic of the record, with its continuity correction, signed like owed - lost."""
        n = self.owed + self.lost
        if n <= 0:
            return 0.0
        gap = self.owed - self.lost
        return math.copysign(max(abs(gap) - 1.0, 0.0), gap) / math.sqrt(n)

    @property
    def serving(self) -> bool:
        """False while the record says the strategy's lists lose significantly more hits than they win."""
        return self.z >= -self.z_mute

    def add(self, owed: float, lost: float, version: Any = None) -> None:
        """Hits owed to and lost to the strategy since the last call, served by ``version`` (``None``: as
        before)."""
        was = self.serving
        if version is not None and version != self.version:
            if self.version is not None:
                self.owed *= self.carry
                self.lost *= self.carry
            self.version = version
        self.owed += owed
        self.lost += lost
        self.mutes += was and not self.serving

    def steer(self, slot: Any, owed: float, lost: float) -> None:
        """The one way a gate acts: the record grows by ``owed`` and ``lost`` (for the version ``slot`` holds),
        and ``slot`` (an ``online.blend.StrategySlot``; ``None`` or empty: nothing to judge) is muted or served
        by what the record says. Workers and ``streamrec eval`` both call it after scoring a batch."""
        held = slot.strategy if slot is not None else None
        if held is None:
            return
        self.add(owed, lost, getattr(held, "version", None))
        slot.muted = not self.serving

    def snapshot(self) -> dict[str, float]:
        return {"serving": float(self.serving), "z": self.z, "owed": self.owed, "lost": self.lost,
                "mutes": self.mutes}
