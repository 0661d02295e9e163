"""``streamrec demo``: the whole pipe on one machine with nothing installed.

Starts the embedded broker, a worker process (with its /metrics endpoint), and a
consumer; replays a data set (by default a generated one) plus a few malformed
messages; shows live progress; ends with a summary measured from the outside:
what was published, what the worker processed and dead-lettered (scraped from its
/metrics), lists received, throughput, event->list latency seen by the consumer,
and the prequential HR@k the consumer measures ("was the next item a user touched
in the last list we published for that user").
"""
from __future__ import annotations

import json
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from online.base import Interaction
from stream.broker import EmbeddedBroker, free_port
from stream.clients import EventPublisher, RecommendationConsumer
from stream.datasets import generate, load
from stream.scrape import scrape, total
from stream.settings import Settings
from stream.worker import spawn_process, spawn_worker, stop_process

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
    rate: float = 5_000.0
    batch_events: int = 100
    bad_events: int = len(BAD_MESSAGES)
    json_path: str | None = None
    hold: bool = False
    trainer: bool = False
    timeout: float = 300.0
    seed: int = 7


class ListCollector(threading.Thread):
    """Consumes ``recommendations`` in the background and keeps what the summary needs."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True, name="streamrec-demo-consumer")
        self.consumer = RecommendationConsumer(bootstrap, topic, from_beginning=True)
        self.lists: list[tuple[str, str | None, tuple[str, ...], float | None, float]] = []
        self.stop_event = threading.Event()
        self.first_arrival: float | None = None
        self.consumer.consumer  # connect and assign now, so nothing published is missed

    def run(self) -> None:
        while not self.stop_event.is_set():
            for value, arrived in self.consumer.poll(0.1):
                if self.first_arrival is None:
                    self.first_arrival = arrived
                items = tuple(entry["item_id"] for entry in value.get("items", ()))
                self.lists.append((value["user_id"], value.get("event_id"), items, value.get("source_ts"), arrived))
        self.consumer.close()


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


def run_demo(settings: Settings, options: DemoOptions, console: Any = None) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = console or Console(stderr=True)
    events = _load_events(options)
    if not events:
        raise ValueError("the data set is empty")
    workdir = Path(tempfile.mkdtemp(prefix="streamrec-demo-"))
    metrics_port = settings.metrics_port or free_port()
    console.print(f"[bold]streamrec demo[/]: {len(events):,} events "
                  f"({options.data or 'generated: tastes, Zipf popularity, sessions, drift halfway'})")
    with EmbeddedBroker(topics=settings.topic_specs(), log_path=str(workdir / "broker.log")) as broker:
        settings = settings.replace(bootstrap_servers=broker.bootstrap, metrics_port=metrics_port,
                                    data_dir=str(workdir / "worker"))
        if options.trainer:  # the encoder is served through the blend; refresh early and often
            settings = settings.replace(
                blend=settings.blend or "default", trainer_dir=str(workdir / "checkpoints"), trainer_refresh_s=5.0,
                trainer_min_new_events=max(100, min(settings.trainer_min_new_events, len(events) // 4)),
                trainer_epochs=1)
        metrics_url = f"http://{settings.metrics_host}:{metrics_port}/metrics"
        console.print(f"broker     {broker.bootstrap} (Tansu, memory storage; log {broker.log_path})")
        worker_log = open(workdir / "worker.log", "wb")
        started = time.time()
        worker = spawn_worker(settings, worker_log)
        console.print(f"worker     pid {worker.pid}; metrics {metrics_url}; log {worker_log.name}")
        trainer = trainer_log = None
        if options.trainer:
            trainer_log = open(workdir / "trainer.log", "wb")
            trainer = spawn_process(["trainer"], settings, trainer_log)
            console.print(f"trainer    pid {trainer.pid}; checkpoints {settings.trainer_dir}; log {trainer_log.name}")
        collector = ListCollector(broker.bootstrap, settings.topic_recommendations)
        collector.start()
        publisher = EventPublisher(broker.bootstrap, settings.topic_events, batch_events=options.batch_events)
        try:
            summary = _drive(settings, options, events, publisher, collector, worker, metrics_url, started,
                             console, Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                               TimeElapsedColumn(), console=console, transient=False))
            if trainer is not None:
                summary["encoder_version_served"] = _wait_for_encoder(metrics_url, worker, trainer, console,
                                                                      started + options.timeout)
            if options.hold:
                console.print(f"[bold]holding[/]: broker {broker.bootstrap}, metrics {metrics_url}; Ctrl-C to stop")
                try:
                    while worker.poll() is None:
                        time.sleep(1)
                except KeyboardInterrupt:
                    pass
        finally:
            collector.stop_event.set()
            publisher.close()
            stop_process(worker)
            worker_log.close()
            if trainer is not None:
                stop_process(trainer)
                trainer_log.close()
            collector.join(5)
    _print_summary(summary, console)
    if options.json_path:
        Path(options.json_path).write_text(json.dumps(summary, indent=2) + "\n")
        console.print(f"summary written to {options.json_path}")
    return summary


def _wait_for_encoder(url: str, worker: Any, trainer: Any, console: Any, deadline: float) -> int:
    """Block until the worker serves an encoder version (or the trainer died, or time is up)."""
    console.print("waiting for the trainer's first encoder version to be served ...")
    while time.time() < deadline and trainer.poll() is None:
        version = int(total(_wait_metrics(url, worker, deadline), "streamrec_encoder_version"))
        if version >= 1:
            console.print(f"serving encoder version {version}")
            return version
        time.sleep(0.5)
    console.print("[yellow]no encoder version was served[/] (see the trainer's log)")
    return 0


def _wait_metrics(url: str, worker: subprocess.Popen, deadline: float) -> dict:
    while time.time() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with code {worker.returncode}; see its log")
        try:
            return scrape(url)
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"no metrics at {url}")


def _drive(settings: Settings, options: DemoOptions, events: list[Interaction], publisher: EventPublisher,
           collector: ListCollector, worker: subprocess.Popen, metrics_url: str, started: float,
           console: Any, progress: Any) -> dict[str, Any]:
    deadline = started + options.timeout
    # 1. One probe event, to measure start -> first recommendation.
    publisher.publish(events[0])
    publisher.flush()
    while collector.first_arrival is None:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with code {worker.returncode} before serving; see its log")
        if time.time() > deadline:
            raise TimeoutError("no recommendation arrived before the timeout")
        time.sleep(0.02)
    first_list_s = collector.first_arrival - started
    console.print(f"first list {first_list_s:.2f} s after the worker started")
    # 2. Replay the rest, with malformed messages mixed in, at the chosen rate.
    bad = [BAD_MESSAGES[i % len(BAD_MESSAGES)] for i in range(options.bad_events)]
    bad_every = max(1, len(events) // (len(bad) + 1))
    with progress:
        sent = progress.add_task("published", total=len(events))
        done = progress.add_task("processed", total=len(events))
        progress.update(sent, advance=1)
        replay_started = time.time()

        def advance(n: int) -> None:
            progress.update(sent, advance=n)

        def mixed() -> Any:
            for n, event in enumerate(events[1:], 1):
                if bad and n % bad_every == 0:
                    raw, _ = bad.pop()
                    publisher.flush_buffers()
                    publisher.producer.send(settings.topic_events, value=raw, key=b"u-bad")
                yield event

        replayer = threading.Thread(target=lambda: publisher.replay(mixed(), rate=options.rate or None,
                                                                    on_progress=advance), daemon=True)
        replayer.start()
        processed = 0.0
        while time.time() < deadline:
            samples = _wait_metrics(metrics_url, worker, deadline)
            processed = total(samples, "streamrec_events_processed_total")
            progress.update(done, completed=processed)
            if not replayer.is_alive() and processed >= len(events):
                break
            time.sleep(0.1)
        replayer.join()
        processed_at = time.time()
    samples = _wait_metrics(metrics_url, worker, deadline)
    published_lists = total(samples, "streamrec_recommendations_published_total")
    while len(collector.lists) < published_lists and time.time() < min(deadline, processed_at + 10):
        time.sleep(0.05)
    time.sleep(0.2)
    lists = list(collector.lists)
    latencies = np.array([arrived - src for _, _, _, src, arrived in lists if src is not None])
    pct = (lambda q: float(np.percentile(latencies, q)) if latencies.size else float("nan"))
    k = settings.k
    consumer_hr = consumer_hit_rate(events, lists, k)
    return {
        "events_published": len(events),
        "bad_messages_published": options.bad_events,
        "events_processed": int(processed),
        "dlq": int(total(samples, "streamrec_events_dlq_total")),
        "lists_published": int(published_lists),
        "lists_received": len(lists),
        "throughput_events_per_s": (len(events) - 1) / max(1e-9, processed_at - replay_started),
        "rate_asked_events_per_s": options.rate or None,
        "startup_to_first_list_s": first_list_s,
        "latency_p50_s": pct(50),
        "latency_p95_s": pct(95),
        "latency_p99_s": pct(99),
        f"hr@{k}_consumer": consumer_hr["hr"],
        "hr_evaluated_events": consumer_hr["evaluated"],
        f"hr@{k}_worker": total(samples, "streamrec_prequential_hit_rate", window="all"),
        "metrics_url": metrics_url,
    }


def _print_summary(summary: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    table = Table(title="streamrec demo summary", show_header=False)
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:,.4f}" if abs(value) < 10 else f"{value:,.0f}"
        table.add_row(key, str(value))
    console.print(table)
