"""The bare pipe for benchmarks/pipeline.py: a Faust agent that only counts events.

Same topic layout and the same group settings as the streamrec worker (so the
comparison isolates what streamrec adds), Faust's own transport (fetch wait 1.5 s)
unless ``--fast-fetch``; prints one JSON line when it has seen ``--expect`` events.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from any folder (pipeline.py runs it in a temp one)

import faust  # noqa: E402

from stream.app import faust_broker_urls  # noqa: E402
from stream.kafka.transport import PromptTableManager, StreamrecFaustApp  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--fast-fetch", action="store_true")
    parser.add_argument("--port", type=int, default=6099)
    args = parser.parse_args()
    app_class = StreamrecFaustApp if args.fast_fetch else faust.App
    app = app_class(args.group, broker=faust_broker_urls(args.bootstrap), value_serializer="raw",
                    consumer_auto_offset_reset="earliest", broker_session_timeout=6.0,
                    broker_rebalance_timeout=1.0, broker_heartbeat_interval=1.0, web_port=args.port,
                    web_bind="127.0.0.1", TableManager=PromptTableManager)
    app.fetch_max_wait_ms = 10
    topic = app.topic(args.topic)
    state = {"count": 0, "first": None}

    @app.agent(topic)
    async def count(stream):
        async for batch in stream.take(1000, within=0.05):
            if state["first"] is None:
                state["first"] = time.time()
            state["count"] += len(batch)
            if state["count"] >= args.expect:
                print(json.dumps({"first": state["first"], "last": time.time(), "count": state["count"]}),
                      flush=True)

    worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    worker.spinner = None
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
