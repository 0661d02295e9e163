"""Per-user state that moves with a partition: export a set of users, import them elsewhere.

Events are keyed by user, so each user's events live in one partition and that
partition's owner holds the user's history. When a partition moves to another
worker (scale-out, a crash), ``stream.worker.handoff`` carries the users of that
partition from the old owner's last snapshot to the new owner with these two
functions. Only the engine's per-user state moves (recent items, items seen);
item-level state stays where it was learned (see README, "Guarantees").
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

UserExport = dict[str, tuple[list[str], list[str]]]


class UserHolder(Protocol):
    """An engine that holds per-user state: ``StreamingRecommender``, or one wrapping it (the tuner)."""

    def user_ids(self) -> list[str]: ...

    def export_users(self, user_ids: Iterable[str]) -> UserExport: ...

    def import_users(self, states: Mapping[str, tuple[list[str], list[str]]]) -> int: ...


def held_users(engine: UserHolder) -> list[str]:
    """The ids of the users ``engine`` holds, least recently active first."""
    return engine.user_ids()


def export_users(engine: UserHolder, user_ids: Iterable[str]) -> UserExport:
    """``{user: (recent items, items seen)}`` for the users the engine holds (plain, picklable data).

    Examples
    --------
    >>> from online.base import Interaction
    >>> from online.engine import StreamingRecommender
    >>> old = StreamingRecommender()
    >>> old.learn_many([Interaction("u1", "a", 0.0), Interaction("u1", "b", 1.0)])
    >>> moved = export_users(old, ["u1", "nobody"])
    >>> new = StreamingRecommender()
    >>> import_users(new, moved)
    1
    >>> [item for item, _ in new.recommend("u1").items]  # knows what u1 has seen: recommends nothing old
    []
    """
    return engine.export_users(user_ids)


def import_users(engine: UserHolder, states: Mapping[str, tuple[list[str], list[str]]]) -> int:
    """Replace (or add) these users' state in ``engine``; returns how many were imported."""
    return engine.import_users(states)
