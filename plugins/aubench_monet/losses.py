"""MONET's loss: the mixture negative log-likelihood of eq. (2.27) with per-AU weights (eq. 2.39),
computed stably with log-sum-exp, plus λ · Dice (eq. 2.40). Masked labels enter no order's likelihood.

Where the Dice goes (``dice_form``):

``literal`` (the ``paper`` presets)
    eq. 2.39-2.40 as printed: per example and per order, Σ_t w^{σm(t)} (BCE + λ · Dice_t) is the
    order's loss, so the Dice sits inside the mixture: -log Σ_m π_m exp(-(L^σm + λ DICE^σm)).
``example``
    what the author's public code (DL_ISIR_ABAW3, ``measures_extended/reweighted_measures.py:
    weighted_dice``) does: per example, Σ_t w_t Dice_t on one prediction (here the π-mixture of the
    orders' probabilities), averaged over the batch and added outside the mixture likelihood.
``batch``
    JAA-Net's form: Dice per AU over the batch's labelled frames on the π-mixture, averaged over AUs
    (so its effective weight is λ/K next to a likelihood summed over K); the smoke recipe's.
"""
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

    def __init__(self, weighted: bool = False, dice_weight: float = 0.0, dice_form: str = "literal",
                 aux_weight: float = 0.0):
        from aubench import ConfigError

        self.aux_weight = float(aux_weight)  # (weighted) BCE of the model's encoder read-out (model.aux_head)
        if dice_form not in ("literal", "example", "batch"):
            raise ConfigError(f"loss.dice_form={dice_form!r}; use literal (eq. 2.39-2.40), example or batch")
        self.weighted, self.dice_weight, self.dice_form = weighted, float(dice_weight), dice_form

    def __call__(self, outputs: dict[str, Any], batch: dict[str, Any], stats: Any) -> tuple[torch.Tensor, dict]:
        y, mask = batch["labels"], batch["mask"]
        w = torch.as_tensor(stats.jaanet_weights(), dtype=torch.float32, device=y.device) if self.weighted else None
        terms = {}
        if self.aux_weight and "aux_logits" in outputs:
            # summed over the AUs per example, like eq. 2.27's likelihood, so that aux_weight = 1 weighs
            # the encoder read-out as much as the head
            aux = masked_bce(outputs["aux_logits"], y, mask, w)[0] * y.shape[1]
            main, terms = self({k: v for k, v in outputs.items() if k != "aux_logits"}, batch, stats)
            return main + self.aux_weight * aux, {**terms, "aux": float(aux.detach())}
        if self.dice_form == "literal" and self.dice_weight:
            return self._literal(outputs, y, mask, w)
        if "order_logits" in outputs:
            ll = order_log_likelihood(outputs["order_logits"], y, mask, w)
            nll = -torch.logsumexp(outputs["order_log_pi"] + ll, dim=1).mean()  # eq. (2.27)
        else:
            nll = masked_bce(outputs["logits"], y, mask, w)[0]
        terms["nll"] = float(nll.detach())
        total = nll
        if self.dice_weight and self.dice_form == "batch":
            dice, _ = soft_dice(torch.sigmoid(outputs["logits"].float()), y, mask, w, reduction="batch")
        elif self.dice_weight:  # example: the author's code
            dice = _dice_terms(torch.sigmoid(outputs["logits"].float()), y, mask, w).mean()
        if self.dice_weight:
            terms["dice"] = float(dice.detach())
            total = total + self.dice_weight * dice
        return total, terms

    def _literal(self, outputs: dict[str, Any], y: torch.Tensor, mask: torch.Tensor,
                 w: torch.Tensor | None) -> tuple[torch.Tensor, dict]:
        """eq. 2.39-2.40 inside eq. 2.27: each order's Σ_t w (BCE + λ Dice) per example, mixed by π."""
        logits = outputs["order_logits"] if "order_logits" in outputs else outputs["logits"].unsqueeze(1)
        log_pi = outputs["order_log_pi"] if "order_log_pi" in outputs else logits.new_zeros(logits.shape[:2])
        ll = order_log_likelihood(logits, y, mask, w)  # [B, M]
        dice = _dice_terms(torch.sigmoid(logits.float()), y.unsqueeze(1), mask.unsqueeze(1), w)  # [B, M]
        total = -torch.logsumexp(log_pi + ll - self.dice_weight * dice, dim=1).mean()
        return total, {"nll": float(-torch.logsumexp(log_pi + ll, dim=1).mean().detach()),
                       "dice": float((log_pi.exp() * dice).sum(1).mean().detach())}


def _dice_terms(p: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, w: torch.Tensor | None,
                eps: float = 1.0) -> torch.Tensor:
    """Σ_t w_t (1 - (2 y p + ε) / (y² + p² + ε)) over the labelled tasks (eq. 2.40), per leading index."""
    y = torch.where(mask, y, torch.zeros_like(y)).to(p)
    per_task = (1 - (2 * y * p + eps) / (y * y + p * p + eps)) * mask
    return (per_task * (w if w is not None else 1.0)).sum(-1)
