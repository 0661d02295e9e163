"""The production loop of self-tuning: a window of the stream, searches on a schedule, warm swaps.

:class:`SelfTunedRecommender` is an engine (the ``online.base.Engine`` contract) that serves
from a :class:`~online.engine.StreamingRecommender` and keeps the last ``Schedule.keep``
events. When a search is due it hands the last ``Schedule.window`` of them, strictly events
it has already learned, to a *searcher*: :func:`online.search.study.search` in-process
(``streamrec eval``), or nothing at all in a worker, whose searches run in the
``streamrec tuner`` process and arrive through :meth:`SelfTunedRecommender.apply`.

A search is due ``first`` events after the start; then the spacing doubles (at 2×, 4×, ...
``first``) until it reaches ``every``: early on little is known and the stream changes the
picture fast, while each search still sees twice what the one before saw. A search also
comes early (at most once per ``every // 4`` events) when ADWIN sees the served hit rate fall.

A swap is warm: the new engine learns the kept events in the background of the stream (in
eval: in place), then takes over every user's history and seen items from the old one, so
no user is forgotten and nothing is recommended twice. What can be applied in place is:
a change of blend weights and of knobs the registry declares ``in_place`` (learning rates,
half-lives, look-backs: ``online.registry.in_place_changes``) goes to the live models
(``StreamingRecommender.retune``) and never rebuilds. If the new engine fails its checks
(an exception, non-finite scores, empty lists where the old one served), the old one stays
and the failure is counted.

Two speeds of tuning, one system: with ``bandit`` (``online.tuning.TunedRecommender`` with its
config bound) the in-loop bandits keep moving learning rates and blend weights every event
inside whichever config the search chose; each swap starts them afresh around the new config.
"""
from __future__ import annotations

import inspect
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import msgspec

from online.base import Interaction, Ranking
from online.engine import EngineConfig, StreamingRecommender
from online.sharing import DeltaCollector, ItemDeltas
from online.wrapping import WrapsEngine

log = logging.getLogger(__name__)

#: What wraps the engine in the in-loop bandits (``functools.partial(TunedRecommender, config=...)``).
Bandit = Callable[[StreamingRecommender], Any]
#: A searcher: (window of past events, serving config) -> a result with ``accepted``, ``best_config``
#: and ``evidence()`` (``online.search.study.search`` with its config bound), or ``None`` (no search).
Searcher = Callable[[Sequence[Interaction], EngineConfig], Any]

_REBUILD_CHUNK = 2_000
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(list[Interaction])
_SHARED_DECODER = msgspec.msgpack.Decoder(list[tuple[int, ItemDeltas | None]])
#: ``(events learned before it, the deltas)``: another worker's deltas and where they fell among this
#: worker's events; ``(index, None)``: the event at ``index`` was learned for its user only (its item
#: knowledge came in such deltas)
Shared = tuple[int, ItemDeltas | None]


@dataclass(frozen=True)
class Schedule:
    """When searches run and how much of the stream they see, in events.

    ``first``: events before the first search; ``every``: the longest spacing between searches
    (spacings double from ``first`` up to it); ``window``:
    the most recent events a search replays; ``keep``: the most recent events kept for warm
    swaps (at least ``window``); ``drift``: search early when the served hit rate falls.
    """

    first: int = 2_000
    every: int = 25_000
    window: int = 20_000
    keep: int = 50_000
    drift: bool = True
    drift_delta: float = 0.002

    def __post_init__(self) -> None:
        if min(self.first, self.every, self.window) < 1:
            raise ValueError("first, every and window must be >= 1")
        if self.keep < self.window:
            raise ValueError("keep must be >= window (a swap replays at least what the search saw)")


@dataclass(frozen=True)
class Swap:
    """One config change: when (events learned), what, with what evidence, and whether it took."""

    at: int
    applied: bool
    how: str  # "in place", "rebuilt", or why it was refused
    evidence: Mapping[str, Any]
    seconds: float


class SelfTunedRecommender(WrapsEngine):
    """An engine that searches its own config on the recent stream and swaps to winners warm.

    Examples
    --------
    >>> from online.base import Interaction
    >>> tuned = SelfTunedRecommender(EngineConfig(k=2), searcher=None)
    >>> tuned.learn_many([Interaction("u1", "a", 0.0), Interaction("u1", "b", 1.0)])
    >>> [item for item, _ in tuned.recommend("u2").items], tuned.searches  # "b" is the fresher
    (['b', 'a'], 0)
    """

    def __init__(self, config: EngineConfig | None = None, *, searcher: Searcher | None,
                 schedule: Schedule | None = None, bandit: Bandit | None = None) -> None:
        self.bandit = bandit
        self.models = StreamingRecommender(config or EngineConfig())  # users and models
        self.engine: Any = self.models if bandit is None else bandit(self.models)  # what serves and learns
        self.schedule = schedule = schedule or Schedule()
        self.searcher = searcher
        # The kept events as plain tuples (:func:`_as_events` reads them back): a tuple of strings and floats
        # is one the garbage collector stops tracking, while 50,000 kept ``Interaction`` objects (a tuple
        # subclass, always tracked) were the largest part of what every full collection of a worker walked.
        self._kept: deque[tuple] = deque(maxlen=schedule.keep)
        # Other workers' item deltas applied here (item sharing, online.sharing), each with the number of
        # events learned here before it, and the events learned for their users only: a rebuild replays
        # them among the kept events, so a rebuilt engine keeps what the rest of the group taught it and
        # counts nothing twice. Only those within the kept window stay.
        self._shared: deque[Shared] = deque()
        self.searches = 0
        self.search_cpu_s = 0.0
        self.swaps: list[Swap] = []
        self.results: list[tuple[int, Mapping[str, Any]]] = []  # (events learned, evidence) per search
        self._next_search = schedule.first
        self._drift = None

    # -- the engine contract (the rest is online.wrapping.WrapsEngine) -------------------------
    @property
    def events(self) -> int:
        """Events of the stream learned so far (the serving engine's count; a swap carries it over)."""
        return self.models.events_learned

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("_shared", deque())  # snapshots from before item sharing under self-tuning
        self.__dict__.update(state)

    @property
    def collects_deltas(self) -> bool:
        """Whether the serving engine collects item deltas as it learns (the in-loop bandits do not)."""
        return "deltas" in inspect.signature(self.engine.learn_many).parameters

    def learn_many(self, interactions: Sequence[Interaction], deltas: DeltaCollector | None = None) -> None:
        """Learn a micro-batch (``deltas``: also collect what it teaches the item-level models, for the
        other workers, ``online.sharing``), keep it for searches and rebuilds, and search if one is due."""
        before = self.models.prequential.hits, self.models.prequential.evaluated
        if deltas is None:
            self.engine.learn_many(interactions)
        else:
            self.engine.learn_many(interactions, deltas=deltas)
        self._kept.extend(map(tuple, interactions))
        self._watch_drift(before)
        if self.searcher is not None and self.events >= self._next_search:
            self.search_now()

    def recommend(self, user_id: str, k: int | None = None, exclude: Iterable[str] = (), record: bool = True,
                  rec_id: str | None = None) -> Ranking:
        return self.engine.recommend(user_id, k, exclude, record, rec_id)

    def learn_users(self, interactions: Sequence[Interaction]) -> None:
        """Events whose item knowledge came in another worker's deltas (re-read after a restart or a
        rebalance): their users are learned, and they are kept marked so, for a rebuild to do the same."""
        start = self.events
        self.engine.learn_users(interactions)
        self._kept.extend(map(tuple, interactions))
        self._remember([(start + n, None) for n in range(len(interactions))])

    def apply_item_deltas(self, deltas: ItemDeltas) -> bool:
        """Another worker's item deltas to the serving engine, once (``False``: held already); kept, with
        where they fell among this worker's events, for rebuilds."""
        applied = self.engine.apply_item_deltas(deltas)
        if applied:
            self._remember([(self.events, deltas)])
        return applied

    def _remember(self, entries: list[Shared]) -> None:
        shared = self._shared
        shared.extend(entries)
        oldest = self.events - len(self._kept)
        while shared and shared[0][0] < oldest:
            shared.popleft()

    def feedback(self, rec_id: str, item_id: str, reward: float = 1.0) -> bool:
        """Feedback on a served list, for the in-loop bandits (``AttributeError`` without them)."""
        return self.engine.feedback(rec_id, item_id, reward)

    def tuning_snapshot(self) -> dict[str, Any]:
        """The in-loop bandits' state (``AttributeError`` without them)."""
        return self.engine.tuning_snapshot()

    def stats(self) -> dict[str, float]:
        out = self.engine.stats()
        out["selftune_searches"] = self.searches
        out["selftune_swaps"] = sum(1 for swap in self.swaps if swap.applied)
        out["selftune_refused"] = sum(1 for swap in self.swaps if not swap.applied)
        out["selftune_search_cpu_s"] = self.search_cpu_s
        return out

    # -- searching --------------------------------------------------------------------------
    def window(self) -> list[Interaction]:
        """The events a search may see now: the most recent ``schedule.window`` already learned."""
        kept = self._kept
        size = min(len(kept), self.schedule.window)
        return _as_events(islice(kept, len(kept) - size, None))

    def search_now(self) -> Any:
        """Run the searcher on the window now and apply its winner if accepted; returns its result."""
        schedule = self.schedule
        self._next_search = self.events + min(self.events, schedule.every)  # spacing doubles up to `every`
        started = time.process_time()
        result = self.searcher(self.window(), self.engine.config)
        self.search_cpu_s += time.process_time() - started
        self.searches += 1
        evidence = dict(result.evidence())
        self.results.append((self.events, evidence))
        if result.accepted:
            self.apply(result.best_config, evidence)
        return result

    def _watch_drift(self, before: tuple[int, int]) -> None:
        """Feed the served hits of the batch to ADWIN; a fall brings the next search forward. A rise
        does not: the serving config is doing better (a stream's hit rate climbs while its models
        learn), and searching on every detected change cost ML-100K 17 searches."""
        if not self.schedule.drift or self.searcher is None:
            return
        if self._drift is None:
            from river.drift import ADWIN  # river only when drift watching is on

            self._drift = ADWIN(delta=self.schedule.drift_delta)
        stats = self.models.prequential
        hits, evaluated = stats.hits - before[0], stats.evaluated - before[1]
        drift = self._drift
        for n in range(evaluated):
            before = drift.estimation
            drift.update(1.0 if n < hits else 0.0)
            if drift.drift_detected and drift.estimation < before:  # the served hit rate fell
                soonest = self.events + 1
                earliest = (self.results[-1][0] if self.results else 0) + max(1, self.schedule.every // 4)
                if self._next_search > max(soonest, earliest):
                    self._next_search = max(soonest, earliest)
                    log.info("served hit rate fell at %d events: next search at %d", self.events,
                             self._next_search)

    # -- swapping ---------------------------------------------------------------------------
    def apply(self, config: EngineConfig, evidence: Mapping[str, Any] | None = None) -> Swap:
        """Serve ``config`` from now on: in place where the live models can take it
        (:meth:`apply_in_place`), else rebuilt warm (:func:`build` on the kept events, then
        :meth:`commit`). The old engine stays if the new one fails. A worker calls
        :meth:`apply_in_place`, then :meth:`kept`, :func:`build` elsewhere and :meth:`commit`."""
        started = time.perf_counter()
        swap = self.apply_in_place(config, evidence)
        if swap is not None:
            return swap
        position, events = self.kept()
        try:
            fresh = build(config, events)
        except Exception as exc:  # a config that cannot even be built must never take the worker down
            return self._refused(exc, dict(evidence or {}), started)
        return self.commit(fresh, position, evidence, started=started)

    def apply_in_place(self, config: EngineConfig, evidence: Mapping[str, Any] | None = None) -> Swap | None:
        """Serve ``config`` from now on by changing the live models (blend weights, ``in_place`` knobs:
        ``StreamingRecommender.retune``, or the bandits' ``retune``); ``None`` if it needs a rebuild."""
        started = time.perf_counter()
        evidence = dict(evidence or {})
        try:
            if not self.engine.retune(config):
                return None
        except (ValueError, TypeError) as exc:
            return self._refused(exc, evidence, started)
        swap = Swap(self.events, True, "in place", evidence, time.perf_counter() - started)
        self.swaps.append(swap)
        return swap

    def kept_encoded(self, chunk: int = 1_000) -> tuple[int, list[bytes]]:
        """:meth:`kept`, encoded in chunks (msgspec): what :func:`build_encoded` takes in another process.
        Encoding 50,000 events takes ~20 ms once per swap, against ~200 ms of pickling the tuples; nothing
        is done per event for it. The last chunk holds the other workers' deltas among them (often none)."""
        position, events = self.kept()
        blobs = [_ENCODER.encode(events[start:start + chunk]) for start in range(0, len(events), chunk)]
        blobs.append(_ENCODER.encode(self.kept_shared(position - len(events))))
        return position, blobs

    def kept(self) -> tuple[int, list[Interaction]]:
        """``(events learned so far, the kept events)``: what :func:`build` needs, and the position
        :meth:`commit` catches up from."""
        return self.events, _as_events(self._kept)

    def kept_shared(self, start: int, end: int | None = None) -> list[Shared]:
        """What :func:`build` replays among the kept events from event ``start`` up to ``end`` (default: all;
        :meth:`kept` starts at ``events - len(kept)``): the other workers' deltas applied here after
        ``start`` events and up to ``end``, and the events among them learned for their users only, each
        with its position counted from ``start`` (:data:`Shared`)."""
        return [(at - start, deltas) for at, deltas in self._shared
                if start <= at and (end is None or at < end or (at == end and deltas is not None))]

    def catch_up(self, fresh: StreamingRecommender, built_at: int, budget: int) -> int:
        """Teach ``fresh`` (built from the events kept at ``built_at``) up to ``budget`` of the events that
        arrived since; returns the position it has now learned up to. A worker calls this at several
        micro-batch boundaries before :meth:`commit`, so no single batch waits for the whole backlog
        (``ValueError`` if the backlog fell out of the kept events)."""
        behind = self.events - built_at
        kept = self._kept
        if behind > len(kept):
            raise ValueError(f"built {behind:,} events ago, more than the {len(kept):,} kept")
        step = min(behind, max(0, budget))
        first = len(kept) - behind
        if step:
            learn_among(fresh, _as_events(kept[i] for i in range(first, first + step)),
                         self.kept_shared(built_at, built_at + step))
        return built_at + step

    def commit(self, fresh: StreamingRecommender, built_at: int, evidence: Mapping[str, Any] | None = None, *,
               started: float | None = None) -> Swap:
        """Swap to ``fresh`` (built from the events kept at ``built_at``) at this micro-batch boundary:
        it learns the events that arrived since, takes over every user and the prequential counters
        (:meth:`~online.engine.StreamingRecommender.adopt`, O(1)), and serves if its checks pass."""
        started = time.perf_counter() if started is None else started
        evidence = dict(evidence or {})
        try:
            position = built_at
            while position < self.events:
                position = self.catch_up(fresh, position, _REBUILD_CHUNK)
            for _, deltas in self.kept_shared(built_at):  # any that came after its last slice (held ones skip)
                if deltas is not None:
                    fresh.apply_item_deltas(deltas)
            old = self.models
            fresh.adopt(old)
            problem = _check(fresh, old)
            serving = fresh if self.bandit is None else self.bandit(fresh)
            if problem:  # the old engine still holds its users, untouched: the checks record nothing
                raise ValueError(problem)
        except Exception as exc:  # a config that cannot serve must never take the worker down
            return self._refused(exc, evidence, started)
        self.models, self.engine = fresh, serving
        swap = Swap(self.events, True, "rebuilt", evidence, time.perf_counter() - started)
        self.swaps.append(swap)
        log.info("serving a new engine config since %d events (%s)", self.events, evidence.get("config", ""))
        return swap

    def _refused(self, exc: BaseException, evidence: dict[str, Any], started: float) -> Swap:
        log.error("config swap refused, keeping the serving config: %s", exc)
        swap = Swap(self.events, False, f"refused: {exc}", evidence, time.perf_counter() - started)
        self.swaps.append(swap)
        return swap


def _as_events(rows: Iterable[tuple]) -> list[Interaction]:
    """Kept rows (plain tuples, or ``Interaction`` objects from snapshots taken before) as events."""
    return list(map(Interaction._make, rows))


def build_encoded(config: EngineConfig, blobs: Sequence[bytes]) -> StreamingRecommender:
    """:func:`build` on events (and other workers' deltas) as :meth:`SelfTunedRecommender.kept_encoded`
    ships them."""
    events = [event for blob in blobs[:-1] for event in _DECODER.decode(blob)]
    return build(config, events, _SHARED_DECODER.decode(blobs[-1]))


def build(config: EngineConfig, events: Sequence[Interaction], shared: Sequence[Shared] = ()) -> StreamingRecommender:
    """A fresh engine under ``config`` that learned ``events`` (the kept window) and, where they fell among
    them, the other workers' deltas in ``shared`` (:meth:`SelfTunedRecommender.kept_shared`: events learned
    for their users only are learned so again), with no users of its own worth keeping:
    :meth:`SelfTunedRecommender.commit` hands it the serving engine's. Module-level and pure, so a
    worker can run it in another process."""
    fresh = StreamingRecommender(config)
    for chunk, among in in_slices(events, shared, _REBUILD_CHUNK):
        learn_among(fresh, chunk, among)
    return fresh


def in_slices(events: Sequence[Interaction], shared: Sequence[Shared],
              size: int) -> Iterator[tuple[Sequence[Interaction], list[Shared]]]:
    """``events`` in slices of ``size``, each with the entries of ``shared`` that fall in it (positions counted
    from the slice's first event; those after the last event go with the last slice): what
    :func:`learn_among` takes, a slice at a time (:func:`build`, and the worker's build between batches)."""
    count = len(events)
    for start in range(0, max(count, 1), size):
        end = start + size
        last = end >= count
        yield events[start:end], [(at - start, deltas) for at, deltas in shared
                                  if start <= at and (at < end or last)]


def learn_among(engine: StreamingRecommender, events: Sequence[Interaction], shared: Sequence[Shared]) -> None:
    """``engine`` learns ``events`` with each of ``shared`` (:data:`Shared`, positions counted from the first
    of ``events``, in order) where it fell: deltas applied (those it holds already are skipped,
    ``apply_item_deltas``), events marked users-only learned for their users only."""
    done, count = 0, len(events)
    for at, deltas in shared:
        if at > done and done < count:
            engine.learn_many(events[done:at])
            done = min(at, count)
        if deltas is not None:
            engine.apply_item_deltas(deltas)
        elif at == done and at < count:
            engine.learn_users(events[at:at + 1])
            done = at + 1
    if done < count:
        engine.learn_many(events[done:])


def _check(fresh: StreamingRecommender, old: StreamingRecommender, users: int = 20) -> str | None:
    """Why ``fresh`` must not serve (``None``: it may): lists for the most recent users must be
    finite, and not empty where the old engine serves something."""
    for user_id in old.user_ids()[-users:]:
        new_items = fresh.recommend(user_id, record=False).items
        if any(not math.isfinite(score) for _, score in new_items):
            return f"non-finite scores for user {user_id}"
        if not new_items and old.recommend(user_id, record=False).items:
            return f"an empty list for user {user_id}, who is served by the current config"
    return None
