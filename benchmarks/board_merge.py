"""What placing a micro-batch's items on the popularity leaderboard costs, by batch size.

``DecayedPopularity.learn_many`` adds a batch's counts at once and then places the grown items on the
leaderboard (the board of the ~256 best items). Two ways give the same board: one stable merge of the board with
the grown slots (a Python pass over the whole board), or placing each grown slot by bisection. At live rates a
worker learns each partition's share of a micro-batch separately, often one to a few events, so the merge's fixed
cost is paid per handful of events. This times ``learn_many`` with the merge only, with the choice the model makes
(``online.popularity._MERGE_OVER_TOUCH``), and one event at a time, on copies of one model, and checks the boards
agree.

    python benchmarks/board_merge.py
"""
from __future__ import annotations

import copy
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import online.popularity as popularity  # noqa: E402
from online.popularity import DecayedPopularity  # noqa: E402
from stream.cli.datasets import generate  # noqa: E402


def timed(model: DecayedPopularity, batches: list, learn) -> float:
    began = time.perf_counter()
    for batch in batches:
        learn(model, batch)
    return (time.perf_counter() - began) / len(batches) * 1e6


def main() -> int:
    events = generate(80_000, n_users=5_000, n_items=5_000, seed=5)
    warm = DecayedPopularity()
    for start in range(0, 40_000, 200):
        warm.learn_many(events[start:start + 200])
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}; board of {len(warm._board)} slots; "
          "µs per batch (best of 3)")
    print(f"{'events':>6} {'merge only':>11} {'as chosen':>10} {'one by one':>11}  same board")
    chosen_ratio = popularity._MERGE_OVER_TOUCH
    for size in (1, 2, 4, 8, 16, 32, 64, 128):
        batches = [events[i:i + size] for i in range(40_000, 40_000 + 200 * size, size)]
        best = {"merge": float("inf"), "chosen": float("inf"), "one": float("inf")}
        boards = {}
        for _ in range(3):
            for name in best:
                model = copy.deepcopy(warm)
                popularity._MERGE_OVER_TOUCH = float("inf") if name == "merge" else chosen_ratio
                learn = DecayedPopularity._learn_one_by_one if name == "one" else DecayedPopularity.learn_many
                best[name] = min(best[name], timed(model, batches, learn))
                boards[name] = (model._board, model._board_neg, model._scores.tolist())
        popularity._MERGE_OVER_TOUCH = chosen_ratio
        same = boards["merge"] == boards["chosen"] == boards["one"]
        print(f"{size:>6} {best['merge']:>11.1f} {best['chosen']:>10.1f} {best['one']:>11.1f}  {same}")
        if not same:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
