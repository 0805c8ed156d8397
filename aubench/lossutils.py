"""Building blocks for loss plugins: masked, per-AU weighted binary cross-entropy.

Masked (unknown) labels contribute nothing: they are excluded from both the numerator and the
count each AU's mean is taken over.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["masked_bce", "per_au_mean"]


def per_au_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` [B, K] over the valid entries of each AU column -> [K] (0 where none)."""
    m = mask.to(values.dtype)
    return (values * m).sum(0) / m.sum(0).clamp_min(1.0)


def masked_bce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
               weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-AU BCE on valid entries, then the (weighted) mean over AUs.

    ``targets`` may be soft (label smoothing). With ``weights`` [K] the result is
    ``Σ_t w_t · BCE_t / K`` (JAA-Net's convention, where the weights sum to K).
    Returns ``(scalar, per_au [K])``.
    """
    raw = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")
    per_au = per_au_mean(raw, mask)
    if weights is not None:
        return (per_au * weights.to(per_au)).sum() / per_au.numel(), per_au
    return per_au.mean(), per_au
