"""Losses of the guided transformers (Tallec thesis §3.5.1) and of the ABAW3 multi-label transformer.

:class:`GuidedLoss` = classification + ``pattel_weight`` · PAtteL + ``h2p_weight`` · H2P, where

* classification: BCE averaged over each AU's labelled frames (masked labels excluded), optionally
  frequency-weighted (``weights: jaanet``) plus ``dice`` · the batch soft Dice of thesis eq. 2.40 — the
  ABAW3 paper's "frequency based coefficients" and "Dice score contribution" (§4.2);
* PAtteL, eq. 3.31-3.32: ``-Σ_{t,i,j} h^t_ij log Ā^t_ij`` with Ā the mean of the softmaxed attention of
  the first ``n_fh = ⌊f · N_H⌋`` heads, given ``task_priors`` (mono- or multi-prior);
* H2P, eq. 3.33-3.34: ``Σ_t (1/N_H) Σ_h Σ_p M_hp / Σ_p M_hp · ℓ(h_p, A^t_h)`` with ℓ the spatial
  categorical cross-entropy, given ``head_priors`` (row h = the prior M assigns to head h) and
  ``head_mask`` (heads with a prior; free heads add nothing but still count in 1/N_H).

Both guidance terms are per frame, averaged over the batch and over the cross-attention layers (the
thesis constrains "the" cross-attention matrices; M is "general to all layers"): every layer is guided.
Scale: the thesis' task loss *sums* the T per-AU BCEs (eq. 2.27) beside guidance terms that sum over
the T tasks (eq. 3.31, 3.34); aubench's BCE is the *mean* over AUs, so both guidance terms are divided
by T (the mean over tasks), which keeps the thesis' ratio of classification to guidance. Summed as
printed, they outweighed the BCE twelvefold on synth-bp4d and training collapsed (fold 1, seed 0: H2P
F1 2.5, PAtteL multi-prior 2.8, the unguided MTTS 53.0).
A term whose priors the model did not return is left out, so the loss also trains unguided models.
"""
from __future__ import annotations

from typing import Any

import torch

from aubench import ConfigError, masked_bce, soft_dice

__all__ = ["GuidedLoss", "pattel", "h2p"]


def pattel(attention: torch.Tensor, priors: torch.Tensor, n_heads: int) -> torch.Tensor:
    """eq. 3.31-3.32 for one layer, divided by T: attention logits [B, N_H, T, N], priors [B, T, N] -> [B]."""
    mean = torch.softmax(attention[:, :n_heads].float(), -1).mean(1)  # Ā [B, T, N]
    return -(priors * mean.clamp_min(1e-12).log()).sum((1, 2)) / attention.shape[2]


def h2p(attention: torch.Tensor, head_priors: torch.Tensor, head_mask: torch.Tensor) -> torch.Tensor:
    """eq. 3.33-3.34 for one layer, divided by T: attention logits [B, N_H, T, N], head priors [B, N_H, N] -> [B]."""
    logp = torch.log_softmax(attention.float(), -1)  # [B, H, T, N]
    ce = -(head_priors[:, :, None] * logp).sum(-1)  # ℓ(h_p, A_h^t) [B, H, T]
    ce = ce * head_mask[None, :, None].to(ce.dtype)
    return ce.sum((1, 2)) / (attention.shape[1] * attention.shape[2])


class GuidedLoss:
    def __init__(self, weights: str | None = None, dice: float = 0.0, pattel_weight: float = 1.0,
                 fraction: float = 0.25, h2p_weight: float = 1.0):
        if weights not in (None, "none", "jaanet"):
            raise ConfigError(f"loss weights={weights!r}; use null (plain BCE) or 'jaanet' (w_t ∝ 1/f_t)")
        if not 0 <= fraction <= 1:
            raise ConfigError(f"loss fraction={fraction}: the share of guided heads f lies in [0, 1]")
        self.weighted = weights == "jaanet"
        self.dice, self.pattel_weight, self.fraction, self.h2p_weight = float(dice), float(pattel_weight), \
            float(fraction), float(h2p_weight)

    def __call__(self, outputs: dict[str, Any], batch: dict[str, Any], stats: Any) -> tuple[torch.Tensor, dict]:
        logits, y, mask = outputs["logits"], batch["labels"], batch["mask"]
        w = torch.as_tensor(stats.jaanet_weights(), dtype=torch.float32, device=logits.device) if self.weighted else None
        total = masked_bce(logits, y, mask, w)[0]
        terms = {"bce": float(total.detach())}
        if self.dice:
            dice = soft_dice(torch.sigmoid(logits.float()), y, mask, w)[0]
            total = total + self.dice * dice
            terms["dice"] = float(dice.detach())
        layers = outputs.get("attention") or []
        if "task_priors" in outputs and layers:
            n = int(self.fraction * layers[0].shape[1])
            if n:
                value = torch.stack([pattel(a, outputs["task_priors"], n) for a in layers]).mean()
                total = total + self.pattel_weight * value
                terms["pattel"] = float(value.detach())
        if "head_priors" in outputs and layers:
            value = torch.stack([h2p(a, outputs["head_priors"], outputs["head_mask"]) for a in layers]).mean()
            total = total + self.h2p_weight * value
            terms["h2p"] = float(value.detach())
        return total, terms
