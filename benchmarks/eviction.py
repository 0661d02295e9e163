"""Evicting the oldest key: a plain dict vs an OrderedDict, as the dedup window and NextItem do it.

``del d[next(iter(d))]`` looks O(1) but a dict's iterator walks the deleted slots left at
the front of its entry table until the next resize compacts it, so each eviction costs more
than the last. ``online.dedup.RecentIds`` (event ids) and ``online.sequential.NextItem``
(items past ``max_items``) therefore use ``OrderedDict.popitem(last=False)``. This prints
both ways in the same run.

    python benchmarks/eviction.py --capacity 200000 --events 300000
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from online.base import Interaction  # noqa: E402
from online.dedup import RecentIds  # noqa: E402
from online.sequential import NextItem  # noqa: E402


def plain_dict(capacity: int, keys: list[str]) -> float:
    ids: dict[str, None] = {}
    started = time.perf_counter()
    for key in keys:
        if key not in ids:
            ids[key] = None
            if len(ids) > capacity:
                del ids[next(iter(ids))]
    return time.perf_counter() - started


def ordered(capacity: int, keys: list[str]) -> float:
    ids = RecentIds(capacity)
    started = time.perf_counter()
    for key in keys:
        ids.seen_before(key)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--capacity", type=int, default=200_000)
    parser.add_argument("--events", type=int, default=300_000, help="distinct ids after the window is full")
    args = parser.parse_args()
    keys = [f"event-{n}" for n in range(args.capacity + args.events)]
    warm = keys[: args.capacity]
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, python {platform.python_version()}")
    for name, run in (("dict + next(iter())", plain_dict), ("OrderedDict.popitem (RecentIds)", ordered)):
        seconds = run(args.capacity, keys) - run(args.capacity, warm)  # the evicting part only
        print(f"dedup window {args.capacity:,}: {name:32} {1e6 * seconds / args.events:8.2f} µs per evicting event")
    co = NextItem(max_items=20_000)
    stream = [Interaction("u", f"i{n}", float(n)) for n in range(200_000)]
    started = time.perf_counter()
    co.learn_many(stream)
    print(f"NextItem at max_items 20,000, 200,000 new items: {1e6 * (time.perf_counter() - started) / len(stream):.2f} "
          "µs per event (OrderedDict)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
