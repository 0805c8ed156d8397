"""FAN-Trans training loss, eq. (8)-(10): weighted BCE on every pathway and on the ensemble, plus
λ · KL between each student and the (detached) ensemble."""
from __future__ import annotations

from typing import Any

import torch

from aubench import masked_bce, per_au_mean

__all__ = ["OKDLoss", "bernoulli_kl"]


def bernoulli_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """KL(Bern(σ(t)) ‖ Bern(σ(s))) elementwise, computed from logits (stable)."""
    p = torch.sigmoid(teacher_logits)
    log_p, log_1p = torch.nn.functional.logsigmoid(teacher_logits), torch.nn.functional.logsigmoid(-teacher_logits)
    log_q, log_1q = torch.nn.functional.logsigmoid(student_logits), torch.nn.functional.logsigmoid(-student_logits)
    return p * (log_p - log_q) + (1 - p) * (log_1p - log_1q)


class OKDLoss:
    """L_total = Σ_{P ∈ {P_o, P_m, P_t}} L_cls(P) + λ · Σ_{P_* ∈ {P_o, P_m}} KL(P_t ‖ P_*), λ = 0.2 (Table 4).

    L_cls is eq. (9) with JAA-Net class weights (``weighted=true``). With a single pathway (Baseline,
    C_T.C_o2o, C_T.C_o2m) there is no ensemble and the loss is L_cls alone.
    """

    def __init__(self, lambda_kd: float = 0.2, weighted: bool = True):
        self.lambda_kd, self.weighted = float(lambda_kd), weighted

    def __call__(self, outputs: dict[str, Any], batch: dict[str, Any], stats: Any) -> tuple[torch.Tensor, dict]:
        y, mask = batch["labels"], batch["mask"]
        branch = outputs.get("branch_logits") or {"logits": outputs["logits"]}
        weights = None
        if self.weighted:
            weights = torch.as_tensor(stats.jaanet_weights(), dtype=torch.float32, device=y.device)
        terms, total = {}, 0.0
        for name, logits in branch.items():
            value, _ = masked_bce(logits, y, mask, weights)
            terms[f"cls_{name}"] = float(value.detach())
            total = total + value
        ens = outputs.get("ensemble_logits")
        if ens is not None:
            value, _ = masked_bce(ens, y, mask, weights)
            terms["cls_ensemble"] = float(value.detach())
            total = total + value
            teacher = ens.detach()
            kd = sum(per_au_mean(bernoulli_kl(teacher, s), mask).mean() for s in branch.values())
            terms["kd"] = float(kd.detach())
            total = total + self.lambda_kd * kd
        return total, terms
