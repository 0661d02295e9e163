"""Soak benchmark (issue 7): drive one worker at a fixed rate for a long time and watch it.

Publishes click events at ``--rate`` events/s for ``--duration`` seconds, with user ids
cycling through ``--users`` distinct users (every event is a new user until the cycle
wraps: the worst case for per-user state), and every ``--report-every`` seconds prints

* throughput: events published, events the worker processed, lists received (per second);
* latency p50/p95/p99: publish of an event -> arrival of the list that reflects it (lists are
  matched to events by ``event_id``);
* consumer lag: events published minus ``streamrec_events_processed_total``;
* worker RSS (psutil if installed, else ``/proc/PID/status``), and the broker's, and the
  worker's ``streamrec_state_users``.

At the end: a summary table, whether every published event was processed, and the slope of
the worker's RSS over the last half of the run. With ``STREAMREC_MAX_USERS`` (or
``--max-users``) below the number of users the run reaches, the user-state cap is hit early
and RSS must go flat: that is the "state caps hold memory flat" evidence.

    python benchmarks/soak.py                                  # 10 minutes at 500 ev/s, 1M-user cycle
    STREAMREC_MAX_USERS=100000 python benchmarks/soak.py --rate 1500 --duration 180 --json soak.json

Starts an embedded Tansu broker unless ``--bootstrap`` names one. Tansu keeps every message
in memory (its RSS grows with the run) and its fetch cost grows with the number of record
batches per partition (notes/pipe-findings.md): long runs on Tansu measure the broker too.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.pipeline import LOGS, fresh_settings, start_worker, stop  # noqa: E402
from stream.cli.processes import wait_until_ready  # noqa: E402
from stream.cli.scrape import scrape, total  # noqa: E402
from stream.kafka.broker import EmbeddedBroker, create_topics  # noqa: E402
from stream.kafka.clients import EventPublisher, RecommendationConsumer  # noqa: E402
from stream.settings import Settings  # noqa: E402

MB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (psutil when installed, else /proc)."""
    try:
        import psutil
    except ImportError:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for pid {pid}") from None
    return int(psutil.Process(pid).memory_info().rss)


def rss_trend(samples: list[tuple[float, float]]) -> dict[str, Any]:
    """Least-squares slope of RSS (MB) against time over the last half of ``samples``."""
    if len(samples) < 4:
        return {"slope_mb_per_min": float("nan"), "growth_mb": float("nan"), "flat": False,
                "verdict": "too short to tell"}
    end = samples[-1][0]
    half = [(t, m) for t, m in samples if t >= end / 2]
    if len(half) < 3:
        half = samples[-3:]
    t = np.array([s[0] for s in half])
    mb = np.array([s[1] for s in half])
    slope = float(np.polyfit(t, mb, 1)[0])  # MB per second
    growth = slope * float(t[-1] - t[0])
    # Flat: the fitted growth over the last half is under 10 MB or 5% of the RSS, whichever is larger.
    flat = bool(growth < max(10.0, 0.05 * float(mb.mean())))
    return {"slope_mb_per_min": 60 * slope, "growth_mb": growth, "from_mb": float(mb[0]), "to_mb": float(mb[-1]),
            "flat": flat, "verdict": "FLAT" if flat else "GROWING"}


@dataclass
class Soak:
    """The state shared by the publisher, the list reader and the reporter."""

    sent_at: dict[str, float] = field(default_factory=dict)  # event_id -> publish time, until its list arrives
    latencies: list[float] = field(default_factory=list)  # seconds, every matched list
    published: int = 0
    lists: int = 0
    matched: int = 0
    stop: threading.Event = field(default_factory=threading.Event)


def event_stream(state: Soak, users: int, items: int, seed: int = 11) -> Iterator[dict[str, Any]]:
    """Click events; user ``n % users`` for the n-th event, items Zipf-like over ``items``."""
    rng = np.random.default_rng(seed)
    n = 0
    while True:
        for item in (rng.zipf(1.3, 4096) - 1) % items:
            event_id = f"s{n}"
            now = time.time()
            state.sent_at[event_id] = now
            state.published = n + 1
            yield {"user_id": f"u{n % users}", "item_id": f"i{item}", "type": "click", "ts": now,
                   "event_id": event_id}
            n += 1


def read_lists(state: Soak, consumer: RecommendationConsumer) -> None:
    sent_at, latencies = state.sent_at, state.latencies
    while not state.stop.is_set():
        for listing, arrived in consumer.poll(0.1):
            state.lists += 1
            sent = sent_at.pop(listing.get("event_id"), None)
            if sent is not None:
                latencies.append(arrived - sent)
                state.matched += 1


def run_soak(settings: Settings, worker_pid: int, *, rate: float, duration: float, users: int, items: int = 20_000,
             report_every: float = 10.0, batch_events: int = 200, linger_s: float = 0.005,
             broker_pid: int | None = None,
             drain_timeout: float = 60.0, out: Callable[[str], None] = print) -> dict[str, Any]:
    """Drive a running worker; returns the summary (and prints a line every ``report_every`` s)."""
    metrics_url = f"http://{settings.metrics.host}:{settings.metrics.port}/metrics"
    state = Soak()
    consumer = RecommendationConsumer(settings.kafka.bootstrap_servers, settings.topics.recommendations)
    consumer.connect()  # positioned at the end before the first event is sent
    reader = threading.Thread(target=read_lists, args=(state, consumer), daemon=True)
    reader.start()
    before = total(scrape(metrics_url), "streamrec_events_processed_total")
    publisher = EventPublisher(settings.kafka.bootstrap_servers, settings.topics.events, batch_events=batch_events,
                               linger_s=linger_s)
    started = time.time()
    stop_publishing = threading.Event()
    samples: list[dict[str, Any]] = []

    def sample() -> dict[str, Any]:
        page = scrape(metrics_url)
        now = time.time()
        row = {"t": round(now - started, 1), "published": state.published,
               "processed": int(total(page, "streamrec_events_processed_total") - before),
               "lists": state.lists, "matched": state.matched, "latencies": len(state.latencies),
               "worker_rss_mb": rss_bytes(worker_pid) / MB,
               "broker_rss_mb": rss_bytes(broker_pid) / MB if broker_pid else None,
               "state_users": int(total(page, "streamrec_state_users"))}
        row["lag"] = row["published"] - row["processed"]
        previous = samples[-1] if samples else {"t": 0.0, "published": 0, "processed": 0, "lists": 0, "latencies": 0}
        span = max(1e-9, row["t"] - previous["t"])
        window = np.array(state.latencies[previous["latencies"]:row["latencies"]]) * 1000
        row.update({
            "published_per_s": (row["published"] - previous["published"]) / span,
            "processed_per_s": (row["processed"] - previous["processed"]) / span,
            "lists_per_s": (row["lists"] - previous["lists"]) / span,
            "p50_ms": float(np.percentile(window, 50)) if window.size else None,
            "p95_ms": float(np.percentile(window, 95)) if window.size else None,
            "p99_ms": float(np.percentile(window, 99)) if window.size else None,
        })
        samples.append(row)
        out(format_row(row))
        return row

    def report() -> None:
        while not stop_publishing.wait(report_every):
            try:
                sample()
                # forget events whose list never came (a later event of the same user superseded them)
                horizon = time.time() - 60
                for event_id in [e for e, t in list(state.sent_at.items())[:10_000] if t < horizon]:
                    state.sent_at.pop(event_id, None)
            except Exception as exc:  # a failed scrape must not end the run
                out(f"  (sample failed: {exc!r})")

    out(header())
    reporter = threading.Thread(target=report, daemon=True)
    reporter.start()
    try:
        publisher.replay(event_stream(state, users, items), rate=rate,
                         should_stop=lambda: time.time() - started >= duration)
    finally:
        stop_publishing.set()
        reporter.join()
        publisher.close()
    published = publisher.events_sent  # every event handed to Kafka (close() flushed the last ones)
    drain_started = time.time()
    processed = 0
    while time.time() - drain_started < drain_timeout:
        processed = int(total(scrape(metrics_url), "streamrec_events_processed_total") - before)
        if processed >= published:
            break
        time.sleep(0.5)
    time.sleep(1.0)  # the last lists
    state.published = published
    final = sample()
    state.stop.set()
    reader.join(5)
    consumer.close()
    all_ms = np.array(state.latencies) * 1000
    measured = [s for s in samples if s["t"] <= duration + report_every / 2]
    trend = rss_trend([(s["t"], s["worker_rss_mb"]) for s in measured])
    cap = settings.engine.max_users
    cap_reached = next((s["t"] for s in samples if s["state_users"] >= cap), None)
    summary = {
        "rate_target": rate, "duration_s": duration, "users_cycle": users, "max_users": cap, "items": items,
        "published": published, "messages": publisher.messages_sent, "processed": final["processed"], "lost": max(0, published - final["processed"]),
        "publish_rate": published / duration, "drain_s": round(time.time() - drain_started, 1),
        "lists": state.lists, "lists_matched": state.matched,
        "latency_ms": {q: float(np.percentile(all_ms, q)) if all_ms.size else None for q in (50, 95, 99)}
        | {"max": float(all_ms.max()) if all_ms.size else None},
        "max_lag": max(s["lag"] for s in samples), "final_lag": final["lag"],
        "worker_rss_mb": {"first": samples[0]["worker_rss_mb"], "max": max(s["worker_rss_mb"] for s in samples),
                          "last": final["worker_rss_mb"]},
        "broker_rss_mb_last": final["broker_rss_mb"],
        "state_users_last": final["state_users"], "user_cap_reached_at_s": cap_reached,
        "rss_last_half": trend, "samples": samples,
    }
    return summary


def header() -> str:
    return (f"{'t s':>7} {'pub/s':>7} {'proc/s':>7} {'lists/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
            f"{'lag':>7} {'worker MB':>9} {'broker MB':>9} {'users':>8}")


def format_row(row: dict[str, Any]) -> str:
    def ms(v: float | None) -> str:
        return f"{v:8.1f}" if v is not None else f"{'-':>8}"

    broker = f"{row['broker_rss_mb']:9.0f}" if row["broker_rss_mb"] is not None else f"{'-':>9}"
    return (f"{row['t']:7.1f} {row['published_per_s']:7.0f} {row['processed_per_s']:7.0f} {row['lists_per_s']:7.0f} "
            f"{ms(row['p50_ms'])} {ms(row['p95_ms'])} {ms(row['p99_ms'])} {row['lag']:7d} "
            f"{row['worker_rss_mb']:9.1f} {broker} {row['state_users']:8d}")


def summary_table(summary: dict[str, Any]) -> str:
    lat = summary["latency_ms"]
    trend = summary["rss_last_half"]
    rows = [
        ("target rate / duration", f"{summary['rate_target']:.0f} ev/s for {summary['duration_s']:.0f} s"),
        ("users cycle / user cap", f"{summary['users_cycle']:,} / {summary['max_users']:,} "
                                   f"(cap reached at {summary['user_cap_reached_at_s']} s)"),
        ("published / processed / lost", f"{summary['published']:,} / {summary['processed']:,} / {summary['lost']:,} "
                                         f"events ({summary['messages']:,} messages)"),
        ("achieved publish rate", f"{summary['publish_rate']:.0f} ev/s"),
        ("lists received / matched", f"{summary['lists']:,} / {summary['lists_matched']:,}"),
        ("latency p50 / p95 / p99 / max", " / ".join(f"{lat[q]:.1f}" if lat[q] is not None else "-"
                                                     for q in (50, 95, 99, "max")) + " ms"),
        ("consumer lag max / final", f"{summary['max_lag']:,} / {summary['final_lag']:,} events"),
        ("worker RSS first / max / last", f"{summary['worker_rss_mb']['first']:.1f} / "
                                          f"{summary['worker_rss_mb']['max']:.1f} / "
                                          f"{summary['worker_rss_mb']['last']:.1f} MB"),
        ("worker RSS, last half", f"slope {trend['slope_mb_per_min']:+.2f} MB/min, fitted growth "
                                  f"{trend['growth_mb']:+.1f} MB -> {trend['verdict']}"),
        ("broker RSS at end", f"{summary['broker_rss_mb_last']:.0f} MB" if summary["broker_rss_mb_last"] else "-"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=500.0, help="events per second (default 500)")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of publishing (default 600)")
    parser.add_argument("--users", type=int, default=1_000_000, help="distinct users, cycled (default 1,000,000)")
    parser.add_argument("--items", type=int, default=20_000, help="distinct items (default 20,000)")
    parser.add_argument("--max-users", type=int, default=None,
                        help="the worker's user-state cap (default: STREAMREC_MAX_USERS or the settings default)")
    parser.add_argument("--report-every", type=float, default=10.0, help="seconds between report lines")
    parser.add_argument("--batch-events", type=int, default=200, help="events per message, at most (1 = single)")
    parser.add_argument("--linger-ms", type=float, default=5.0,
                        help="longest a partial batch waits before it is sent (default 5); more = fewer, larger "
                             "messages (Tansu slows down with the number of record batches per partition)")
    parser.add_argument("--bootstrap", default=None, help="use this broker instead of an embedded Tansu")
    parser.add_argument("--json", default=None, help="write the summary and every sample here")
    args = parser.parse_args()

    def run(bootstrap: str, broker_pid: int | None) -> dict[str, Any]:
        changes = {"max_users": args.max_users} if args.max_users else {}
        settings = fresh_settings(bootstrap, **changes)
        create_topics(bootstrap, settings.topic_specs())
        process = start_worker(settings, "soak-worker")
        try:
            wait_until_ready(settings, process, LOGS / "soak-worker.log")
            return run_soak(settings, process.pid, rate=args.rate, duration=args.duration, users=args.users,
                            items=args.items, report_every=args.report_every, batch_events=args.batch_events,
                            linger_s=args.linger_ms / 1000, broker_pid=broker_pid)
        finally:
            stop(process)

    print(f"soak: {args.rate:.0f} ev/s for {args.duration:.0f} s, {args.users:,} users cycled; "
          f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; {platform.node()} {os.cpu_count()} cpu; "
          f"logs {LOGS}", flush=True)
    if args.bootstrap:
        summary = run(args.bootstrap, None)
    else:
        with EmbeddedBroker(topics=Settings().topic_specs(), log_path=str(LOGS / "broker-soak.log")) as broker:
            summary = run(broker.bootstrap, broker._process.pid if broker._process else None)
    summary.update({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "machine": f"{platform.node()} {os.cpu_count()} cpu, Python {platform.python_version()}"})
    print()
    print(summary_table(summary))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if summary["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
