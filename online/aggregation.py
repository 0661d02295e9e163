"""Scale-out by item: the group's item pairs aggregated once, and summaries of them every worker reads.

Broadcast sharing (``online.sharing``, learn scope ``shared``) makes every worker apply every other
worker's pairs: each worker's sharing CPU grows with the group while its own learning shrinks
(``docs/scale-out.md``). This is the other design the scale-out issue names. Workers send their
merged pair deltas to an *aggregation stage* instead (live: a topic keyed by item, one aggregation
task per partition, so the stage's work divides over the group); the stage adds them to the group's
tables once and, every flush, publishes *summaries*: for the items with the most evidence not yet
summarised, the item's strongest followers as the whole group knows them. A worker replaces its own
table for a summarised item with the summary plus what it learned itself after the stage's cut
(:class:`RecentOwnPairs`: its own publications the stage had not received yet), and keeps learning
its own events into it until the next one. A summary replaces rather than adds, so applying one
twice changes nothing. Popularity counts (one merged entry per item and batch, applied in one
vectorised step) stay broadcast.

What a worker then receives no longer grows with the group's events: ``budget`` summaries per 1,000
stream events, whatever the number of workers. What it costs in quality is what this module lets
``online.scaleout.simulate_workers`` measure (mode ``by-item``): items not summarised yet are served
from the worker's own evidence only. Nothing here knows Kafka.

Examples
--------
>>> from online.base import Interaction
>>> from online.engine import StreamingRecommender
>>> from online.sharing import DeltaCollector
>>> worker, stage = StreamingRecommender(), ItemAggregator()
>>> batch = DeltaCollector(source=0)
>>> batch.cover(0, 2)
>>> worker.learn_many([Interaction("u1", "a", 0.0), Interaction("u1", "b", 1.0), Interaction("u1", "c", 2.0)],
...                   deltas=batch)
>>> stage.add(batch.seal())
True
>>> sent = stage.summaries(budget=2)
>>> [(model, item, followers) for model, item, followers in sent]
[('next_item', 'a', {'b': 1.0}), ('next_item', 'b', {'c': 1.0})]
>>> other = StreamingRecommender()  # another worker: it never saw these events
>>> other.learn_many([Interaction("u2", "a", 3.0)])
>>> [apply_summary(other, *summary) for summary in sent]
[True, True]
>>> [item for item, _ in other.recommend("u2").items][:1]
['b']
"""
from __future__ import annotations

from collections import deque
from typing import Any

from online.engine import EngineConfig, StreamingRecommender
from online.sharing import ItemDeltas


def pairs_only(deltas: ItemDeltas) -> ItemDeltas:
    """The pair part of a delta (what goes to the aggregation stage)."""
    return ItemDeltas(deltas.source, deltas.first, deltas.last, deltas.events, deltas.items, [], [], deltas.pairs)


def counts_only(deltas: ItemDeltas) -> ItemDeltas:
    """The popularity part of a delta (what is still broadcast to every other worker)."""
    return ItemDeltas(deltas.source, deltas.first, deltas.last, deltas.events, deltas.items, deltas.pop_items,
                      deltas.pop_counts, {})


class ItemAggregator:
    """The group's pair tables, built from every worker's deltas (each applied once, by position), and the
    summaries chosen from them.

    It holds an engine of the group's config and uses only its item-level models, so every pair lands
    exactly as in a worker (window weights, reverse pairs, caps, half-lives).
    """

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.engine = StreamingRecommender(config or EngineConfig())
        #: (model, item) -> the item's mass (units of a pair learned now) when last summarised
        self._summarised: dict[tuple[str, str], float] = {}
        self.deltas = self.summaries_sent = 0

    def add(self, deltas: ItemDeltas | None) -> bool:
        """Apply one worker's pair deltas (skipped if already held, by source and position)."""
        if deltas is None:
            return False
        applied = self.engine.apply_item_deltas(deltas)
        self.deltas += applied
        return applied

    def summaries(self, budget: int) -> list[tuple[str, str, dict[str, float]]]:
        """Up to ``budget`` ``(model, item, followers)`` for the items with the most evidence not yet
        summarised (their tables' growth since their last summary, in units of a pair learned now)."""
        if budget < 1:
            return []
        ranked: list[tuple[float, str, str, Any]] = []
        summarised = self._summarised
        for name, model in self.engine.item_models().items():
            for item, mass in model.masses().items():
                before = summarised.get((name, item), 0.0)
                if mass > before:
                    ranked.append((mass - before, name, item, model))
        ranked.sort(key=lambda row: row[0], reverse=True)
        out = []
        for _, name, item, model in ranked[:budget]:
            out.append((name, item, model.summary(item)))
            summarised[(name, item)] = model.mass_of(item)
        self.summaries_sent += len(out)
        return out


def apply_summary(engine: StreamingRecommender, model: str, item: str, followers: dict[str, float],
                  own: dict[str, float] | None = None) -> bool:
    """Replace ``engine``'s table for ``item`` in ``model`` with the group's, plus ``own`` (this worker's
    increments after the summary's cut); False when the engine has no such model."""
    target = engine.item_model(model)
    if target is None:
        return False
    if own:
        followers = dict(followers)
        for follower, weight in own.items():
            followers[follower] = followers.get(follower, 0.0) + weight
    target.replace_followers(item, followers)
    return True


class RecentOwnPairs:
    """A worker's own pair increments of its recent publications, by model and item: what it learned after
    the cut of a summary it receives (the stage had not received them yet), to add to the summary.

    Replacing a table with the group's view alone would drop the worker's newest evidence, its own
    users' latest pairs first of all, for two hops of delay.
    """

    def __init__(self) -> None:
        #: (published at, model -> item -> follower -> weight), oldest first
        self._batches: deque[tuple[int, dict[str, dict[str, dict[str, float]]]]] = deque()

    def record(self, at: int, deltas: ItemDeltas, symmetric: dict[str, float]) -> None:
        """Keep the pairs of a delta this worker published at ``at`` as its tables received them (forward,
        and reverse with the model's ``symmetric`` weight)."""
        items = deltas.items
        batch: dict[str, dict[str, dict[str, float]]] = {}
        for name, pairs in deltas.pairs.items():
            tables = batch.setdefault(name, {})
            back = symmetric.get(name, 0.0)
            for a, b, weight in zip(pairs.prev, pairs.nxt, pairs.weight):
                prev, item = items[a], items[b]
                followers = tables.setdefault(prev, {})
                followers[item] = followers.get(item, 0.0) + weight
                if back:
                    followers = tables.setdefault(item, {})
                    followers[prev] = followers.get(prev, 0.0) + weight * back
        if batch:
            self._batches.append((at, batch))

    def after(self, cut: int, model: str, item: str) -> dict[str, float]:
        """The item's increments in ``model`` from publications after ``cut``."""
        out: dict[str, float] = {}
        for at, batch in reversed(self._batches):
            if at <= cut:
                break
            for follower, weight in batch.get(model, {}).get(item, {}).items():
                out[follower] = out.get(follower, 0.0) + weight
        return out

    def forget(self, upto: int) -> None:
        """Drop publications at or before ``upto`` (every summary still to come covers them)."""
        batches = self._batches
        while batches and batches[0][0] <= upto:
            batches.popleft()
