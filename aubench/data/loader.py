"""Batches of prepared frames for training and evaluation.

Frames stay memory-mapped; a batch gathers its rows (sorted, for locality) into uint8 tensors and
the engine does augmentation and normalisation on the device, so nothing is decoded per epoch.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from aubench.data.prepared import PreparedDataset
from aubench.errors import DatasetError

__all__ = ["FrameBatches", "make_loader"]


class FrameBatches(torch.utils.data.Dataset):
    """Indexed by a *list* of positions; returns a whole batch as a dict of tensors.

    Keys: ``image`` uint8 [B,3,H,W] (``x`` float32 [B,D] instead for a vector dataset), ``labels`` float
    [B,K], ``mask`` bool [B,K], ``row`` int64 [B] (row in the prepared dataset), ``pos`` int64 [B]
    (position in ``rows``), and ``landmarks`` [B,68,2] / ``parsing`` uint8 [B,H,W] when asked.
    """

    def __init__(self, data: PreparedDataset, rows: np.ndarray, labels: np.ndarray, mask: np.ndarray,
                 inputs: Sequence[str] = ()):
        self.data, self.rows, self.labels, self.mask = data, np.asarray(rows), labels, mask
        for key in inputs:
            if key == "landmarks" and data.landmarks is None or key == "parsing" and data.parsing is None:
                raise DatasetError(
                    f"the model needs '{key}' but the prepared dataset {data.root} has none; prepare it with "
                    f"--{key} (or pick a model that does not need them)"
                )
        self.inputs = tuple(inputs)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, positions: Sequence[int]) -> dict[str, torch.Tensor]:
        pos = np.sort(np.asarray(positions))
        rows = self.rows[pos]
        if self.data.features is not None:  # a vector dataset
            batch = {"x": torch.from_numpy(np.ascontiguousarray(self.data.features[rows]))}
        else:
            batch = {"image": torch.from_numpy(np.ascontiguousarray(self.data.frames[rows])).permute(0, 3, 1, 2)}
        batch.update({
            "labels": torch.from_numpy(self.labels[pos]),
            "mask": torch.from_numpy(self.mask[pos]),
            "row": torch.from_numpy(rows.astype(np.int64)),
            "pos": torch.from_numpy(pos.astype(np.int64)),
        })
        if "landmarks" in self.inputs:
            batch["landmarks"] = torch.from_numpy(np.ascontiguousarray(self.data.landmarks[rows]))
        if "parsing" in self.inputs:
            batch["parsing"] = torch.from_numpy(np.ascontiguousarray(self.data.parsing[rows]))
        return batch


def make_loader(ds: FrameBatches, batch_size: int, *, shuffle: bool, seed: int = 0, num_workers: int = 0,
                pin_memory: bool = False, drop_last: bool = False) -> torch.utils.data.DataLoader:
    """A DataLoader yielding whole batches; the shuffle order depends only on ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.utils.data.RandomSampler(ds, generator=gen) if shuffle else torch.utils.data.SequentialSampler(ds)
    sampler = torch.utils.data.BatchSampler(base, batch_size, drop_last=drop_last and len(ds) > batch_size)
    return torch.utils.data.DataLoader(ds, sampler=sampler, batch_size=None, num_workers=num_workers,
                                       pin_memory=pin_memory, persistent_workers=False)
