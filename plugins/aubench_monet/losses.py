"""MONET's loss: the mixture negative log-likelihood of eq. (2.27) with per-AU weights (eq. 2.39),
computed stably with log-sum-exp, plus λ · Dice (eq. 2.40). Masked labels enter no order's likelihood."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from aubench import masked_bce, soft_dice

__all__ = ["MONETLoss", "order_log_likelihood"]


def order_log_likelihood(order_logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
                         weights: torch.Tensor | None = None) -> torch.Tensor:
    """Σ_t w_t · log p^{σ_m}(y^t | ...) per example and order: [B, M] from logits [B, M, T] (task order)."""
    y = torch.where(mask, labels, torch.zeros_like(labels)).unsqueeze(1).expand_as(order_logits)
    ll = -F.binary_cross_entropy_with_logits(order_logits, y, reduction="none") * mask.unsqueeze(1)
    if weights is not None:
        ll = ll * weights.view(1, 1, -1)
    return ll.sum(-1)


class MONETLoss:
    """-1/N Σ_i log Σ_m π̃_{i,m} exp(Σ_t w_t l(p_{m,i}^t, y_i^{σ_m(t)})) + λ · Dice.

    ``weighted``: JAA-Net per-AU weights inside each order's likelihood (eq. 2.39); ``dice_weight``:
    λ of the Dice term (:func:`aubench.soft_dice`, batch form) on the π-weighted mixture
    of the orders' teacher-forced probabilities. Heads without orders (VMNC, VMNS, MRNN) get the
    (weighted) BCE of their logits plus the same Dice, so the chapter's baselines share the loss.
    """

    def __init__(self, weighted: bool = False, dice_weight: float = 0.0):
        self.weighted, self.dice_weight = weighted, float(dice_weight)

    def __call__(self, outputs: dict[str, Any], batch: dict[str, Any], stats: Any) -> tuple[torch.Tensor, dict]:
        y, mask = batch["labels"], batch["mask"]
        w = torch.as_tensor(stats.jaanet_weights(), dtype=torch.float32, device=y.device) if self.weighted else None
        terms = {}
        if "order_logits" in outputs:
            ll = order_log_likelihood(outputs["order_logits"], y, mask, w)
            nll = -torch.logsumexp(outputs["order_log_pi"] + ll, dim=1).mean()  # eq. (2.27)
        else:
            nll = masked_bce(outputs["logits"], y, mask, w)[0]
        terms["nll"] = float(nll.detach())
        total = nll
        if self.dice_weight:
            dice, _ = soft_dice(torch.sigmoid(outputs["logits"].float()), y, mask, w, reduction="batch")
            terms["dice"] = float(dice.detach())
            total = total + self.dice_weight * dice
        return total, terms
