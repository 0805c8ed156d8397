"""Training-set statistics handed to models and losses (weights, smoothing, bias initialisation).

Computed on the *training subjects of the cell only*, never on the test subjects.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TrainStats"]


@dataclass(frozen=True)
class TrainStats:
    """Per-AU positive frequencies of the training labels (masked entries excluded)."""

    au_set: tuple[int, ...]
    positives: np.ndarray  # [K] positive counts
    valid: np.ndarray  # [K] labelled (unmasked) counts
    n_frames: int

    @classmethod
    def from_labels(cls, au_set: tuple[int, ...], labels: np.ndarray, mask: np.ndarray) -> TrainStats:
        labels = np.asarray(labels, np.float64)
        mask = np.asarray(mask, bool)
        return cls(tuple(au_set), (labels * mask).sum(0), mask.sum(0).astype(np.float64), int(labels.shape[0]))

    @property
    def frequency(self) -> np.ndarray:
        """Positive rate f_t per AU, clipped to [1e-4, 1 - 1e-4] so logs and ratios stay finite."""
        f = self.positives / np.maximum(self.valid, 1)
        return np.clip(f, 1e-4, 1 - 1e-4)

    def jaanet_weights(self) -> np.ndarray:
        """JAA-Net / ME-GraphAU class weights: w_t ∝ 1/f_t, normalised to sum to the number of AUs K."""
        inv = 1.0 / self.frequency
        return inv * len(inv) / inv.sum()

    def inverse_frequency_weights(self) -> np.ndarray:
        """Thesis §4.4.2 weights: w_t = (1/f_t) / Σ_j (1/f_j), which sum to 1 (not to K)."""
        inv = 1.0 / self.frequency
        return inv / inv.sum()

    def bias_init(self) -> np.ndarray:
        """Thesis eq. (2.38): b_t = log(f_t / (1 - f_t)), so the initial mean prediction is f_t."""
        f = self.frequency
        return np.log(f / (1 - f))

    def as_dict(self) -> dict:
        return {"au_set": list(self.au_set), "frequency": [round(float(x), 5) for x in self.frequency],
                "valid": [int(x) for x in self.valid], "n_frames": self.n_frames}
