"""Small streams shared by the online tests."""
from __future__ import annotations

import random

from online.base import Interaction


def stream(n: int = 300, users: int = 12, items: int = 25, seed: int = 0) -> list[Interaction]:
    """A seeded stream with structure: users walk through items in runs, popular items recur."""
    rng = random.Random(seed)
    out = []
    position = {f"u{u}": rng.randrange(items) for u in range(users)}
    for t in range(n):
        user = f"u{rng.randrange(users)}"
        step = 1 if rng.random() < 0.6 else rng.randrange(items)
        position[user] = (position[user] + step) % items
        item = f"i{position[user] if rng.random() < 0.8 else rng.randrange(3)}"
        out.append(Interaction(user, item, float(t)))
    return out


class EncoderVersion:
    """A stand-in for one encoder version the trainer published: fixed scores and a version number."""

    name = "encoder"

    def __init__(self, version: int, scores: dict[str, float]) -> None:
        self.version, self.scores = version, scores

    def learn_many(self, interactions) -> None:
        pass

    def candidates(self, user_id, history, n):
        return sorted(self.scores, key=self.scores.__getitem__, reverse=True)[:n]

    def score(self, user_id, history, items):
        return [self.scores.get(item, 0.0) for item in items]
