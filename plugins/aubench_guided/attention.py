"""Attention building blocks of the Tallec thesis, chapter 3, and of the ABAW3 multi-label transformer.

* :func:`sinusoidal_2d` — the 2-D position encoding of eq. 3.17-3.18.
* :class:`MultiHeadAttention` — eq. 3.1-3.6, returning the pre-softmax attention ``A^(h)`` of eq. 3.4
  (the guidance losses read it), with the optional additive prior of eq. 3.37.
* :class:`GeneralAttention` — the thesis' general attention module, eq. 3.8-3.11: inputs normalised
  first, the residuals added to the *normalised* inputs, renormalised before the MLP (eq. 3.7).
* :class:`PostNormLayer` — the ABAW3 paper's layers, eq. 7-11: ``LN[x + D(block(x))]`` after each block
  (post-normalisation, dropout ``D`` on every branch and inside the MLP, eq. 4).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from aubench import ConfigError

__all__ = ["sinusoidal_2d", "MultiHeadAttention", "MLP", "GeneralAttention", "PostNormLayer"]


def sinusoidal_2d(h: int, w: int, d: int) -> torch.Tensor:
    """eq. 3.17-3.18: ``PE[i, j] = concat(PE_i, PE_j)`` with ``PE_k = [cos(w_1 k), sin(w_1 k), …,
    cos(w_{d/4} k), sin(w_{d/4} k)]`` and ``w_m = 1 / 10000^{4m/d}`` (m = 1 … d/4, as printed), shape [h, w, d]."""
    if d % 4:
        raise ConfigError(f"the 2-D sinusoidal position encoding (thesis eq. 3.18) needs d divisible by 4, got d={d}")
    m = torch.arange(1, d // 4 + 1, dtype=torch.float64)
    freq = 1.0 / 10000 ** (4 * m / d)

    def one_axis(n: int) -> torch.Tensor:  # [n, d/2]: cos and sin interleaved
        angle = torch.arange(n, dtype=torch.float64)[:, None] * freq[None]
        return torch.stack([angle.cos(), angle.sin()], -1).flatten(1)

    rows, cols = one_axis(h), one_axis(w)
    return torch.cat([rows[:, None].expand(h, w, d // 2), cols[None].expand(h, w, d // 2)], -1).float()


class MultiHeadAttention(nn.Module):
    """eq. 3.1-3.6 with ``d_H = d / N_H``. ``forward`` returns the output and the attention logits
    ``A`` [B, N_H, N_Q, N_K] (eq. 3.4, before the softmax of eq. 3.5).

    ``prior`` [B, N_H, 1 or N_Q, N_K] with weight ``lam`` adds the soft face-parsing term of eq. 3.37:
    ``A = (Q̃ K̃ᵀ + λ_S · prior) / sqrt((λ_S² + 1) · d / N_H)``; with λ_S = 0 it is eq. 3.4 exactly.
    """

    def __init__(self, d: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if d % heads:
            raise ConfigError(f"model size d={d} must be a multiple of the number of heads ({heads})")
        self.d, self.heads = d, heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.drop = nn.Dropout(dropout)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], x.shape[1], self.heads, self.d // self.heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, prior: torch.Tensor | None = None,
                lam: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        qh, kh, vh = self.split(self.q(q)), self.split(self.k(k)), self.split(self.v(v))
        scores = qh @ kh.transpose(-1, -2)
        if prior is not None and lam:
            scores = scores + lam * prior
        logits = scores / math.sqrt((lam * lam + 1) * self.d / self.heads)
        out = self.drop(torch.softmax(logits, -1)) @ vh  # eq. 3.5
        return self.o(out.transpose(1, 2).flatten(2)), logits  # eq. 3.6


class MLP(nn.Module):
    """eq. 3.7 (``GELU(Q W_u) W_d``, hidden size ``ratio · d``); with dropout, the ABAW3 paper's eq. 4."""

    def __init__(self, d: int, ratio: int = 4, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, ratio * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(ratio * d, d),
                                 nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class GeneralAttention(nn.Module):
    """The general attention module GA(Q, K, V) of eq. 3.8-3.11 (self-attention: K = V = Q, eq. 3.12;
    cross-attention: V = K, eq. 3.13). Keys and values share one LayerNorm: they are the same tensor in
    both uses, so eq. 3.8's LN(K) and LN(V) are one normalisation of it."""

    def __init__(self, d: int, heads: int, dropout: float = 0.0, mlp_ratio: int = 4):
        super().__init__()
        self.ln_q, self.ln_kv, self.ln_mha = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.mha = MultiHeadAttention(d, heads, dropout)
        self.mlp = MLP(d, mlp_ratio, dropout)

    def forward(self, q: torch.Tensor, kv: torch.Tensor | None = None, prior: torch.Tensor | None = None,
                lam: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        qn = self.ln_q(q)  # eq. 3.8
        kvn = qn if kv is None else self.ln_kv(kv)
        out, logits = self.mha(qn, kvn, kvn, prior, lam)
        q_mha = self.ln_mha(qn + out)  # eq. 3.9-3.10: the residual is added to the normalised queries
        return q_mha + self.mlp(q_mha), logits  # eq. 3.11


class PostNormLayer(nn.Module):
    """One ABAW3 layer: optional self-attention (eq. 7 / 9), optional cross-attention to ``memory``
    (eq. 10), then the MLP (eq. 8 / 11), each as ``x = LN[x + D(block(x))]``."""

    def __init__(self, d: int, heads: int, dropout: float = 0.1, self_attention: bool = True,
                 cross_attention: bool = False, mlp_ratio: int = 4):
        super().__init__()
        self.sa = MultiHeadAttention(d, heads, dropout) if self_attention else None
        self.ca = MultiHeadAttention(d, heads, dropout) if cross_attention else None
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(1 + int(self_attention) + int(cross_attention)))
        self.mlp = MLP(d, mlp_ratio, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        norms = iter(self.norms)
        logits = None
        if self.sa is not None:
            x = next(norms)(x + self.drop(self.sa(x, x, x)[0]))
        if self.ca is not None:
            out, logits = self.ca(x, memory, memory)
            x = next(norms)(x + self.drop(out))
        return next(norms)(x + self.drop(self.mlp(x))), logits
