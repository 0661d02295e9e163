"""Users' encoder states kept up to date one item at a time: keys and values cached per user.

Why: a list with the encoder used to cost one forward pass over the user's whole window (50
positions, two blocks: ~130 µs of CPU per user in a batch of 20, most of what the encoder added
to a list). The encoder is causal, so the state after a new item needs only that item's own
pass through the blocks, attending to the keys and values the earlier items left: the cost of
one position instead of fifty. This module holds those keys and values per user and runs the
steps in one compiled call (``models.kernels.run_steps``, numba: torch's and numpy's per-operation
overhead is larger than the work at this size, and it reads each user's keys and values where they
lie in the cache); wide fresh windows (every user after a hot swap, a batch of new users) run in
torch, whose fused attention is faster there (``SequenceEncoder.states_and_cache``).

**The window.** Positions are learned and counted from the start of the window
(``models.encoder``), so the window cannot slide one item at a time without recomputing every
position. It grows instead: each new item is appended, and when new items do not fit (``max_len``)
it restarts at its newest ``max_len // 2 - 1`` items plus the new ones (one new item: the newest
``max_len // 2``). A user's state is therefore the encoder's output over between ``max_len // 2``
and ``max_len`` of their latest items (the encoder was trained on windows of every length up to
``max_len``). A user evicted from the cache, or whose history changed in any other way than by new
items at its end, is computed afresh over their last ``max_len`` items (a history only cut shorter,
with nothing new, keeps its state).

**The shadow window.** Computed afresh, a restart would cost ``max_len // 2`` positions, one
restart in every ``max_len // 2`` items of an active user. Instead, once the window reaches the
items the next restart keeps, they also go into a second window (the shadow, in a second slot,
positions counted from its own start), one position per new item; at the restart the shadow becomes
the window and only the new items are computed. Shadows take only memory no user's window needs:
a user new to the cache takes the least recently served user's shadow before their window.

What a state equals, exactly: ``SequenceEncoder.last_hidden`` over the user's current window
(``tests/test_models/test_incremental_states.py`` checks this through appends, restarts,
evictions and mixed batches).

Memory: keys and values take ``2 x blocks x max_len x hidden`` floats per window (51 KB for the
``small`` preset), kept for the most recently served users within ``cache_mb`` (with their shadows
while memory is spare); a user evicted from it is computed afresh when they come back.

Examples
--------
>>> import torch
>>> from models.config import EncoderConfig
>>> from models.encoder import SequenceEncoder
>>> _ = torch.manual_seed(0)
>>> model = SequenceEncoder(EncoderConfig.tiny(n_items=9)).eval()
>>> states = IncrementalStates(model)
>>> first, computed = states.states(["u1"], [(1, 2, 3)])     # a new user: three positions computed
>>> after, computed = states.states(["u1"], [(1, 2, 3, 4)])  # one new item: one position
>>> states.tokens_computed, computed
(4, 1)
>>> with torch.inference_mode():
...     full = model.last_hidden(torch.tensor([[1, 2, 3, 4]]))[0].numpy()
>>> bool(abs(after[0] - full).max() < 1e-5)
True
"""
from __future__ import annotations

import copy
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch

from models.encoder import SequenceEncoder
from models.kernels import run_steps


class _Block:
    """One transformer block's weights as float32 numpy arrays, transposed for ``x @ w``, with each
    LayerNorm's scale and shift folded into the product that follows it and the attention's
    ``1 / sqrt(d)`` into the queries' columns: fewer operations per position, the same function."""

    __slots__ = ("qkv_w", "qkv_b", "out_w", "out_b", "ffn1_w", "ffn1_b", "ffn2_w", "ffn2_b")

    def __init__(self, weights: dict[str, np.ndarray], prefix: str, hidden: int, head_dim: int) -> None:
        def get(name: str) -> np.ndarray:
            return weights[prefix + name].astype(np.float64)  # folded in float64, kept in float32

        def folded(ln: str, linear: str) -> tuple[np.ndarray, np.ndarray]:
            # Linear(LN(x)) = (normalised x * w_ln + b_ln) @ W.T + b = normalised x @ (w_ln[:, None] * W.T)
            # + (b_ln @ W.T + b)
            w, b = get(linear + ".weight").T, get(linear + ".bias")
            return get(ln + ".weight")[:, None] * w, get(ln + ".bias") @ w + b

        qkv_w, qkv_b = folded("ln1", "attn.qkv")
        scale = 1.0 / math.sqrt(head_dim)
        qkv_w[:, :hidden] *= scale
        qkv_b[:hidden] *= scale
        ffn1_w, ffn1_b = folded("ln2", "ffn.0")
        f32 = np.float32
        self.qkv_w, self.qkv_b = np.ascontiguousarray(qkv_w, f32), qkv_b.astype(f32)
        self.out_w, self.out_b = np.ascontiguousarray(get("attn.out.weight").T, f32), get("attn.out.bias").astype(f32)
        self.ffn1_w, self.ffn1_b = np.ascontiguousarray(ffn1_w, f32), ffn1_b.astype(f32)
        self.ffn2_w, self.ffn2_b = np.ascontiguousarray(get("ffn.3.weight").T, f32), get("ffn.3.bias").astype(f32)


class _Entry:
    """What is cached for one user: the slot holding their keys and values, their window, their state,
    and the call that last served them (a user of the running call is never evicted by it); and the
    shadow window, the next window's start, in a second slot (``-1``: none)."""

    __slots__ = ("slot", "window", "state", "served", "shadow_slot", "shadow_window")

    def __init__(self, slot: int, window: tuple[int, ...], state: np.ndarray, served: int) -> None:
        self.slot, self.window, self.state, self.served = slot, window, state, served
        self.shadow_slot, self.shadow_window = -1, ()


#: One window to extend in a call: (row of the call's output, the user's entry or None, the window,
#: the first position to compute, whether it is the user's shadow window).
_Step = tuple[int, "_Entry | None", tuple[int, ...], int, bool]


class IncrementalStates:
    """The encoder's state for each user, computed one new item at a time (see the module docstring).

    Parameters
    ----------
    model
        The trained encoder; its weights are copied (float32), so later changes to it do not reach here.
    cache_mb
        Memory for cached keys and values; users beyond it (least recently served first) are evicted.
    max_users
        At most this many users cached, whatever the memory allows.
    """

    def __init__(self, model: SequenceEncoder, *, cache_mb: float = 128.0, max_users: int = 100_000) -> None:
        cfg = model.config
        self._model = copy.deepcopy(model).to("cpu").float().eval()  # for whole windows; later changes stay out
        with torch.inference_mode():  # the compiled steps' weights come from the same copy
            weights = {name: t.detach().numpy().copy() for name, t in self._model.state_dict().items()}
        self.max_len = int(cfg.max_len)
        self.keep = max(1, self.max_len // 2)  # a full window restarts at its newest `keep` (one new item)
        # the shadow window holds the window's items from this position on: the next restart's first
        # keep - 1 items, so that a restart by one new item costs one position
        self.shadow_from = self.max_len - self.keep + 1
        self.hidden, self.heads = int(cfg.hidden), int(cfg.n_heads)
        self.head_dim = self.hidden // self.heads
        self._item_emb = weights["item_emb.weight"] * np.float32(math.sqrt(self.hidden))  # [N+1, H], row 0 zero
        self._pos_emb = weights["pos_emb.weight"]  # [L, H]
        self._blocks = [_Block(weights, f"blocks.{i}.", self.hidden, self.head_dim) for i in range(cfg.n_blocks)]
        self._final_ln = (weights["final_ln.weight"], weights["final_ln.bias"])
        # the same weights stacked block by block, for the compiled few-position steps (models.kernels)
        self._stacked = tuple(np.ascontiguousarray(np.stack([getattr(block, name) for block in self._blocks]))
                              for name in _Block.__slots__)
        per_user = 2 * len(self._blocks) * self.max_len * self.hidden * 4  # keys and values, float32
        self.capacity = max(1, min(int(max_users), int(cache_mb * 2**20 // per_user)))
        shape = (len(self._blocks), self.capacity, self.heads, self.max_len, self.head_dim)
        # [blocks, slots, heads, L, d], all slots at once: np.zeros maps pages without touching them, so
        # memory is taken as slots are first written (slots are handed out from 0 up), and the arrays
        # never grow (growing one copies it whole: tens of ms that would land on one list's latency)
        self._keys = np.zeros(shape, np.float32)
        self._values = np.zeros(shape, np.float32)
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # least recently served first
        self._free: list[int] = list(range(self.capacity - 1, -1, -1))  # popped from the end: 0 first
        self._call = 0  # counts calls of `states`
        self._reserved = 0  # free slots kept for the running call's new users
        self._lock = threading.Lock()  # one call at a time: a call moves keys and values between arrays
        self.tokens_computed = 0  # positions run through the blocks, for tests and benchmarks

    def __len__(self) -> int:
        return len(self._entries)

    # ------------------------------------------------------------------ the public call
    def states(self, users: Sequence[str | None], keys: Sequence[tuple[int, ...]]) -> tuple[np.ndarray, int]:
        """``[B, H]``: each user's state for ``keys[b]``, their last (at most ``max_len``) known item ids;
        and how many of them this call computed (the rest were unchanged).

        A user whose ids extend their cached window gets only the new positions computed; a new user
        or a history that changed otherwise gets the window computed afresh; a full window restarts
        from its shadow. ``None`` users are computed and not cached. Every key must be non-empty.
        """
        with self._lock:
            try:
                return self._states(users, keys)
            except BaseException:  # a step left half done must not leave windows that claim what is not cached
                self._forget_all()
                raise

    def _states(self, users: Sequence[str | None], keys: Sequence[tuple[int, ...]]) -> tuple[np.ndarray, int]:
        self._call += 1
        out = np.empty((len(users), self.hidden), np.float32)
        steps: list[_Step] = []
        computed = 0
        # free slots the call's new users will take: a shadow planned below must leave them free
        self._reserved = sum(1 for user in users if user is not None and user not in self._entries)
        for row, (user, key) in enumerate(zip(users, keys)):
            entry = self._entries.get(user) if user is not None else None
            if entry is None:
                window = key[-self.max_len:]
                steps.append((row, None, window, 0, False))
                computed += 1
                continue
            self._entries.move_to_end(user)
            entry.served = self._call
            new = _new_items(entry.window, key)
            if new == 0:
                out[row] = entry.state
                continue
            computed += 1
            if new is not None and len(entry.window) + new <= self.max_len:
                window, start = entry.window + key[-new:], len(entry.window)
            elif new is not None and (kept := entry.window[self.shadow_from:]) and len(kept) + new <= self.max_len:
                # full: restart at the window's newest keep - 1 items and the new ones, which the shadow
                # window started (its items: a prefix of them when the shadow could not keep up)
                window, start = kept + key[-new:], 0
                shadow = entry.shadow_window
                if entry.shadow_slot >= 0 and window[:len(shadow)] == shadow:
                    entry.slot, entry.shadow_slot = entry.shadow_slot, entry.slot
                    entry.window, entry.shadow_window, start = shadow, (), len(shadow)
            else:  # changed otherwise (or too many new items to keep any): the last max_len afresh
                window, start = key[-self.max_len:], 0
            steps.append((row, entry, window, start, False))
            self._follow(steps, entry, row, window)
        self._run(steps, users, out)
        self._reserved = 0
        late: list[_Step] = []  # new users' shadows, once they have entries
        for row, entry, window, _, _ in steps:
            if entry is None and (entry := self._entries.get(users[row])) is not None:
                self._follow(late, entry, row, window)
        self._run(late, users, out)
        return out, computed

    def _run(self, steps: list[_Step], users: Sequence[str | None], out: np.ndarray) -> None:
        """All steps in one compiled pass (``models.kernels.run_steps``: rows are not padded to the widest,
        each runs its own positions), except wide fresh windows (every user after a hot swap, a batch of
        new users) holding ``_TORCH_FROM`` padded positions or more: those run in torch
        (``SequenceEncoder.states_and_cache``), whose fused attention is faster there, while below it
        torch's fixed cost per call (~0.7 ms for the ``small`` preset) dominates."""
        few, wide = [], []
        for step in steps:
            (few if len(step[2]) - step[3] <= _FEW else wide).append(step)
        if wide and not (len(wide) * max(len(step[2]) - step[3] for step in wide) >= _TORCH_FROM
                         and all(step[3] == 0 for step in wide)):
            few, wide = few + wide, []
        if few:
            self._compute_steps(few, users, out)
        if wide:
            self._compute_fresh(wide, users, out)

    def _follow(self, steps: list[_Step], entry: _Entry, row: int, window: tuple[int, ...]) -> None:
        """Keep ``entry``'s shadow window at ``window``'s items from ``shadow_from`` on (a step of it
        added to ``steps``), so that the restart when the window is full extends it instead of computing
        ``keep`` positions afresh. No slot free for it: no shadow (the restart is then computed afresh)."""
        target = window[self.shadow_from:]
        if not target:
            return
        if entry.shadow_slot < 0:
            if len(self._free) <= self._reserved:  # a shadow takes only memory that no user's window needs
                return
            entry.shadow_slot, entry.shadow_window = self._free.pop(), ()
        have = entry.shadow_window
        start = len(have) if target[:len(have)] == have else 0
        if start < len(target):
            steps.append((row, entry, target, start, True))

    # ------------------------------------------------------------------ cache slots
    def _slot_for(self, user: str) -> int | None:
        """A slot for a user not cached yet: a free one, else the least recently served user's shadow,
        else that user's own (evicting them); None when that user was served in the running call (the
        new user is then computed uncached), or for a user already given one in this call."""
        if user in self._entries:  # twice in one call: the second is computed uncached
            return None
        if self._free:
            return self._free.pop()
        if not self._entries:
            return None
        oldest, entry = next(iter(self._entries.items()))
        if entry.served == self._call:
            return None
        if entry.shadow_slot >= 0:  # their next restart is computed afresh, and they stay
            slot, entry.shadow_slot, entry.shadow_window = entry.shadow_slot, -1, ()
            return slot
        del self._entries[oldest]
        return entry.slot

    def _forget_all(self) -> None:
        """Every user computed afresh next time (after a call that failed half way)."""
        self._entries.clear()
        self._free = list(range(self.capacity - 1, -1, -1))

    # ------------------------------------------------------------------ the blocks
    def _compute_steps(self, group: list[_Step], users: Sequence[str | None], out: np.ndarray) -> None:
        """Run the new positions of every window in ``group`` through the blocks and cache what they leave, in
        one compiled call (``models.kernels.run_steps``): each row reads its cached keys and values in place
        and runs only its own new positions."""
        n = len(group)
        starts = np.fromiter((s[3] for s in group), np.int64, n)
        counts = np.fromiter((len(s[2]) - s[3] for s in group), np.int64, n)
        tokens = np.zeros((n, int(counts.max())), np.int64)
        for i, (_, _, window, start, _) in enumerate(group):
            tokens[i, : len(window) - start] = window[start:]
        slots, entries = self._claim(group, users)
        last = np.empty((n, self.hidden), np.float32)
        run_steps(tokens, starts, counts, slots, self._item_emb, self._pos_emb, *self._stacked,
                  *self._final_ln, self._keys, self._values, last)
        self.tokens_computed += int(counts.sum())
        self._keep(group, entries, last, out)

    def _compute_fresh(self, group: list[_Step], users: Sequence[str | None], out: np.ndarray) -> None:
        """Whole windows (every row starts at 0), in torch: the states, and every position's keys and values
        cached."""
        n = len(group)
        counts = np.fromiter((len(s[2]) for s in group), np.int64, n)
        tokens = np.zeros((n, int(counts.max())), np.int64)  # right-padded, as the encoder reads windows
        for i, (_, _, window, _, _) in enumerate(group):
            tokens[i, : len(window)] = window
        with torch.inference_mode():
            state, keys, values = self._model.states_and_cache(torch.from_numpy(tokens))
        last, keys, values = state.numpy(), keys.numpy(), values.numpy()  # keys, values: [blocks, n, h, width, d]
        self.tokens_computed += int(counts.sum())
        slots, entries = self._claim(group, users)
        for i, (slot, count) in enumerate(zip(slots.tolist(), counts.tolist())):
            if slot >= 0:  # a slice per row: cheaper than one fancy-indexed copy of every (row, position)
                self._keys[:, slot, :, :count] = keys[:, i, :, :count]
                self._values[:, slot, :, :count] = values[:, i, :, :count]
        self._keep(group, entries, last, out)

    def _claim(self, group: list[_Step], users: Sequence[str | None]) -> tuple[np.ndarray, list[_Entry | None]]:
        """Each row's cache slot (-1: not cached) and entry, a slot taken for each user new to the cache."""
        slots = np.full(len(group), -1, np.int64)
        entries: list[_Entry | None] = []
        for i, (row, entry, window, _, shadow) in enumerate(group):
            user = users[row]
            if entry is None and user is not None:
                slot = self._slot_for(user)
                if slot is not None:
                    entry = _Entry(slot, window, _NOT_YET, self._call)
                    self._entries[user] = entry
            if entry is not None:
                slots[i] = entry.shadow_slot if shadow else entry.slot
            entries.append(entry)
        return slots, entries

    @staticmethod
    def _keep(group: list[_Step], entries: list[_Entry | None], last: np.ndarray, out: np.ndarray) -> None:
        """Each row's state to ``out`` and, when cached, to its entry with the window it covers (a shadow
        window's state is not a user's: only its window is kept)."""
        mains = [i for i, step in enumerate(group) if not step[4]]
        out[[group[i][0] for i in mains]] = last[mains]
        for (_, _, window, _, shadow), entry, state in zip(group, entries, last):
            if entry is not None:
                if shadow:
                    entry.shadow_window = window
                else:
                    entry.window, entry.state = window, state


#: Steps of more new positions than this are "wide": fresh wide ones may go to torch (``_TORCH_FROM``).
_FEW = 8
#: Wide fresh windows run in torch from this many padded positions on (measured against the numpy pass the
#: compiled one replaced: one user of 50 items 0.36 ms against torch's 0.82, three 0.87 against 0.97, on the
#: ``small`` preset; the compiled pass is as fast as numpy's on such windows and faster on narrower ones).
_TORCH_FROM = 150

#: The state of an entry whose slot is taken in the running call, before it is computed.
_NOT_YET = np.zeros(0, np.float32)


def _new_items(window: tuple[int, ...], key: tuple[int, ...]) -> int | None:
    """How many items at the end of ``key`` are new after ``window`` (0: nothing new), or None when
    ``key`` is not ``window``'s items followed by new ones (the history changed otherwise).

    ``key`` holds the user's last items, so the oldest of ``window`` may have left it: what precedes the
    new items in ``key`` must be the end of ``window``.
    """
    size, n = len(window), len(key)
    if key[-size:] == window if size <= n else window[-n:] == key:
        return 0
    for new in range(1, n):
        overlap = min(size, n - new)
        if key[n - new - overlap: n - new] == window[size - overlap:]:
            return new
    return None
