"""From interaction arrays to padded id tensors: vocabulary, sequences, splits, negatives.

``models`` never imports ``online`` or ``stream``, so everything here takes plain
Python sequences or numpy arrays of user ids and item ids *already in time
order* (``stream.cli.datasets.load`` returns them so).

Conventions used by the whole package:

- item ids are remapped to ``1..N`` in order of first appearance; ``0`` is padding;
- sequences are **right-padded** (items first, zeros after). With causal
  attention a real position then never sees a padded one, so the encoder can use
  the fused ``is_causal`` attention kernel with no extra mask, and position ``i``
  always means "the i-th item of the window" whatever the padding.
"""
from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch


class ItemVocab:
    """String item ids <-> dense ids ``1..N`` (``0`` = padding / unknown).

    Stored in checkpoints as a plain ``list[str]`` (index ``i`` holds id ``i+1``),
    so loading it never needs pickle.

    Examples
    --------
    >>> vocab = ItemVocab(["b", "a", "b"])
    >>> len(vocab), vocab.id_of("a"), vocab.id_of("zzz"), vocab.item_of(1)
    (2, 2, 0, 'b')
    >>> vocab.encode(["a", "zzz", "b"])
    [2, 1]
    """

    __slots__ = ("_items", "_index")

    def __init__(self, items: Iterable[str] = ()) -> None:
        self._items: list[str] = []
        self._index: dict[str, int] = {}
        for item in items:
            self.add(item)

    def add(self, item: str) -> int:
        """Id of ``item``, assigning the next one if it is new."""
        idx = self._index.get(item)
        if idx is None:
            self._items.append(item)
            idx = self._index[item] = len(self._items)
        return idx

    def id_of(self, item: Hashable) -> int:
        """Id of ``item``, ``0`` when unknown (never raises for hashable input)."""
        return self._index.get(item, 0)  # type: ignore[arg-type]

    def id_getter(self) -> Callable[..., int | None]:
        """The vocabulary's ``dict.get`` itself: ``get(item)`` is the id or None, ``get(item, 0)`` the id or 0.
        For hot loops over many items, where :meth:`id_of`'s own call doubles the cost of a look-up."""
        return self._index.get

    def item_of(self, idx: int) -> str:
        """Item for id ``idx`` (``1..N``); ``IndexError`` otherwise."""
        if not 1 <= idx <= len(self._items):
            raise IndexError(f"item id {idx} outside 1..{len(self._items)}")
        return self._items[idx - 1]

    def encode(self, items: Iterable[Hashable]) -> list[int]:
        """Ids of the known items, unknown ones skipped."""
        get = self._index.get
        return [i for i in (get(item, 0) for item in items) if i]  # type: ignore[arg-type]

    @property
    def items(self) -> list[str]:
        """A copy of the item list (id ``i`` is at index ``i - 1``)."""
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item: object) -> bool:
        return item in self._index


@dataclass(frozen=True)
class Sequences:
    """Per-user item-id sequences in time order, plus the vocabulary they use."""

    users: list[str]
    seqs: list[np.ndarray]
    vocab: ItemVocab

    def __len__(self) -> int:
        return len(self.users)


def build_sequences(user_ids: Sequence[Hashable], item_ids: Sequence[Hashable],
                    vocab: ItemVocab | None = None, *, grow: bool = True) -> Sequences:
    """Group interactions (in time order) into one id sequence per user.

    Users are kept in order of first appearance. With ``grow=False`` the given
    vocabulary is fixed and unknown items are dropped (evaluation of a trained
    checkpoint on new data).

    Examples
    --------
    >>> s = build_sequences(["u1", "u2", "u1"], ["a", "b", "c"])
    >>> s.users, [x.tolist() for x in s.seqs], s.vocab.items
    (['u1', 'u2'], [[1, 3], [2]], ['a', 'b', 'c'])
    """
    if len(user_ids) != len(item_ids):
        raise ValueError(f"{len(user_ids)} user ids but {len(item_ids)} item ids")
    vocab = ItemVocab() if vocab is None else vocab
    to_id = vocab.add if grow else vocab.id_of
    per_user: dict[Hashable, list[int]] = {}
    for user, item in zip(user_ids, item_ids):
        idx = to_id(str(item))
        if idx:
            per_user.setdefault(user, []).append(idx)
    users = [str(u) for u in per_user]
    seqs = [np.asarray(s, dtype=np.int64) for s in per_user.values()]
    return Sequences(users, seqs, vocab)


@dataclass(frozen=True)
class Example:
    """One evaluation case: the items a user had, and the one to predict."""

    user: int
    history: np.ndarray
    target: int


@dataclass(frozen=True)
class LeaveOneOut:
    """The SASRec papers' split: last item = test, second-to-last = validation.

    Users with fewer than 3 items are kept whole in ``train`` and are not
    evaluated (as in the papers' code). The test case's history includes the
    validation item.
    """

    train: list[np.ndarray]
    valid: list[Example]
    test: list[Example]


def leave_one_out(seqs: Sequence[np.ndarray]) -> LeaveOneOut:
    """Split each user's sequence the papers' way.

    Examples
    --------
    >>> split = leave_one_out([np.array([1, 2, 3, 4]), np.array([5, 6])])
    >>> [t.tolist() for t in split.train], split.valid[0].target, split.test[0].target
    ([[1, 2], [5, 6]], 3, 4)
    >>> split.test[0].history.tolist(), len(split.test)
    ([1, 2, 3], 1)
    """
    train, valid, test = [], [], []
    for user, seq in enumerate(seqs):
        seq = np.asarray(seq, dtype=np.int64)
        if len(seq) < 3:
            train.append(seq)
            continue
        train.append(seq[:-2])
        valid.append(Example(user, seq[:-2], int(seq[-2])))
        test.append(Example(user, seq[:-1], int(seq[-1])))
    return LeaveOneOut(train, valid, test)


def pad_right(seqs: Sequence[Sequence[int]], max_len: int) -> np.ndarray:
    """``[B, W]`` int64: the last ``max_len`` items of each sequence, zeros after.

    ``W`` is the longest (truncated) sequence, so a batch of short histories
    stays narrow.

    Examples
    --------
    >>> pad_right([[1, 2, 3], [4]], max_len=2)
    array([[2, 3],
           [4, 0]])
    """
    width = max(1, min(max_len, max((len(s) for s in seqs), default=1)))
    out = np.zeros((len(seqs), width), dtype=np.int64)
    for row, seq in enumerate(seqs):
        tail = np.asarray(seq, dtype=np.int64)[-max_len:] if len(seq) else ()
        out[row, : len(tail)] = tail
    return out


def training_windows(seqs: Iterable[np.ndarray], max_len: int) -> np.ndarray:
    """``[S, max_len + 1]`` right-padded training windows, every transition once.

    Each window feeds ``row[:-1]`` as input and ``row[1:]`` as next-item targets
    (zeros are ignored). A sequence longer than ``max_len + 1`` is cut from its
    end into windows that overlap by one item, so long users contribute all of
    their history rather than only the last ``max_len`` items (the papers' code
    keeps only the last window). Sequences shorter than 2 give nothing.

    Examples
    --------
    >>> training_windows([np.array([1, 2, 3, 4, 5]), np.array([6])], max_len=3)
    array([[2, 3, 4, 5],
           [1, 2, 0, 0]])
    """
    rows: list[np.ndarray] = []
    span = max_len + 1
    for seq in seqs:
        seq = np.asarray(seq, dtype=np.int64)
        end = len(seq)
        while end >= 2:
            start = max(0, end - span)
            rows.append(seq[start:end])
            end = start + 1  # overlap by one: seq[start] becomes the last input of the previous window
            if start == 0:
                break
    out = np.zeros((len(rows), span), dtype=np.int64)
    for r, window in enumerate(rows):
        out[r, : len(window)] = window
    return out


def batch_order(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                bucket: bool = True, bucket_batches: int = 32) -> list[np.ndarray]:
    """Shuffled mini-batches of row indices, grouped by similar length.

    With ``bucket`` the rows are shuffled, cut into pools of ``bucket_batches``
    batches, each pool sorted by length and cut into batches, and the batches
    shuffled again. The trainer trims each batch to its longest row, so short
    sequences stop paying for the longest one's padding.

    Examples
    --------
    >>> order = batch_order(np.array([3, 1, 2, 5]), 2, np.random.default_rng(0))
    >>> sorted(np.concatenate(order).tolist())
    [0, 1, 2, 3]
    """
    n = len(lengths)
    perm = rng.permutation(n)
    if bucket:
        pool = batch_size * bucket_batches
        parts = [perm[i: i + pool] for i in range(0, n, pool)]
        perm = np.concatenate([p[np.argsort(lengths[p], kind="stable")] for p in parts]) if parts else perm
    batches = [perm[i: i + batch_size] for i in range(0, n, batch_size)]
    if bucket:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def sample_negatives(rng: np.random.Generator, n_items: int, n: int, exclude: Iterable[int]) -> np.ndarray:
    """``n`` distinct item ids in ``1..n_items`` not in ``exclude`` (evaluation negatives).

    Examples
    --------
    >>> neg = sample_negatives(np.random.default_rng(0), 10, 5, exclude={1, 2})
    >>> len(set(neg.tolist())), bool(set(neg.tolist()) & {0, 1, 2})
    (5, False)
    """
    banned = set(int(i) for i in exclude)
    banned.add(0)
    available = n_items - sum(1 for i in banned if 1 <= i <= n_items)
    if n > available:
        raise ValueError(f"cannot sample {n} negatives: only {available} items outside the history")
    chosen: list[int] = []
    seen: set[int] = set()
    while len(chosen) < n:
        for cand in rng.integers(1, n_items + 1, size=2 * (n - len(chosen)) + 8).tolist():
            if cand not in banned and cand not in seen:
                seen.add(cand)
                chosen.append(cand)
                if len(chosen) == n:
                    break
    return np.asarray(chosen, dtype=np.int64)


def training_negatives(window: torch.Tensor, n_items: int, k: int,
                       generator: torch.Generator | None = None, retries: int = 2) -> torch.Tensor:
    """``[B, L, k]`` uniform negatives for BCE, resampled where they hit the window.

    Runs on the window's device with no host sync. An id that appears anywhere
    in the user's window is resampled up to ``retries`` times (the papers avoid
    the user's whole history; the window is what the model sees).
    """
    b, length = window.shape[0], window.shape[1] - 1
    low, high = 1, n_items + 1
    neg = torch.randint(low, high, (b, length, k), device=window.device, generator=generator)
    if b * length * k * window.shape[1] > 64_000_000:  # the clash test would need too much memory;
        return neg  # with that many negatives per position a few clashes don't matter
    for _ in range(retries):
        clash = (neg.unsqueeze(-1) == window[:, None, None, :]).any(-1)  # [B, L, k]
        fresh = torch.randint(low, high, neg.shape, device=window.device, generator=generator)
        neg = torch.where(clash, fresh, neg)
    return neg


class SequenceBuffer:
    """Bounded per-user recent-item buffers for a trainer that learns from a stream.

    Keeps at most ``max_len + 1`` ids per user and at most ``max_users`` users
    (least recently active evicted), so memory is bounded however long the
    stream runs.

    Examples
    --------
    >>> buf = SequenceBuffer(max_len=2, max_users=10)
    >>> for item in [1, 2, 3, 4]:
    ...     buf.append("u", item)
    >>> list(buf.get("u")), len(buf)
    ([2, 3, 4], 1)
    """

    def __init__(self, max_len: int, max_users: int = 1_000_000) -> None:
        self.max_len = int(max_len)
        self.max_users = int(max_users)
        self._users: OrderedDict[str, deque[int]] = OrderedDict()

    def append(self, user: str, item: int) -> None:
        if not item:
            return
        seq = self._users.get(user)
        if seq is None:
            if len(self._users) >= self.max_users:
                self._users.popitem(last=False)
            seq = self._users[user] = deque(maxlen=self.max_len + 1)
        else:
            self._users.move_to_end(user)
        seq.append(int(item))

    def get(self, user: str) -> tuple[int, ...]:
        return tuple(self._users.get(user, ()))

    def sequences(self) -> Iterator[np.ndarray]:
        for seq in self._users.values():
            yield np.fromiter(seq, dtype=np.int64, count=len(seq))

    def __len__(self) -> int:
        return len(self._users)
