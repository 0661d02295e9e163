"""A user's state costs the garbage collector one object (``online.engine.UserState``)."""
from __future__ import annotations

import gc
import pickle

from online.base import Interaction
from online.engine import EngineConfig, StreamingRecommender, UserState


def test_a_users_items_are_held_in_containers_the_collector_does_not_track():
    engine = StreamingRecommender(EngineConfig(k=3))
    engine.learn_many([Interaction("u1", f"i{n}", float(n)) for n in range(5)])
    gc.collect()  # a new tuple is untracked at its first collection; a dict of strings never is tracked
    state = engine.user_state("u1")
    assert list(state.history) == ["i0", "i1", "i2", "i3", "i4"] and set(state.seen) == {f"i{n}" for n in range(5)}
    assert not gc.is_tracked(state.history) and not gc.is_tracked(state.seen)


def test_recent_items_stay_bounded_and_in_order():
    engine = StreamingRecommender(EngineConfig(k=3, history_len=3, max_seen=4))
    engine.learn_many([Interaction("u1", f"i{n}", float(n)) for n in range(6)])
    state = engine.user_state("u1")
    assert state.history == ("i3", "i4", "i5") and list(state.seen) == ["i0", "i1", "i2", "i3"]


def test_a_state_pickled_before_as_a_list_and_a_set_loads_as_a_tuple_and_a_dict():
    old = UserState.__new__(UserState)
    old.__setstate__((["a", "b"], {"a", "b"}, ("c",)))
    assert old.history == ("a", "b") and set(old.seen) == {"a", "b"} and type(old.seen) is dict
    again = pickle.loads(pickle.dumps(old))
    assert (again.history, again.seen, again.last_list) == (("a", "b"), old.seen, ("c",))
