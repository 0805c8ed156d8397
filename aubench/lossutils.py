"""Building blocks for loss plugins: masked, per-AU weighted binary cross-entropy and soft Dice.

Masked (unknown) labels contribute nothing: they are excluded from both the numerator and the
count each AU's mean is taken over. Both helpers return ``(scalar, per_au [K])``; with ``weights``
[K] the scalar is ``Σ_t w_t · loss_t / K`` (JAA-Net's convention, where the weights sum to K).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from aubench.errors import ConfigError

__all__ = ["masked_bce", "per_au_mean", "soft_dice", "DICE_REDUCTIONS"]

DICE_REDUCTIONS = ("batch", "example")


def per_au_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` [B, K] over the valid entries of each AU column -> [K] (0 where none)."""
    m = mask.to(values.dtype)
    return (values * m).sum(0) / m.sum(0).clamp_min(1.0)


def masked_bce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
               weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-AU BCE on valid entries, then the (weighted) mean over AUs.

    ``targets`` may be soft (label smoothing).
    """
    raw = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")
    return _reduce(per_au_mean(raw, mask), weights)


def soft_dice(probs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None = None,
              eps: float = 1.0, reduction: str = "batch") -> tuple[torch.Tensor, torch.Tensor]:
    """Soft Dice loss per AU, ``1 − (2 y p + ε) / (y² + p² + ε)`` (thesis eq. 2.40), then the (weighted) mean.

    ``reduction="batch"`` sums y·p, y² and p² over the batch's labelled frames of each AU before the
    ratio (JAA-Net's form); ``"example"`` takes the ratio per frame and averages over labelled frames.
    """
    if reduction not in DICE_REDUCTIONS:
        raise ConfigError(f"Dice reduction={reduction!r}; use one of {DICE_REDUCTIONS}")
    p, y, m = probs.float(), targets.float(), mask.float()
    if reduction == "example":
        per_au = per_au_mean(1 - (2 * y * p + eps) / (y * y + p * p + eps), mask)
    else:
        per_au = 1 - (2 * (y * p * m).sum(0) + eps) / ((y * y * m).sum(0) + (p * p * m).sum(0) + eps)
    return _reduce(per_au, weights)


def _reduce(per_au: torch.Tensor, weights: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    if weights is not None:
        return (per_au * weights.to(per_au)).sum() / per_au.numel(), per_au
    return per_au.mean(), per_au
