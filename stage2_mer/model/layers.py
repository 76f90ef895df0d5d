"""Building blocks of the MER model: masked attention, BERT-style blocks, cross-modal (MulT-style)
transformers, length-aware positions and additive attention pooling.

Conventions (every module here):
    * masks are bool, ``True`` = valid position; shapes ``(N, L)``;
    * attention never gives weight to a padded key, and a query whose keys are ALL padding gets a
      zero attention output (no NaN, no dependence on padded values);
    * positions count only valid steps (the k-th valid step has position k whatever the padding).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis of ``scores`` that gives exactly 0 to masked entries.

    ``mask`` (bool, True = valid) broadcasts to ``scores``. A row with no valid entry gets all
    zeros (instead of NaN from ``softmax(-inf, ..., -inf)``). Computed in float32, returned in the
    dtype of ``scores``.
    """
    s = scores.float().masked_fill(~mask, torch.finfo(torch.float32).min)
    w = torch.softmax(s, dim=-1) * mask  # all-masked rows: uniform * 0 = 0
    return w.to(scores.dtype)


def valid_positions(mask: torch.Tensor) -> torch.Tensor:
    """``(N, L)`` bool -> ``(N, L)`` long: 1, 2, ... at valid steps (rank among the valid steps of
    the row), 0 at padding."""
    m = mask.long()
    return torch.cumsum(m, dim=1) * m


def sinusoidal_positions(mask: torch.Tensor, dim: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Length-aware sinusoidal positions ``(N, L, dim)`` for ``mask`` ``(N, L)``.

    The k-th valid step (k = 1, 2, ...) gets ``[sin(k w_0..w_{h-1}), cos(k w_0..w_{h-1})]`` with
    ``w_i = 10000^(-i/(h-1))``, ``h = dim // 2`` (fairseq's layout, a zero column when ``dim`` is
    odd); padded steps get zeros. Any length works (no table).
    """
    half = dim // 2
    pos = valid_positions(mask).float()  # (N, L)
    if half > 1:
        step = math.log(10000.0) / (half - 1)
    else:
        step = 0.0
    freqs = torch.exp(torch.arange(half, device=mask.device, dtype=torch.float32) * -step)  # (h,)
    ang = pos[..., None] * freqs  # (N, L, h)
    emb = torch.cat([torch.sin(ang), torch.cos(ang)], dim=-1)  # (N, L, 2h)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    emb = emb * mask[..., None]  # padding -> 0
    return emb.to(dtype)


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention with a key-padding mask.

    Args:
        hidden: model width (query, key and value all ``hidden``); ``hidden % heads == 0``.
        heads: number of heads.
        attn_dropout: dropout on the attention probabilities.
        xavier: xavier-uniform initialisation of the q/k/v projections (MulT's cross attention);
            otherwise PyTorch's Linear default.
    """

    def __init__(self, hidden: int, heads: int, attn_dropout: float = 0.0, xavier: bool = False) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden {hidden} is not divisible by heads {heads}")
        self.heads = heads
        self.head_dim = hidden // heads
        self.q = nn.Linear(hidden, hidden)
        self.k = nn.Linear(hidden, hidden)
        self.v = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(attn_dropout)
        if xavier:
            for lin in (self.q, self.k, self.v):
                nn.init.xavier_uniform_(lin.weight)
                nn.init.zeros_(lin.bias)

    def forward(self, query: torch.Tensor, key: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """query (N, Lq, H), key = value (N, Lk, H), key_mask (N, Lk) bool -> (N, Lq, H).

        Queries whose keys are all padding get ``out.bias`` (zero attention context)."""
        n, lq, h = query.shape
        lk = key.shape[1]
        q = self.q(query).view(n, lq, self.heads, self.head_dim).transpose(1, 2)  # (N, h, Lq, d)
        k = self.k(key).view(n, lk, self.heads, self.head_dim).transpose(1, 2)  # (N, h, Lk, d)
        v = self.v(key).view(n, lk, self.heads, self.head_dim).transpose(1, 2)  # (N, h, Lk, d)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)  # (N, h, Lq, Lk)
        probs = self.dropout(masked_softmax(scores, key_mask[:, None, None, :]))
        ctx = (probs @ v).transpose(1, 2).reshape(n, lq, h)  # (N, Lq, H)
        return self.out(ctx)


class TransformerBlock(nn.Module):
    """BERT-style post-LN self-attention block (FacialMMT's audio and visual encoder layer).

    ``x = LN(x + drop(attn(x)))``; ``x = LN(x + drop(W2 gelu(W1 x)))`` with erf GELU.
    """

    def __init__(self, hidden: int, heads: int, ffn: int, dropout: float, attn_dropout: float, eps: float) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(hidden, heads, attn_dropout)
        self.attn_norm = nn.LayerNorm(hidden, eps=eps)
        self.ffn_in = nn.Linear(hidden, ffn)
        self.ffn_out = nn.Linear(ffn, hidden)
        self.ffn_norm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (N, L, H), mask (N, L) bool -> (N, L, H)."""
        x = self.attn_norm(x + self.dropout(self.attn(x, x, mask)))
        y = self.ffn_out(F.gelu(self.ffn_in(x)))
        return self.ffn_norm(x + self.dropout(y))


class SequenceEncoder(nn.Module):
    """Per-frame features -> contextual sequence (the audio, visual and visual-only encoders).

    ``Linear(in_dim -> H)`` + learned positions (``max_len`` table, indexed by the rank of each
    VALID frame) + ``layers`` :class:`TransformerBlock`. Padded input frames are zeroed first and
    padded output frames are zero.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: int,
        heads: int,
        ffn: int,
        layers: int,
        max_len: int,
        dropout: float,
        attn_dropout: float,
        eps: float,
        name: str = "sequence",
    ) -> None:
        super().__init__()
        self.name = name
        self.max_len = max_len
        self.proj = nn.Linear(in_dim, hidden)
        self.positions = nn.Embedding(max_len, hidden)
        self.blocks = nn.ModuleList(
            TransformerBlock(hidden, heads, ffn, dropout, attn_dropout, eps) for _ in range(layers)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (N, L, in_dim), mask (N, L) bool -> (N, L, H); ValueError when a row has more valid
        frames than the position table."""
        longest = int(mask.sum(dim=1).max()) if mask.numel() else 0
        if longest > self.max_len:
            raise ValueError(
                f"{self.name}: an utterance has {longest} valid frames but the position table holds "
                f"{self.max_len} (raise model.max_{self.name}_len or cap lengths in the data pipeline)"
            )
        x = x.masked_fill(~mask[..., None], 0.0)
        idx = (valid_positions(mask) - 1).clamp(min=0)  # (N, L): 0-based rank of valid frames
        h = self.proj(x) + self.positions(idx)  # (N, L, H)
        for block in self.blocks:
            h = block(h, mask)
        return h.masked_fill(~mask[..., None], 0.0)


class CrossModalLayer(nn.Module):
    """Pre-LN cross-modal layer (MulT): query attends to a fixed key/value sequence, then FFN.

    ``q = q + drop(attn(LN0(q), LN0(kv)))``; ``q = q + drop(W2 drop(gelu(W1 LN1(q))))``. The same
    LayerNorm normalises query and key/value (as in MulT / FacialMMT).
    """

    def __init__(self, hidden: int, heads: int, ffn: int, dropout: float, attn_dropout: float) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(hidden, heads, attn_dropout, xavier=True)
        self.attn_norm = nn.LayerNorm(hidden)
        self.ffn_in = nn.Linear(hidden, ffn)
        self.ffn_out = nn.Linear(ffn, hidden)
        self.ffn_norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, q: torch.Tensor, kv: torch.Tensor, kv_mask: torch.Tensor) -> torch.Tensor:
        """q (N, Lq, H), kv (N, Lk, H), kv_mask (N, Lk) bool -> (N, Lq, H)."""
        q = q + self.dropout(self.attn(self.attn_norm(q), self.attn_norm(kv), kv_mask))
        y = self.ffn_out(self.dropout(F.gelu(self.ffn_in(self.ffn_norm(q)))))
        return q + self.dropout(y)


class CrossModalEncoder(nn.Module):
    """MulT-style cross-modal transformer with key-padding masks and length-aware positions (FacialMMT's,
    which attended over padding, fixed). One instance is shared by both directions of a modality pair.

    Inputs are scaled by ``sqrt(H)`` and get :func:`sinusoidal_positions` of THEIR OWN mask (query
    and key/value separately); ``layers`` :class:`CrossModalLayer`; final LayerNorm; padded query
    positions come out as zeros.
    """

    def __init__(self, hidden: int, heads: int, ffn: int, layers: int, dropout: float, attn_dropout: float) -> None:
        super().__init__()
        self.hidden = hidden
        self.scale = math.sqrt(hidden)
        self.layers = nn.ModuleList(
            CrossModalLayer(hidden, heads, ffn, dropout, attn_dropout) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)

    def embed(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(N, L, H) -> scaled + positions (N, L, H), padding zeroed."""
        pos = sinusoidal_positions(mask, self.hidden, x.dtype)
        return self.dropout(self.scale * x.masked_fill(~mask[..., None], 0.0) + pos)

    def forward(
        self, query: torch.Tensor, query_mask: torch.Tensor, kv: torch.Tensor, kv_mask: torch.Tensor
    ) -> torch.Tensor:
        """query (N, Lq, H) attends to kv (N, Lk, H) -> (N, Lq, H); masks (N, Lq) / (N, Lk) bool."""
        q = self.embed(query, query_mask)
        k = self.embed(kv, kv_mask)
        for layer in self.layers:
            q = layer(q, k, kv_mask)
        return self.norm(q).masked_fill(~query_mask[..., None], 0.0)


class AdditivePooling(nn.Module):
    """Additive attention pooling (FacialMMT's utterance pooling): ``score_i = v(tanh(P x_i + Q q))``
    with a learned query ``q`` (randn init), masked softmax over valid positions, weighted sum.

    A row with no valid position pools to zeros (the classifier then sees only its bias).
    """

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(hidden))
        self.key_proj = nn.Linear(hidden, hidden)
        self.query_proj = nn.Linear(hidden, hidden)
        self.score = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (N, L, H), mask (N, L) bool -> (N, H)."""
        e = torch.tanh(self.key_proj(x) + self.query_proj(self.query))  # (N, L, H)
        w = masked_softmax(self.score(e).squeeze(-1), mask)  # (N, L)
        return torch.einsum("nl,nlh->nh", w, x.masked_fill(~mask[..., None], 0.0))
