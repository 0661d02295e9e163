"""SASRec-family sequence encoder: causal self-attention over a user's last L items.

Why this shape:

- item embeddings are shared between input and output (scores are dot products
  with the item table), as in SASRec; id ``0`` is padding and has a zero row;
- positions are learned and counted from the start of the (right-padded)
  window, so the fused causal kernel
  (``F.scaled_dot_product_attention(..., is_causal=True)``: flash attention on
  CUDA, a fused kernel on CPU) is exact with no padding mask: with the padding
  after the items, a real position can only attend to earlier real positions;
- pre-LayerNorm blocks (as in SASRec's code) train stably at higher learning
  rates and in bf16;
- the loss lives on the model (RecBole's split) but the trainer chooses which:
  full cross-entropy over the catalogue, sampled softmax, or the paper's BCE.

Shapes: ``B`` batch, ``L`` window length, ``H`` hidden, ``N`` catalogue size,
``C`` candidates, ``K`` negatives.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.config import EncoderConfig

Device = torch.device | str | None  # where to create parameters ("meta": no memory, for loading)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position i sees positions <= i only."""

    def __init__(self, hidden: int, n_heads: int, dropout: float, device: Device = None) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(hidden, 3 * hidden, device=device)
        self.out = nn.Linear(hidden, hidden, device=device)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_kv(x)[0]  # [B, L, H]

    def forward_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`forward` and the keys and values it attended to, ``[B, heads, L, d]`` each: what a
        server that caches them needs (``models.incremental``)."""
        b, length, h = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.n_heads, h // self.n_heads).permute(2, 0, 3, 1, 4)
        # q, k, v: [B, heads, L, H/heads]
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                           is_causal=True)
        return self.out(y.transpose(1, 2).reshape(b, length, h)), k, v

    def forward_at(self, x: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """The output at position ``last[b]`` of each row only (what :meth:`forward` gives there):
        keys and values for every position, one query per row. ``[B, L, H]``, ``[B]`` -> ``[B, 1, H]``."""
        return self.forward_at_kv(x, last)[0]

    def forward_at_kv(self, x: torch.Tensor, last: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`forward_at` and the keys and values (``[B, heads, L, d]`` each) it computed on the way."""
        b, length, h = x.shape
        d = h // self.n_heads
        rows = torch.arange(b, device=x.device)
        w, bias = self.qkv.weight, self.qkv.bias  # [3H, H], [3H]
        q = F.linear(x[rows, last], w[:h], bias[:h]).view(b, 1, self.n_heads, d).transpose(1, 2)  # [B, h, 1, d]
        k, v = F.linear(x, w[h:], bias[h:]).view(b, length, 2, self.n_heads, d).permute(2, 0, 3, 1, 4)
        visible = torch.arange(length, device=x.device)[None, :] <= last[:, None]  # [B, L]: causal at `last`
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=visible[:, None, None, :])  # [B, h, 1, d]
        return self.out(y.transpose(1, 2).reshape(b, 1, h)), k, v  # [B, 1, H]


class Block(nn.Module):
    """Pre-LN transformer block: x + Attn(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, hidden: int, n_heads: int, dropout: float, ffn_mult: int, device: Device = None) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(hidden, device=device)
        self.attn = CausalSelfAttention(hidden, n_heads, dropout, device)
        self.ln2 = nn.LayerNorm(hidden, device=device)
        self.ffn = nn.Sequential(nn.Linear(hidden, ffn_mult * hidden, device=device), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(ffn_mult * hidden, hidden, device=device))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_kv(x)[0]

    def forward_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`forward` and its attention's keys and values."""
        attended, k, v = self.attn.forward_kv(self.ln1(x))
        x = x + self.drop(attended)
        return x + self.drop(self.ffn(self.ln2(x))), k, v

    def forward_at(self, x: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """``[B, L, H]`` -> ``[B, 1, H]``: the block's output at ``last[b]`` only (inference: no dropout)."""
        return self.forward_at_kv(x, last)[0]

    def forward_at_kv(self, x: torch.Tensor, last: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`forward_at` and its attention's keys and values for every position."""
        at = x[torch.arange(x.shape[0], device=x.device), last].unsqueeze(1)  # [B, 1, H]
        attended, k, v = self.attn.forward_at_kv(self.ln1(x), last)
        at = at + attended
        return at + self.ffn(self.ln2(at)), k, v


class SequenceEncoder(nn.Module):
    """Next-item encoder over right-padded id sequences (``0`` = padding).

    Examples
    --------
    >>> import torch
    >>> from models.config import EncoderConfig
    >>> _ = torch.manual_seed(0)
    >>> model = SequenceEncoder(EncoderConfig.tiny(n_items=20)).eval()
    >>> seq = torch.tensor([[3, 4, 5, 0], [7, 0, 0, 0]])
    >>> model(seq).shape, model.full_sort_predict(seq).shape
    (torch.Size([2, 4, 32]), torch.Size([2, 20]))
    >>> model.predict(seq, torch.tensor([[6, 1], [8, 2]])).shape
    torch.Size([2, 2])
    """

    def __init__(self, config: EncoderConfig, *, init_weights: bool = True, device: Device = None) -> None:
        super().__init__()
        if config.n_items < 1:
            raise ValueError("EncoderConfig.n_items must be set (>= 1) before building the encoder")
        self.config = config
        h = config.hidden
        # A shell built for a checkpoint's weights skips the embeddings' random init as well: on the meta device
        # it runs through torch's Python decompositions, whose first call imports torch._dynamo and sympy
        # (~900 modules, ~1 s and 150,000+ long-lived objects) into every worker that serves an encoder.
        shell = (lambda rows: None) if init_weights else (lambda rows: torch.empty((rows, h), device=device))
        self.item_emb = nn.Embedding(config.n_items + 1, h, padding_idx=0, device=device,
                                     _weight=shell(config.n_items + 1))
        self.pos_emb = nn.Embedding(config.max_len, h, device=device, _weight=shell(config.max_len))
        self.emb_drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(h, config.n_heads, config.dropout, config.ffn_mult, device)
                                    for _ in range(config.n_blocks))
        self.final_ln = nn.LayerNorm(h, device=device)
        # ``device="meta", init_weights=False``: a weightless shell that a checkpoint's tensors are
        # assigned into (hot swap); factory kwargs, not a device context, keep that a few ms
        if init_weights:
            self.apply(self._init)
        self.emb_scale = math.sqrt(h)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()

    # ---------------------------------------------------------------- encoding
    def _embed(self, item_seq: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` right-padded ids -> ``[B, L, H]`` item plus position embeddings (before dropout)."""
        length = item_seq.shape[1]
        if length > self.config.max_len:
            raise ValueError(f"sequence width {length} exceeds max_len={self.config.max_len}; "
                             "use models.data.pad_right to keep the last max_len items")
        positions = torch.arange(length, device=item_seq.device)
        return self.item_emb(item_seq) * self.emb_scale + self.pos_emb(positions)

    def forward(self, item_seq: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` right-padded ids -> ``[B, L, H]`` states (state i predicts item i+1)."""
        x = self.emb_drop(self._embed(item_seq))
        for block in self.blocks:
            x = block(x)
        return self.final_ln(x)  # [B, L, H]

    def last_hidden(self, item_seq: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` -> ``[B, H]``: the state after each user's last real item.

        In eval mode the last block computes only that position (keys and values for all): the
        serving path, about a third cheaper than :meth:`forward`, and equal to it.
        """
        last = ((item_seq != 0).sum(1) - 1).clamp(min=0)  # [B]
        rows = torch.arange(item_seq.shape[0], device=item_seq.device)
        if self.training:
            return self.forward(item_seq)[rows, last]  # [B, H]
        x = self._embed(item_seq)  # eval mode: dropout is the identity
        for block in self.blocks[:-1]:
            x = block(x)
        return self.final_ln(self.blocks[-1].forward_at(x, last))[:, 0]  # [B, H]

    def states_and_cache(self, item_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[B, L]`` right-padded ids -> the state after each row's last real item ``[B, H]`` (as
        :meth:`last_hidden`) and every block's attention keys and values ``[blocks, B, heads, L, d]``:
        what a server needs to go on one new item at a time (``models.incremental``). Eval mode only."""
        if self.training:
            raise RuntimeError("states_and_cache serves: call it in eval mode")
        last = ((item_seq != 0).sum(1) - 1).clamp(min=0)  # [B]
        x = self._embed(item_seq)
        keys, values = [], []
        for block in self.blocks[:-1]:
            x, k, v = block.forward_kv(x)
            keys.append(k)
            values.append(v)
        x, k, v = self.blocks[-1].forward_at_kv(x, last)  # the last block: every key and value, one query
        return self.final_ln(x)[:, 0], torch.stack([*keys, k]), torch.stack([*values, v])

    @property
    def output_table(self) -> torch.Tensor:
        """``[N, H]`` item embeddings used for scoring (row j is item id j+1)."""
        return self.item_emb.weight[1:]

    # ---------------------------------------------------------------- scoring
    def predict(self, item_seq: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` history, ``[B, C]`` candidate ids -> ``[B, C]`` scores (id 0 scores 0)."""
        h = self.last_hidden(item_seq)  # [B, H]
        return torch.einsum("bch,bh->bc", self.item_emb(candidates), h)  # [B, C]

    def full_sort_predict(self, item_seq: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` -> ``[B, N]`` scores of every item (column j is item id j+1)."""
        return self.last_hidden(item_seq) @ self.output_table.T  # [B, N]

    # ---------------------------------------------------------------- training
    def calculate_loss(self, batch: dict[str, torch.Tensor], loss: str = "ce") -> torch.Tensor:
        """Mean next-item loss over the non-padded targets of a batch.

        ``batch["input"]`` and ``batch["target"]`` are ``[B, L]`` (target 0 =
        ignore). ``loss="ce"``: softmax over the whole catalogue, or over the
        target plus ``batch["negatives"]`` (``[K]`` ids shared by the batch:
        sampled softmax) when given. ``loss="bce"``: the paper's binary loss with
        ``batch["negatives"]`` of shape ``[B, L, K]``. Padding is handled with
        weights, not boolean indexing, so the step never syncs with the GPU and
        compiles without graph breaks.
        """
        inp, target = batch["input"], batch["target"]
        negatives = batch.get("negatives")
        states = self.forward(inp)  # [B, L, H]
        if loss == "ce" and negatives is None:
            logits = states @ self.output_table.T  # [B, L, N]
            return F.cross_entropy(logits.flatten(0, 1).float(), (target - 1).flatten(), ignore_index=-1)
        if loss not in ("ce", "bce"):
            raise ValueError(f"unknown loss {loss!r}; choose 'ce' or 'bce'")
        if negatives is None:
            raise ValueError("loss='bce' needs batch['negatives'] of shape [B, L, K]")
        valid = (target > 0).float()  # [B, L]
        n_valid = valid.sum().clamp(min=1.0)
        pos_logit = (states * self.item_emb(target)).sum(-1).float()  # [B, L]
        if loss == "ce":
            neg_logits = (states @ self.item_emb(negatives).T).float()  # [B, L, K]
            neg_logits = neg_logits.masked_fill(negatives == target.unsqueeze(-1), float("-inf"))
            log_z = torch.logsumexp(torch.cat([pos_logit.unsqueeze(-1), neg_logits], dim=-1), dim=-1)  # [B, L]
            return ((log_z - pos_logit) * valid).sum() / n_valid
        neg_logits = torch.einsum("blkh,blh->blk", self.item_emb(negatives), states).float()  # [B, L, K]
        per_position = F.softplus(-pos_logit) + F.softplus(neg_logits).mean(-1)  # BCE(pos, 1) + BCE(neg, 0)
        return (per_position * valid).sum() / n_valid
