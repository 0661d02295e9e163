"""Generated streams that differ the way real domains do, for judging tuning methods (not constants).

- :func:`news`: fast item turnover. Items are born continuously and live a few thousand events;
  users read what is fresh and popular now, and stories of one topic follow each other. What
  was learned about an item is soon useless: short memories and fresh popularity win.
- :func:`catalogue`: a stable catalogue with long-range co-occurrence. Users return to bundles of
  items that belong together (a user buys parts of a kit over weeks, in any order, with other
  shopping in between). Nothing expires: long memories and windowed, two-way co-occurrence win.
- :func:`drifting`: the demo's stream (``stream.cli.datasets.generate``): genres, sequels, and every
  user's taste moving halfway through.

Each is seeded and deterministic; sizes are parameters so tests can use small ones.
"""
from __future__ import annotations

import numpy as np

from online.base import Interaction


def news(n_events: int = 50_000, n_users: int = 2_000, lifetime: int = 3_000, births_per_1k: int = 40,
         n_topics: int = 30, seed: int = 11) -> list[Interaction]:
    """Fast item turnover: each item is read during about ``lifetime`` events after its birth."""
    rng = np.random.default_rng(seed)
    activity = np.arange(1, n_users + 1) ** -0.7
    activity /= activity.sum()
    users = rng.choice(n_users, size=n_events, p=activity)
    taste = rng.dirichlet(np.full(n_topics, 0.3), size=n_users)
    alive: list[tuple[int, int, int]] = []  # (item, topic, born)
    next_item = 0
    last: dict[int, int] = {}
    topic_of: dict[int, int] = {}
    out = []
    for t in range(n_events):
        while next_item <= t * births_per_1k // 1000 or not alive:
            topic = int(rng.integers(n_topics))
            alive.append((next_item, topic, t))
            topic_of[next_item] = topic
            next_item += 1
        alive = [entry for entry in alive if t - entry[2] < lifetime]
        user = int(users[t])
        prev = last.get(user)
        topic = topic_of[prev] if prev is not None and rng.random() < 0.5 else int(rng.choice(n_topics, p=taste[user]))
        fresh = [(item, born) for item, item_topic, born in alive if item_topic == topic] or \
            [(item, born) for item, _, born in alive]
        ages = np.array([t - born for _, born in fresh], dtype=float)
        weights = np.exp(-ages / (lifetime / 4))  # fresher is read more
        item = fresh[int(rng.choice(len(fresh), p=weights / weights.sum()))][0]
        last[user] = item
        out.append(Interaction(f"u{user}", f"n{item}", float(t)))
    return out


def catalogue(n_events: int = 50_000, n_users: int = 1_500, n_items: int = 3_000, kit_size: int = 6,
              seed: int = 12) -> list[Interaction]:
    """A stable catalogue: items come in kits; a user works through a kit in any order, with noise."""
    rng = np.random.default_rng(seed)
    n_kits = n_items // kit_size
    kits = rng.permutation(n_items).reshape(n_kits, kit_size)
    kit_popularity = np.arange(1, n_kits + 1) ** -0.9
    kit_popularity /= kit_popularity.sum()
    activity = np.arange(1, n_users + 1) ** -0.6
    activity /= activity.sum()
    users = rng.choice(n_users, size=n_events, p=activity)
    current: dict[int, tuple[int, list[int]]] = {}
    item_popularity = np.arange(1, n_items + 1) ** -1.0
    item_popularity /= item_popularity.sum()
    out = []
    for t in range(n_events):
        user = int(users[t])
        if rng.random() < 0.3:  # other shopping in between: a popular item anywhere
            item = int(rng.choice(n_items, p=item_popularity))
        else:
            kit, left = current.get(user, (-1, []))
            if not left:
                kit = int(rng.choice(n_kits, p=kit_popularity))
                left = list(rng.permutation(kits[kit]))
            item = int(left.pop())
            current[user] = (kit, left)
        out.append(Interaction(f"u{user}", f"c{item}", float(t)))
    return out


def drifting(n_events: int = 50_000, seed: int = 7) -> list[Interaction]:
    """The demo's stream: genres, sequels, and a taste drift halfway."""
    from stream.cli.datasets import generate

    return generate(n_events, seed=seed)
