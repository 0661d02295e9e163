"""An item id is held as one string object across the engine (``StreamingRecommender._learn_users``).

Each decoded event carries a fresh string for its item. The engine keeps the first one it saw, so that
every user's history and seen items, the next-item pairs and the models' tables point at one object per
item: look-ups find their key by identity and a list reads a small, warm set of strings.
"""
from __future__ import annotations

import pickle

from online.base import Interaction
from online.engine import EngineConfig, StreamingRecommender
from online.sharing import DeltaCollector


def fresh(text: str) -> str:
    """An equal string that is a different object, as a decoder makes one per event."""
    copy = "".join(list(text))
    assert copy == text and copy is not text
    return copy


def test_two_users_who_touch_one_item_hold_the_same_string_for_it():
    engine = StreamingRecommender(EngineConfig(k=3))
    first, second = "item-42", fresh("item-42")
    engine.learn_many([Interaction("u1", "a", 1.0), Interaction("u1", first, 2.0),
                       Interaction("u2", "b", 3.0), Interaction("u2", second, 4.0)])
    u1, u2 = engine.user_state("u1"), engine.user_state("u2")
    assert u1.history[-1] is first and u2.history[-1] is first
    assert next(key for key in u2.seen if key == "item-42") is first


def test_the_strings_held_do_not_change_what_is_learned_or_served():
    events = [Interaction(f"u{n % 7}", f"i{(n * 5) % 11}", float(n)) for n in range(300)]
    copies = [event._replace(item_id=fresh(event.item_id)) for event in events]
    same, distinct = StreamingRecommender(EngineConfig(k=5)), StreamingRecommender(EngineConfig(k=5))
    same.learn_many(events)
    distinct.learn_many(copies)  # every event's id another object
    for user in (f"u{n}" for n in range(9)):
        assert same.recommend(user).items == distinct.recommend(user).items


def test_the_table_of_strings_stays_within_the_items_the_models_may_hold():
    engine = StreamingRecommender(EngineConfig(k=3, max_items=10))
    for start in range(0, 100, 5):  # fast turnover: every micro-batch brings new items
        engine.learn_many([Interaction("u1", f"i{start + n}", float(start + n)) for n in range(5)])
    assert engine.stats()["events_learned"] == 100
    held = pickle.loads(pickle.dumps(engine))  # the table travels with a snapshot, still bounded
    assert len(held._names) <= 10 + 5  # cleared when over max_items, before a micro-batch of 5


def test_users_moved_in_from_another_engine_use_the_strings_already_held():
    engine = StreamingRecommender(EngineConfig(k=3))
    engine.learn_many([Interaction("u1", "item-x", 1.0), Interaction("u1", "item-y", 2.0)])
    x, y = engine.user_state("u1").history
    engine.import_users({"u9": ([fresh("item-y"), fresh("item-x")], [fresh("item-x"), fresh("item-y")])})
    moved = engine.user_state("u9")
    assert moved.history[0] is y and moved.history[1] is x and all(key in (x, y) for key in moved.seen)
    assert all(any(key is held for held in (x, y)) for key in moved.seen)



def test_an_item_first_known_from_another_workers_deltas_keeps_their_string():
    other, engine = StreamingRecommender(EngineConfig(k=3)), StreamingRecommender(EngineConfig(k=3))
    collector = DeltaCollector(source=0)
    collector.cover(0, 1)
    other.learn_many([Interaction("u2", "item-x", 1.0), Interaction("u2", fresh("item-z"), 2.0)], deltas=collector)
    deltas = collector.seal()
    assert deltas is not None and engine.apply_item_deltas(deltas)
    z = next(name for name in deltas.items if name == "item-z")
    engine.learn_many([Interaction("u1", fresh("item-z"), 3.0)])
    assert engine.user_state("u1").history[-1] is z
