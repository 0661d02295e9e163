"""Model FLOPs per training step and the GPU's peak, for model FLOPs utilisation (MFU).

MFU = (FLOPs the model needs) / (seconds x the device's peak). It is the number
that says whether the GPU is kept busy, independent of batch size or data set.
Counted here: the dense matmuls of every block, attention's two ``L x L``
products (full, not halved for the causal mask, as is customary), and the
output layer (the whole catalogue for full cross-entropy, ``1 + K`` items for
sampled losses); backward is counted as twice forward. Embedding lookups,
norms and softmax are ignored (they are memory-bound and small).
"""
from __future__ import annotations

from models.config import EncoderConfig

# bf16 dense tensor-core peaks (no sparsity), from the vendors' data sheets.
_PEAK_BF16 = (
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("GH200", 989e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("A10", 125e12),
)


def train_flops(cfg: EncoderConfig, batch: int, width: int, loss: str = "ce", negatives: int = 0) -> float:
    """Training FLOPs (forward + backward) of one step on a ``[batch, width]`` input.

    ``negatives`` is ``ce_negatives`` for ``loss="ce"`` (0 = full catalogue) or
    ``bce_negatives`` for ``loss="bce"``.

    Examples
    --------
    >>> cfg = EncoderConfig(n_items=100, hidden=8, n_blocks=1, n_heads=1, max_len=4)
    >>> train_flops(cfg, batch=1, width=4)
    29952.0
    """
    tokens = batch * width
    h, f = cfg.hidden, cfg.ffn_mult * cfg.hidden
    dense = 2.0 * tokens * (4 * h * h + 2 * h * f) * cfg.n_blocks
    attention = 2.0 * 2.0 * batch * width * width * h * cfg.n_blocks
    outputs = cfg.n_items if loss == "ce" and negatives == 0 else 1 + negatives
    head = 2.0 * tokens * h * outputs
    return 3.0 * (dense + attention + head)


def peak_flops(device_name: str) -> float | None:
    """bf16 peak of a GPU by its ``torch.cuda.get_device_name()``; ``None`` if unknown.

    Examples
    --------
    >>> peak_flops("NVIDIA H100 80GB HBM3")
    989000000000000.0
    >>> peak_flops("cpu") is None
    True
    """
    for key, value in _PEAK_BF16:
        if key in device_name:
            return value
    return None
