"""How sure a leaderboard row is: bootstrap intervals over test subjects, and ranks with ties.

Frames of one subject are correlated, so the unit of resampling is the **test subject**: each
replicate draws, within every fold, as many subjects as the fold has, with replacement, and
recomputes the row's score (the mean over its cells of the AU-average metric) from the drawn
subjects' frames. All rows of a protocol share the same draws, so the difference of two rows is a
*paired* bootstrap over the same subjects; two rows whose 95 % interval of the difference contains 0
share a rank. Per-subject counts (TP, FP, FN, correct, labelled per AU) come from each cell's stored
``predictions.npz``, so a replicate is one weighted sum: 1000 replicates take milliseconds.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from aubench.records import ResultRecord

__all__ = ["N_BOOT", "subject_counts", "row_replicates", "interval", "ranks_with_ties"]

N_BOOT = 1000
_TP, _FP, _FN, _CORRECT, _N = range(5)


def subject_counts(predictions: Path, subjects: Sequence[str], threshold: float = 0.5) -> np.ndarray:
    """Counts [len(subjects), K, 5] (TP, FP, FN, correct, labelled) per subject and AU of one cell."""
    with np.load(predictions) as npz:
        probs, labels, mask, subj = npz["probs"], npz["labels"], npz["mask"].astype(bool), npz["subject"]
    pred, y = probs >= threshold, labels > 0.5
    frame_counts = np.stack([pred & y & mask, pred & ~y & mask, ~pred & y & mask, (pred == y) & mask, mask], -1)
    index = {s: i for i, s in enumerate(subjects)}
    rows = np.array([index.get(str(s), -1) for s in subj], dtype=np.int64)
    keep = rows >= 0
    member = np.zeros((len(subjects), int(keep.sum())))  # subject x frame, one-hot: a sum per subject as a
    member[rows[keep], np.arange(member.shape[1])] = 1.0  # matmul (exact for counts; np.add.at is ~20x slower)
    return (member @ frame_counts[keep].reshape(member.shape[1], -1).astype(float)).reshape(len(subjects), -1, 5)


def _score(counts: np.ndarray, metric: str) -> np.ndarray:
    """AU-average metric (percent) of counts [..., K, 5] -> [...]; F1 is 0 for an AU with nothing to find."""
    if metric == "accuracy":
        per_au = counts[..., _CORRECT] / np.maximum(counts[..., _N], 1)
    else:
        tp, fp, fn = counts[..., _TP], counts[..., _FP], counts[..., _FN]
        denom = 2 * tp + fp + fn
        per_au = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return 100.0 * per_au.mean(-1)


def _draws(protocol: str, fold: str, subjects: Sequence[str], n_boot: int) -> np.ndarray:
    """How often each subject is drawn in each replicate [n_boot, S]; the same for every row of a protocol."""
    key = hashlib.sha256(f"{protocol}/{fold}/{','.join(subjects)}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(key[:8], "little"))
    return rng.multinomial(len(subjects), np.full(len(subjects), 1 / len(subjects)), size=n_boot).astype(float)


@dataclass
class _Cell:
    fold: str
    subjects: tuple[str, ...]
    counts: np.ndarray


def row_replicates(records: Sequence[ResultRecord], metric: str = "f1", n_boot: int = N_BOOT) -> np.ndarray | None:
    """Bootstrap replicates [n_boot] of a row's score, or None when a cell has no stored predictions.

    Raises :class:`aubench.RecordError` when a cell's predictions do not give its record's score.
    """
    from aubench.errors import RecordError
    from aubench.leaderboard import score

    cells = []
    for rec in records:
        predictions = rec.path.parent / "predictions.npz" if rec.path is not None else None
        if predictions is None or not predictions.is_file():
            return None
        subjects = tuple(sorted(rec.test_subjects))
        counts = subject_counts(predictions, subjects, rec.threshold)
        if abs(float(_score(counts.sum(0), metric)) - score(rec, metric)) > 1e-6:
            raise RecordError(f"{predictions} does not give its record's score ({score(rec, metric):.4f}); "
                              "the two files belong to different runs: re-run the cell")
        cells.append(_Cell(rec.fold, subjects, counts))
    scores = [_score(np.einsum("bs,skc->bkc", _draws(rec.protocol_id, c.fold, c.subjects, n_boot), c.counts), metric)
              for rec, c in zip(records, cells)]
    return np.mean(scores, 0)


def interval(replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of bootstrap replicates."""
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return float(low), float(high)


def ranks_with_ties(means: Sequence[float], replicates: Sequence[np.ndarray | None]) -> list[int]:
    """Rank 1 + the number of rows better by more than the paired 95 % interval of the difference.

    Rows are compared pairwise on the same draws; a row without replicates is ranked by its mean.
    """
    ranks = []
    for i, (mean, rep) in enumerate(zip(means, replicates)):
        better = 0
        for j, (other, rep_j) in enumerate(zip(means, replicates)):
            if j == i or other <= mean:
                continue
            if rep is None or rep_j is None or interval(rep_j - rep)[0] > 0:
                better += 1
        ranks.append(1 + better)
    return ranks
