"""AU detection metrics: per-AU F1 at a fixed threshold over all test frames of a fold.

The convention (shared by JAA-Net, ME-GraphAU and the ABAW3 code): for each AU, predict positive
when the probability is >= 0.5, accumulate TP/FP/FN over every frame of the held-out fold with a
known label (masked entries are excluded), compute F1 = 2TP / (2TP + FP + FN), then average over
AUs. Fold results are summarised by mean ± std over folds and seeds. Scores are in percent.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from aubench.errors import DatasetError

__all__ = ["au_metrics", "all_positive_f1", "mean_std", "moving_average"]


def au_metrics(probs: np.ndarray, labels: np.ndarray, mask: np.ndarray | None, aus: Sequence[int],
               threshold: float = 0.5) -> dict:
    """Per-AU F1, precision, recall, accuracy, support and positive rate, plus the AU-average F1 (percent).

    An AU with no positive labels and no positive predictions has F1 0 (there is nothing to detect;
    scikit-learn's ``zero_division=0``), so it is visible rather than silently dropped. An AU with no
    labelled frame at all (fully masked) cannot be scored: it is marked ``"scored": False`` (F1 0) and
    left out of the average, with a warning, and ``unscored`` lists it (scikit-learn would raise).
    """
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels)
    mask = np.ones_like(labels, bool) if mask is None else np.asarray(mask, bool)
    if probs.shape != labels.shape or labels.shape != mask.shape:
        raise DatasetError(f"predictions and labels do not match: probs {probs.shape}, labels {labels.shape}, mask {mask.shape}")
    pred = probs >= threshold
    y = labels > 0.5
    tp = ((pred & y) & mask).sum(0)
    fp = ((pred & ~y) & mask).sum(0)
    fn = ((~pred & y) & mask).sum(0)
    correct = ((pred == y) & mask).sum(0)
    support = (y & mask).sum(0)
    n_valid = mask.sum(0)
    per_au = {}
    for j, au in enumerate(aus):
        denom = 2 * tp[j] + fp[j] + fn[j]
        f1 = 200.0 * tp[j] / denom if denom else 0.0
        precision = 100.0 * tp[j] / (tp[j] + fp[j]) if tp[j] + fp[j] else 0.0
        recall = 100.0 * tp[j] / (tp[j] + fn[j]) if tp[j] + fn[j] else 0.0
        per_au[str(au)] = {"f1": float(f1), "precision": float(precision), "recall": float(recall), "support": int(support[j]),
                           "n": int(n_valid[j]), "positive_rate": float(support[j] / n_valid[j]) if n_valid[j] else 0.0,
                           "accuracy": float(100.0 * correct[j] / n_valid[j]) if n_valid[j] else 0.0}
    unscored = [int(au) for au, v in per_au.items() if v["n"] == 0]
    for au in unscored:
        per_au[str(au)]["scored"] = False
    if len(unscored) == len(per_au):
        raise DatasetError(f"no AU of {list(aus)} has a labelled test frame; nothing can be scored")
    if unscored:
        import warnings

        warnings.warn(f"AUs {unscored} have no labelled test frame; they are left out of the AU average", stacklevel=2)
    scored = [v["f1"] for au, v in per_au.items() if int(au) not in unscored]
    return {"per_au": per_au, "f1_avg": float(np.mean(scored)), "threshold": threshold, "unscored": unscored}


def all_positive_f1(positive_rate: float) -> float:
    """F1 (percent) of the predictor that says "present" for every frame: 2p / (1 + p)."""
    return 200.0 * positive_rate / (1.0 + positive_rate)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    arr = np.asarray(values, np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def moving_average(probs: np.ndarray, groups: np.ndarray, order: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average of per-frame probabilities within each video (temporal post-processing).

    ``groups`` identifies the video of each row and ``order`` its frame number; rows may come in any
    order. Windows shrink at the ends of a video rather than padding.
    """
    if window <= 1:
        return probs
    out = np.empty_like(probs, dtype=np.float64)
    half = window // 2
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        rows = rows[np.argsort(order[rows], kind="stable")]
        seq = probs[rows].astype(np.float64)
        csum = np.concatenate([np.zeros((1, seq.shape[1])), np.cumsum(seq, 0)])
        idx = np.arange(len(rows))
        lo, hi = np.maximum(idx - half, 0), np.minimum(idx + half + 1, len(rows))
        out[rows] = (csum[hi] - csum[lo]) / (hi - lo)[:, None]
    return out
