"""The internet-scale design of item sharing, checked by simulation (docs/scale-out.md).

Counts, not seconds: how many item-level entries (a popularity count, one pair of a
co-occurrence window) each worker must apply per second of stream, for three designs,
as the group grows. The counts are measured on a synthetic Zipf stream replayed through
the merge and publication rules; seconds follow from the per-entry costs measured on
this machine (``--apply-us``, ``--learn-us``; see benchmarks/results/scale_out_sharing.md).

``all``        every worker learns every event (``STREAMREC_LEARN_SCOPE=all``).
``broadcast``  every worker applies every other worker's merged micro-batch deltas
               (``STREAMREC_LEARN_SCOPE=shared``, built).
``by-item``    workers publish their merged deltas keyed by item to a repartition topic;
               the aggregation task owning an item (one per partition of that topic, run
               inside the workers' processes in a second consumer group) adds them to the
               item's global tables once for the whole group, and publishes the item's
               summary (its strongest followers and its popularity) to a compacted topic
               every worker reads whenever the item's table grew by ``--staleness`` since
               its last summary (the rule the serving path already uses for its cached
               top lists, ``cooc_staleness``), at most once per ``--min-interval`` events.

    python benchmarks/scale_out_design.py                          # defaults below
    python benchmarks/scale_out_design.py --events 2000000 --items 200000
"""
from __future__ import annotations

import argparse
import heapq
import math
import time
from datetime import UTC, datetime
from operator import itemgetter

import numpy as np


def stream(n_events: int, n_users: int, n_items: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Users Zipf-active, items Zipf-popular (exponent 1.1), each user's next item near the last one
    half the time (sessions): what makes co-occurrence pairs repeat."""
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, n_items + 1)
    p_items = ranks ** -1.1
    p_items /= p_items.sum()
    p_users = np.arange(1, n_users + 1) ** -0.8
    p_users /= p_users.sum()
    users = rng.choice(n_users, size=n_events, p=p_users)
    items = rng.choice(n_items, size=n_events, p=p_items)
    near = rng.random(n_events) < 0.5
    steps = rng.integers(1, 4, size=n_events)
    last: dict[int, int] = {}
    for n in range(n_events):
        u = int(users[n])
        if near[n] and u in last:
            items[n] = (last[u] + steps[n]) % n_items
        last[u] = int(items[n])
    return users, items


def measure(users: np.ndarray, items: np.ndarray, *, window: int, batch: int, budgets: list[float],
            half_life: float) -> dict[str, float]:
    """Entries per event a group produces (merged per micro-batch of ``batch`` events), and for each
    summary budget (summaries per 1,000 events) the share of the tables' evidence the workers' views
    hold at the end (``coverage``: each item's published mass over its mass, weighted by its mass)."""
    histories: dict[int, list[int]] = {}
    merged_entries = 0
    raw_entries = 0
    pending_pop: dict[int, float] = {}
    pending_pairs: dict[tuple[int, int], float] = {}
    mass: dict[int, float] = {}  # mass of each item's follower table, in the growing increment's units
    published = [dict() for _ in budgets]  # per budget: item -> mass at its last summary
    gaps = [dict() for _ in budgets]  # per budget: item -> mass not yet in a summary
    credit = [0.0 for _ in budgets]
    boundary = 0
    step = 2.0 ** (1.0 / half_life)
    scale = 1.0  # the increment grows instead of decaying every table (online.popularity's trick)
    for n in range(len(users)):
        u, item = int(users[n]), int(items[n])
        past = histories.setdefault(u, [])
        pending_pop[item] = pending_pop.get(item, 0.0) + 1.0
        raw_entries += 1
        weight = 1.0
        for prev in reversed(past):
            if prev != item:
                key = (prev, item)
                pending_pairs[key] = pending_pairs.get(key, 0.0) + weight
                raw_entries += 1
            weight *= 0.8
        past.append(item)
        if len(past) > window:
            del past[0]
        scale *= step
        if (n + 1) % batch == 0 or n + 1 == len(users):
            merged_entries += len(pending_pop) + len(pending_pairs)
            grown: dict[int, float] = {}
            for (prev, nxt), w in pending_pairs.items():
                for it in (prev, nxt):  # the pair and its reverse
                    grown[it] = grown.get(it, 0.0) + w * scale
            for it, added in grown.items():
                mass[it] = mass.get(it, 0.0) + added
            for b, budget in enumerate(budgets):
                gap = gaps[b]
                for it, added in grown.items():
                    gap[it] = gap.get(it, 0.0) + added
                credit[b] += budget * (n + 1 - boundary) / 1000.0
                take = int(credit[b])
                if take:
                    credit[b] -= take
                    for it, _ in heapq.nlargest(take, gap.items(), key=itemgetter(1)):
                        published[b][it] = mass[it]
                        del gap[it]
            boundary = n + 1
            pending_pop.clear()
            pending_pairs.clear()
    events = len(users)
    total = sum(mass.values())
    out = {"raw_entries_per_event": raw_entries / events, "merged_entries_per_event": merged_entries / events,
           "items_with_tables": len(mass)}
    for b, budget in enumerate(budgets):
        out[f"coverage@{budget:g}"] = sum(published[b].values()) / total if total else 0.0
    return out


def table(counts: dict[str, float], workers: list[int], rate: float, learn_us: float, apply_us: float,
          summary_us: float, partitions_per_100k: float, budget: float) -> list[str]:
    """Per-worker CPU (cores) for learning and for sharing at ``rate`` events/s; topic sizes."""
    merged = counts["merged_entries_per_event"]
    summaries = budget / 1000.0
    rows = ["| workers | own learning | `all`: sharing | `broadcast`: sharing | `by-item`: aggregation + summaries "
            "| by-item sharing / own learning | item-deltas partitions |",
            "|---|---|---|---|---|---|---|"]
    for w in workers:
        own = rate / w * learn_us * 1e-6
        everything = rate * (w - 1) / w * learn_us * 1e-6
        broadcast = rate * (w - 1) / w * merged * apply_us * 1e-6
        aggregate = rate * merged * apply_us * 1e-6 / w
        summary = rate * summaries * summary_us * 1e-6
        parts = max(1, math.ceil(rate * merged / 100_000 * partitions_per_100k))
        rows.append(f"| {w} | {own:.2f} | {everything:.2f} | {broadcast:.2f} | {aggregate:.2f} + {summary:.2f} "
                    f"| {(aggregate + summary) / own:.2f} | {parts} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=10, help="co-occurrence window (cooc_window)")
    parser.add_argument("--batch", type=int, default=200, help="events per merged micro-batch of one partition")
    parser.add_argument("--budgets", default="2,10,50", help="summaries per 1,000 stream events to compare")
    parser.add_argument("--half-life", type=float, default=250_000.0, help="events")
    parser.add_argument("--rate", type=float, default=1_000_000.0, help="events/s of the whole stream")
    parser.add_argument("--learn-us", type=float, default=40.0, help="learning one event, µs (blend, measured)")
    parser.add_argument("--apply-us", type=float, default=3.0, help="applying one merged entry, µs (measured)")
    parser.add_argument("--summary-us", type=float, default=10.0, help="replacing one item's summary, µs")
    parser.add_argument("--workers", default="8,32,128,512")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    users, items = stream(args.events, args.users, args.items)
    budgets = [float(b) for b in args.budgets.split(",")]
    counts = measure(users, items, window=args.window, batch=args.batch, budgets=budgets, half_life=args.half_life)
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {args.events:,} events, {args.users:,} users, "
          f"{args.items:,} items (Zipf 1.1), window {args.window}, batches of {args.batch}, "
          f"half-life {args.half_life:,.0f} events "
          f"({time.perf_counter() - started:.0f} s)")
    print({key: round(value, 4) if isinstance(value, float) else value for key, value in counts.items()})
    print(f"\nper-worker CPU (cores) at {args.rate:,.0f} events/s; learn {args.learn_us} µs/event, apply "
          f"{args.apply_us} µs/entry, summary {args.summary_us} µs:")
    for budget in budgets:
        print(f"\nby-item summaries: {budget:g} per 1,000 events (coverage {counts[f'coverage@{budget:g}']:.3f})")
        for row in table(counts, [int(w) for w in args.workers.split(",")], args.rate, args.learn_us,
                         args.apply_us, args.summary_us, partitions_per_100k=1.0, budget=budget):
            print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
