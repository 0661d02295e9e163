"""Worker latency during encoder hot swaps (issue 5's "a hot swap must not stall serving").

One worker serving the blend with an encoder, single-event messages at a fixed rate; the
event -> list latency seen by a consumer is measured twice in one run: steady (version 1
loaded, no swaps) and while a new version is announced on model-updates every
``--swap-every`` seconds. Prints both and the p99 ratio.

    python benchmarks/swap_latency.py                # ~2 minutes
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kafka import KafkaProducer  # noqa: E402

from stream.cli.datasets import generate  # noqa: E402
from stream.cli.processes import spawn_worker, stop_process  # noqa: E402
from stream.cli.scrape import scrape, total  # noqa: E402
from stream.kafka.broker import EmbeddedBroker, create_topics, free_port  # noqa: E402
from stream.kafka.clients import EventPublisher, RecommendationConsumer  # noqa: E402
from stream.settings import Settings  # noqa: E402
from stream.wire.announcements import ModelUpdate, encode_model_update  # noqa: E402


def train_versions(directory: Path, n: int, events) -> list[Path]:
    from models import EncoderConfig, TrainerConfig, train_offline

    users = [e.user_id for e in events]
    items = [e.item_id for e in events]
    cfg = TrainerConfig(device="cpu", epochs=1, progress=False)
    return [train_offline(users, items, EncoderConfig.tiny(), cfg.copy(seed=v), directory, holdout=0, version=v)
            for v in range(1, n + 1)]


def measure(bootstrap: str, settings: Settings, rate: float, seconds: float, events, on_tick=None) -> dict:
    consumer = RecommendationConsumer(bootstrap, settings.topics.recommendations)
    consumer.connect()
    samples: list[float] = []
    stop = threading.Event()
    started = time.time()

    def read() -> None:
        while not stop.is_set():
            for value, arrived in consumer.poll(0.05):
                # Tansu's end offset can land inside the last batch (pipe-findings 5b): older lists
                # may be read again, so only lists triggered during this measurement count.
                if value.get("source_ts") and value["source_ts"] >= started:
                    samples.append(arrived - value["source_ts"])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    ticker = None
    if on_tick is not None:
        ticker = threading.Thread(target=on_tick, args=(stop,), daemon=True)
        ticker.start()
    publisher = EventPublisher(bootstrap, settings.topics.events, batch_events=1, extra_config={"linger_ms": 0})
    publisher.replay(events[: int(rate * seconds)], rate=rate)
    publisher.close()
    time.sleep(1.0)
    stop.set()
    reader.join(5)
    consumer.close()
    values = np.array(samples) * 1000
    return {"lists": int(values.size), "p50_ms": float(np.percentile(values, 50)),
            "p95_ms": float(np.percentile(values, 95)), "p99_ms": float(np.percentile(values, 99)),
            "max_ms": float(values.max())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--swap-every", type=float, default=2.0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="streamrec-swap-"))
    stream = generate(int(args.rate * args.seconds * 2) + 5_000, n_users=2_000, n_items=2_000, seed=3)
    n_versions = int(args.seconds / args.swap_every) + 2
    print(f"training {n_versions} tiny encoder versions ...", flush=True)
    paths = train_versions(work / "ckpt", n_versions, stream[:5_000])
    with EmbeddedBroker(topics=Settings().topic_specs(), log_path=str(work / "broker.log")) as broker:
        settings = Settings.of(bootstrap_servers=broker.bootstrap, blend="default", metrics_port=free_port(),
                            data_dir=str(work / "worker"), trainer_dir=str(work / "ckpt"))
        create_topics(broker.bootstrap, settings.topic_specs())
        url = f"http://{settings.metrics.host}:{settings.metrics.port}/metrics"
        worker = spawn_worker(settings, open(work / "worker.log", "wb"), cwd=str(ROOT))
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap)

        def announce(version: int) -> None:
            note = ModelUpdate(version, str(paths[version - 1]))
            producer.send(settings.topics.model_updates, value=encode_model_update(note))
            producer.flush()

        try:
            with EventPublisher(broker.bootstrap, settings.topics.events) as publisher:  # warm-up: history
                publisher.replay(stream[:5_000])
            announce(1)
            deadline = time.time() + 120
            while time.time() < deadline:  # warm-up learned and version 1 served, before measuring
                try:
                    samples = scrape(url)
                    if (total(samples, "streamrec_encoder_version") >= 1
                            and total(samples, "streamrec_events_processed_total") >= 5_000):
                        break
                except OSError:
                    pass
                time.sleep(0.2)
            time.sleep(3.0)  # let the warm-up's lists drain past the consumer's start offset
            live = stream[5_000:]
            steady = measure(broker.bootstrap, settings, args.rate, args.seconds, live)
            versions = iter(range(2, n_versions + 1))

            def swapper(stop: threading.Event) -> None:
                while not stop.wait(args.swap_every):
                    version = next(versions, None)
                    if version is None:
                        return
                    announce(version)

            swapping = measure(broker.bootstrap, settings, args.rate, args.seconds,
                               live[int(args.rate * args.seconds):], on_tick=swapper)
            samples = scrape(url)
            result = {"rate": args.rate, "seconds": args.seconds, "swap_every_s": args.swap_every,
                      "steady": steady, "during_swaps": swapping,
                      "swaps_done": total(samples, "streamrec_encoder_swaps_total", result="swapped") - 1,
                      "p99_ratio": swapping["p99_ms"] / steady["p99_ms"]}
        finally:
            producer.close()
            stop_process(worker)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
