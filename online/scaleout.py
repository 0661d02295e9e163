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

from online.base import Interaction
from online.engine import EngineConfig, StreamingRecommender
from online.sharing import DeltaCollector, decode, encode

MODES = ("partitions", "shared")


def simulate_workers(events: Sequence[Interaction], config: EngineConfig | None = None, *, workers: int,
                     shard_of: Callable[[str], int], shards: int, mode: str = "shared", delay: int = 1_000,
                     flush_every: int = 100, min_weight: float = 0.0) -> dict[str, Any]:
    """Replay ``events`` as ``workers`` workers would learn and serve them; pooled HR@k and costs.

    ``shard_of(user_id)`` is the user's shard in ``range(shards)``; shard ``s`` belongs to worker
    ``s % workers``. ``delay`` and ``flush_every`` (stream events between two publications) and
    ``min_weight`` (pairs lighter than it in a batch are not shared,
    :meth:`~online.sharing.DeltaCollector.seal`) apply to ``mode="shared"``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    if workers < 1 or shards < 1 or delay < 0 or flush_every < 1:
        raise ValueError("workers, shards and flush_every must be >= 1 and delay >= 0")
    config = config or EngineConfig()
    engines = [StreamingRecommender(config) for _ in range(workers)]
    sharing = mode == "shared" and workers > 1
    collectors: list[dict[int, DeltaCollector]] = [{} for _ in range(workers)]
    learn_s = [0.0] * workers
    serve_s = [0.0] * workers
    publish_s = [0.0] * workers
    apply_s = [0.0] * workers
    positions = [0] * shards
    in_flight: deque[tuple[int, int, bytes]] = deque()  # (arrives at, from worker, encoded deltas)
    sent_bytes = sent = entries = 0
    clock = time.process_time
    for now, event in enumerate(events):
        while in_flight and in_flight[0][0] <= now:
            _, origin, data = in_flight.popleft()
            for w, engine in enumerate(engines):
                if w != origin:
                    started = clock()
                    engine.apply_item_deltas(decode(data))
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
                    if deltas is not None:
                        data = encode(deltas)
                        in_flight.append((now + delay, w, data))
                        sent_bytes += len(data)
                        sent += 1
                        entries += deltas.size()
                publish_s[w] += clock() - started
    hits = sum(engine.prequential.hits for engine in engines)
    evaluated = sum(engine.prequential.evaluated for engine in engines)
    k = config.k
    share_s = [p + a for p, a in zip(publish_s, apply_s)]
    return {"workers": workers, "mode": mode if workers > 1 else "one worker", "delay": delay,
            "flush_every": flush_every, "min_weight": min_weight,
            f"hr@{k}": hits / evaluated if evaluated else 0.0, "hits": hits,
            "evaluated": evaluated, "events": len(events), "deltas": sent, "delta_bytes": sent_bytes,
            "delta_entries": entries, "bytes_per_event": sent_bytes / len(events) if events else 0.0,
            "learn_s": learn_s, "serve_s": serve_s, "publish_s": publish_s, "apply_s": apply_s,
            "share_to_learn": [s / max(1e-12, lrn) for s, lrn in zip(share_s, learn_s)]}
