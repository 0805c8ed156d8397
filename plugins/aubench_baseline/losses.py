"""Baseline AU losses. Every loss is ``loss(outputs, batch, stats) -> (scalar, terms)`` and ignores
masked (unknown) labels."""
from __future__ import annotations

from typing import Any

import torch

from aubench import DICE_REDUCTIONS, ConfigError, masked_bce, soft_dice

__all__ = ["BCELoss", "WeightedBCELoss", "DiceLoss"]


class BCELoss:
    """Plain binary cross-entropy, averaged per AU over labelled frames, then over AUs."""

    def __init__(self, logits_key: str = "logits"):
        self.key = logits_key

    def __call__(self, outputs: dict[str, Any], batch: dict[str, Any], stats: Any) -> tuple[torch.Tensor, dict]:
        value, _ = masked_bce(outputs[self.key], batch["labels"], batch["mask"])
        return value, {}


class WeightedBCELoss:
    """BCE with per-AU weights from the training frequencies f_t of the cell.

    ``normalise="jaanet"`` (default): w_t = K·(1/f_t)/Σ_j(1/f_j), the JAA-Net / ME-GraphAU weights,
    which sum to K and multiply the *mean* over AUs: (1/K)·Σ_t w_t·BCE_t.
    ``normalise="thesis"``: the thesis §4.4.2 weights w_t = (1/f_t)/Σ_j(1/f_j), which sum to 1 and
    multiply the *sum* over AUs (eq. 4.6 sums the task losses): Σ_t w_t·BCE_t.
    The weights differ by the factor K and so do the reductions, so the two losses are equal; the
    thesis' own unweighted baseline sums over AUs (K times our mean-reduced BCE), which only rescales
    the loss — immaterial under Adam(W), which these recipes use.
    """

    def __init__(self, normalise: str = "jaanet", logits_key: str = "logits"):
        if normalise not in ("jaanet", "thesis"):
            raise ConfigError(f"loss normalise={normalise!r}; use 'jaanet' or 'thesis'")
        self.normalise, self.key = normalise, logits_key

    def weights(self, stats: Any) -> torch.Tensor:
        w = stats.jaanet_weights() if self.normalise == "jaanet" else stats.inverse_frequency_weights()
        return torch.as_tensor(w, dtype=torch.float32)

    def __call__(self, outputs: dict[str, Any], batch: dict[str, Any], stats: Any) -> tuple[torch.Tensor, dict]:
        logits = outputs[self.key]
        w = self.weights(stats).to(logits.device)
        if self.normalise == "thesis":
            _, per_au = masked_bce(logits, batch["labels"], batch["mask"])
            return (w * per_au).sum(), {}
        value, _ = masked_bce(logits, batch["labels"], batch["mask"], w)
        return value, {}


class DiceLoss:
    """Frequency-weighted soft Dice, thesis eq. (2.40): ``Σ_t w_t (1 − (2 y p + ε) / (y² + p² + ε))``.

    Eq. (2.40) is written for one example, but the works it follows ([60] JAA-Net, [23]) sum y·p,
    y² and p² over the batch for each AU before taking the ratio. ``reduction="batch"`` (default)
    does that; ``reduction="example"`` is the literal per-example reading, averaged over labelled
    frames. Measured on SynthAU's cross-dataset protocol (weighted BCE + 0.5 Dice, smoke preset):
    batch 46.2 F1, example 18.2 — per example, every positive is pushed to p = 1 with the large
    weights of rare AUs, and the model over-predicts under domain shift. ε is not given in the
    thesis; ε = 1 is JAA-Net's "smooth" constant. Weights are JAA-Net's (sum K), divided by K.
    """

    def __init__(self, eps: float = 1.0, weighted: bool = True, reduction: str = "batch", logits_key: str = "logits"):
        if reduction not in DICE_REDUCTIONS:
            raise ConfigError(f"loss reduction={reduction!r}; use one of {DICE_REDUCTIONS}")
        self.eps, self.weighted, self.reduction, self.key = eps, weighted, reduction, logits_key

    def __call__(self, outputs: dict[str, Any], batch: dict[str, Any], stats: Any) -> tuple[torch.Tensor, dict]:
        w = torch.as_tensor(stats.jaanet_weights(), dtype=torch.float32) if self.weighted else None
        value, _ = soft_dice(torch.sigmoid(outputs[self.key].float()), batch["labels"], batch["mask"], w, self.eps,
                             self.reduction)
        return value, {}
