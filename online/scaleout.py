"""N workers of one group, simulated in one process with the mechanism the live workers use.

Events are dealt to shards by ``shard_of`` (the caller passes Kafka's partitioner: this module
knows nothing of Kafka), shards to workers round-robin as the group's assignor does, and
each worker runs its own engine, learning and serving only its users, batch by batch of one
event (prequential: every event is scored against the list its user was last served).

``mode``:

``partitions``  each worker learns its own shards only (``STREAMREC_LEARN_SCOPE=partitions``).
``shared``      each worker also publishes, every ``flush_every`` stream events (micro-batches end on
                a clock, at once on every worker), one merged :class:`~online.sharing.ItemDeltas` per
                shard it learned (encoded and decoded as on the wire), and every other worker
                applies it ``delay`` stream events later
                (``STREAMREC_LEARN_SCOPE=shared``): the time another worker's knowledge takes to arrive.

With one worker every mode is the same engine (and ``STREAMREC_LEARN_SCOPE=all`` has one
worker's quality by construction). Cost is measured in CPU seconds per worker: learning (the
engine's ``learn_many``), and, for ``shared``, sealing and encoding deltas, decoding and applying
the others'; the extra cost of collecting inside ``learn_many`` is the difference of the learning
times of ``shared`` and ``partitions`` runs over the same stream.

Examples
--------
>>> from online.base import Interaction
>>> stream = [Interaction(f"u{n % 6}", f"i{(n * 7) % 5}", float(n)) for n in range(60)]
>>> run = simulate_workers(stream, workers=2, shard_of=lambda user: int(user[1:]) % 4, shards=4,
...                       mode="shared", delay=5, flush_every=3)
>>> run["workers"], run["evaluated"] > 0, run["deltas"] > 0
(2, True, True)
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from online.aggregation import ItemAggregator, RecentOwnPairs, apply_summary, counts_only, pairs_only
from online.base import Interaction
from online.engine import EngineConfig, StreamingRecommender
from online.sharing import DeltaCollector, decode, encode

MODES = ("partitions", "shared", "by-item")


def simulate_workers(events: Sequence[Interaction], config: EngineConfig | None = None, *, workers: int,
                     shard_of: Callable[[str], int], shards: int, mode: str = "shared", delay: int = 1_000,
                     flush_every: int = 100, min_weight: float = 0.0, budget: float = 10.0) -> dict[str, Any]:
    """Replay ``events`` as ``workers`` workers would learn and serve them; pooled HR@k and costs.

    ``shard_of(user_id)`` is the user's shard in ``range(shards)``; shard ``s`` belongs to worker
    ``s % workers``. ``delay`` and ``flush_every`` (stream events between two publications) and
    ``min_weight`` (pairs lighter than it in a batch are not shared,
    :meth:`~online.sharing.DeltaCollector.seal`) apply to ``mode="shared"`` and ``"by-item"``;
    ``budget`` (item summaries per 1,000 stream events) to ``"by-item"``, where the pairs reach the
    aggregation stage ``delay`` events after they are published and its summaries reach the workers
    ``delay`` events after that (:mod:`online.aggregation`).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    if workers < 1 or shards < 1 or delay < 0 or flush_every < 1 or budget < 0:
        raise ValueError("workers, shards and flush_every must be >= 1, delay and budget >= 0")
    config = config or EngineConfig()
    engines = [StreamingRecommender(config) for _ in range(workers)]
    sharing = mode in ("shared", "by-item") and workers > 1
    by_item = sharing and mode == "by-item"
    stage = ItemAggregator(config) if by_item else None
    # by-item: each worker's publications the stage may lack, and how each shared model weighs a reverse pair
    recent = [RecentOwnPairs() for _ in range(workers)] if by_item else []
    symmetric = {name: model.symmetric for name, model in engines[0].item_models().items()} if by_item else {}
    collectors: list[dict[int, DeltaCollector]] = [{} for _ in range(workers)]
    learn_s = [0.0] * workers
    serve_s = [0.0] * workers
    publish_s = [0.0] * workers
    apply_s = [0.0] * workers
    aggregate_s = summarise_s = 0.0  # the aggregation stage's CPU (live: divided over the group)
    positions = [0] * shards
    # (arrives at, from worker (-1: the aggregation stage), what: "deltas" / "pairs" / "summaries", bytes)
    in_flight: deque[tuple[int, int, str, bytes]] = deque()
    sent_bytes = sent = entries = summaries = summary_bytes = 0
    credit = 0.0  # summaries the budget allows and not yet sent
    clock = time.process_time
    for now, event in enumerate(events):
        while in_flight and in_flight[0][0] <= now:
            _, origin, what, data = in_flight.popleft()
            if what == "pairs":  # at the aggregation stage
                started = clock()
                stage.add(decode(data))
                aggregate_s += clock() - started
                continue
            for w, engine in enumerate(engines):
                if w != origin:
                    started = clock()
                    if what == "deltas":
                        engine.apply_item_deltas(decode(data))
                    else:  # the stage's summaries: the group's view up to the cut, plus this worker's own since
                        cut, chosen = _summaries_decoder.decode(data)
                        for model, item, followers in chosen:
                            apply_summary(engine, model, item, followers, recent[w].after(cut, model, item))
                    apply_s[w] += clock() - started
        shard = shard_of(event.user_id)
        w = shard % workers
        engine = engines[w]
        position = positions[shard]
        positions[shard] = position + 1
        started = clock()
        if sharing:
            collector = collectors[w].get(shard)
            if collector is None:
                collector = collectors[w][shard] = DeltaCollector(shard)
            collector.cover(position, position)
            engine.learn_many([event], deltas=collector)
        else:
            engine.learn_many([event])
        learned = clock()
        engine.recommend(event.user_id)
        learn_s[w] += learned - started
        serve_s[w] += clock() - learned
        if sharing and (now + 1) % flush_every == 0:  # every worker ends its micro-batch
            for w, shards_of_w in enumerate(collectors):
                started = clock()
                for collector in shards_of_w.values():
                    deltas = collector.seal(min_weight)
                    if deltas is None:
                        continue
                    entries += deltas.size()
                    if by_item:
                        recent[w].record(now, deltas, symmetric)
                    parts = ([("deltas", counts_only(deltas)), ("pairs", pairs_only(deltas))] if by_item
                             else [("deltas", deltas)])
                    for what, part in parts:
                        data = encode(part)
                        in_flight.append((now + delay, w, what, data))
                        sent_bytes += len(data)
                        sent += 1
                if by_item:  # a summary arriving from now on was made from deltas published after this
                    recent[w].forget(now - 2 * delay - flush_every)
                publish_s[w] += clock() - started
            if by_item:
                credit += budget * flush_every / 1_000
                started = clock()
                chosen = stage.summaries(int(credit))
                credit -= len(chosen)
                if chosen:
                    # the stage holds every delta published up to `delay` events ago
                    data = _summaries_encoder.encode((now - delay, chosen))
                    in_flight.append((now + delay, -1, "summaries", data))
                    summaries += len(chosen)
                    summary_bytes += len(data)
                summarise_s += clock() - started
    hits = sum(engine.prequential.hits for engine in engines)
    evaluated = sum(engine.prequential.evaluated for engine in engines)
    k = config.k
    # each worker's share of the aggregation stage: live, one aggregation task per partition of the stage's topic
    stage_share = (aggregate_s + summarise_s) / workers
    share_s = [p + a + stage_share for p, a in zip(publish_s, apply_s)]
    return {"workers": workers, "mode": mode if workers > 1 else "one worker", "delay": delay,
            "flush_every": flush_every, "min_weight": min_weight, "budget": budget if by_item else None,
            f"hr@{k}": hits / evaluated if evaluated else 0.0, "hits": hits,
            "evaluated": evaluated, "events": len(events), "deltas": sent, "delta_bytes": sent_bytes,
            "delta_entries": entries, "bytes_per_event": sent_bytes / len(events) if events else 0.0,
            "summaries": summaries, "summary_bytes": summary_bytes,
            "learn_s": learn_s, "serve_s": serve_s, "publish_s": publish_s, "apply_s": apply_s,
            "aggregate_s": aggregate_s, "summarise_s": summarise_s,
            "share_to_learn": [s / max(1e-12, lrn) for s, lrn in zip(share_s, learn_s)]}


_summaries_encoder = msgspec.msgpack.Encoder()
_summaries_decoder = msgspec.msgpack.Decoder(tuple[int, list[tuple[str, str, dict[str, float]]]])
