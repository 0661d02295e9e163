"""How long a worker's snapshot takes (it runs before every commit and holds up learning meanwhile).

Builds the default worker engine with N distinct users (each with a short history),
then times both ways ``stream.worker.durability`` can take a snapshot: in place
(``online.state.snapshot_bytes`` holds the lock for the whole pickling, then the
atomic write) and forked (``STREAMREC_SNAPSHOT_FORK``, the default: learning waits
only for ``os.fork``; the child pickles and writes), and reports the file size.

    python benchmarks/snapshot.py --users 100000,1000000
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.files import atomic_write_bytes  # noqa: E402
from online.base import Interaction  # noqa: E402
from online.engine import StreamingRecommender  # noqa: E402
from online.state import snapshot_bytes  # noqa: E402
from stream.settings import Settings  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", default="100000,1000000")
    parser.add_argument("--events-per-user", type=int, default=3)
    parser.add_argument("--blend", default="", help="STREAMREC_BLEND of the engine ('' = the default worker engine)")
    args = parser.parse_args()
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, python {platform.python_version()}")
    for users in (int(u) for u in args.users.split(",")):
        engine = StreamingRecommender(Settings.of(blend=args.blend).engine_config())
        batch = []
        for n in range(users * args.events_per_user):
            batch.append(Interaction(f"user{n % users}", f"item{(n * 7919) % 20_000}", float(n)))
            if len(batch) == 10_000:
                engine.learn_many(batch)
                batch = []
        engine.learn_many(batch)
        started = time.perf_counter()
        data = snapshot_bytes(engine, offsets={"events/0": 1}, metadata={"recent_ids": [str(i) for i in range(200_000)]})
        frozen = time.perf_counter() - started
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            atomic_write_bytes(Path(folder) / "engine.snap", data)
            written = time.perf_counter() - started
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            pid = os.fork()
            if pid == 0:
                try:
                    atomic_write_bytes(Path(folder) / "e.snap", snapshot_bytes(engine, offsets={"events/0": 1}))
                finally:
                    os._exit(0)
            forked = time.perf_counter() - started
            os.waitpid(pid, 0)
            child = time.perf_counter() - started
        print(f"{users:>9,} users ({engine.events_learned:,} events), {len(data) / 1e6:,.0f} MB: in place: learning "
              f"paused {frozen:.2f} s, then write+fsync {written:.2f} s; forked: learning paused {forked * 1e3:.0f} ms, "
              f"the child took {child:.2f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
