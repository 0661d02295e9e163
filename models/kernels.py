"""The encoder's incremental steps compiled (numba): each row reads its cached keys and values where they lie.

``models.incremental.IncrementalStates`` extends each user's window by the items that arrived since it
was last served: most often one position per user, a few when a user's events come in a burst. In numpy
a micro-batch of such steps costs ~45 array operations whose fixed cost dominates at these sizes, a
gather that copies every row's cached keys and values out of the cache before the attention reads
them, and padding every row to the widest one. :func:`run_steps` runs the same blocks in one compiled
call: the rows' c-th new positions together (one matrix product per layer), the attention row by row
on the cache in place, each row only as far as its own new positions. Its states and cached keys and
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


@njit(cache=True, nogil=True)
def _normalised_rows(x: np.ndarray, rows: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """``out[i]``: row ``rows[i]`` of ``x`` normalised (:func:`_normalised`)."""
    for i in range(rows.shape[0]):
        _normalised(x[rows[i]], out[i])


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
    The rows' c-th new positions go through the blocks together (one matrix product per layer, BLAS);
    only the attention, which reads each row's own cache, runs row by row.
    """
    n, n_blocks, hidden = tokens.shape[0], qkv_w.shape[0], item_emb.shape[1]
    heads, length, d = keys.shape[2], keys.shape[3], keys.shape[4]
    x = np.empty((n, hidden), np.float32)
    weights = np.empty(length, np.float64)
    accumulated = np.empty(d, np.float64)
    scratch_k = np.empty((n, n_blocks, heads, length, d), np.float32)  # for rows without a slot
    scratch_v = np.empty((n, n_blocks, heads, length, d), np.float32)
    for c in range(counts.max()):
        rows = np.nonzero(counts > c)[0]  # the rows with a c-th new position
        m = rows.shape[0]
        for i in range(m):
            r = rows[i]
            at = min(starts[r] + c, length - 1)
            for e in range(hidden):
                x[r, e] = item_emb[tokens[r, c], e] + pos_emb[at, e]
        normed = np.empty((m, hidden), np.float32)
        attended = np.empty((m, hidden), np.float32)
        for b in range(n_blocks):
            _normalised_rows(x, rows, normed)
            qkv = np.dot(normed, qkv_w[b])  # [m, 3H]
            for i in range(m):
                r = rows[i]
                pos = starts[r] + c
                cached_k = keys[b, slots[r]] if slots[r] >= 0 else scratch_k[r, b]  # [heads, L, d]
                cached_v = values[b, slots[r]] if slots[r] >= 0 else scratch_v[r, b]
                for h in range(heads):
                    q0, k0, v0 = h * d, hidden + h * d, 2 * hidden + h * d
                    for e in range(d):
                        cached_k[h, pos, e] = qkv[i, k0 + e] + qkv_b[b, k0 + e]
                        cached_v[h, pos, e] = qkv[i, v0 + e] + qkv_b[b, v0 + e]
                    top = -np.inf
                    for t in range(pos + 1):  # causal: this position and the ones before it
                        score = 0.0
                        for e in range(d):
                            score += (qkv[i, q0 + e] + qkv_b[b, q0 + e]) * cached_k[h, t, e]
                        weights[t] = score
                        if score > top:
                            top = score
                    total = 0.0
                    for t in range(pos + 1):
                        weights[t] = math.exp(weights[t] - top)
                        total += weights[t]
                    for e in range(d):
                        accumulated[e] = 0.0
                    for t in range(pos + 1):
                        share = weights[t] / total
                        for e in range(d):
                            accumulated[e] += share * cached_v[h, t, e]
                    for e in range(d):
                        attended[i, q0 + e] = accumulated[e]
            delta = np.dot(attended, out_w[b])
            for i in range(m):
                for e in range(hidden):
                    x[rows[i], e] += delta[i, e] + out_b[b, e]
            _normalised_rows(x, rows, normed)
            inner = np.dot(normed, ffn1_w[b])  # [m, F]
            for i in range(m):
                for j in range(inner.shape[1]):  # the exact GELU, as torch.nn.GELU()
                    v = inner[i, j] + ffn1_b[b, j]
                    inner[i, j] = 0.5 * v * (1.0 + math.erf(v * _INV_SQRT2))
            delta = np.dot(inner, ffn2_w[b])
            for i in range(m):
                for e in range(hidden):
                    x[rows[i], e] += delta[i, e] + ffn2_b[b, e]
    final = np.empty(hidden, np.float32)
    for r in range(n):
        _normalised(x[r], final)
        for e in range(hidden):
            out[r, e] = final[e] * final_w[e] + final_b[e]
