"""Time of one leaderboard row's subject bootstrap (1000 replicates), beside reading its predictions.

    python benchmarks/bench_bootstrap.py

A row of 3 cells x 4000 frames x 12 AUs over 14 test subjects per fold (a BP4D-sized fold of a
SynthAU-sized run); prints the median of 5 repeats. The leaderboard computes one per row.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from aubench.bootstrap import row_replicates
from aubench.metrics import au_metrics
from aubench.records import RECORD_SCHEMA_VERSION, ResultRecord


def record(folder: Path, fold: str, rng: np.random.Generator) -> ResultRecord:
    subjects = [f"F{i:03d}" for i in range(14)]
    labels = (rng.random((4000, 12)) < 0.2).astype(np.float32)
    probs = rng.random(labels.shape).astype(np.float32)
    mask = np.ones_like(labels, bool)
    folder.mkdir(parents=True)
    np.savez_compressed(folder / "predictions.npz", probs=probs, labels=labels, mask=mask,
                        subject=np.array([subjects[i % 14] for i in range(len(labels))]))
    m = au_metrics(probs, labels, mask, list(range(1, 13)))
    return ResultRecord(
        schema_version=RECORD_SCHEMA_VERSION, method="m", preset="smoke", overrides=[], config_hash="c", dataset="d",
        train_dataset="d", protocol="p", protocol_version="v1", protocol_id="p@v1", fold=fold, test_subject_hash="h",
        test_subjects=subjects, train_subjects=[], val_subjects=[], seed=0, aus=list(range(1, 13)),
        train_aus=list(range(1, 13)), positive_threshold=2, per_au=m["per_au"], f1_avg=m["f1_avg"], threshold=0.5,
        n_test_frames=len(labels), n_train_frames=0, init_checkpoint=None, selection="final", postprocess={},
        data={}, train_stats={}, model_extras={}, history=[], timings={}, environment={}, config={}, versions={},
        path=folder / "record.json")


def main() -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        records = [record(Path(tmp) / f, f, rng) for f in "123"]
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            row_replicates(records)
            times.append(time.perf_counter() - t0)
    print(f"one row (3 cells x 4000 frames x 12 AUs, 1000 replicates): {1000 * statistics.median(times):.0f} ms")


if __name__ == "__main__":
    main()
