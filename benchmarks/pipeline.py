"""Pipeline benchmark (issue 2): the bare Faust pipe vs the streamrec worker, on the embedded broker.

Phases, each on a fresh Tansu (Tansu slows down as a partition collects batches, so
a long-lived broker would bias later phases):

1. bare   - a Faust agent that only counts single-event messages (benchmarks/bare_agent.py),
            with Faust's own transport and with streamrec's fast-fetch transport;
2. single - the streamrec worker on the same single-event messages (push mode on);
3. batch  - the streamrec worker on JSON-array messages (the streamrec publisher's default);
4. start  - worker process start -> first recommendation received, several times;
5. latency- event -> recommendation latency seen by a consumer at fixed rates (single-event
            messages, paced), after a warm-up, split per list into the time to the worker, in the
            worker and from it (the stamps each list carries), with the worker's own histograms and
            the CPU the worker, the broker and this process (the load) each took. At 1,000 events/s
            also with the worker on a core of its own (the broker and the load on the others), as
            where the broker is another machine. The load and its reader run on --clients;
6. brokerless - the same paced load handed straight to the worker's processor in one process
            (no broker, no clients): what the worker alone adds;
7. encoder - (only when named) the latency at 100 events/s with the learned blend, without and with a
            ``small`` encoder in its slot (random weights, loaded before the first event), alternating.

Events are pre-produced for the throughput phases; a rate is events processed divided by
the time between the first and the last processed event (so group join is excluded; it is
measured by phase 4). Prints a table and, with --json, writes every figure.

    python benchmarks/pipeline.py                # full run (~5 minutes)
    python benchmarks/pipeline.py --quick        # smaller, for a smoke check
    python benchmarks/pipeline.py --phases encoder --latency-seconds 40   # the worker's latency with the encoder
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stream.cli.datasets import generate  # noqa: E402
from stream.cli.processes import spawn_worker, stop_process, wait_until_ready  # noqa: E402
from stream.cli.scrape import scrape, total  # noqa: E402
from stream.kafka import librdkafka  # noqa: E402
from stream.kafka.broker import EmbeddedBroker, free_port  # noqa: E402
from stream.kafka.clients import EventPublisher, RecommendationConsumer  # noqa: E402
from stream.settings import Settings  # noqa: E402

LINGER_MS = int(os.environ.get("BENCH_LINGER_MS", "0"))
#: the Kafka client library of the latency phases' load and measuring consumer (--clients)
CLIENTS = librdkafka.preferred()
LOGS = Path(tempfile.mkdtemp(prefix="streamrec-bench-"))


def fresh_settings(bootstrap: str, **changes) -> Settings:
    tag = uuid.uuid4().hex[:6]
    # Settings.from_env: STREAMREC_* variables set for the benchmark apply to its workers.
    return Settings.from_env(bootstrap_servers=bootstrap, app_id=f"bench-{tag}", metrics_port=free_port(),
                             data_dir=str(LOGS / tag), **changes)


def start_worker(settings: Settings, name: str) -> subprocess.Popen:
    return spawn_worker(settings, open(LOGS / f"{name}.log", "wb"), cwd=str(ROOT))


stop = stop_process


def produce(bootstrap: str, topic: str, events, batch_events: int) -> float:
    started = time.perf_counter()
    with EventPublisher(bootstrap, topic, batch_events=batch_events, extra_config={"linger_ms": 5}) as publisher:
        publisher.replay(events)
    return time.perf_counter() - started


def worker_rate(settings: Settings, expect: int, name: str, timeout: float = 600) -> dict:
    """Run a worker over pre-produced events; rate between first and last processed event."""
    process = start_worker(settings, name)
    url = f"http://{settings.metrics.host}:{settings.metrics.port}/metrics"
    first = last = None
    cpu_start = None
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            try:
                page = scrape(url, timeout=10)
                done = total(page, "streamrec_events_processed_total")
            except OSError:
                time.sleep(0.05)
                continue
            now = time.time()
            if done > 0 and first is None:
                first, first_done, cpu_start = now, done, _cpu_seconds(process.pid)
            if done >= expect:
                last = now
                break
            # scraping /metrics costs the worker CPU: poll gently once counting has started, closely before,
            # so that a fast run (push off) is not over before its first count is seen
            time.sleep(0.1 if first is not None else 0.005)
        cpu = _cpu_seconds(process.pid) - (cpu_start or 0.0)
    finally:
        stop(process)
    if last is None:
        raise RuntimeError(f"{name}: worker did not finish; see {LOGS / (name + '.log')}")
    events = expect - first_done
    if events < expect / 2:  # not a rate: say so rather than print a number
        return {"events_per_s": None, "note": f"{first_done:,.0f} of {expect:,} events were processed before the "
                                              "first count was seen: too few left to time (--batch-events higher)"}
    # push mode answers each user once per micro-batch: bigger micro-batches mean fewer lists per event
    lists = total(page, "streamrec_recommendations_published_total")
    return {"events_per_s": events / max(1e-9, last - first), "cpu_us_per_event": 1e6 * cpu / max(1, events),
            "lists_per_event": lists / max(1.0, done)}


def cpu_now(pids: dict[str, int | None]) -> dict[str, tuple[float, float]]:
    """(CPU seconds, wall clock) of each named process now."""
    now = time.monotonic()
    return {name: (_cpu_seconds(pid), now) for name, pid in pids.items() if pid is not None}


def cpu_since(pids: dict[str, int | None], before: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Cores each process used since ``before`` (CPU seconds per wall-clock second)."""
    after = cpu_now(pids)
    return {name: (cpu - before[name][0]) / max(1e-9, wall - before[name][1])
            for name, (cpu, wall) in after.items() if name in before}


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bare_rate(bootstrap: str, topic: str, expect: int, fast_fetch: bool) -> dict:
    group = f"bare-{uuid.uuid4().hex[:6]}"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bare_agent.py"), "--bootstrap", bootstrap, "--topic", topic,
           "--group", group, "--expect", str(expect), "--port", str(free_port())]
    if fast_fetch:
        cmd.append("--fast-fetch")
    # Faust writes its data folder (``<group>-data``) into the working directory: keep it out of the checkout
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(LOGS / f"{group}.log", "wb"), text=True,
                               cwd=LOGS)
    try:
        line = process.stdout.readline()
    finally:
        stop(process)
    result = json.loads(line)
    # The agent counts per take() batch, so "first" is when the first batch finished.
    return {"events_per_s": result["count"] / max(1e-9, result["last"] - result["first"])}


def startup(bootstrap: str, runs: int) -> list[float]:
    times = []
    for n in range(runs):
        settings = fresh_settings(bootstrap, topic_events=f"ev-start{n}", topic_recommendations=f"rec-start{n}",
                                  topic_requests=f"req-start{n}", topic_dlq=f"dlq-start{n}")
        from stream.kafka.broker import create_topics

        create_topics(bootstrap, settings.topic_specs())
        consumer = RecommendationConsumer(bootstrap, settings.topics.recommendations, from_beginning=True)
        consumer.connect()
        with EventPublisher(bootstrap, settings.topics.events, batch_events=1) as publisher:
            publisher.publish({"user_id": "probe", "item_id": "i1", "type": "click", "ts": 1.0})
        started = time.time()
        process = start_worker(settings, f"startup{n}")
        try:
            while time.time() - started < 60:
                if consumer.poll(0.05):
                    times.append(time.time() - started)
                    break
        finally:
            stop(process)
            consumer.close()
    return times


def latency_events(rate: float, seconds: float, warmup: float) -> list:
    """The latency phases' stream: 5,000 users and 5,000 items, paced single events."""
    return generate(int(rate * (seconds + warmup)) + 10, n_users=5_000, n_items=5_000, seed=5)


def random_encoder(directory: Path, items: list[str]) -> Path:
    """Version 1 of a ``small`` encoder over ``items`` with random weights, written where a worker polls:
    serving cost depends on the shapes only."""
    import torch

    from models import EncoderConfig, SequenceEncoder, checkpoint_path, save_checkpoint

    torch.manual_seed(0)
    config = EncoderConfig.small(n_items=len(items))
    return save_checkpoint(checkpoint_path(directory, 1), state_dict=SequenceEncoder(config).state_dict(),
                           config=config, items=items, version=1)


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of process ``pid`` onto ``cpus`` (threads started later inherit their starter's)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(task), cpus)
        except (ProcessLookupError, PermissionError):  # a thread that just ended
            pass


def latency(broker: EmbeddedBroker, rate: float, seconds: float, warmup: float, linger_ms: int | None = None,
            encoder: bool = False, own_core: bool = False, **changes) -> dict:
    """Paced single-event messages at ``rate``; the producer batches them for ``linger_ms`` (default
    ``BENCH_LINGER_MS``, 0). ``encoder``: the worker serves a ``small`` encoder over the stream's items,
    loaded before the first event is sent (so the window holds serving, not the load). ``changes``: settings.

    The load and the measuring consumer run on ``CLIENTS`` in this process, beside the broker and the
    worker on the same cores: the CPU each of the three took over the measured window is reported, so that
    a worker's tail can be read against what the harness took from it. ``own_core``: the worker runs on a
    core of its own, and the broker and this process on the others, as where the broker is another machine
    (a deployment's case); otherwise all three share every core."""
    bootstrap = broker.bootstrap
    events = latency_events(rate, seconds, warmup)
    if encoder:
        directory = LOGS / f"encoder-{uuid.uuid4().hex[:6]}"
        directory.mkdir()
        random_encoder(directory, sorted({e.item_id for e in events}))
        changes.update(trainer_dir=str(directory), encoder_poll_s=0.5)
    settings = fresh_settings(bootstrap, **changes)
    from stream.kafka.broker import create_topics

    create_topics(bootstrap, settings.topic_specs())
    process = start_worker(settings, f"latency{int(rate)}")
    everything = os.sched_getaffinity(0)
    if own_core:
        if len(everything) < 2:
            raise RuntimeError("own_core needs at least two CPUs")
        worker_core = {max(everything)}
        pin(process.pid, worker_core)
        pin(broker.pid, everything - worker_core)
        pin(os.getpid(), everything - worker_core)
    consumer = RecommendationConsumer(bootstrap, settings.topics.recommendations, from_beginning=False,
                                      library=CLIENTS)
    consumer.connect()
    samples: list[float] = []
    # per list: to the worker (producer stamp -> the worker's fetch: producer, broker), in the worker
    # (fetch -> this list built), from the worker (-> arrival: the batch's other lists, producer, broker, consumer)
    split: list[tuple[float, float, float]] = []
    stop_flag = threading.Event()
    measuring = threading.Event()

    def read() -> None:
        while not stop_flag.is_set():
            for value, arrived in consumer.poll(0.05):
                if measuring.is_set() and value.get("source_ts"):
                    samples.append(arrived - value["source_ts"])
                    if value.get("received_ts"):
                        split.append((value["received_ts"] - value["source_ts"], value["ts"] - value["received_ts"],
                                      arrived - value["ts"]))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_until_ready(settings, process)
        url = f"http://{settings.metrics.host}:{settings.metrics.port}/metrics"
        deadline = time.monotonic() + 120
        while encoder and total(scrape(url), "streamrec_encoder_version") < 1:
            if time.monotonic() > deadline:
                raise RuntimeError("the worker did not load the encoder within 120 s")
            time.sleep(0.25)
        publisher = EventPublisher(bootstrap, settings.topics.events, batch_events=1, library=CLIENTS,
                                   extra_config={"linger_ms": LINGER_MS if linger_ms is None else linger_ms})
        pids = {"harness": os.getpid(), "broker": broker.pid, "worker": process.pid}
        cpu_at: dict[str, tuple[float, float]] = {}
        # The worker's histograms and counters over the measured window only, as the lists' own stamps: what
        # they held when the warm-up ended is subtracted (the warm-up's first lists are a cold worker's).
        at_warmup: dict = {}

        def start_measuring() -> None:
            measuring.set()
            cpu_at.update(cpu_now(pids))
            try:
                at_warmup.update(scrape(url, timeout=10))
            except OSError as exc:  # the histograms then cover the warm-up too; say so
                print(f"    (scraping the worker at the end of the warm-up failed: {exc!r}; its histograms "
                      "include the warm-up)", flush=True)

        timer = threading.Timer(warmup, start_measuring)
        timer.start()
        publisher.replay(events, rate=rate)
        cpu_shares = {name: round(share, 3) for name, share in cpu_since(pids, cpu_at).items()}
        publisher.close()
        time.sleep(2.0)
        worker_side = since(scrape(url), at_warmup)
    finally:
        stop_flag.set()
        reader.join(5)
        consumer.close()
        stop(process)
        if own_core:
            pin(os.getpid(), everything)
    values = np.array(samples) * 1000
    thirds = np.array_split(values, 3)
    parts = np.array(split).reshape(-1, 3) * 1000
    share = histogram_quantiles(worker_side, "streamrec_worker_share_seconds", (0.5, 0.99))
    wait = histogram_quantiles(worker_side, "streamrec_producer_wait_seconds", (0.5, 0.99))
    # per micro-batch, not per list: how large the batches were and how long the worker took over each
    sizes = histogram_quantiles(worker_side, "streamrec_batch_size_events", (0.5, 0.99))
    processing = histogram_quantiles(worker_side, "streamrec_batch_processing_seconds", (0.5, 0.99))
    return {"rate": rate, "lists": int(values.size), "clients": CLIENTS, "worker_on_own_core": own_core,
            # cores each process used over the measured window (two cores on the reference VM)
            "cpu_cores": cpu_shares,
            "p50_ms_by_third": [round(float(np.percentile(t, 50)), 1) for t in thirds if t.size], "p50_ms": float(np.percentile(values, 50)),
            "p95_ms": float(np.percentile(values, 95)), "p99_ms": float(np.percentile(values, 99)),
            "max_ms": float(values.max()),
            # the split, from the stamps each list carries (source_ts, received_ts, ts) and its arrival
            "to_worker_p50_ms": float(np.percentile(parts[:, 0], 50)), "to_worker_p99_ms": float(np.percentile(parts[:, 0], 99)),
            "in_worker_p50_ms": float(np.percentile(parts[:, 1], 50)), "in_worker_p99_ms": float(np.percentile(parts[:, 1], 99)),
            "from_worker_p50_ms": float(np.percentile(parts[:, 2], 50)), "from_worker_p99_ms": float(np.percentile(parts[:, 2], 99)),
            # the worker's own histograms (bucket-interpolated): fetch -> the micro-batch's lists built and
            # encoded (the worker's share), then the wait to hand them to the producer (the broker's pace)
            "worker_share_p50_ms": 1000 * share[0.5], "worker_share_p99_ms": 1000 * share[0.99],
            "producer_wait_p50_ms": 1000 * wait[0.5], "producer_wait_p99_ms": 1000 * wait[0.99],
            "worker_batch_events_p50": sizes[0.5], "worker_batch_events_p99": sizes[0.99],
            "worker_batch_ms_p50": 1000 * processing[0.5], "worker_batch_ms_p99": 1000 * processing[0.99],
            # the garbage collector's pauses over the run: count and total ms per generation
            "gc_pauses": {gen: (int(total(worker_side, "streamrec_gc_pause_seconds_count", generation=gen)),
                                round(1000 * total(worker_side, "streamrec_gc_pause_seconds_sum", generation=gen), 1))
                          for gen in ("0", "1", "2")},
            "worker_batches": total(worker_side, "streamrec_batch_size_events_count"),
            "worker_mean_batch_events": total(worker_side, "streamrec_batch_size_events_sum")
            / max(1.0, total(worker_side, "streamrec_batch_size_events_count")),
            "worker_mean_batch_ms": 1000 * total(worker_side, "streamrec_batch_processing_seconds_sum")
            / max(1.0, total(worker_side, "streamrec_batch_processing_seconds_count")),
            "worker_mean_batch_wait_ms": 1000 * total(worker_side, "streamrec_batch_wait_seconds_sum")
            / max(1.0, total(worker_side, "streamrec_batch_wait_seconds_count")),
            "worker_mean_event_to_handover_ms": 1000 * total(worker_side, "streamrec_event_to_recommendation_seconds_sum")
            / max(1.0, total(worker_side, "streamrec_event_to_recommendation_seconds_count"))}


def brokerless(rate: float, seconds: float, warmup: float) -> dict:
    """The same paced single-event load as :func:`latency`, handed straight to the worker's processor in
    this process: no broker, no clients, no Faust. Each list's latency is its build time minus its
    event's send time; what the broker path adds on top of this is the broker's and the clients'."""
    from stream.wire import schema
    from stream.wire.messages import RawMessage
    from stream.worker.processor import EventProcessor

    processor = EventProcessor(Settings.of(snapshot_interval_s=0.0))
    events = generate(int(rate * (seconds + warmup)) + 10, n_users=5_000, n_items=5_000, seed=5)
    payloads = [json.dumps(schema.event_payload(event)).encode() for event in events]
    samples: list[float] = []
    started = time.time()
    sent = 0
    while sent < len(payloads):
        now = time.time()
        due = min(len(payloads), int((now - started) * rate) + 1)
        if due <= sent:
            time.sleep(min(0.001, (sent - (now - started) * rate) / rate))
            continue
        batch = [RawMessage(payloads[n], None, "events", n % 8, n, started + n / rate) for n in range(sent, due)]
        result = processor.process_events(batch, received=time.time())
        if now - started >= warmup:
            for out in result.recommendations:
                value = json.loads(out.value)
                samples.append(value["ts"] - value["source_ts"])
        sent = due
    values = np.array(samples) * 1000
    return {"rate": rate, "lists": int(values.size), "p50_ms": float(np.percentile(values, 50)),
            "p95_ms": float(np.percentile(values, 95)), "p99_ms": float(np.percentile(values, 99)),
            "max_ms": float(values.max())}


def since(now: dict, before: dict) -> dict:
    """Each scraped sample's growth since ``before`` (counters and histogram parts; the only kinds read here)."""
    return {key: value - before.get(key, 0.0) for key, value in now.items()}


def histogram_quantiles(samples: dict, name: str, quantiles: tuple[float, ...]) -> dict[float, float]:
    """Quantiles of a scraped Prometheus histogram, interpolated within buckets as PromQL's
    ``histogram_quantile`` does."""
    buckets = sorted((float(dict(labels)["le"]), value) for (metric, labels), value in samples.items()
                     if metric == f"{name}_bucket")
    count = buckets[-1][1] if buckets else 0.0
    out = {}
    for q in quantiles:
        rank, low, below = q * count, 0.0, 0.0
        value = float("nan")
        for bound, cumulative in buckets:
            if cumulative >= rank and count > 0:
                if bound == float("inf"):
                    value = low
                else:
                    inside = cumulative - below
                    value = low + (bound - low) * ((rank - below) / inside if inside else 1.0)
                break
            low, below = bound, cumulative
        out[q] = value
    return out


def main() -> int:
    global CLIENTS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--single-events", type=int, default=40_000)
    parser.add_argument("--batch-events", type=int, default=300_000)
    parser.add_argument("--startup-runs", type=int, default=3)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--encoder-rounds", type=int, default=2,
                        help="phase 'encoder': rounds of (without, with) the encoder at 100 events/s")
    parser.add_argument("--json", default=None)
    parser.add_argument("--clients", choices=librdkafka.LIBRARIES, default=CLIENTS,
                        help="Kafka client library of the latency phases' load and measuring consumer (default: "
                             "librdkafka where confluent-kafka is installed; kafka-python takes far more of the "
                             "CPU the worker is measured on)")
    parser.add_argument("--phases", default="bare,single,batch,start,latency,brokerless",
                        help="comma-separated subset of: bare,single,batch,start,latency,brokerless,encoder "
                             "(encoder is not in the default run)")
    args = parser.parse_args()
    CLIENTS = librdkafka.check_library(args.clients)
    if args.quick:
        args.single_events, args.batch_events, args.startup_runs, args.latency_seconds = 5_000, 30_000, 1, 5.0
    results: dict = {"machine": f"{platform.node()} {os.cpu_count()} cpu, {platform.python_version()}",
                     "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "logs": str(LOGS)}
    single = generate(args.single_events, n_users=5_000, n_items=5_000, seed=1)
    batch = generate(args.batch_events, n_users=20_000, n_items=10_000, seed=2)

    def phase(name: str, fn):
        print(f"[{time.strftime('%H:%M:%S')}] {name} ...", flush=True)
        slug = "".join(c if c.isalnum() else "-" for c in name)
        with EmbeddedBroker(topics=Settings().topic_specs(), log_path=str(LOGS / f"broker-{slug}.log")) as broker:
            out = fn(broker)
        print(f"    {out}", flush=True)
        return out

    def bare(broker: EmbeddedBroker, fast: bool) -> dict:
        bootstrap = broker.bootstrap
        produce(bootstrap, "events", single, batch_events=1)
        return bare_rate(bootstrap, "events", len(single), fast_fetch=fast)

    phases = set(args.phases.split(","))
    if "bare" in phases:
        results["bare_faust_default_transport"] = phase("bare (Faust transport)", lambda b: bare(b, False))
        results["bare_faust_fast_fetch"] = phase("bare (fast-fetch transport)", lambda b: bare(b, True))

    def streamrec(broker: EmbeddedBroker, events, batch_events: int, name: str, **changes) -> dict:
        bootstrap = broker.bootstrap
        produce_s = produce(bootstrap, "events", events, batch_events)
        out = worker_rate(fresh_settings(bootstrap, **changes), len(events), name)
        out["produce_events_per_s"] = len(events) / produce_s
        return out

    if "single" in phases:
        results["streamrec_single"] = phase("streamrec worker, single-event messages",
                                            lambda b: streamrec(b, single, 1, "single"))
    if "batch" in phases:
        results["streamrec_batched"] = phase("streamrec worker, batched messages (arrays of 200)",
                                             lambda b: streamrec(b, batch, 200, "batched"))
    if "batch" in phases:  # the same without push lists: what the pipe plus learning alone sustain
        results["streamrec_batched_push_off"] = phase(
            "streamrec worker, batched messages, push off",
            lambda b: streamrec(b, batch, 200, "batched-nopush", push=False))
    if "start" in phases:
        results["startup_to_first_list_s"] = phase("start -> first list", lambda b: startup(b.bootstrap, args.startup_runs))
    if "latency" in phases:
        for rate in (100.0, 1000.0):
            results[f"latency_{int(rate)}"] = phase(f"latency at {rate:.0f} ev/s",
                                                    lambda b, rate=rate: latency(b, rate, args.latency_seconds, warmup=3.0))
        results["latency_1000_producer_linger_5ms"] = phase(
            "latency at 1000 ev/s, producer linger 5 ms",
            lambda b: latency(b, 1000.0, args.latency_seconds, warmup=3.0, linger_ms=5))
        # fewer, larger record batches: the embedded broker's cost follows the batches it holds
        # (benchmarks/broker_aging.py), and its CPU is taken from the worker's on a small machine
        results["latency_1000_producer_linger_25ms"] = phase(
            "latency at 1000 ev/s, producer linger 25 ms",
            lambda b: latency(b, 1000.0, args.latency_seconds, warmup=3.0, linger_ms=25))
        # the worker on a core of its own, the broker and the load on the other(s): where the broker is another
        # machine, as in any deployment, so that the worker's share is its own and not the broker's CPU
        if len(os.sched_getaffinity(0)) >= 2:
            for linger in (0, 5):
                results[f"latency_1000_producer_linger_{linger}ms_worker_own_core"] = phase(
                    f"latency at 1000 ev/s, producer linger {linger} ms, the worker on a core of its own",
                    lambda b, linger=linger: latency(b, 1000.0, args.latency_seconds, warmup=3.0, linger_ms=linger,
                                                     own_core=True))
    if "encoder" in phases:  # what serving the encoder does to the worker's latency (issue 14): the learned
        # blend with and without a `small` encoder in its slot, at 100 events/s, alternating
        for round_ in range(args.encoder_rounds):
            for with_encoder in (False, True):
                name = f"encoder_latency_100_{'with' if with_encoder else 'without'}_{round_ + 1}"
                results[name] = phase(f"latency at 100 ev/s, learned blend, {'with' if with_encoder else 'no'} encoder",
                                      lambda b, e=with_encoder: latency(b, 100.0, args.latency_seconds, warmup=3.0,
                                                                        encoder=e, blend="default"))
    if "brokerless" in phases:
        for rate in (100.0, 1000.0):
            print(f"[{time.strftime('%H:%M:%S')}] broker-free at {rate:.0f} ev/s ...", flush=True)
            results[f"brokerless_{int(rate)}"] = brokerless(rate, args.latency_seconds, warmup=3.0)
            print(f"    {results[f'brokerless_{int(rate)}']}", flush=True)
    if "bare" in phases and "single" in phases and results["streamrec_single"]["events_per_s"] is not None:
        single_rate = results["streamrec_single"]["events_per_s"]
        results["ratio_single_vs_bare_fast"] = single_rate / results["bare_faust_fast_fetch"]["events_per_s"]
        results["ratio_single_vs_bare_default"] = single_rate / results["bare_faust_default_transport"]["events_per_s"]
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
