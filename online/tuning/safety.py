"""Is a model still sane? Finite, bounded parameters and finite scores.

A learning rate that is too large shows up first as exploding factor norms, then
as inf/NaN. The tuner checks every arm's model every few events with
:func:`model_norm`; a model whose norm is not finite or exceeds a bound is
"diverged", is reset from the champion and barred for a while.

>>> import numpy as np
>>> from online.mf import ImplicitMF
>>> mf = ImplicitMF(n_factors=2)
>>> model_norm(mf)
0.0
>>> from online.base import Interaction
>>> mf.learn_many([Interaction("u", "a", 0.0)])
>>> model_norm(mf) < 1.0
True
>>> mf._Q[0, 0] = np.nan; model_norm(mf)
inf
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np


def model_norm(model: Any) -> float:
    """Largest absolute value in the model's numpy parameters (``inf`` if any is NaN/inf).

    Looks at the array attributes a factor model keeps (``_P``, ``_Q``, ``_item_matrix``);
    a model without them has norm 0 (nothing to explode).
    """
    worst = 0.0
    for name, table in (("_P", "_users"), ("_Q", "_items"), ("_item_matrix", "_items")):
        array = getattr(model, name, None)
        rows = getattr(model, table, None)
        if isinstance(array, np.ndarray) and rows is not None:
            array = array[: len(rows)]  # matrices grow ahead of use; rows past the table are not yet written
        if isinstance(array, np.ndarray) and array.size:
            top = float(np.max(np.abs(array)))
            if not math.isfinite(top):
                return math.inf
            worst = max(worst, top)
    return worst


def diverged(model: Any, max_norm: float) -> bool:
    """``True`` when the model's parameters are non-finite or larger than ``max_norm``."""
    return not model_norm(model) <= max_norm


def finite_scores(ranked: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """A served list without items whose score is NaN or infinite (the last line of defence)."""
    if all(math.isfinite(score) for _, score in ranked):
        return ranked
    return [(item, score) for item, score in ranked if math.isfinite(score)]
