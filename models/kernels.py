"""The encoder's incremental steps compiled (numba): each row reads its cached keys and values where they lie.

``models.incremental.IncrementalStates`` extends each user's window by the items that arrived since it
was last served: most often one position per user, a few when a user's events come in a burst. In numpy
a micro-batch of such steps costs ~45 array operations whose fixed cost dominates at these sizes, a
gather that copies every row's cached keys and values out of the cache before the attention reads
them, and padding every row to the widest one. :func:`run_steps` runs the same blocks in one compiled
call, block by block: every new position of the call through a block's projections together (one
matrix product per layer), the attention position by position on the cache in place. Its states and cached keys and
values are the encoder's own pass over each window (``SequenceEncoder.last_hidden``,
``states_and_cache``) to float32 rounding (``tests/test_models/test_incremental_states.py``; the numpy
pass it replaced was removed once it had been checked against it), and it compiles once per machine
(``cache=True``: a few seconds the first time, then a load from ``__pycache__``; the encoder loader's
warm-up has a child process compile it, ``models.kernel_cache``, so no serving process compiles).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
#: The fast-math flags that let sums run in any order (vectorised) and nothing else: no assumption that
#: values are finite, so -inf, nan and inf behave as they should.
_SUMS_IN_ANY_ORDER = {"reassoc", "contract", "nsz"}


@njit(cache=True, nogil=True)
def _normalised(x: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """LayerNorm without scale and shift (folded into what follows), eps 1e-5 as torch's."""
    n = x.shape[0]
    mean = 0.0
    for i in range(n):
        mean += x[i]
    mean /= n
    var = 0.0
    for i in range(n):
        centred = x[i] - mean
        out[i] = centred
        var += centred * centred
    inverse = 1.0 / math.sqrt(var / n + 1e-5)
    for i in range(n):
        out[i] *= inverse


@njit(cache=True, nogil=True, fastmath=_SUMS_IN_ANY_ORDER)
def run_steps(tokens: np.ndarray, starts: np.ndarray, counts: np.ndarray, slots: np.ndarray,
              item_emb: np.ndarray, pos_emb: np.ndarray,
              qkv_w: np.ndarray, qkv_b: np.ndarray, out_w: np.ndarray, out_b: np.ndarray,
              ffn1_w: np.ndarray, ffn1_b: np.ndarray, ffn2_w: np.ndarray, ffn2_b: np.ndarray,
              final_w: np.ndarray, final_b: np.ndarray,
              keys: np.ndarray, values: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """Row ``r``'s ``counts[r]`` new tokens (``tokens[r, :counts[r]]``) at positions ``starts[r]`` on, through
    every block; its state (the last position's output, after the final LayerNorm) to ``out[r]``.

    Row ``r``'s earlier positions are read from cache slot ``slots[r]`` of ``keys`` / ``values``
    (``[blocks, slots, heads, L, d]``) and its new ones are written there; a row without a slot (-1: a
    user not cached, whose window starts at 0) uses a scratch slot of its own. Block weights are stacked
    on a first axis of blocks, transposed for ``x @ w``; the queries' columns carry ``1 / sqrt(d)``.

    Block by block, as a transformer reads a prompt: every new position of every row goes through a
    block's projections together (one matrix product per layer, BLAS), its keys and values are cached,
    and then each position attends to its own row's cache up to itself. A position's input to a block
    depends only on earlier blocks, so all of a block's keys are known before any of its attention
    runs; a user whose events came in a burst costs four products per block, not four per new item.
    """
    n, n_blocks, hidden = tokens.shape[0], qkv_w.shape[0], item_emb.shape[1]
    heads, length, d = keys.shape[2], keys.shape[3], keys.shape[4]
    total = 0
    for r in range(n):
        total += counts[r]
    row_of = np.empty(total, np.int64)  # each new position's row and its place in the window
    pos_of = np.empty(total, np.int64)
    last_of = np.empty(n, np.int64)  # each row's last new position
    p = 0
    for r in range(n):
        for c in range(counts[r]):
            row_of[p] = r
            pos_of[p] = starts[r] + c
            p += 1
        last_of[r] = p - 1
    x = np.empty((total, hidden), np.float32)
    for p in range(total):
        at = min(pos_of[p], length - 1)
        token = tokens[row_of[p], pos_of[p] - starts[row_of[p]]]
        for e in range(hidden):
            x[p, e] = item_emb[token, e] + pos_emb[at, e]
    weights = np.empty(length, np.float64)
    accumulated = np.empty(d, np.float64)
    scratch_k = np.empty((n, n_blocks, heads, length, d), np.float32)  # for rows without a slot
    scratch_v = np.empty((n, n_blocks, heads, length, d), np.float32)
    normed = np.empty((total, hidden), np.float32)
    attended = np.empty((total, hidden), np.float32)
    for b in range(n_blocks):
        for p in range(total):
            _normalised(x[p], normed[p])
        qkv = np.dot(normed, qkv_w[b])  # [total, 3H]
        for p in range(total):  # every new key and value of the block, before any attention reads them
            r, pos = row_of[p], pos_of[p]
            cached_k = keys[b, slots[r]] if slots[r] >= 0 else scratch_k[r, b]  # [heads, L, d]
            cached_v = values[b, slots[r]] if slots[r] >= 0 else scratch_v[r, b]
            for h in range(heads):
                k0, v0 = hidden + h * d, 2 * hidden + h * d
                for e in range(d):
                    cached_k[h, pos, e] = qkv[p, k0 + e] + qkv_b[b, k0 + e]
                    cached_v[h, pos, e] = qkv[p, v0 + e] + qkv_b[b, v0 + e]
        for p in range(total):
            r, pos = row_of[p], pos_of[p]
            cached_k = keys[b, slots[r]] if slots[r] >= 0 else scratch_k[r, b]
            cached_v = values[b, slots[r]] if slots[r] >= 0 else scratch_v[r, b]
            for h in range(heads):
                q0 = h * d
                top = -np.inf
                for t in range(pos + 1):  # causal: this position and the ones before it
                    score = 0.0
                    for e in range(d):
                        score += (qkv[p, q0 + e] + qkv_b[b, q0 + e]) * cached_k[h, t, e]
                    weights[t] = score
                    if score > top:
                        top = score
                total_weight = 0.0
                for t in range(pos + 1):
                    weights[t] = math.exp(weights[t] - top)
                    total_weight += weights[t]
                for e in range(d):
                    accumulated[e] = 0.0
                for t in range(pos + 1):
                    share = weights[t] / total_weight
                    for e in range(d):
                        accumulated[e] += share * cached_v[h, t, e]
                for e in range(d):
                    attended[p, q0 + e] = accumulated[e]
        delta = np.dot(attended, out_w[b])
        for p in range(total):
            for e in range(hidden):
                x[p, e] += delta[p, e] + out_b[b, e]
        for p in range(total):
            _normalised(x[p], normed[p])
        inner = np.dot(normed, ffn1_w[b])  # [total, F]
        for p in range(total):
            for j in range(inner.shape[1]):  # the exact GELU, as torch.nn.GELU()
                v = inner[p, j] + ffn1_b[b, j]
                inner[p, j] = 0.5 * v * (1.0 + math.erf(v * _INV_SQRT2))
        delta = np.dot(inner, ffn2_w[b])
        for p in range(total):
            for e in range(hidden):
                x[p, e] += delta[p, e] + ffn2_b[b, e]
    final = np.empty(hidden, np.float32)
    for r in range(n):
        _normalised(x[last_of[r]], final)
        for e in range(hidden):
            out[r, e] = final[e] * final_w[e] + final_b[e]


@njit(cache=True, nogil=True)
def _worse(values: np.ndarray, ids: np.ndarray, a: int, b: int) -> bool:  # pragma: no cover - compiled
    """Entry ``a`` ranks below entry ``b``: a lower value, or an equal value and a higher id."""
    return values[a] < values[b] or (values[a] == values[b] and ids[a] > ids[b])


@njit(cache=True, nogil=True)
def _swap(values: np.ndarray, ids: np.ndarray, a: int, b: int) -> None:  # pragma: no cover - compiled
    values[a], values[b] = values[b], values[a]
    ids[a], ids[b] = ids[b], ids[a]


@njit(cache=True, nogil=True)
def _sift_down(values: np.ndarray, ids: np.ndarray, size: int, at: int) -> None:  # pragma: no cover - compiled
    """Restore the heap below ``at``: a min-heap with the worst entry (:func:`_worse`) first."""
    while True:
        child = 2 * at + 1
        if child >= size:
            return
        if child + 1 < size and _worse(values, ids, child + 1, child):
            child += 1
        if not _worse(values, ids, child, at):
            return
        _swap(values, ids, child, at)
        at = child


@njit(cache=True, nogil=True)
def shortlists(scores: np.ndarray, history: np.ndarray, bounds: np.ndarray, out: np.ndarray,
               lengths: np.ndarray) -> None:  # pragma: no cover - compiled
    """Row ``r``'s best ``out.shape[1]`` item ids by score, best first (equal scores: the lower id first), to
    ``out[r, :lengths[r]]``: never id 0, an id of the row's history (``history[bounds[r]:bounds[r + 1]]``)
    or a score that is not finite. One pass over the row with a heap of the best so far, instead of the
    dozen whole-array numpy operations (copy, mask, partition, gather, sort) a batch of a few rows paid."""
    rows, width = scores.shape
    m = out.shape[1]
    excluded = np.zeros(width, np.bool_)
    values = np.empty(m, np.float64)
    ids = np.empty(m, np.int64)
    for r in range(rows):
        for j in range(bounds[r], bounds[r + 1]):
            excluded[history[j]] = True
        size = 0
        for i in range(1, width):
            v = scores[r, i]
            if excluded[i] or not math.isfinite(v):
                continue
            if size < m:  # push, then sift up
                at = size
                values[at], ids[at] = v, i
                size += 1
                while at > 0 and _worse(values, ids, at, (at - 1) // 2):
                    _swap(values, ids, at, (at - 1) // 2)
                    at = (at - 1) // 2
            elif v > values[0]:  # better than the worst kept (an equal score has a higher id: worse)
                values[0], ids[0] = v, i
                _sift_down(values, ids, size, 0)
        lengths[r] = size
        for place in range(size - 1, -1, -1):  # the worst out first, to the back
            out[r, place] = ids[0]
            last = place
            values[0], ids[0] = values[last], ids[last]
            _sift_down(values, ids, last, 0)
        for j in range(bounds[r], bounds[r + 1]):
            excluded[history[j]] = False


def load_shortlists() -> None:
    """Call :func:`shortlists` once on a tiny batch of the serving path's types (float32 scores), so that
    numba compiles it, or loads it from its cache, here and not on a list's path."""
    top, kept = np.empty((1, 2), np.int64), np.empty(1, np.int64)
    shortlists(np.ones((1, 3), np.float32), np.ones(1, np.int64), np.array([0, 1], np.int64), top, kept)
