"""Label smoothing for multi-task AU detection (Tallec thesis, chapter 4).

Every loss replaces the binary targets y by smoothed targets ỹ and trains with BCE on ỹ
(eq. 4.4, 4.9): ``ℓ(ỹ, p) = −[ỹ log p + (1 − ỹ) log(1 − p)]``. Masked (unknown) labels contribute
nothing. Frequencies f_t come from the training subjects of the cell (``stats``), never from test
subjects.

**Two readings of VALS/RHLS.** Eq. 4.7 defines VALS through LS_α of eq. 4.1-4.4, which corrupts a
label to a *uniformly random* one with probability α, so a corrupted negative becomes positive with
probability α/2. Expanding eq. 4.7 with eq. 4.1-4.2 gives

    ỹ = y (1 − α₊/2) + (1 − y) α₋/2                  ("derived", the default)

whereas eq. 4.10 / 4.12 as printed give

    ỹ = y (1 − α₊) + (1 − y) α₋                      ("printed").

Only the derived form makes β = 1 in RHLS balance each AU in expectation, as §4.3.3 states: with
α₋ = (1 − 2f)/(1 − f) the expected target is f + (1 − f)·α₋/2 = 1/2. Under the printed form it is
1 − f, which over-corrects. And only the derived form keeps α₋ = 0.75 (in the thesis' own grid,
§4.4.1) below the 0.5 decision threshold: printed, every negative would get target 0.75 and the
classifier would learn to call every negative positive. ``form="printed"`` is kept as a named option
to reproduce the equations literally.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from aubench import ConfigError, masked_bce

__all__ = ["smoothed_targets", "rhls_alphas", "VLSLoss", "VALSLoss", "RHLSLoss", "FORMS"]

FORMS = ("derived", "printed")


def smoothed_targets(y: torch.Tensor, alpha_pos: Any, alpha_neg: Any, form: str = "derived") -> torch.Tensor:
    """ỹ for binary labels ``y`` [B, K] and per-AU (or scalar) corruption probabilities α₊, α₋."""
    if form not in FORMS:
        raise ConfigError(f"form={form!r}; use one of {FORMS}")
    a_pos = torch.as_tensor(alpha_pos, dtype=y.dtype, device=y.device)
    a_neg = torch.as_tensor(alpha_neg, dtype=y.dtype, device=y.device)
    scale = 0.5 if form == "derived" else 1.0
    return y * (1 - scale * a_pos) + (1 - y) * scale * a_neg


def rhls_alphas(freq: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 4.11: α₊ᵗ = β·max(0, (2fᵗ − 1)/fᵗ), α₋ᵗ = β·max(0, (1 − 2fᵗ)/(1 − fᵗ)): only the majority class is smoothed."""
    f = np.asarray(freq, np.float64)
    a_pos = beta * np.maximum(0.0, (2 * f - 1) / f)
    a_neg = beta * np.maximum(0.0, (1 - 2 * f) / (1 - f))
    return a_pos, a_neg


class _SmoothedBCE:
    key = "logits"

    def alphas(self, stats: Any) -> tuple[Any, Any]:
        raise NotImplementedError

    def targets(self, y: torch.Tensor, stats: Any) -> torch.Tensor:
        a_pos, a_neg = self.alphas(stats)
        return smoothed_targets(y, a_pos, a_neg, self.form)

    def __call__(self, outputs: dict[str, Any], batch: dict[str, Any], stats: Any) -> tuple[torch.Tensor, dict]:
        logits = outputs[self.key]
        value, _ = masked_bce(logits, self.targets(batch["labels"].to(logits.dtype), stats), batch["mask"])
        return value, {}


class VLSLoss(_SmoothedBCE):
    """Multi-task vanilla label smoothing, eq. 4.5-4.6: ỹ = (1 − α) y + α/2 (α = 0.1 in Table 4.1)."""

    def __init__(self, alpha: float = 0.1, logits_key: str = "logits"):
        self.alpha, self.key, self.form = float(alpha), logits_key, "derived"

    def alphas(self, stats: Any) -> tuple[float, float]:
        return self.alpha, self.alpha  # the derived form of (α, α) is exactly eq. 4.5


class VALSLoss(_SmoothedBCE):
    """Vanilla asymmetric label smoothing, eq. 4.7-4.10: one α₊ and one α₋ for every AU.

    Table 4.1 uses α₊ = 0, α₋ = 0.5; the grid of §4.4.1 is α₋ ∈ {0.25, 0.5, 0.75}.
    """

    def __init__(self, alpha_pos: float = 0.0, alpha_neg: float = 0.5, form: str = "derived",
                 logits_key: str = "logits"):
        if form not in FORMS:
            raise ConfigError(f"form={form!r}; use one of {FORMS}")
        self.alpha_pos, self.alpha_neg, self.form, self.key = float(alpha_pos), float(alpha_neg), form, logits_key

    def alphas(self, stats: Any) -> tuple[float, float]:
        return self.alpha_pos, self.alpha_neg


class RHLSLoss(_SmoothedBCE):
    """Robin Hood label smoothing, eq. 4.11-4.12: per-AU α from the training frequency f_t, so only
    the majority class of each AU is smoothed (β = 0.25 in Table 4.1; grid {0.25, 0.5, 0.75})."""

    def __init__(self, beta: float = 0.25, form: str = "derived", logits_key: str = "logits"):
        if form not in FORMS:
            raise ConfigError(f"form={form!r}; use one of {FORMS}")
        if not 0 <= beta <= 1:
            raise ConfigError(f"beta={beta} must be in [0, 1]")
        self.beta, self.form, self.key = float(beta), form, logits_key

    def alphas(self, stats: Any) -> tuple[np.ndarray, np.ndarray]:
        return rhls_alphas(stats.frequency, self.beta)
