"""``aubench leaderboard --verify``: every number of a board recomputed from what it claims to come from.

For each record: its stored ``predictions.npz`` must give the record's per-AU metrics, AU average
and frame count again; and where the dataset it names is prepared on this machine, the data
fingerprint must be the record's and the stored labels and masks must be the dataset's labels for
those frames; and a record that started from another cell of the same folder (``init.from``) must still
match that cell's weights. The first mismatch stops the check with the file and the number that differ.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aubench.errors import RecordError

__all__ = ["VerifyReport", "verify_records", "start_checks"]

TOLERANCE = 1e-6


@dataclass
class VerifyReport:
    records: int = 0
    against_data: int = 0
    starts: int = 0  # records checked against the weights they started from (init.from, same folder)
    without_data: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = f"verified {self.records} record(s) against their predictions"
        text += f"; {self.against_data} also against the prepared dataset's labels and fingerprint"
        if self.starts:
            text += f"; {self.starts} against the weights of the cell they started from"
        if self.without_data:
            text += (f"; datasets not prepared here, labels not checked: {', '.join(self.without_data)} "
                     "(`aubench data generate` / `data prepare` them to check those too)")
        return text


def _check_predictions(rec, probs, labels, mask, aus) -> None:
    from aubench.metrics import au_metrics

    where = f"{rec.path.parent / 'predictions.npz'}"
    if list(map(int, aus)) != list(rec.aus):
        raise RecordError(f"{where}: AUs {list(aus)} differ from the record's {rec.aus}")
    if len(probs) != rec.n_test_frames:
        raise RecordError(f"{where}: {len(probs)} frames, the record says {rec.n_test_frames}")
    again = au_metrics(probs, labels, mask, rec.aus, rec.threshold)
    for au in rec.aus:
        for key in ("f1", "precision", "recall", "support"):
            have, want = again["per_au"][str(au)][key], rec.per_au[str(au)][key]
            if abs(have - want) > TOLERANCE:
                raise RecordError(f"{rec.path}: AU{au} {key} is {want} but its predictions give {have}")
    if abs(again["f1_avg"] - rec.f1_avg) > TOLERANCE:
        raise RecordError(f"{rec.path}: f1_avg is {rec.f1_avg} but its predictions give {again['f1_avg']}")


def _check_labels(rec, npz) -> bool:
    """Compare the stored labels with the prepared dataset's; False when the dataset is not prepared here."""
    import pandas as pd

    from aubench.data.prepared import PreparedDataset, dataset_dir

    root = dataset_dir(rec.dataset)
    if not (root / "meta.json").is_file():
        return False
    ds = PreparedDataset(root)
    if ds.fingerprint != rec.data.get("test_fingerprint"):
        raise RecordError(f"{rec.path}: recorded on data {rec.data.get('test_fingerprint')}, but the prepared "
                          f"{rec.dataset} here is {ds.fingerprint}; the record belongs to other data")
    keys = pd.DataFrame({"subject": npz["subject"].astype(str), "video": npz["video"].astype(str),
                         "frame": npz["frame"]})
    index = ds.index[["subject", "video", "frame"]].astype({"subject": str, "video": str}).reset_index(names="row")
    rows = keys.merge(index, on=["subject", "video", "frame"], how="left")["row"]
    if rows.isna().any():
        raise RecordError(f"{rec.path}: {int(rows.isna().sum())} predicted frames are not in the prepared {rec.dataset}")
    labels, mask = ds.labels(tuple(rec.aus), rec.positive_threshold)
    rows = rows.to_numpy(int)
    if not (np.array_equal(labels[rows], npz["labels"]) and np.array_equal(mask[rows], npz["mask"])):
        raise RecordError(f"{rec.path}: stored labels differ from the prepared {rec.dataset}'s labels")
    return True


def start_checks(records: list) -> Iterator[tuple[Any, str | None]]:
    """For each record that started from another cell's weights (``init.from``) found among ``records``:
    the record and why it is stale (``None`` when those weights are still the ones it started from). A
    starting cell run again since leaves its dependents describing weights that no longer exist."""
    from aubench.checkpoints import WEIGHTS_FILE, stale_start

    by_cell = {(r.method, r.config_hash, r.protocol_id, str(r.fold), r.seed): r for r in records}
    for rec in records:
        init = rec.init_checkpoint or {}
        src = init.get("from") or {}
        dep = by_cell.get((src.get("method"), src.get("config_hash"), src.get("protocol"), str(src.get("fold")),
                           src.get("seed")))
        if dep is not None and init.get("weights_digest"):
            yield rec, stale_start(init, dep.path.parent / WEIGHTS_FILE,
                                   f"{dep.method} {dep.protocol_id} fold {dep.fold} seed {dep.seed}")


def verify_records(root: Path, *, datasets: bool = True) -> VerifyReport:
    """Verify every record under ``root``; raise :class:`RecordError` at the first mismatch."""
    from aubench.records import load_records

    report, missing = VerifyReport(), set()
    records = list(load_records(root))
    for rec, why in start_checks(records):
        if why is not None:
            raise RecordError(f"{rec.path}: {why}")
        report.starts += 1
    for rec in records:
        path = rec.path.parent / "predictions.npz"
        if not path.is_file():
            raise RecordError(f"{rec.path}: no predictions.npz beside it, so its numbers cannot be verified")
        with np.load(path) as npz:
            data = {key: npz[key] for key in npz.files}
        _check_predictions(rec, data["probs"], data["labels"], data["mask"].astype(bool), data["aus"])
        report.records += 1
        if datasets:
            if _check_labels(rec, data):
                report.against_data += 1
            else:
                missing.add(rec.dataset)
    report.without_data = tuple(sorted(missing))
    return report
