"""CAFE's training loss for AUs (arXiv 2408.10614, eq. 9): ℓ = ℓ_cls + λ_sep ℓ_sep + λ_div ℓ_div.

* ℓ_cls (eq. 3): masked BCE of the FC logits (multi-label form of the paper's cross-entropy).
* ℓ_sep (eq. 6): masked BCE of the piece logits (the paper: cross-entropy over the 7 pieces' maxima);
  masked labels contribute nothing.
* ℓ_div (eq. 7-8), the channel-diverse loss of the mutual-channel loss CAFE builds on: each channel of
  F̃ becomes a distribution over positions (softmax), each piece takes the max over its channels at
  every position, summed over positions: n_k when its n_k channels attend disjoint positions, 1 when
  they are identical; ℓ_div = 1 − mean_k(sum_k / n_k), minimal (0) for disjoint and maximal for
  identical channels. (The authors' code applies it to pooled vectors; AU features keep their map.)
* λ_sep = 1.5 and λ_div = 5 are the authors' code's (``loss = loss1 + 5 * MC_loss[1] + 1.5 * MC_loss[0]``).

The loss reads ``logits`` and, when present, ``piece_logits`` and ``masked`` (the CAFE model returns
them; a missing one leaves its term out, so the conformance suite can check the classification part
alone).
"""
from __future__ import annotations

from typing import Any

import torch

from aubench import masked_bce

__all__ = ["CAFELoss", "diverse_loss"]


def diverse_loss(masked: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """ℓ_div of F̃ [B, C, H, W] split into channel pieces of ``sizes`` (see the module docstring)."""
    attention = torch.softmax(masked.float().flatten(2), dim=-1)  # [B, C, HW]
    shares = [part.max(1).values.sum(-1) / part.shape[1] for part in torch.split(attention, sizes, dim=1)]
    return 1 - torch.stack(shares, 1).mean()


class CAFELoss:
    def __init__(self, lambda_sep: float = 1.5, lambda_div: float = 5.0):
        self.lambda_sep, self.lambda_div = float(lambda_sep), float(lambda_div)

    def __call__(self, outputs: dict[str, Any], batch: dict[str, Any], stats: Any) -> tuple[torch.Tensor, dict]:
        y, mask = batch["labels"], batch["mask"]
        total = cls = masked_bce(outputs["logits"], y, mask)[0]
        terms = {"cls": float(cls.detach())}
        if "piece_logits" in outputs:
            sep = masked_bce(outputs["piece_logits"], y, mask)[0]
            total = total + self.lambda_sep * sep
            terms["sep"] = float(sep.detach())
        if "masked" in outputs:
            k = outputs["logits"].shape[1]
            channels = outputs["masked"].shape[1]
            n = channels // k
            div = diverse_loss(outputs["masked"], [n] * (k - 1) + [channels - n * (k - 1)])
            total = total + self.lambda_div * div
            terms["div"] = float(div.detach())
        return total, terms
