"""Reading interaction files and generating the demo's synthetic stream.

Every reader returns :class:`online.base.Interaction` records in time order
(stable sort, so ties keep file order), which is how ``publish``, ``demo`` and
``eval`` replay them.

Formats
-------
movielens  ``u.data`` layout: ``user<TAB>item<TAB>rating<TAB>unix_ts``, no header.
csv        a header naming the user, item and (optional) timestamp columns; common
           spellings are recognised (userId/user_id/user, movieId/itemId/item_id/item,
           timestamp/ts/time); an optional rating/value column becomes ``value``.
jsonl      one event object per line, as on the ``events`` topic.
sasrec     the SASRec papers' ``user item`` per line, each user's items in time order.
"""
from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from online.base import Interaction
from stream.errors import DataFormatError
from stream.wire.schema import parse_timestamp

FORMATS = ("movielens", "csv", "jsonl", "sasrec")

_USER_COLUMNS = ("user_id", "userid", "user", "uid", "visitorid", "customer_id")
_ITEM_COLUMNS = ("item_id", "itemid", "movieid", "movie_id", "item", "iid", "product_id", "productid")
_TS_COLUMNS = ("timestamp", "ts", "time", "datetime", "event_time", "date")
_VALUE_COLUMNS = ("rating", "value", "score", "weight")


def load(path: str | Path, fmt: str, limit: int | None = None) -> list[Interaction]:
    """Read a whole file in ``fmt`` and return its interactions in time order."""
    path = Path(path)
    if fmt not in FORMATS:
        raise DataFormatError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise DataFormatError(f"no such file: {path}")
    reader = {"movielens": _read_movielens, "csv": _read_csv, "jsonl": _read_jsonl, "sasrec": _read_sasrec}[fmt]
    try:
        events = list(reader(path))
    except DataFormatError:
        raise
    except (ValueError, KeyError, IndexError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{path} is not valid {fmt}: {exc}") from exc
    if fmt != "sasrec":
        events.sort(key=lambda e: e.ts)  # list.sort is stable: equal timestamps keep file order
    return events[:limit] if limit is not None else events


def _read_movielens(path: Path) -> Iterable[Interaction]:
    with path.open() as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            parts = line.split("\t") if "\t" in line else line.split("::")
            if len(parts) < 4:
                raise DataFormatError(f"{path}:{line_no}: expected user, item, rating, timestamp")
            yield Interaction(parts[0].strip(), parts[1].strip(), float(parts[3]), "rating", float(parts[2]))


def _pick(header: list[str], names: tuple[str, ...], what: str, required: bool = True) -> int | None:
    lowered = [h.strip().lower() for h in header]
    for name in names:
        if name in lowered:
            return lowered.index(name)
    if required:
        raise DataFormatError(f"CSV header {header} has no {what} column (tried {', '.join(names)})")
    return None


def _read_csv(path: Path) -> Iterable[Interaction]:
    with path.open(newline="") as handle:
        rows = csv.reader(handle)
        header = next(rows, None)
        if header is None:
            raise DataFormatError(f"{path} is empty")
        u = _pick(header, _USER_COLUMNS, "user")
        i = _pick(header, _ITEM_COLUMNS, "item")
        t = _pick(header, _TS_COLUMNS, "timestamp", required=False)
        v = _pick(header, _VALUE_COLUMNS, "value", required=False)
        for n, row in enumerate(rows):
            if not row:
                continue
            ts = parse_timestamp(row[t]) if t is not None else float(n)
            value = float(row[v]) if v is not None and row[v] != "" else 1.0
            yield Interaction(row[u], row[i], ts, "rating" if v is not None else "click", value)


def _read_jsonl(path: Path) -> Iterable[Interaction]:
    with path.open() as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            obj = json.loads(line)
            try:
                yield Interaction(str(obj["user_id"]), str(obj["item_id"]), parse_timestamp(obj["ts"]),
                                  str(obj.get("type", "click")), float(obj.get("value", 1.0)),
                                  obj.get("event_id"))
            except (KeyError, TypeError, ValueError) as exc:
                raise DataFormatError(f"{path}:{line_no}: {exc}") from exc


def _read_sasrec(path: Path) -> Iterable[Interaction]:
    with path.open() as handle:
        for line_no, line in enumerate(handle):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                raise DataFormatError(f"{path}:{line_no + 1}: expected 'user item'")
            yield Interaction(parts[0], parts[1], float(line_no))


def generate(n_events: int = 20_000, n_users: int = 500, n_items: int = 1_000, n_genres: int = 20,
             seed: int = 7, start_ts: float = 1_700_000_000.0) -> list[Interaction]:
    """A seeded synthetic stream with the structure real catalogues have.

    - Items belong to genres; popularity inside a genre is Zipf-like (rank ** -1.1).
    - Each user has a taste: a Dirichlet mix concentrated on a few genres; user
      activity is Zipf-like too.
    - Users browse in sessions inside one genre; often the next item is the
      "sequel" of the last one (the next item of that genre), which is what a
      sequential model can learn.
    - Halfway through, every user's taste moves to other genres (drift).
    """
    rng = np.random.default_rng(seed)
    genre_of_item = rng.integers(0, n_genres, size=n_items)
    genre_items = [np.flatnonzero(genre_of_item == g) for g in range(n_genres)]
    genre_items = [g if len(g) else np.array([g_idx % n_items]) for g_idx, g in enumerate(genre_items)]
    genre_weights = []
    for items in genre_items:
        w = (np.arange(1, len(items) + 1) ** -1.1)
        genre_weights.append(w / w.sum())
    position = {int(item): (g, pos) for g, items in enumerate(genre_items) for pos, item in enumerate(items)}
    tastes = rng.dirichlet(np.full(n_genres, 0.15), size=n_users)
    drifted = tastes[:, rng.permutation(n_genres)]
    activity = np.arange(1, n_users + 1) ** -0.8
    activity /= activity.sum()
    users = rng.choice(n_users, size=n_events, p=activity)
    last_item: dict[int, int] = {}
    events: list[Interaction] = []
    ts = start_ts
    half = n_events // 2
    coins = rng.random((n_events, 3))
    for n, user in enumerate(users):
        user = int(user)
        taste = tastes[user] if n < half else drifted[user]
        ts += float(rng.exponential(1.0))
        prev = last_item.get(user)
        stay, sequel, _ = coins[n]
        if prev is not None and stay < 0.75:
            g, pos = position[prev]
            items = genre_items[g]
            if sequel < 0.6 and pos + 1 < len(items):
                item = int(items[pos + 1])
            else:
                item = int(rng.choice(items, p=genre_weights[g]))
        else:
            g = int(rng.choice(n_genres, p=taste))
            item = int(rng.choice(genre_items[g], p=genre_weights[g]))
        last_item[user] = item
        events.append(Interaction(f"u{user}", f"i{item}", round(ts, 3), "click", 1.0))
    return events
