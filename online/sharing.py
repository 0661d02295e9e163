"""Item knowledge shared between workers: what a micro-batch taught the item-level models, merged.

Events are keyed by user, so a worker learns each user whole but sees only its share of
every item. With sharing on, the worker that learns a batch of one source shard (a Kafka
partition of ``events``) also collects what the batch taught the *item-level* models, and
every other worker adds that to its own models. User state never moves.

What a batch teaches, merged inside the batch (:class:`DeltaCollector`):

- popularity: one count per item (``DecayedPopularity.add_counts``);
- next-item pairs ``(previous item, item)``: one count per pair; they come from the user's
  history, which only the user's worker has;
- each blend strategy that shares (``shares_items``: the co-occurrence model): its forward
  pairs with their window weights, merged by pair (``NextItem.add_pairs`` adds the reverse).

Factor models (``mf``, ``river_mf``) do not share: each worker's item factors stay its own
(they are not in the default blend; see ``docs/scale-out.md``).

Exactly once, by position: a delta names its source shard and the positions (Kafka
offsets) of the first and last events it summarises. An engine records, per shard, how far
its item-level state reaches (``StreamingRecommender.item_positions``), whether it learned
those events itself or applied another worker's delta, and takes a delta only if it lies
past that point. The positions travel inside the engine, so a snapshot covers them with
the state they describe.

Examples
--------
>>> from online.base import Interaction
>>> from online.engine import StreamingRecommender
>>> here, there = StreamingRecommender(), StreamingRecommender()
>>> batch = DeltaCollector(source=3)
>>> batch.cover(0, 1)
>>> here.learn_many([Interaction("u1", "a", 0.0), Interaction("u1", "b", 1.0)], deltas=batch)
>>> delta = decode(encode(batch.seal()))
>>> delta.source, delta.first, delta.last, delta.events
(3, 0, 1, 2)
>>> there.apply_item_deltas(delta), there.apply_item_deltas(delta)  # the second copy is skipped
(True, False)
>>> [item for item, _ in there.recommend("u2", exclude=["a"]).items]
['b']
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

#: The key of the engine's own next-item pairs in :attr:`ItemDeltas.pairs`.
NEXT_ITEM = "next_item"


class PairDeltas(msgspec.Struct, array_like=True, frozen=True):
    """Pairs one model learned: ``weight[i]`` of ``items[nxt[i]]`` after ``items[prev[i]]``."""

    prev: list[int]
    nxt: list[int]
    weight: list[float]


class ItemDeltas(msgspec.Struct, array_like=True, frozen=True):
    """What the events ``first..last`` of shard ``source`` taught item-level models (merged).

    Item ids are listed once (``items``); the other fields index into it.
    """

    source: int
    first: int
    last: int
    events: int
    items: list[str]
    pop_items: list[int]
    pop_counts: list[float]
    pairs: dict[str, PairDeltas]

    def size(self) -> int:
        """Entries to apply: popularity counts plus pairs."""
        return len(self.pop_items) + sum(len(p.prev) for p in self.pairs.values())


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ItemDeltas)


def encode(deltas: ItemDeltas) -> bytes:
    """Compact bytes (msgpack, structs as arrays)."""
    return _encoder.encode(deltas)


def decode(data: bytes) -> ItemDeltas:
    """The inverse of :func:`encode`; ``msgspec.DecodeError`` (a ``ValueError``) on anything else."""
    return _decoder.decode(data)


class DeltaCollector:
    """Gathers, merged, what the events of one source shard teach item-level models while an
    engine learns them (``StreamingRecommender.learn_many(events, deltas=collector)``)."""

    __slots__ = ("source", "first", "last", "events", "popularity", "models")

    def __init__(self, source: int) -> None:
        self.source = int(source)
        self.first: int | None = None
        self.last: int | None = None
        self.events = 0
        self.popularity: dict[str, float] = {}
        #: model name -> {(previous item, item): weight}
        self.models: dict[str, dict[tuple[str, str], float]] = {}

    def cover(self, first: int, last: int) -> None:
        """The events learned next lie at positions ``first..last`` of the shard (extends the range)."""
        if self.first is None or first < self.first:
            self.first = first
        if self.last is None or last > self.last:
            self.last = last

    def add_items(self, items: Iterable[str]) -> int:
        """Count one event per item; returns how many."""
        counts = self.popularity
        get = counts.get
        n = 0
        for item in items:
            counts[item] = get(item, 0.0) + 1.0
            n += 1
        self.events += n
        return n

    def add_pairs(self, model: str, pairs: Sequence[tuple[str, str]]) -> None:
        """Count weight-1 pairs of ``model`` (the engine's next-item pairs)."""
        table = self.models.setdefault(model, {})
        get = table.get
        for pair in pairs:
            if pair[0] != pair[1]:
                table[pair] = get(pair, 0.0) + 1.0

    def seal(self, min_weight: float = 0.0) -> ItemDeltas | None:
        """The merged deltas, or None if nothing was learned; the collector starts empty again.

        ``min_weight`` leaves out pairs whose merged weight in the batch is below it (the far end of a
        co-occurrence window: fewer entries to send and apply, less of the weaker evidence shared).
        """
        if not self.events or self.first is None or self.last is None:
            return None
        index: dict[str, int] = {}
        slot = index.setdefault
        pop_items = [slot(item, len(index)) for item in self.popularity]
        pairs = {}
        for name, table in self.models.items():
            if min_weight > 0:
                table = {pair: weight for pair, weight in table.items() if weight >= min_weight}
            if table:
                prev = [slot(a, len(index)) for a, _ in table]
                nxt = [slot(b, len(index)) for _, b in table]
                pairs[name] = PairDeltas(prev, nxt, list(table.values()))
        out = ItemDeltas(self.source, self.first, self.last, self.events, list(index), pop_items,
                         list(self.popularity.values()), pairs)
        self.first = self.last = None
        self.events = 0
        self.popularity = {}
        self.models = {}
        return out
