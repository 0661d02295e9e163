"""The two shapes everything in ``online/`` agrees on: an interaction and a strategy.

An :class:`Interaction` is the validated, Kafka-free form of one user event. A
:class:`Strategy` is anything that learns from interactions and scores candidate
items for a user. Strategies are duck-typed (a ``Protocol``) so that the heavy
encoder in ``models/`` can satisfy it without importing this package.
"""
from __future__ import annotations

from typing import NamedTuple, Protocol, Sequence, runtime_checkable


class Interaction(NamedTuple):
    """One user-item event, already validated.

    ``ts`` is epoch seconds; ``value`` is the event's weight (a rating, a price,
    or 1.0). ``event_id`` is optional and used for de-duplication and for
    matching published lists to the events they answered.
    """

    user_id: str
    item_id: str
    ts: float
    type: str = "click"
    value: float = 1.0
    event_id: str | None = None


@runtime_checkable
class Strategy(Protocol):
    """A recommendation strategy: learns a micro-batch, scores candidates.

    ``score`` returns one float per candidate, higher is better; it must never
    raise for an unknown user or item (score them 0.0 or by a prior instead).
    """

    name: str

    def learn_many(self, interactions: Sequence[Interaction]) -> None: ...

    def candidates(self, user_id: str, history: Sequence[str], n: int) -> list[str]: ...

    def score(self, user_id: str, history: Sequence[str], items: Sequence[str]) -> list[float]: ...
