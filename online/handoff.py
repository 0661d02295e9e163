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
from typing import Any

from online.engine import StreamingRecommender

UserExport = dict[str, tuple[list[str], list[str]]]


def _inner(engine: Any) -> StreamingRecommender:
    """The engine holding user state: an ``online.tuning.TunedRecommender`` wraps one as ``.engine``."""
    return engine if isinstance(engine, StreamingRecommender) else engine.engine


def held_users(engine: Any) -> list[str]:
    """The ids of the users ``engine`` holds, least recently active first."""
    return list(_inner(engine)._users)


def export_users(engine: StreamingRecommender, user_ids: Iterable[str]) -> UserExport:
    """``{user: (recent items, items seen)}`` for the users the engine holds (plain, picklable data).

    Examples
    --------
    >>> from online.base import Interaction
    >>> old = StreamingRecommender()
    >>> old.learn_many([Interaction("u1", "a", 0.0), Interaction("u1", "b", 1.0)])
    >>> moved = export_users(old, ["u1", "nobody"])
    >>> new = StreamingRecommender()
    >>> import_users(new, moved)
    1
    >>> [item for item, _ in new.recommend("u1").items]  # knows what u1 has seen: recommends nothing old
    []
    """
    users = _inner(engine)._users
    out: UserExport = {}
    for user_id in user_ids:
        state = users.get(user_id)
        if state is not None:
            out[user_id] = (list(state.history), list(state.seen))
    return out


def import_users(engine: StreamingRecommender, states: Mapping[str, tuple[list[str], list[str]]]) -> int:
    """Replace (or add) these users' state in ``engine``; returns how many were imported."""
    engine = _inner(engine)
    cfg = engine.config
    for user_id, (history, seen) in states.items():
        state = engine._user(user_id)
        state.history = list(history)[-cfg.history_len:]
        state.seen = set(list(seen)[: cfg.max_seen])
        state.last_list = None
    return len(states)
