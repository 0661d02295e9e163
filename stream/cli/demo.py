"""``streamrec demo``: the whole pipe on one machine with nothing installed.

Starts the embedded broker, a worker process (with its /metrics endpoint), and a
consumer; replays a data set (by default a generated one) plus a few malformed
messages; shows live progress; ends with a summary measured from the outside:
what was published, what the worker processed and dead-lettered (scraped from its
/metrics), lists received, throughput, event->list latency seen by the consumer,
and the prequential HR@k the consumer measures ("was the next item a user touched
in the last list we published for that user").

With the trainer on (the default; ``--no-trainer`` leaves it out) a ``streamrec trainer`` refreshes the
sequence encoder from the same stream every few seconds, and the worker serves each version through the
learned blend; the summary shows HR@k with and without the encoder's contribution, measured on the same
users at the same moments. The trainer takes only CPU the serving path leaves (``trainer_idle``,
``trainer_nice``), so it does not lengthen the lists' latency on a machine it shares.

With self-tuning on (the default; ``STREAMREC_SELF_TUNE=0`` turns it off) a ``streamrec tuner``
runs beside the worker: it searches the engine's whole config on the stream and announces
winners, which the worker swaps in warm. ``--tuner`` adds the in-loop bandits (learning rates,
blend weights) inside whichever config serves.
The demo's stream is short, so the tuner searches once, on a small window with a few trials (see
:func:`demo_search_settings`); the summary says how many searches ran and swaps were applied.

The replay is paced (``--rate auto``, the default) at the rate the worker sustains: a
:class:`~stream.cli.pacing.LatencyPacer` reads the lists as they come out (which event each reflects,
and how late) and sends at the rate they come out, a little more while the latency is near what the
system shows with no queue, less when a queue builds (the tuner's searches take CPU in bursts). So the
latency the summary reports is the system's, not a queue's. It also keeps the p99 of the last two
seconds' lists under ``--tail-ms`` (100 ms by default, see :func:`demo_pacer`). Above that
objective it backs off, and the pacer then settles below the throughput ceiling, where the tail is
still short.
``--rate N`` replays at N events/s whatever happens, and ``--rate 0`` as fast as possible. The
summary says which rate was asked and which was sustained.

The embedded broker slows down with every record batch it holds (``benchmarks/broker_aging.py``).
So the paced replay gathers ``--linger-ms`` (25 ms) of events into one produce request, and the
demo's topics have one partition unless ``--partitions`` says otherwise. One partition gathers more
events per batch, for both the events and the lists. A low-rate replay with one batch per event
would slow the broker down over the run.

Every process serves Prometheus metrics: the worker on ``--metrics-port`` P, the
trainer on P+1, the demo itself (events replayed, lists consumed, latency seen by
the consumer) on P+2, the tuner on P+3. The demo writes a ``prometheus.yml`` for them into its work
folder; with ``--hold`` everything keeps running until Ctrl-C so Prometheus (and the
Grafana dashboards of ``deploy/``) can be pointed at it. ``--report PATH`` writes a
one-page PNG or HTML report of the run.
"""
from __future__ import annotations

import json
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from online.base import Interaction
from stream.cli.datasets import generate, load
from stream.cli.pacing import LatencyPacer
from stream.cli.processes import spawn_process, spawn_worker, stop_process
from stream.cli.scrape import MetricsHistory, scrape, total
from stream.kafka import librdkafka
from stream.kafka.broker import EmbeddedBroker, free_port
from stream.kafka.clients import EventPublisher, RecommendationConsumer
from stream.observability import LATENCY_BUCKETS, serve_metrics, stop_serving
from stream.settings import Settings

#: Malformed messages the demo mixes in, each with the DLQ reason it must get.
BAD_MESSAGES: list[tuple[bytes, str]] = [
    (b"this is not json", "not_json"),
    (b'{"user_id": "u1", "item_id": "i1", "type": "teleport", "ts": 1}', "unknown_type"),
    (b'{"user_id": "u1", "item_id": "i1", "type": "click", "ts": NaN}', "invalid_ts"),
    (b'{"item_id": "i1", "type": "click", "ts": 1}', "missing_field"),
    (b'{"user_id": ["u1"], "item_id": "i1", "type": "click", "ts": 1}', "wrong_type"),
    (b"\xff\xfe\x00garbage", "not_utf8"),
    (b"[]", "empty_batch"),
    (b'"just a string"', "not_an_object"),
]


@dataclass(frozen=True)
class DemoOptions:
    events: int = 20_000
    data: str | None = None
    fmt: str | None = None
    rate: float | str = "auto"  # events/s; "auto" paces at what the worker sustains; 0 = as fast as possible
    batch_events: int = 100
    bad_events: int = len(BAD_MESSAGES)
    json_path: str | None = None
    hold: bool = False
    trainer: bool = True
    timeout: float = 300.0
    seed: int = 7
    report_path: str | None = None
    tail_ms: float | None = None  # with rate "auto": the p99 objective (0: none; None: 100 ms)
    linger_ms: float = 25.0  # the replay's producer gathers events this long into one batch (paced replays)
    clients: str = field(default_factory=librdkafka.preferred)  # the replay's and the list reader's Kafka library


class DemoMetrics(NamedTuple):
    events_published: Counter
    lists_received: Counter
    list_latency: Histogram
    consumer_hit_rate: Gauge
    replay_rate: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry, prefix: str = "streamrec") -> DemoMetrics:
        metrics = cls(
            events_published=Counter(f"{prefix}_demo_events_published", "Events the demo replayed",
                                     registry=registry),
            lists_received=Counter(f"{prefix}_demo_lists_received", "Recommendation lists the demo consumed",
                                   registry=registry),
            list_latency=Histogram(
                f"{prefix}_demo_list_latency_seconds",
                "From the triggering message's broker timestamp to the list reaching the demo's consumer",
                buckets=LATENCY_BUCKETS, registry=registry),
            consumer_hit_rate=Gauge(f"{prefix}_demo_consumer_hit_rate",
                                    "HR@k measured by the demo's consumer", ["k"], registry=registry),
            replay_rate=Gauge(f"{prefix}_demo_replay_rate_events_per_second",
                              "Events/s the replay is paced at (what the worker sustains, with --rate auto)",
                              registry=registry),
        )
        ProcessCollector(registry=registry)
        return metrics


#: Prometheus job names, the same as in ``deploy/prometheus/prometheus.yml`` (dashboards and rules rely on them).
JOBS = ("streamrec-worker", "streamrec-trainer", "streamrec-demo")
RULES_FILE = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules.yml"


def prometheus_config(targets: dict[str, list[str]], *, interval: str = "5s",
                      rule_files: tuple[str, ...] = ()) -> str:
    """A ``prometheus.yml`` (as JSON, which is YAML) scraping ``{job: [host:port, ...]}``."""
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": list(rule_files),
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": hosts}]}
                           for job, hosts in targets.items() if hosts],
    }
    return json.dumps(config, indent=2) + "\n"


def free_ports(count: int, taken: tuple[int, ...] = ()) -> list[int]:
    """``count`` distinct ports, none in ``taken``, each free a moment ago. The demo's processes bind theirs only
    once started, so every port it hands out must differ from the others it hands out (the broker's too:
    Tansu on one process's metrics port stopped that process at its start)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports and port not in taken:
            ports.append(port)
    return ports


def tuner_port(base: int, taken: tuple[int, ...]) -> int:
    """The tuner's metrics port: ``base + 3``, or a free port not in ``taken`` when ``base`` is 0."""
    return base + 3 if base else free_ports(1, taken)[0]


def demo_search_settings(settings: Settings, events: int) -> Settings:
    """The tuner's cadence for a demo: unchanged for a stream longer than one search period
    (``search_every``); for a shorter one, one search just past the middle of the stream (the next,
    spacings doubling, would come after its end) on the last fifth of it, with a few trials, so it
    takes seconds and ends about with the replay. Early searches on drift are off: on a stream this
    short ADWIN sees the hit rate climb as the models learn and would search every quarter of it."""
    search = settings.search
    if events >= search.every:
        return settings
    first = max(500, events // 2 + 1)
    window = min(search.window, max(500, events // 5))
    return settings.replace(search_first=first, search_every=max(first, events), search_window=window,
                            search_keep=max(window, search.keep), search_trials=min(search.trials, 4),
                            search_timeout_s=min(search.timeout_s or 5.0, 5.0), search_drift=False)


def metrics_ports(base: int) -> tuple[int, int, int]:
    """(worker, trainer, demo) metrics ports: ``base``, +1, +2; three free ports when ``base`` is 0."""
    if base:
        return base, base + 1, base + 2
    worker, trainer, demo = free_ports(3)
    return worker, trainer, demo


class ListCollector(threading.Thread):
    """Consumes ``recommendations`` in the background and keeps what the summary needs."""

    def __init__(self, bootstrap: str, topic: str, metrics: DemoMetrics | None = None,
                 pacer: LatencyPacer | None = None, library: str = "kafka-python") -> None:
        super().__init__(daemon=True, name="streamrec-demo-consumer")
        self.metrics = metrics
        self.pacer = pacer
        self.consumer = RecommendationConsumer(bootstrap, topic, from_beginning=True, library=library)
        self.lists: list[tuple[str, str | None, tuple[str, ...], float | None, float]] = []
        # per list, where its latency went: to the worker (producer, broker, fetch), in the worker (fetch ->
        # list built), from the worker (the rest of its micro-batch, the producer, the broker, this consumer)
        self.splits: list[tuple[float, float, float]] = []
        self.stop_event = threading.Event()
        self.first_arrival: float | None = None
        self.consumer.connect()  # so nothing published is missed

    def run(self) -> None:
        while not self.stop_event.is_set():
            for value, arrived in self.consumer.poll(0.1):
                if self.first_arrival is None:
                    self.first_arrival = arrived
                items = tuple(entry["item_id"] for entry in value.get("items", ()))
                source_ts = value.get("source_ts")
                self.lists.append((value["user_id"], value.get("event_id"), items, source_ts, arrived))
                received, built = value.get("received_ts"), value.get("ts")
                if source_ts is not None and received is not None and built is not None:
                    self.splits.append((received - source_ts, built - received, arrived - built))
                if self.pacer is not None and source_ts is not None:
                    self.pacer.observe(arrived - source_ts, event_number(value.get("event_id")))
                if self.metrics is not None:
                    self.metrics.lists_received.inc()
                    if source_ts is not None:
                        self.metrics.list_latency.observe(max(0.0, arrived - source_ts))
        self.consumer.close()


def latency_split(splits: list[tuple[float, float, float]]) -> dict[str, float]:
    """p50 and p99 of each part of the lists' latency (seconds): ``to_worker`` (the producer, the broker, the
    worker's fetch), ``in_worker`` (fetch -> list built: the worker's own share), ``from_worker`` (the rest)."""
    if not splits:
        return {}
    parts = np.array(splits)
    return {f"latency_{name}_p{q}_s": float(np.percentile(parts[:, i], q))
            for i, name in enumerate(("to_worker", "in_worker", "from_worker")) for q in (50, 99)}


def event_number(event_id: Any) -> int | None:
    """``n`` of the demo's event ids ``e{n}`` (their order of sending); None for anything else."""
    if isinstance(event_id, str) and event_id[:1] == "e" and event_id[1:].isdigit():
        return int(event_id[1:])
    return None


def demo_pacer(options: DemoOptions, n_events: int) -> LatencyPacer | None:
    """The replay's pacer for ``--rate auto`` (None for a fixed rate).

    Its tail objective is ``tail_ms``, 100 ms by default, with or without the trainer: the trainer
    runs in the idle scheduling class (``trainer_idle``), so its training no longer stalls the
    lists in bursts that slowing the replay could not shorten. Its floor lets the replay end within
    60% of the demo's timeout, so a tail that cannot be held costs latency, which the summary shows,
    not the run.
    """
    if options.rate != "auto":
        return None
    tail_ms = options.tail_ms if options.tail_ms is not None else 100.0
    floor = max(50.0, n_events / (0.6 * options.timeout))
    return LatencyPacer(start_rate=max(200.0, floor), min_rate=floor, tail_s=tail_ms / 1e3 if tail_ms > 0 else None)


def parse_rate(value: str | float | None) -> float | str:
    """``--rate``: "auto", or events/s (0, or "none", for as fast as possible)."""
    if value is None or str(value).strip().lower() in ("none", "max"):
        return 0.0
    if str(value).strip().lower() == "auto":
        return "auto"
    try:
        rate = float(value)
    except ValueError:
        rate = float("nan")
    if not rate >= 0 or rate == float("inf"):
        raise ValueError(f"a rate is events/s >= 0 or 'auto', not {value!r}")
    return rate


def consumer_hit_rate(events: list[Interaction], lists: list[tuple], k: int) -> dict[str, float]:
    """HR@k from the outside: for each event of a user, was its item in the latest list
    that reflected only that user's *earlier* events (matched through ``event_id``)?"""
    position: dict[str, tuple[str, int]] = {}
    per_user_count: dict[str, int] = {}
    for event in events:
        n = per_user_count.get(event.user_id, 0)
        per_user_count[event.user_id] = n + 1
        if event.event_id is not None:
            position[event.event_id] = (event.user_id, n)
    served: dict[str, dict[int, tuple[str, ...]]] = {}
    for user_id, event_id, items, _, _ in lists:
        where = position.get(event_id) if event_id is not None else None
        if where is not None:
            served.setdefault(user_id, {})[where[1]] = items[:k]
    seen: dict[str, int] = {}
    latest: dict[str, tuple[str, ...]] = {}
    evaluated = hits = 0
    for event in events:
        user = event.user_id
        n = seen.get(user, 0)
        if user in latest:
            evaluated += 1
            hits += event.item_id in latest[user]
        mine = served.get(user)
        if mine is not None and n in mine:
            latest[user] = mine[n]
        seen[user] = n + 1
    return {"evaluated": evaluated, "hits": hits, "hr": hits / evaluated if evaluated else 0.0}


def _load_events(options: DemoOptions) -> list[Interaction]:
    if options.data:
        events = load(options.data, options.fmt or "movielens", limit=options.events or None)
    else:
        events = generate(n_events=options.events, seed=options.seed)
    return [event._replace(event_id=f"e{n}") for n, event in enumerate(events)]


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def run_demo(settings: Settings, options: DemoOptions, console: Any = None) -> dict[str, Any]:
    """Run the demo; SIGTERM (``docker stop``, a supervisor) stops it as Ctrl-C does, children included."""
    if threading.current_thread() is not threading.main_thread():
        return _run_demo(settings, options, console)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return _run_demo(settings, options, console)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_demo(settings: Settings, options: DemoOptions, console: Any = None) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = console or Console(stderr=True)
    events = _load_events(options)
    if not events:
        raise ValueError("the data set is empty")
    workdir = Path(tempfile.mkdtemp(prefix="streamrec-demo-"))
    metrics_port, trainer_port, demo_port = metrics_ports(settings.metrics.port)
    search_port = tuner_port(settings.metrics.port, (metrics_port, trainer_port, demo_port))
    registry = CollectorRegistry()
    demo_metrics = DemoMetrics.create(registry)
    host = settings.metrics.host
    demo_server, demo_base = serve_metrics(registry, host, demo_port)
    history = MetricsHistory()
    console.print(f"[bold]streamrec demo[/]: {len(events):,} events "
                  f"({options.data or 'generated: tastes, Zipf popularity, sessions, drift halfway'})")
    broker_port = free_ports(1, (metrics_port, trainer_port, demo_port, search_port))[0]
    with EmbeddedBroker(port=broker_port, topics=settings.topic_specs(),
                        log_path=str(workdir / "broker.log")) as broker:
        if settings.tuner.enabled:  # a demo is short: show the tuner's state every second
            settings = settings.replace(tuner_publish_s=min(settings.tuner.publish_s, 1.0))
        settings = settings.replace(bootstrap_servers=broker.bootstrap, metrics_port=metrics_port,
                                    trainer_metrics_port=trainer_port, data_dir=str(workdir / "worker"))
        self_tune = settings.search.enabled  # with --tuner too: the bandits tune inside the searched config
        if self_tune:  # a study of this demo's own, and a cadence that fits its stream
            settings = demo_search_settings(settings, len(events)).replace(
                search_storage=f"sqlite:///{workdir / 'tuner.db'}")
        if options.trainer:  # the encoder is served through the blend; refresh early and often
            settings = settings.replace(
                blend=settings.engine.blend or "default", trainer_dir=str(workdir / "checkpoints"),
                trainer_refresh_s=5.0,
                trainer_min_new_events=max(100, min(settings.encoder.trainer_min_new_events, len(events) // 4)),
                trainer_epochs=1)
        metrics_url = f"http://{host}:{metrics_port}/metrics"
        urls = {"streamrec-worker": metrics_url, "streamrec-demo": f"{demo_base}/metrics"}
        if options.trainer:
            urls["streamrec-trainer"] = f"http://{host}:{trainer_port}/metrics"
        if self_tune:
            urls["streamrec-tuner"] = f"http://{host}:{search_port}/metrics"
        prometheus_yml = workdir / "prometheus.yml"
        prometheus_yml.write_text(prometheus_config(
            {job: [url.split("/")[2]] for job, url in urls.items()}, interval="5s",
            rule_files=(str(RULES_FILE),) if RULES_FILE.is_file() else ()))
        console.print(f"broker     {broker.bootstrap} (Tansu, memory storage; log {broker.log_path}); the replay "
                      f"and the list reader run on {options.clients}")
        worker_log = open(workdir / "worker.log", "wb")
        started = time.time()
        worker = spawn_worker(settings, worker_log)
        console.print(f"worker     pid {worker.pid}; metrics {metrics_url}; log {worker_log.name}")
        trainer = trainer_log = None
        if options.trainer:
            trainer_log = open(workdir / "trainer.log", "wb")
            trainer = spawn_process(["trainer"], settings, trainer_log)
            console.print(f"trainer    pid {trainer.pid}; checkpoints {settings.encoder.trainer_dir}; "
                          f"log {trainer_log.name}")
        tuner = tuner_log = None
        if self_tune:
            tuner_log = open(workdir / "tuner.log", "wb")
            tuner = spawn_process(["tuner", "--metrics-port", str(search_port)], settings, tuner_log)
            console.print(f"tuner      pid {tuner.pid}; study {settings.search.storage} (optuna-dashboard opens it); "
                          f"first search after {settings.search.first:,} events; log {tuner_log.name}")
        for job, url in urls.items():
            console.print(f"metrics    {job:<18} {url}")
        console.print(f"prometheus prometheus --config.file={prometheus_yml} (scrapes all of the above)")
        pacer = demo_pacer(options, len(events))
        collector = ListCollector(broker.bootstrap, settings.topics.recommendations, demo_metrics, pacer,
                                  library=options.clients)
        collector.start()
        publisher = EventPublisher(broker.bootstrap, settings.topics.events, batch_events=options.batch_events,
                                   linger_s=options.linger_ms / 1e3, library=options.clients)
        try:
            summary = _drive(settings, options, events, publisher, collector, worker, metrics_url, started,
                             console, Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                               TimeElapsedColumn(), console=console, transient=False),
                             demo_metrics, history, pacer)
            demo_metrics.consumer_hit_rate.labels(str(settings.serving.k)).set(summary[f"hr@{settings.serving.k}_consumer"])
            if tuner is not None:
                summary.update(_wait_for_self_tuning(metrics_url, urls["streamrec-tuner"], tuner,
                                                     summary["events_processed"], console,
                                                     min(started + options.timeout, time.time() + 20)))
            if trainer is not None:
                summary["encoder_version_served"] = _wait_for_encoder(metrics_url, worker, trainer, console,
                                                                      started + options.timeout, history)
            summary["metrics_urls"] = urls
            summary["prometheus_config"] = str(prometheus_yml)
            if options.hold:
                console.print(f"[bold]holding[/]: broker {broker.bootstrap}; metrics {', '.join(urls.values())}; "
                              f"Prometheus config {prometheus_yml}; Ctrl-C to stop")
                try:
                    while worker.poll() is None:
                        _sample(history, metrics_url)
                        time.sleep(1)
                except KeyboardInterrupt:
                    pass
        finally:
            stop_serving(demo_server)
            collector.stop_event.set()
            publisher.close()
            stop_process(worker)
            worker_log.close()
            if trainer is not None:
                stop_process(trainer)
                trainer_log.close()
            if tuner is not None:
                stop_process(tuner)
                tuner_log.close()
            collector.join(5)
    _print_summary(summary, console)
    if options.json_path:
        Path(options.json_path).write_text(json.dumps(summary, indent=2) + "\n")
        console.print(f"summary written to {options.json_path}")
    if options.report_path:
        offset = time.time() - time.monotonic()  # the pacer's clock is monotonic, the report's the wall's
        write_report(options.report_path, history, collector.lists, summary, settings.serving.k,
                     replay_rates=[(t + offset, r) for t, r in pacer.history] if pacer is not None else None)
        console.print(f"report written to {options.report_path}")
    return summary


def _sample(history: MetricsHistory, url: str) -> None:
    try:
        history.add(time.time(), scrape(url))
    except OSError:
        pass


def _wait_for_encoder(url: str, worker: Any, trainer: Any, console: Any, deadline: float,
                      history: MetricsHistory | None = None) -> int:
    """Block until the worker serves an encoder version (or the trainer died, or time is up)."""
    console.print("waiting for the trainer's first encoder version to be served ...")
    while time.time() < deadline and trainer.poll() is None:
        samples = _wait_metrics(url, worker, deadline)
        if history is not None:
            history.add(time.time(), samples)
        version = int(total(samples, "streamrec_encoder_version"))
        if version >= 1:
            console.print(f"serving encoder version {version}")
            return version
        time.sleep(0.5)
    console.print("[yellow]no encoder version was served[/] (see the trainer's log)")
    return 0


def _wait_for_self_tuning(worker_url: str, tuner_url: str, tuner: Any, processed: int, console: Any,
                          deadline: float) -> dict[str, Any]:
    """Wait (until ``deadline``) for the tuner's search (:func:`demo_search_settings`: one; none if it read the
    whole stream first) and for the worker to have handled the version it announced; then what self-tuning
    did, from both processes' metrics."""
    tuner_samples: dict = {}
    worker_samples: dict = {}
    said = False
    while time.time() < deadline and tuner.poll() is None:
        try:
            tuner_samples, worker_samples = scrape(tuner_url), scrape(worker_url)
        except OSError:
            time.sleep(0.2)
            continue
        announced = total(tuner_samples, "streamrec_search_config_version")
        handled = (total(worker_samples, "streamrec_config_version") >= announced
                   or total(worker_samples, "streamrec_config_swaps_total", result="refused") > 0)
        read = total(tuner_samples, "streamrec_search_events_consumed_total") >= processed
        searched = total(tuner_samples, "streamrec_search_searches_total") >= 1  # the demo's cadence: one search
        if (read or searched) and not total(tuner_samples, "streamrec_search_running") and handled:
            break
        if not said:
            said = True
            console.print("waiting for the tuner's last search and the worker's swap ...")
        time.sleep(0.25)
    else:
        if tuner.poll() is not None:
            console.print(f"[yellow]the tuner exited with code {tuner.returncode}[/] (see its log)")
        else:
            console.print("[yellow]the tuner had not finished by the deadline[/]; reporting what it did so far")
    return {"self_tune_searches": int(total(tuner_samples, "streamrec_search_searches_total")),
            "self_tune_accepted": int(total(tuner_samples, "streamrec_search_searches_total", result="accepted")),
            "self_tune_trials": int(total(tuner_samples, "streamrec_search_trials_total")),
            "self_tune_swaps_applied": int(total(worker_samples, "streamrec_config_swaps_total", result="applied")),
            "self_tune_swaps_refused": int(total(worker_samples, "streamrec_config_swaps_total", result="refused")),
            "self_tune_config_version": int(total(worker_samples, "streamrec_config_version"))}


def _wait_metrics(url: str, worker: subprocess.Popen, deadline: float) -> dict:
    """The worker's metrics, tried at least once (also past the deadline, so that a run that ran out
    of time still gets its summary)."""
    while True:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with code {worker.returncode}; see its log")
        try:
            return scrape(url)
        except OSError:
            if time.time() >= deadline:
                raise TimeoutError(f"no metrics at {url}") from None
            time.sleep(0.1)


def _drive(settings: Settings, options: DemoOptions, events: list[Interaction], publisher: EventPublisher,
           collector: ListCollector, worker: subprocess.Popen, metrics_url: str, started: float,
           console: Any, progress: Any, metrics: DemoMetrics | None = None,
           history: MetricsHistory | None = None, pacer: LatencyPacer | None = None) -> dict[str, Any]:
    deadline = started + options.timeout
    # 1. One probe event, to measure start -> first recommendation.
    publisher.publish(events[0])
    publisher.flush()
    if metrics is not None:
        metrics.events_published.inc()
    while collector.first_arrival is None:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with code {worker.returncode} before serving; see its log")
        if time.time() > deadline:
            raise TimeoutError("no recommendation arrived before the timeout")
        time.sleep(0.02)
    first_list_s = collector.first_arrival - started
    console.print(f"first list {first_list_s:.2f} s after the worker started")
    # 2. Replay the rest, with malformed messages mixed in, at the chosen rate (or paced by what comes out).
    bad = [BAD_MESSAGES[i % len(BAD_MESSAGES)] for i in range(options.bad_events)]
    bad_every = max(1, len(events) // (len(bad) + 1))
    with progress:
        sent = progress.add_task("published", total=len(events))
        done = progress.add_task("processed", total=len(events))
        progress.update(sent, advance=1)
        replay_started = time.time()

        def advance(n: int) -> None:
            progress.update(sent, advance=n)
            if metrics is not None:
                metrics.events_published.inc(n)

        def mixed() -> Any:
            for n, event in enumerate(events[1:], 1):
                if bad and n % bad_every == 0:
                    raw, _ = bad.pop()
                    publisher.flush_buffers()
                    publisher.producer.send(settings.topics.events, value=raw, key=b"u-bad")
                yield event
                if pacer is not None:  # the replay asks for the next event once it has published this one
                    pacer.sent(n)

        def paced() -> float:
            rate = pacer.rate()
            if metrics is not None:
                metrics.replay_rate.set(rate)
            return rate

        if pacer is not None:
            rate: Any = paced
        else:
            rate = float(options.rate) or None
            if metrics is not None and rate:
                metrics.replay_rate.set(rate)
        replay_ended: list[float] = []

        def replay() -> None:
            publisher.replay(mixed(), rate=rate, on_progress=advance, should_stop=lambda: time.time() > deadline)
            replay_ended.append(time.time())

        replayer = threading.Thread(target=replay, daemon=True)
        replayer.start()
        processed = 0.0
        last_sample = 0.0
        while time.time() < deadline:
            samples = _wait_metrics(metrics_url, worker, deadline)
            processed = total(samples, "streamrec_events_processed_total")
            if history is not None and time.time() - last_sample >= 0.25:
                last_sample = time.time()
                history.add(last_sample, samples)
            progress.update(done, completed=processed)
            if not replayer.is_alive() and processed >= len(events):
                break
            time.sleep(0.25)  # every scrape costs the worker CPU (and the latency measured) on a small machine
        replayer.join()
        processed_at = time.time()
    if processed < len(events):
        why = ("the replay had not sent them all: at this --rate it needs a longer --timeout"
               if publisher.events_sent < len(events) else
               "the worker could not keep up (a fixed --rate above what it sustains, or a busy machine): try "
               "--rate auto or a longer --timeout")
        console.print(f"[bold red]the demo's timeout ({options.timeout:.0f} s) passed with {int(processed):,} of "
                      f"{len(events):,} events processed ({publisher.events_sent:,} sent)[/]: {why}")
    samples = _wait_metrics(metrics_url, worker, deadline + 10)
    published_lists = total(samples, "streamrec_recommendations_published_total")
    while len(collector.lists) < published_lists and time.time() < min(deadline, processed_at + 10):
        time.sleep(0.05)
    time.sleep(0.2)
    lists = list(collector.lists)
    latencies = np.array([arrived - src for _, _, _, src, arrived in lists if src is not None])
    pct = (lambda q: float(np.percentile(latencies, q)) if latencies.size else float("nan"))
    replay_s = (replay_ended[0] if replay_ended else processed_at) - replay_started
    k = settings.serving.k
    consumer_hr = consumer_hit_rate(events, lists, k)
    return {
        "events_published": len(events),
        "bad_messages_published": options.bad_events,
        "events_processed": int(processed),
        "dlq": int(total(samples, "streamrec_events_dlq_total")),
        "lists_published": int(published_lists),
        "lists_received": len(lists),
        "throughput_events_per_s": (len(events) - 1) / max(1e-9, processed_at - replay_started),
        "clients": options.clients,
        "rate_asked_events_per_s": options.rate if pacer is not None else (float(options.rate) or None),
        "rate_sustained_events_per_s": (len(events) - 1) / max(1e-9, replay_s),
        "latency_objective_p99_s": pacer.tail_s if pacer is not None else None,
        "startup_to_first_list_s": first_list_s,
        "latency_p50_s": pct(50),
        "latency_p95_s": pct(95),
        "latency_p99_s": pct(99),
        **latency_split(collector.splits),
        f"hr@{k}_consumer": consumer_hr["hr"],
        "hr_evaluated_events": consumer_hr["evaluated"],
        # a faster replay makes larger micro-batches: one list per user per batch, so fewer lists
        "mean_batch_events": total(samples, "streamrec_batch_size_events_sum")
        / max(1.0, total(samples, "streamrec_batch_size_events_count")),
        f"hr@{k}_worker": total(samples, "streamrec_prequential_hit_rate", window="all"),
        # the garbage collector's full collections in the worker: each one pauses every list it overlaps
        "worker_gc_full_collections": int(total(samples, "streamrec_gc_pause_seconds_count", generation="2")),
        "worker_gc_full_pause_ms": 1000 * total(samples, "streamrec_gc_pause_seconds_sum", generation="2"),
        **_tuning_summary(samples),
        **_encoder_shadow_summary(samples, k),
        "metrics_url": metrics_url,
    }


def _encoder_shadow_summary(samples: dict, k: int) -> dict[str, Any]:
    """HR with and without the encoder on the users the worker measures (online.shadow; nothing until a
    version has served)."""
    evaluated = total(samples, "streamrec_encoder_shadow_hits", kind="evaluated")
    if not evaluated:
        return {}
    return {"encoder_measured_events": int(evaluated),
            f"hr@{k}_with_encoder": total(samples, "streamrec_encoder_shadow_hit_rate", lists="served"),
            f"hr@{k}_without_encoder": total(samples, "streamrec_encoder_shadow_hit_rate", lists="without_encoder"),
            "hits_owed_to_encoder": int(total(samples, "streamrec_encoder_shadow_hits", kind="owed")),
            "hits_lost_to_encoder": int(total(samples, "streamrec_encoder_shadow_hits", kind="lost")),
            # the gate (online.shadow.StrategyGate): 1 while the encoder is served, 0 while it is muted
            "encoder_gate_serving": total(samples, "streamrec_encoder_gate"),
            "encoder_gate_z": total(samples, "streamrec_encoder_gate_z")}


def _tuning_summary(samples: dict) -> dict[str, Any]:
    """What the tuner settled on, read from the worker's gauges (nothing when it is off)."""
    rates = {dict(labels).get("model"): value for (name, labels), value in samples.items()
             if name == "streamrec_tuner_learning_rate"}
    if not rates:
        return {}
    weights = {dict(labels).get("strategy"): value for (name, labels), value in samples.items()
               if name == "streamrec_blend_strategy_weight"}
    return {"tuner_learning_rates": ", ".join(f"{m}={v:.4g}" for m, v in sorted(rates.items())),
            "tuner_strategy_weights": ", ".join(f"{n}={w:.2f}"
                                                for n, w in sorted(weights.items(), key=lambda x: -x[1])),
            "tuner_reward_rate": total(samples, "streamrec_tuner_reward_rate"),
            "tuner_drift_events": int(total(samples, "streamrec_tuner_drift_events_total"))}


def _print_summary(summary: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    table = Table(title="streamrec demo summary", show_header=False)
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:,.4f}" if abs(value) < 10 else f"{value:,.0f}"
        table.add_row(key, str(value))
    console.print(table)


def _rate(times: list[float], values: list[float]) -> tuple[list[float], list[float]]:
    """Per-second increase of a counter sampled at ``times``."""
    out_t: list[float] = []
    out_v: list[float] = []
    for (t0, v0), (t1, v1) in zip(zip(times, values), zip(times[1:], values[1:])):
        if t1 > t0:
            out_t.append(t1)
            out_v.append(max(0.0, v1 - v0) / (t1 - t0))
    return out_t, out_v


def _self_tuning_panels(axes: Any, history: MetricsHistory, summary: dict[str, Any], rel: Any) -> None:
    """The report's third row: the served config's knobs over time (each relative to its first value, so
    knobs of every scale share one axis), the config version served, and the searches in numbers."""
    ax = axes[0]
    curves = history.by_label("streamrec_engine_knob", "knob")
    moved = {label: (times, values) for label, (times, values) in curves.items()
             if values and values[0] and any(v != values[0] for v in values)}
    for label, (times, values) in sorted(moved.items()):
        ax.plot(rel(times), [v / values[0] for v in values], label=label[0] if isinstance(label, tuple) else label)
    if moved:
        ax.legend(loc="best", fontsize="x-small", ncol=2)
    else:
        ax.text(0.5, 0.5, "no knob moved\n(no swap, or self-tuning off)", ha="center", va="center",
                transform=ax.transAxes, color="grey")
    ax.set(title="served config's knobs (÷ their first value)", xlabel="seconds")

    ax = axes[1]
    times, values = history.series("streamrec_config_version")
    ax.step(rel(times), values, where="post")
    ax.set(title="config version served (0 = configured)", xlabel="seconds")

    ax = axes[2]
    ax.axis("off")
    lines = [f"{key.replace('self_tune_', '')}: {value}" for key, value in summary.items()
             if key.startswith("self_tune_")]
    ax.text(0.0, 1.0, "self-tuning\n\n" + ("\n".join(lines) if lines else "off (STREAMREC_SELF_TUNE=0)"),
            va="top", family="monospace", transform=ax.transAxes)


def write_report(path: str | Path, history: MetricsHistory, lists: list[tuple], summary: dict[str, Any],
                 k: int, replay_rates: list[tuple[float, float]] | None = None) -> Path:
    """One page for people who would rather look than read: throughput, latency percentiles,
    HR@k/NDCG@k over time, the bandit tuner's curves (learning rates, strategy weights, arm
    probabilities) and self-tuning (the served config's knobs over time, the config version, searches
    and swaps). ``replay_rates``, ``(time, events/s)`` of a paced replay, are drawn with the throughput.
    ``.html`` embeds the PNG and the summary table; anything else is a PNG."""
    import base64
    import html
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    t0 = min(history.times[:1] + [arrived for *_, arrived in lists[:1]], default=time.time())
    rel = (lambda ts: [t - t0 for t in ts])
    fig, axes = plt.subplots(3, 3, figsize=(16, 12.5), constrained_layout=True)
    asked = summary.get("rate_asked_events_per_s")
    asked = asked if isinstance(asked, str) else f"{asked:,.0f}/s" if asked else "as fast as possible"
    ms = (lambda key: summary.get(key, float("nan")) * 1000)
    fig.suptitle(f"streamrec demo: {summary.get('events_published', 0):,} events, "
                 f"{summary.get('lists_received', 0):,} lists, consumer HR@{k} "
                 f"{summary.get(f'hr@{k}_consumer', float('nan')):.3f}\n"
                 f"rate asked {asked}, sustained {summary.get('rate_sustained_events_per_s', float('nan')):,.0f}/s; "
                 f"event -> list latency p50 {ms('latency_p50_s'):.0f} ms, p95 {ms('latency_p95_s'):.0f} ms, "
                 f"p99 {ms('latency_p99_s'):.0f} ms")

    ax = axes[0][0]
    for name, label in (("streamrec_events_processed_total", "events/s"),
                        ("streamrec_recommendations_published_total", "lists/s")):
        times, values = _rate(*history.series(name))
        ax.plot(rel(times), values, label=label)
    if replay_rates:
        ax.step(rel([t for t, _ in replay_rates]), [r for _, r in replay_rates], where="post",
                label="replay paced at", alpha=0.6)
    ax.set(title="throughput (worker)", xlabel="seconds", ylabel="per second")
    ax.legend(loc="best")

    ax = axes[0][1]
    latencies = [(arrived - t0, arrived - src) for _, _, _, src, arrived in lists if src is not None]
    if latencies:
        arr = np.array(latencies)
        bins = np.floor(arr[:, 0]).astype(int)
        seconds = np.unique(bins)
        for q in (50, 95, 99):
            ax.plot(seconds, [np.percentile(arr[bins == s, 1], q) * 1000 for s in seconds], label=f"p{q}")
        ax.set_yscale("log")
        ax.legend(loc="best")
    ax.set(title="event -> list latency (consumer)", xlabel="seconds", ylabel="ms")

    ax = axes[0][2]
    for name, window, label in (("streamrec_prequential_hit_rate", "recent", f"HR@{k} recent"),
                                ("streamrec_prequential_hit_rate", "all", f"HR@{k} all"),
                                ("streamrec_prequential_ndcg", "recent", f"NDCG@{k} recent")):
        times, values = history.series(name, window=window)
        ax.plot(rel(times), values, label=label)
    # what the encoder adds (online.shadow): its measured users' lists with it and without it (once it serves)
    for lists, label in (("served", f"HR@{k} with the encoder (measured users)"),
                         ("without_encoder", f"HR@{k} without it (same users)")):
        times, values = history.series("streamrec_encoder_shadow_hit_rate", lists=lists)
        if times:
            ax.plot(rel(times), values, label=label, linestyle="--")
    ax.set(title="prequential quality (worker)", xlabel="seconds")
    ax.legend(loc="best")

    panels = ((axes[1][0], "streamrec_tuner_learning_rate", ("model",), "learning rate per model", True),
              (axes[1][1], "streamrec_blend_strategy_weight", ("strategy",), "blend strategy weights", False),
              (axes[1][2], "streamrec_tuner_arm_probability", ("decision", "arm"), "tuner arm probabilities", False))
    for ax, name, labels, title, log in panels:
        curves = history.by_label(name, *labels)
        for label, (times, values) in sorted(curves.items()):
            ax.plot(rel(times), values, label=label)
        if curves:
            ax.legend(loc="best", fontsize="small")
            if log and all(v > 0 for _, values in curves.values() for v in values):
                ax.set_yscale("log")
        else:
            ax.text(0.5, 0.5, "no tuner data\n(STREAMREC_TUNER=1 turns the tuner on)", ha="center", va="center",
                    transform=ax.transAxes, color="grey")
        ax.set(title=title, xlabel="seconds")

    _self_tuning_panels(axes[2], history, summary, rel)

    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".html", ".htm"):
        rows = "".join(f"<tr><td>{html.escape(str(key))}</td><td>{html.escape(str(value))}</td></tr>"
                       for key, value in summary.items())
        image = base64.b64encode(png.getvalue()).decode()
        path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>streamrec demo report</title>"
                        f"</head><body style='font-family:sans-serif'><h1>streamrec demo report</h1>"
                        f"<img alt='run curves' style='max-width:100%' src='data:image/png;base64,{image}'>"
                        f"<table border='1' cellpadding='4' style='border-collapse:collapse'>{rows}</table>"
                        f"</body></html>\n")
    else:
        path.write_bytes(png.getvalue())
    return path
