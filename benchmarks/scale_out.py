"""What splitting the stream over N workers costs in quality (issue 7), measured prequentially.

A worker sees only its partitions. Events are keyed by user, so every user's
history is whole on exactly one worker, but item-level state (popularity,
co-occurrence, item factors) is learned from that worker's share of the
stream only. This script replays a data set the way N workers would see it —
users partitioned with Kafka's murmur2 over ``--partitions`` partitions,
partitions dealt to workers round-robin as the group's assignor does — runs one
engine per worker, and pools their hits. ``workers=1`` is also the upper bound of
any scheme that shares item state perfectly (each user still lives on one worker).
``--modes`` compares learning alone (``partitions``) with item deltas shared between
the workers (``shared``, ``online.scaleout``: the mechanism the live workers use, with
the delay ``--share-delay`` in stream events; what ``streamrec eval --workers N`` runs).

    python benchmarks/scale_out.py                       # ML-100K (read in place) and the generated stream
    python benchmarks/scale_out.py --workers 1,2,4 --engines fast,blend --modes shared --json out.json
    python benchmarks/scale_out.py --cost                # CPU of sharing vs learning, per event
    python benchmarks/scale_out.py --live                # real workers on the embedded broker (below)
    python benchmarks/scale_out.py --processors          # the same messages, the workers' processors in-process

``--live`` runs real worker processes on a fresh embedded broker per configuration
(``--live-configs``: 1 worker; 2 or 3 workers, learn scope ``partitions``, ``all`` or ``shared``): HR@10
pooled from the workers' own prequential metrics (self-tuning on, as in a worker, unless ``--self-tune off``)
while ML-100K is replayed at
``--rate`` events/s, then throughput on ``--throughput-events`` pre-produced events
(the time from the first to the last event processed by any worker). On a 2-core
machine two workers share the cores with the broker and the client: expect no gain.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from online.scaleout import simulate_workers  # noqa: E402
from stream.cli.datasets import generate, load  # noqa: E402
from stream.settings import Settings  # noqa: E402
from stream.wire.partitioner import partition_for  # noqa: E402

ML100K = ROOT.parent / "shared" / "data" / "ml-100k" / "u.data"


def engine_config(name: str):
    if name == "fast":
        return Settings().engine_config()  # what a worker runs by default
    if name == "blend":
        return Settings.of(blend="default").engine_config()
    raise SystemExit(f"unknown engine {name!r} (fast or blend)")


def split(events, workers: int, partitions: int):
    shares = [[] for _ in range(workers)]
    cache: dict[str, int] = {}
    for event in events:
        p = cache.get(event.user_id)
        if p is None:
            p = cache[event.user_id] = partition_for(event.user_id.encode(), partitions)
        shares[p % workers].append(event)
    return shares


def measure(events, workers: int, partitions: int, engine: str, mode: str = "partitions",
            delay: int = 1_000, flush_every: int = 100, budget: float = 10.0) -> dict:
    """One offline run through ``online.scaleout.simulate_workers`` (what ``streamrec eval --workers`` runs)."""
    started = time.perf_counter()
    cache: dict[str, int] = {}

    def shard_of(user: str) -> int:
        p = cache.get(user)
        if p is None:
            p = cache[user] = partition_for(user.encode(), partitions)
        return p

    run = simulate_workers(events, engine_config(engine), workers=workers, shard_of=shard_of, shards=partitions,
                           mode=mode, delay=delay, flush_every=flush_every, budget=budget)
    per_worker = [sum(1 for p in range(partitions) if p % workers == w) for w in range(workers)]
    return {"workers": workers, "engine": engine, "mode": mode, "delay": delay, "budget": run["budget"],
            "hr@10": run["hr@10"], "summaries": run["summaries"], "summary_bytes": run["summary_bytes"],
            "aggregate_s": run["aggregate_s"], "summarise_s": run["summarise_s"],
            "evaluated": run["evaluated"], "partitions_per_worker": per_worker,
            "bytes_per_event": run["bytes_per_event"], "delta_entries": run["delta_entries"],
            "learn_s": run["learn_s"], "share_s": [p + a for p, a in zip(run["publish_s"], run["apply_s"])],
            "share_to_learn_max": max(run["share_to_learn"]),
            "seconds": round(time.perf_counter() - started, 1)}


def _live_config(name: str, workers: int, scope: str, events, rate: float, throughput_events,
                 self_tune: bool = True) -> dict:
    import subprocess

    from stream.cli.processes import ready_state, spawn_worker, stop_process
    from stream.cli.scrape import scrape, total
    from stream.kafka.broker import EmbeddedBroker, create_topics, free_port
    from stream.kafka.clients import EventPublisher

    work = Path(tempfile.mkdtemp(prefix="streamrec-scale-"))
    out = {"config": name, "workers": workers, "learn_scope": scope, "self_tune": self_tune}
    for phase, data, paced in (("quality", events, rate), ("throughput", throughput_events, None)):
        with EmbeddedBroker(topics=Settings().topic_specs(), log_path=str(work / f"broker-{phase}.log")) as broker:
            # self-tuning on (as by default) or off: its loop shares like the plain engine; no tuner process
            # runs here, so it serves the configured engine throughout
            base = Settings.of(bootstrap_servers=broker.bootstrap, app_id=f"scale-{phase}", learn_scope=scope,
                               snapshot_interval_s=0, encoder_poll_s=3600.0, self_tune=self_tune)
            create_topics(base.kafka.bootstrap_servers, base.topic_specs())
            settings = [base.replace(metrics_port=free_port(), data_dir=str(work / f"{phase}-{i}"))
                        for i in range(workers)]
            procs: list[subprocess.Popen] = []
            try:
                for i, s in enumerate(settings):
                    procs.append(spawn_worker(s, open(work / f"{phase}-{i}.log", "wb"), cwd=str(ROOT)))
                _wait_split(settings, procs)
                urls = [f"http://{s.metrics.host}:{s.metrics.port}/metrics" for s in settings]
                if paced:
                    # the pooled (hits, evaluated) once a fifth of the events is processed: HR over the rest is the
                    # steady state, without the start (the first fetches find a backlog, so users' first lists
                    # come late and the first events go unevaluated, more so when more processes share the cores)
                    warm: list[tuple[float, float]] = []
                    watching = threading.Event()
                    watcher = threading.Thread(target=_watch_warm, args=(urls, len(data) / 5, warm, watching),
                                               daemon=True)
                    watcher.start()
                    with EventPublisher(base.kafka.bootstrap_servers, base.topics.events, batch_events=20) as publisher:
                        publisher.replay(data, rate=paced)
                    watching.set()
                    watcher.join(5)
                else:
                    with EventPublisher(base.kafka.bootstrap_servers, base.topics.events, batch_events=100,
                                        extra_config={"linger_ms": 5}) as publisher:
                        publisher.replay(data)
                first = last = None
                deadline = time.time() + 900
                while time.time() < deadline:
                    done = sum(total(scrape(url), "streamrec_events_processed_total") for url in urls)
                    now = time.time()
                    if done > 0 and first is None:
                        first, first_done = now, done
                    if done >= len(data):
                        last = now
                        break
                    time.sleep(0.2)
                if last is None:
                    raise RuntimeError(f"{name}/{phase}: the workers did not finish; logs in {work}")
                if paced:
                    time.sleep(3.0)  # the last micro-batches' lists and gauges
                    pages = [scrape(url) for url in urls]
                    hits, evaluated = _pooled_hits(pages)
                    batches = sum(total(page, "streamrec_batch_size_events_count") for page in pages)
                    batched = sum(total(page, "streamrec_batch_size_events_sum") for page in pages)
                    out["hr@10"] = hits / evaluated if evaluated else 0.0
                    if warm and evaluated > warm[0][1]:
                        out["hr@10_after_first_fifth"] = (hits - warm[0][0]) / (evaluated - warm[0][1])
                    # a worker that falls behind learns bigger micro-batches: fewer, staler lists (lower HR)
                    out["mean_batch_events"] = batched / batches if batches else 0.0
                    out["delta_lag_mean_s"] = [(ready_state(s) or {}).get("delta_lag_mean_s") for s in settings]
                    out["evaluated"] = int(evaluated)
                else:
                    out["events_per_s"] = (len(data) - first_done) / max(1e-9, last - first)
            finally:
                for proc in procs:
                    stop_process(proc)
    return out


def _watch_warm(urls, events: float, warm: list, stop: threading.Event) -> None:
    """Append the pooled ``(hits, evaluated)`` to ``warm`` once the workers processed ``events``."""
    from stream.cli.scrape import scrape, total

    while not stop.is_set():
        pages = [scrape(url) for url in urls]
        if sum(total(page, "streamrec_events_processed_total") for page in pages) >= events:
            warm.append(_pooled_hits(pages))
            return
        time.sleep(0.2)


def _pooled_hits(pages) -> tuple[float, float]:
    """(hits, evaluated events) summed over the workers' metrics pages (prequential, all events so far)."""
    from stream.cli.scrape import total

    hits = evaluated = 0.0
    for page in pages:
        n = total(page, "streamrec_prequential_evaluated_events")
        hits += n * total(page, "streamrec_prequential_hit_rate", window="all")
        evaluated += n
    return hits, evaluated


def _wait_split(settings, procs, timeout: float = 90.0) -> None:
    """Until every worker has partitions and the assignment has been stable for a second."""
    from stream.cli.processes import ready_state

    deadline = time.time() + timeout
    previous, stable = None, 0
    while time.time() < deadline:
        if any(proc.poll() is not None for proc in procs):
            raise RuntimeError("a worker exited; see its log")
        counts = [(ready_state(s) or {}).get("assigned_partitions", 0) for s in settings]
        stable = stable + 1 if all(counts) and counts == previous else 0
        if stable >= 4:
            return
        previous = counts
        time.sleep(0.3)
    raise RuntimeError("the workers did not split the partitions in time")


def live(args) -> int:
    if not ML100K.exists():
        print(f"skipping: {ML100K} is absent (MovieLens is read in place, never copied)")
        return 0
    events = load(ML100K, "movielens")[: args.live_events]
    throughput_events = generate(args.throughput_events, seed=3)
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores; "
          f"ML-100K first {len(events):,} events at {args.rate:,.0f} ev/s (arrays of 20); "
          f"throughput on {len(throughput_events):,} generated events; self-tuning {args.self_tune}", flush=True)
    rows = []
    configs = {"1": ("1 worker", 1, "partitions"), "2p": ("2 workers, partitions", 2, "partitions"),
               "2a": ("2 workers, learn all", 2, "all"), "2s": ("2 workers, shared", 2, "shared"),
               "3p": ("3 workers, partitions", 3, "partitions"), "3s": ("3 workers, shared", 3, "shared")}
    for name, workers, scope in (configs[key] for key in args.live_configs.split(",")):
        row = _live_config(name, workers, scope, events, args.rate, throughput_events, args.self_tune == "on")
        rows.append(row)
        lags = [f"{lag:.2f}" for lag in row.get("delta_lag_mean_s", []) if lag is not None]
        print(f"{name:24} HR@10 {row['hr@10']:.4f} ({row['evaluated']:,} evaluated, "
              f"micro-batches of {row['mean_batch_events']:.1f} events; after the first fifth "
              f"{row.get('hr@10_after_first_fifth', float('nan')):.4f})   "
              f"throughput {row['events_per_s']:,.0f} ev/s"
              + (f"   deltas arrive after {', '.join(lags)} s (mean per worker)" if lags else ""), flush=True)
    base = rows[0]
    for row in rows[1:]:
        steady = (f" (after the first fifth x{row['hr@10_after_first_fifth'] / base['hr@10_after_first_fifth']:.3f})"
                  if row.get("hr@10_after_first_fifth") and base.get("hr@10_after_first_fifth") else "")
        print(f"{row['config']:24} vs 1 worker: HR x{row['hr@10'] / base['hr@10']:.3f}{steady}, "
              f"throughput x{row['events_per_s'] / base['events_per_s']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


def processors(args) -> int:
    """The live configurations' quality with the workers' own ``EventProcessor``s in one process: the same
    messages as ``--live`` publishes (arrays of 20 events per partition, in publish order), each one
    micro-batch of its partition's worker, deltas handed to the other workers ``--processor-delay``
    messages later. What is left of the live gap here is the mechanism's; the rest is the live run's
    timing (workers that fall behind learn bigger micro-batches and build fewer, staler lists)."""
    import streams  # benchmarks/streams.py: varied generated streams

    sources = {"ml-100k": lambda n: load(ML100K, "movielens")[:n] if ML100K.exists() else None,
               "news": lambda n: streams.news(n), "catalogue": lambda n: streams.catalogue(n),
               "drifting": lambda n: streams.drifting(n)}
    for name in args.processor_streams.split(","):
        events = sources[name](args.live_events)
        if events is None:
            print(f"skipping {name}: {ML100K} is absent (MovieLens is read in place, never copied)")
            continue
        _processors_on(name, events, args)
    return 0


def _processors_on(name: str, events, args) -> None:
    from stream.wire import schema
    from stream.wire.messages import RawMessage
    from stream.worker.processor import EventProcessor

    partitions = args.partitions
    buffers: dict[int, list] = {}
    offsets = [0] * partitions
    messages = []

    def emit(partition: int) -> None:
        payload = buffers.pop(partition)
        messages.append(RawMessage(schema.encode(payload), None, "events", partition, offsets[partition], 1.0))
        offsets[partition] += 1

    for event in events:
        partition = partition_for(event.user_id.encode(), partitions)
        buffers.setdefault(partition, []).append(schema.event_payload(event))
        if len(buffers[partition]) == 20:
            emit(partition)
    for partition in list(buffers):
        emit(partition)

    def run(workers: int, scope: str) -> tuple[float, int]:
        procs = [EventProcessor(Settings.of(learn_scope=scope, self_tune=args.self_tune == "on",
                                            snapshot_interval_s=0), clock=lambda: 1.7e9) for _ in range(workers)]
        for w, proc in enumerate(procs):
            proc.on_assigned({p for p in range(partitions) if p % workers == w}, partitions)
        pending: list[tuple[int, int, bytes]] = []
        for i, message in enumerate(messages):
            origin = message.partition % workers
            pending += [(i + args.processor_delay, origin, out.value)
                        for out in procs[origin].process_events([message]).deltas]
            while pending and pending[0][0] <= i:
                _, sender, value = pending.pop(0)
                for w, proc in enumerate(procs):
                    if w != sender:
                        proc.apply_deltas([value])
        hits = sum(proc.engine.prequential.hits for proc in procs)
        evaluated = sum(proc.engine.prequential.evaluated for proc in procs)
        return hits / evaluated, evaluated

    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {name}: {len(events):,} events in {len(messages):,} "
          f"messages of up to 20 over {partitions} partitions; the workers' processors in one process, deltas "
          f"{args.processor_delay} messages late; self-tuning {args.self_tune}", flush=True)
    base, _ = run(1, "partitions")
    print(f"{'1 worker':24} HR@10 {base:.4f}")
    for workers in (2, 3):
        for scope in ("partitions", "shared"):
            hr, evaluated = run(workers, scope)
            print(f"{workers} workers, {scope:11} HR@10 {hr:.4f} ({evaluated:,} evaluated)   ×{hr / base:.3f}",
                  flush=True)


def sharing_cost(args) -> int:
    """CPU per event of learning, of collecting + sealing + encoding + decoding deltas, and of applying another
    worker's deltas, in micro-batches of ``--cost-batch`` (the worker's path); and the per-worker ratio of
    sharing to own learning that follows for N workers: ((N - 1) * apply + collect) / learn.

    The same for scale-out by item (``online.aggregation``), with ``--budget`` summaries per 1,000 stream
    events: each worker publishes (seal and encode both parts), applies the others' popularity counts,
    runs 1/N of the aggregation stage (every pair once, for the whole group), and applies every summary:
    per own event ((N - 1) * counts + publish + stage + N * budget / 1000 * one summary) / learn.
    """
    from online.aggregation import ItemAggregator, apply_summary, counts_only, pairs_only
    from online.engine import StreamingRecommender
    from online.sharing import DeltaCollector, decode, encode

    if not ML100K.exists():
        print(f"skipping: {ML100K} is absent")
        return 0
    events = load(ML100K, "movielens")
    batch = args.cost_batch
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores; ML-100K, "
          f"micro-batches of {batch}, CPU µs per event (best of 3); by item: {args.budget:g} summaries per 1,000 "
          "events")
    for name in args.engines.split(","):
        best: dict[str, float] = {}
        for _ in range(3):
            plain, owner, other, counted = (StreamingRecommender(engine_config(name)) for _ in range(4))
            stage = ItemAggregator(engine_config(name))
            times = {"learn": 0.0, "learn_collecting": 0.0, "seal": 0.0, "encode_decode": 0.0, "apply": 0.0,
                     "parts_encode": 0.0, "apply_counts": 0.0, "stage": 0.0, "summaries": 0.0}
            size = sent = 0
            credit = 0.0
            for start in range(0, len(events), batch):
                chunk = events[start:start + batch]
                t0 = time.process_time()
                plain.learn_many(chunk)
                t1 = time.process_time()
                collector = DeltaCollector(0)
                collector.cover(start, start + len(chunk) - 1)
                owner.learn_many(chunk, deltas=collector)
                t2 = time.process_time()
                sealed = collector.seal()
                t2a = time.process_time()
                data = encode(sealed)
                deltas = decode(data)
                t3 = time.process_time()
                other.apply_item_deltas(deltas)
                t4 = time.process_time()
                counts_data, pairs_data = encode(counts_only(sealed)), encode(pairs_only(sealed))
                t5 = time.process_time()
                counted.apply_item_deltas(decode(counts_data))
                t6 = time.process_time()
                stage.add(decode(pairs_data))
                credit += args.budget * len(chunk) / 1_000
                chosen = stage.summaries(int(credit))
                credit -= len(chosen)
                t7 = time.process_time()
                for summary in chosen:
                    apply_summary(counted, *summary)
                t8 = time.process_time()
                size += len(data)
                sent += len(chosen)
                for key, seconds in zip(times, (t1 - t0, t2 - t1, t2a - t2, t3 - t2a, t4 - t3, t5 - t4, t6 - t5,
                                                t7 - t6, t8 - t7)):
                    times[key] += seconds
            for key, seconds in times.items():
                best[key] = min(best.get(key, float("inf")), seconds / len(events) * 1e6)
        best["seal_encode_decode"] = best["seal"] + best["encode_decode"]
        extra = best["learn_collecting"] - best["learn"] + best["seal_encode_decode"]
        ratios = ", ".join(f"{n}: {((n - 1) * best['apply'] + extra) / best['learn']:.2f}"
                           for n in (1, 2, 4, 8, 32))
        print(f"{name:6} learn {best['learn']:.1f}, collecting adds {best['learn_collecting'] - best['learn']:.1f}, "
              f"seal+encode+decode {best['seal_encode_decode']:.1f}, apply (per receiver) {best['apply']:.1f}; "
              f"{size / len(events):.0f} B/event; sharing / own learning per worker at N workers: {ratios}")
        # one summary's cost, from this run's summaries (the stage's choosing included)
        per_summary = best["summaries"] * len(events) / max(1, sent)
        publish = best["learn_collecting"] - best["learn"] + best["seal"] + best["parts_encode"]
        by_item = ", ".join(
            f"{n}: {((n - 1) * best['apply_counts'] + publish + best['stage'] + n * args.budget / 1000 * per_summary) / best['learn']:.2f}"
            for n in (1, 2, 4, 8, 32))
        print(f"{'':6} by item: publish {publish:.1f}, apply counts (per receiver) {best['apply_counts']:.1f}, "
              f"stage (the group's, once) {best['stage']:.1f}, one summary {per_summary:.1f} µs; "
              f"sharing / own learning per worker at N workers: {by_item}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2,4,8,32", help="worker counts to compare")
    parser.add_argument("--engines", default="fast,blend", help="fast (worker default), blend (STREAMREC_BLEND=default)")
    parser.add_argument("--partitions", type=int, default=Settings().kafka.partitions)
    parser.add_argument("--generated-events", type=int, default=50_000)
    parser.add_argument("--modes", default="partitions,shared",
                        help="learn scopes to simulate: partitions (each worker its own), shared (item deltas "
                             "broadcast), by-item (pairs aggregated once, item summaries to every worker: a design "
                             "measured here, not a live mode yet)")
    parser.add_argument("--budget", type=float, default=10.0,
                        help="by-item: item summaries the aggregation stage sends per 1,000 stream events")
    parser.add_argument("--share-delay", type=int, default=1_000,
                        help="stream events before another worker's deltas arrive (shared)")
    parser.add_argument("--share-every", type=int, default=100,
                        help="stream events between two publications of deltas, every worker at once (shared)")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--live", action="store_true", help="real workers on the embedded broker (see above)")
    parser.add_argument("--live-events", type=int, default=100_000, help="ML-100K events replayed live")
    parser.add_argument("--rate", type=float, default=2_000.0, help="live replay rate, events/s")
    parser.add_argument("--live-configs", default="1,2p,2s,3s",
                        help="live configurations: 1, 2p, 2a, 2s, 3p, 3s (workers; partitions/all/shared)")
    parser.add_argument("--throughput-events", type=int, default=100_000)
    parser.add_argument("--self-tune", choices=("on", "off"), default="on",
                        help="the workers' self-tuning loop (live; on by default, as in a worker)")
    parser.add_argument("--cost", action="store_true", help="CPU of sharing vs learning per event (below)")
    parser.add_argument("--processors", action="store_true",
                        help="the live configurations with the workers' processors in one process (no broker)")
    parser.add_argument("--processor-delay", type=int, default=2,
                        help="messages before a delta reaches the other workers (--processors)")
    parser.add_argument("--processor-streams", default="ml-100k,news,catalogue,drifting",
                        help="streams of --processors (its first --live-events events): ml-100k, and the generated "
                             "news (fast turnover), catalogue (stable), drifting (the demo's)")
    parser.add_argument("--cost-batch", type=int, default=200, help="micro-batch size of --cost")
    args = parser.parse_args(argv)
    if args.live:
        return live(args)
    if args.processors:
        return processors(args)
    if args.cost:
        return sharing_cost(args)
    data = []
    if ML100K.exists():
        data.append(("ml-100k", load(ML100K, "movielens")))
    else:
        print(f"skipping ML-100K: {ML100K} is absent (MovieLens is read in place, never copied)")
    data.append((f"generated {args.generated_events:,}", generate(args.generated_events, seed=7)))
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, python {platform.python_version()}, "
          f"{args.partitions} partitions, prequential HR@10, batch 1")
    rows = []
    modes = args.modes.split(",")
    for name, events in data:
        for engine in args.engines.split(","):
            base = None
            for workers in (int(w) for w in args.workers.split(",")):
                for mode in (modes if workers > 1 else modes[:1]):
                    # a group uses at most one worker per partition: wider groups get as many partitions
                    row = measure(events, workers, max(args.partitions, workers), engine, mode, args.share_delay,
                                  args.share_every, args.budget) | {"data": name}
                    base = row["hr@10"] if base is None else base
                    row["ratio_to_first"] = row["hr@10"] / base if base else 0.0
                    rows.append(row)
                    cost = (f"  sharing/learning (worst worker) {row['share_to_learn_max']:.2f}, "
                            f"{row['bytes_per_event']:.0f} B/event" if mode != "partitions" and workers > 1 else "")
                    if mode == "by-item" and workers > 1:
                        cost += f", {row['summaries']:,} summaries ({row['summary_bytes'] / len(events):.0f} B/event)"
                    print(f"{name:18} {engine:6} workers={workers:<3} {mode:10} HR@10 {row['hr@10']:.4f}  "
                          f"(x{row['ratio_to_first']:.3f} of {args.workers.split(',')[0]} worker){cost}  "
                          f"{row['seconds']} s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
