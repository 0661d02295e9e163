"""Where a worker's CPU goes per event, on both message shapes (issue 16): py-spy samples plus counters.

For each shape (single-event messages, JSON arrays of 200 events) on a fresh embedded broker: the events
are produced first, a worker is started, and ``py-spy record`` samples it from the moment its partitions
are assigned until it has processed every event. Each sampled stack is put in one bucket, by the first of
these it passes through, from the leaf up:

    sending       stream/kafka/sender.py, aiokafka's producer
    encoding      stream.wire.schema's encoders of lists and dead letters
    list building the engine's recommend path (online.*) under EventProcessor._list_for/_prepare
    learning      learn_many / learn_users / the sharing path
    decoding      EventProcessor._decode_events and stream.wire.schema's decode/validate
    processor     the rest of EventProcessor (bookkeeping, metrics per batch)
    Faust/Kafka   faust, mode, aiokafka (fetching, the conductor, streams, acks, commits)
    other         everything else (asyncio's loop, the metrics page, gc)

The CPU µs per event of each bucket is its share of samples times the worker's CPU per event (from
/proc over the same interval). Prints a table; ``--json`` writes it, ``--keep DIR`` keeps the raw
py-spy files (collapsed stacks, for ``flamegraph.pl`` or speedscope).

    python benchmarks/profile_worker.py                 # both shapes, ~2 minutes
    python benchmarks/profile_worker.py --shapes single --single-events 50000
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.pipeline import _cpu_seconds, fresh_settings, produce, start_worker  # noqa: E402
from stream.cli.datasets import generate  # noqa: E402
from stream.cli.processes import stop_process, wait_until_ready  # noqa: E402
from stream.cli.scrape import scrape, total  # noqa: E402
from stream.kafka.broker import EmbeddedBroker  # noqa: E402
from stream.settings import Settings  # noqa: E402

BUCKETS = ("sending", "encoding", "list building", "learning", "decoding", "processor", "Faust/Kafka", "other")


LEARNING = ("learn_many", "learn_users", "_learn_sharing", "learn_replica")
ENCODERS = ("recommendation", "dead_letter", "encode")


def bucket(frames: list[str]) -> str:
    """The bucket of one stack (frames root first, py-spy's ``Class.function (path:line)``)."""
    ours = None
    for frame in reversed(frames):  # from the leaf up: the most specific of our frames decides
        qualified, _, where = frame.partition(" (")
        function, path = qualified.rsplit(".", 1)[-1], where.rsplit(":", 1)[0]
        if path.startswith(("stream/kafka/sender.py", "aiokafka/producer/")):
            return "sending"
        if path.startswith("stream/wire/schema.py") and function in ENCODERS:
            return "encoding"
        if path.startswith("stream/worker/processor.py") and function in ("_list_for", "_prepare"):
            return "list building"
        if function in LEARNING:
            return "learning"
        if function == "_decode_events" or path.startswith("stream/wire/schema.py"):
            ours = ours or "decoding"
        if path.startswith("stream/worker/processor.py"):
            ours = ours or "processor"
    if ours is not None:
        return ours
    for frame in frames:
        if frame.partition(" (")[2].startswith(("faust/", "mode/", "aiokafka/", "kafka/")):
            return "Faust/Kafka"
    return "other"


def read_collapsed(path: Path) -> Counter:
    counts: Counter = Counter()
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            counts[bucket(stack.split(";"))] += int(n)
    return counts


def profile_shape(name: str, events, batch_events: int, rate_hz: int, keep: Path | None) -> dict:
    with EmbeddedBroker(topics=Settings().topic_specs()) as broker:
        produce(broker.bootstrap, "events", events, batch_events)
        settings = fresh_settings(broker.bootstrap)
        process = start_worker(settings, f"profile-{name}")
        out = Path(tempfile.mkdtemp(prefix="streamrec-profile-")) / f"{name}.txt"
        try:
            wait_until_ready(settings, process, timeout=60)
            url = f"http://{settings.metrics.host}:{settings.metrics.port}/metrics"
            spy = subprocess.Popen([shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"), "record",
                                    "--pid", str(process.pid), "--rate", str(rate_hz), "--format", "raw",
                                    "--output", str(out), "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(0.5)
            page = scrape(url, timeout=10)
            done_before = total(page, "streamrec_events_processed_total")
            lists_before = total(page, "streamrec_recommendations_published_total")
            cpu_before, started = _cpu_seconds(process.pid), time.time()
            done = done_before
            while done < len(events) and time.time() - started < 600:
                time.sleep(0.2)
                try:
                    page = scrape(url, timeout=10)
                except OSError:  # a busy worker answers late; ask again
                    continue
                done = total(page, "streamrec_events_processed_total")
            cpu, seconds = _cpu_seconds(process.pid) - cpu_before, time.time() - started
            spy.send_signal(signal.SIGINT)
            _, err = spy.communicate(timeout=60)
        finally:
            stop_process(process)
        if not out.exists():
            raise RuntimeError(f"py-spy wrote nothing: {err.decode(errors='replace')[-500:]}")
        counts = read_collapsed(out)
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(out, keep / out.name)
    events_seen = max(1.0, done - done_before)
    cpu_us = 1e6 * cpu / events_seen
    samples = sum(counts.values()) or 1
    lists = total(page, "streamrec_recommendations_published_total") - lists_before
    return {"events": int(events_seen), "events_per_s": events_seen / seconds, "cpu_us_per_event": cpu_us,
            "lists_per_event": lists / events_seen,
            "samples": samples,
            "buckets_us_per_event": {b: cpu_us * counts.get(b, 0) / samples for b in BUCKETS},
            "buckets_share": {b: counts.get(b, 0) / samples for b in BUCKETS}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="single,array", help="comma-separated: single,array")
    parser.add_argument("--single-events", type=int, default=60_000)
    parser.add_argument("--array-events", type=int, default=200_000)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--json", default=None)
    parser.add_argument("--keep", default=None, help="folder to keep py-spy's collapsed stacks in")
    args = parser.parse_args()
    keep = Path(args.keep) if args.keep else None
    results: dict = {"machine": f"{os.uname().nodename} {os.cpu_count()} cpu",
                     "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    shapes = args.shapes.split(",")
    unknown = sorted(set(shapes) - {"single", "array"})
    if unknown:
        parser.error(f"unknown shapes {', '.join(unknown)}: choose from single, array")
    if not (shutil.which("py-spy") or (Path(sys.executable).parent / "py-spy").exists()):
        parser.error("py-spy not found: pip install py-spy (it samples the worker's stacks)")
    if "single" in shapes:
        events = generate(args.single_events, n_users=5_000, n_items=5_000, seed=1)
        results["single"] = profile_shape("single", events, 1, args.rate, keep)
    if "array" in shapes:
        events = generate(args.array_events, n_users=20_000, n_items=10_000, seed=2)
        results["array"] = profile_shape("array", events, 200, args.rate, keep)
    print(f"{'bucket':<14}" + "".join(f"{shape + ' µs/ev':>16}{'share':>8}" for shape in shapes if shape in results))
    for b in BUCKETS:
        print(f"{b:<14}" + "".join(f"{results[s]['buckets_us_per_event'][b]:>16.1f}{results[s]['buckets_share'][b]:>8.0%}"
                                   for s in shapes if s in results))
    print(f"{'total':<14}" + "".join(f"{results[s]['cpu_us_per_event']:>16.1f}{'':>8}" for s in shapes if s in results))
    print(f"{'lists/event':<14}" + "".join(f"{results[s]['lists_per_event']:>16.2f}{'':>8}" for s in shapes if s in results))
    print(f"{'events/s':<14}" + "".join(f"{results[s]['events_per_s']:>16,.0f}{'':>8}" for s in shapes if s in results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
