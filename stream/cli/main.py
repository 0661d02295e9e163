"""The ``streamrec`` command: thin subcommands over the library.

Every subcommand that talks to Kafka accepts every setting as a flag (see
``streamrec worker --help``); flags beat environment variables, which beat defaults.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from stream.errors import StreamError
from stream.kafka.librdkafka import LIBRARIES, preferred
from stream.settings import Settings

_EPILOG = "Settings: every --flag below also reads the environment variable shown in its help."


def _add_settings_flags(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None) -> None:
    group = parser.add_argument_group("settings (flag > environment > default)")
    for leaf in Settings.leaves():
        if only is not None and leaf.flat not in only:
            continue
        default = leaf.format(leaf.default)
        if leaf.kind is bool:
            group.add_argument(leaf.flag, dest=f"set_{leaf.flat}", action=argparse.BooleanOptionalAction,
                               default=None, help=f"{leaf.help} [env {leaf.env}; default {default}]")
        else:  # the raw string: Settings.from_env parses it (errors name the flag)
            group.add_argument(leaf.flag, dest=f"set_{leaf.flat}", default=None, metavar=leaf.env,
                               help=f"{leaf.help} [default {default or repr('')}]")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Defaults, then the environment, then the flags given; every raw string goes through the one
    parser (:meth:`stream.settings.Setting.parse`), booleans as ``true``/``false``."""
    flags = {key[4:]: value for key, value in vars(args).items() if key.startswith("set_") and value is not None}
    return Settings.from_env(flags={name: str(value).lower() if isinstance(value, bool) else value
                                    for name, value in flags.items()})


def _stop_requested() -> Callable[[], bool]:
    """A flag that SIGTERM and SIGINT raise, for foreground commands that poll in a loop."""
    raised = {"now": False}

    def _raise(*_: Any) -> None:
        raised["now"] = True

    signal.signal(signal.SIGTERM, _raise)
    signal.signal(signal.SIGINT, _raise)
    return lambda: raised["now"]


def cmd_broker(args: argparse.Namespace) -> int:
    from stream.kafka.broker import EmbeddedBroker

    settings = settings_from_args(args)
    broker = EmbeddedBroker(host=args.host, port=args.port, topics=settings.topic_specs(),
                            startup_timeout=args.timeout)
    broker.start()
    print(f"Tansu broker ready: bootstrap {broker.bootstrap} (memory storage); topics "
          f"{', '.join(f'{s.name}[{s.partitions}]' for s in settings.topic_specs())}. Ctrl-C stops it.", flush=True)
    should_stop = _stop_requested()
    try:
        while not should_stop() and broker.running:
            time.sleep(0.2)
    finally:
        broker.stop()
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from stream.cli.processes import run_worker

    return run_worker(settings_from_args(args))


def cmd_trainer(args: argparse.Namespace) -> int:
    from stream.cli.processes import lower_priority

    settings = settings_from_args(args)
    # a shared box serves first; a dedicated one loses nothing. Before any import that may start threads:
    # threads inherit the scheduling class of the thread that starts them
    lower_priority(settings.encoder.trainer_nice, settings.encoder.trainer_idle)
    from stream.trainer.trainer import StreamTrainer

    should_stop = _stop_requested()
    trainer = StreamTrainer(settings)
    metrics_url = trainer.serve_metrics()
    print(f"streamrec trainer: events from {settings.topics.events} at {settings.kafka.bootstrap_servers}; "
          f"checkpoints in "
          f"{settings.encoder.trainer_dir}; announcing on {settings.topics.model_updates}; metrics {metrics_url}",
          file=sys.stderr, flush=True)
    return trainer.run(once=args.once, should_stop=should_stop)


def cmd_tuner(args: argparse.Namespace) -> int:
    from stream.cli.processes import lower_priority

    settings = settings_from_args(args)
    if not settings.search.enabled:
        print("streamrec tuner: self-tuning is off (STREAMREC_SELF_TUNE=false); nothing to do", file=sys.stderr,
              flush=True)
        return 0
    # searches are background work, as training is: on a shared box the lists come first (see cmd_trainer)
    lower_priority(settings.search.nice, settings.search.idle)
    from stream.tuner.tuner import StreamTuner

    should_stop = _stop_requested()
    tuner = StreamTuner(settings, metrics_port=args.tuner_metrics_port)
    metrics_url = tuner.serve_metrics()
    print(f"streamrec tuner: events from {settings.topics.events} at {settings.kafka.bootstrap_servers}; study "
          f"{settings.search.study!r} in {settings.search.storage}; announcing on {settings.topics.config_updates}; "
          f"metrics {metrics_url}", file=sys.stderr, flush=True)
    return tuner.run(should_stop=should_stop)


def cmd_publish(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from stream.cli.datasets import load
    from stream.kafka.clients import EventPublisher

    settings = settings_from_args(args)
    events = load(args.data, args.format, limit=args.limit)
    publisher = EventPublisher.from_settings(settings, batch_events=args.batch_events)
    started = time.perf_counter()
    with Progress(transient=False) as progress, publisher:
        task = progress.add_task(f"publishing to {settings.topics.events}", total=len(events))
        count = publisher.replay(events, rate=args.rate, on_progress=lambda n: progress.update(task, advance=n))
    elapsed = time.perf_counter() - started
    print(json.dumps({"events": count, "messages": publisher.messages_sent, "seconds": round(elapsed, 3),
                      "events_per_s": round(count / elapsed, 1) if elapsed else None}))
    return 0


def cmd_consume(args: argparse.Namespace) -> int:
    from stream.kafka.clients import RecommendationConsumer

    settings = settings_from_args(args)
    consumer = RecommendationConsumer.from_settings(settings, from_beginning=args.from_beginning)
    received = 0
    deadline = time.monotonic() + args.timeout if args.timeout else None
    try:
        while args.limit is None or received < args.limit:
            if deadline is not None and time.monotonic() > deadline:
                break
            for value, _ in consumer.poll(0.2):
                sys.stdout.write(json.dumps(value) + "\n")
                received += 1
                if args.limit is not None and received >= args.limit:
                    break
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    print(f"{received} lists", file=sys.stderr)
    return 0


def cmd_request(args: argparse.Namespace) -> int:
    from stream.kafka.clients import RecommendationConsumer, RequestPublisher

    settings = settings_from_args(args)
    consumer = RecommendationConsumer.from_settings(settings)
    consumer.connect()  # assign before asking, so the answer cannot be missed
    requests = RequestPublisher.from_settings(settings)
    request_id = requests.request(args.user, k=args.k or settings.serving.k, exclude=args.exclude or ())
    requests.close()
    deadline = time.monotonic() + args.timeout
    try:
        while time.monotonic() < deadline:
            for value, _ in consumer.poll(0.2):
                if value.get("request_id") == request_id:
                    print(json.dumps(value))
                    return 0
    finally:
        consumer.close()
    print(f"no answer to request {request_id} within {args.timeout} s", file=sys.stderr)
    return 1


def _demo_rate(value: str) -> float | str:
    from stream.cli.demo import parse_rate

    try:
        return parse_rate(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def demo_settings(args: argparse.Namespace) -> Settings:
    """The demo's settings: flags > environment > defaults, with two defaults of its own. Its topics
    have one partition: it runs one worker, and a partition gathers more events per record batch,
    which keeps the embedded broker fast (``benchmarks/broker_aging.py``). Its metrics port is a free
    one, so a running worker is never in the way."""
    settings = settings_from_args(args)
    partitions_env = next(leaf.env for leaf in Settings.leaves() if leaf.flat == "partitions")
    if args.set_partitions is None and partitions_env not in os.environ:
        settings = settings.replace(partitions=1)
    if args.metrics_port_demo is not None:
        settings = settings.replace(metrics_port=args.metrics_port_demo)
    elif args.set_metrics_port is None:
        settings = settings.replace(metrics_port=0)
    return settings


def cmd_demo(args: argparse.Namespace) -> int:
    from stream.cli.demo import DemoOptions, run_demo

    settings = demo_settings(args)
    options = DemoOptions(events=args.events, data=args.data, fmt=args.format, rate=args.rate,
                          batch_events=args.batch_events, json_path=args.json, hold=args.hold,
                          timeout=args.timeout, bad_events=args.bad_events, trainer=args.trainer,
                          report_path=args.report, tail_ms=args.tail_ms, linger_ms=args.linger_ms,
                          clients=args.clients or preferred())
    summary = run_demo(settings, options)
    ok = summary["events_processed"] >= summary["events_published"] and summary["lists_received"] > 0
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamrec", description="Streaming, self-tuning recommender on Kafka + Faust.", epilog=_EPILOG)
    parser.add_argument("--log-level", default="warning", help="log level of this command (default warning)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("broker", help="run the embedded Tansu broker in the foreground")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9092)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for readiness")
    _add_settings_flags(p, ("partitions", "topic_events", "topic_requests", "topic_recommendations",
                            "topic_dlq", "topic_model_updates", "topic_tuning", "topic_config_updates"))
    p.set_defaults(func=cmd_broker)

    p = sub.add_parser("worker", help="run the Faust worker: learn from events, publish lists")
    _add_settings_flags(p)
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("trainer", help="refresh the sequence encoder from the events stream; announce versions")
    p.add_argument("--once", action="store_true",
                   help="train one version as soon as enough events arrived, then exit")
    p.add_argument("--metrics-port", dest="set_trainer_metrics_port", default=None,
                   metavar="STREAMREC_TRAINER_METRICS_PORT",
                   help="port of the trainer's /metrics and health endpoints [default 6067; 0 = a free port]")
    _add_settings_flags(p, ("bootstrap_servers", "app_id", "topic_events", "topic_model_updates", "max_users",
                            "trainer_dir", "trainer_refresh_s", "trainer_min_new_events", "trainer_epochs",
                            "trainer_device", "trainer_size", "trainer_nice", "trainer_idle", "metrics_host"))
    p.set_defaults(func=cmd_trainer)

    p = sub.add_parser("tuner", help="search the whole engine config on the events stream; announce winners to "
                                     "the workers")
    p.add_argument("--metrics-port", dest="tuner_metrics_port", type=int, default=6068, metavar="PORT",
                   help="port of the tuner's /metrics and health endpoints (on --metrics-host) [default 6068; "
                        "0 = a free port]")
    _add_settings_flags(p, tuple(leaf.flat for leaf in Settings.leaves()
                                 if leaf.flat not in ("metrics_port", "trainer_metrics_port")))
    p.set_defaults(func=cmd_tuner)

    p = sub.add_parser("publish", help="replay a data file into the events topic")
    p.add_argument("--data", required=True, help="the file to replay")
    p.add_argument("--format", default="movielens", choices=("movielens", "csv", "jsonl", "sasrec"))
    p.add_argument("--rate", type=float, default=None, help="events per second (default: as fast as possible)")
    p.add_argument("--limit", type=int, default=None, help="publish at most N events")
    p.add_argument("--batch-events", type=int, default=200,
                   help="events per message (JSON array); 1 sends single-event messages")
    _add_settings_flags(p, ("bootstrap_servers", "topic_events"))
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("consume", help="print recommendation lists as JSON lines")
    p.add_argument("--limit", type=int, default=None, help="stop after N lists")
    p.add_argument("--timeout", type=float, default=None, help="stop after S seconds")
    p.add_argument("--from-beginning", action="store_true", help="read the topic from its start")
    _add_settings_flags(p, ("bootstrap_servers", "topic_recommendations"))
    p.set_defaults(func=cmd_consume)

    p = sub.add_parser("request", help="ask for one user's list on rec-requests and print the answer")
    p.add_argument("--user", required=True)
    p.add_argument("--k", type=int, default=None)
    p.add_argument("--exclude", nargs="*", default=None)
    p.add_argument("--timeout", type=float, default=10.0)
    _add_settings_flags(p, ("bootstrap_servers", "topic_requests", "topic_recommendations"))
    p.set_defaults(func=cmd_request)

    p = sub.add_parser("demo", help="broker + worker + replay + consumer on this machine, with a summary")
    p.add_argument("--events", type=int, default=20_000, help="events to replay (default 20000)")
    p.add_argument("--data", default=None, help="replay this file instead of generated data")
    p.add_argument("--format", default=None, choices=("movielens", "csv", "jsonl", "sasrec"))
    p.add_argument("--rate", type=_demo_rate, default="auto",
                   help="events per second, or auto (the default): paced at the rate the worker sustains, read "
                        "from the lists as they come out, so that the latency reported is the system's, not a "
                        "queue's; 0 = as fast as possible")
    p.add_argument("--tail-ms", type=float, default=None, metavar="MS",
                   help="with --rate auto: the latency objective. The replay also slows when the p99 of the lists "
                        "of the last 2 s nears it (default 100; 0 = pace for throughput alone)")
    p.add_argument("--linger-ms", type=float, default=25.0, metavar="MS",
                   help="the paced replay gathers events this long into one produce request (default 25). The "
                        "embedded broker slows with every record batch it holds (benchmarks/broker_aging.py)")
    p.add_argument("--batch-events", type=int, default=100, help="events per message; 1 = single-event messages")
    p.add_argument("--clients", choices=LIBRARIES, default=None,
                   help="Kafka client library of the replay and of the list reader (default: librdkafka where "
                        "confluent-kafka is installed, which leaves the worker more of a small machine's CPU; "
                        "else kafka-python)")
    p.add_argument("--bad-events", type=int, default=8, help="malformed messages mixed in (they go to the DLQ)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the summary as JSON")
    p.add_argument("--hold", action="store_true", help="keep broker and worker running after the replay")
    p.add_argument("--trainer", action=argparse.BooleanOptionalAction, default=True,
                   help="also run `streamrec trainer`: the worker serves its encoder through the learned blend, the "
                        "summary shows HR@k with and without it, and the demo waits for a first version at the end "
                        "(default on; the trainer runs in the idle scheduling class, trainer_idle)")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--metrics-port", dest="metrics_port_demo", type=int, default=None, metavar="PORT",
                   help="metrics ports: the worker's is PORT, the trainer's PORT+1, the demo's own PORT+2 "
                        "(default: free ones)")
    p.add_argument("--report", default=None, metavar="PATH",
                   help="write a one-page report of the run (throughput, latency, HR@k, tuning) to PATH "
                        "(.png or .html)")
    p.add_argument("--partitions", dest="set_partitions", default=None, metavar="STREAMREC_PARTITIONS",
                   help="partitions of events, rec-requests and recommendations [default 1 in the demo: it runs "
                        "one worker, and a partition gathers more events per record batch]")
    _add_settings_flags(p, ("k", "push", "batch_max", "half_life", "blend",
                            "popularity_weight", "next_item_weight", "tuner", "tuner_policy", "self_tune",
                            "metrics_host"))
    p.set_defaults(func=cmd_demo, set_metrics_port=None)

    for module_name in ("stream.cli.evaluate", "stream.cli.tune", "stream.cli.encoder"):
        _register_optional(sub, module_name)
    return parser


def _register_optional(sub: Any, module_name: str) -> None:
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return
    adder: Callable[..., Any] | None = getattr(module, "add_parsers", None) or getattr(module, "add_parser", None)
    if adder is not None:
        adder(sub)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if logging.getLogger().level >= logging.WARNING:
        # kafka-python logs every reconnect attempt; our own error line says what failed.
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
    from kafka.errors import KafkaError

    from models.errors import ModelError

    try:
        return int(args.func(args) or 0)
    except (StreamError, KafkaError, ModelError, ValueError, FileNotFoundError, TimeoutError, RuntimeError) as exc:
        print(f"streamrec {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
