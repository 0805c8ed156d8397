"""Batches of prepared frames for training and evaluation.

Frames stay memory-mapped; a batch gathers its rows (sorted, for locality) into uint8 tensors and
the engine does augmentation and normalisation on the device, so nothing is decoded per epoch.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from aubench.data.prepared import PreparedDataset
from aubench.errors import DatasetError

__all__ = ["FrameBatches", "make_loader"]


def clip_table(index: Any, length: int, stride: int) -> np.ndarray:
    """Clips of ``length`` consecutive frames of one video, every ``stride`` frames: an array [n_clips,
    length] of positions into ``index`` (rows of a prepared index). The last clip of a video ends on its
    last frame, so every frame is in a clip; a video shorter than ``length`` repeats its last frame."""
    clips = []
    order = index.reset_index(drop=True).sort_values(["subject", "video", "frame"], kind="stable")
    for _, group in order.groupby(["subject", "video"], sort=False):
        pos = group.index.to_numpy()
        if len(pos) < length:
            pos = np.concatenate([pos, np.full(length - len(pos), pos[-1])])
        starts = list(range(0, len(pos) - length + 1, stride))
        if starts[-1] + length < len(pos):
            starts.append(len(pos) - length)
        clips += [pos[s:s + length] for s in starts]
    return np.stack(clips) if clips else np.zeros((0, length), np.int64)


class FrameBatches(torch.utils.data.Dataset):
    """Indexed by a *list* of positions; returns a whole batch as a dict of tensors.

    Keys: ``image`` uint8 [B,3,H,W] (``x`` float32 [B,D] instead for a vector dataset), ``labels`` float
    [B,K], ``mask`` bool [B,K], ``row`` int64 [B] (row in the prepared dataset), ``pos`` int64 [B]
    (position in ``rows``), and ``landmarks`` [B,68,2] / ``parsing`` uint8 [B,H,W] when asked.

    With ``clip`` (``{"length": L, "stride": S}``, L > 1) an item is a clip of L consecutive frames of
    one video (:func:`clip_table`): a batch of C clips holds C x L frames in clip order, flat (so every
    per-frame key keeps its shape), plus ``clip`` int64 [C*L] (the clip of each frame in the batch),
    ``video`` int64 and ``frame`` int64. A model reshapes to [C, L, ...] and returns one prediction per
    frame; frames in several clips are averaged at prediction.

    With ``size`` smaller than the stored frames (and no parsing maps asked for), every frame is
    resized once to ``size`` x ``size`` (:func:`resized_frames`, antialiased like the per-batch resize
    it replaces) and batches carry ``stored_size`` (the stored width) so pixel amounts in the
    augmentation keep their meaning; landmarks are scaled with the image.
    """

    def __init__(self, data: PreparedDataset, rows: np.ndarray, labels: np.ndarray, mask: np.ndarray,
                 inputs: Sequence[str] = (), clip: Any = None, size: int | None = None):
        self.data, self.rows, self.labels, self.mask = data, np.asarray(rows), labels, mask
        stored = data.frames.shape[2] if data.features is None else 0
        self.small = (resized_frames(data, int(size)) if size and int(size) < stored and "parsing" not in inputs
                      else None)
        self.stored = stored
        length = int((clip or {}).get("length", 1) or 1)
        self.clips = (clip_table(data.index.iloc[self.rows][["subject", "video", "frame"]], length,
                                 int(clip.get("stride", length) or length)) if length > 1 else None)
        for key in inputs:
            if key == "landmarks" and data.landmarks is None or key == "parsing" and data.parsing is None:
                raise DatasetError(
                    f"the model needs '{key}' but the prepared dataset {data.root} has none; prepare it with "
                    f"--{key} (or pick a model that does not need them)"
                )
        self.inputs = tuple(inputs)

    def __len__(self) -> int:
        return len(self.rows) if self.clips is None else len(self.clips)

    def __getitem__(self, positions: Sequence[int]) -> dict[str, torch.Tensor]:
        if self.clips is None:
            pos = np.sort(np.asarray(positions))
        else:
            chosen = self.clips[np.sort(np.asarray(positions))]
            pos = chosen.reshape(-1)
        rows = self.rows[pos]
        if self.data.features is not None:  # a vector dataset
            batch = {"x": torch.from_numpy(np.ascontiguousarray(self.data.features[rows]))}
        else:
            frames = self.data.frames if self.small is None else self.small
            batch = {"image": torch.from_numpy(np.ascontiguousarray(frames[rows])).permute(0, 3, 1, 2)}
            if self.small is not None:
                batch["stored_size"] = torch.tensor(self.stored)
        batch.update({
            "labels": torch.from_numpy(self.labels[pos]),
            "mask": torch.from_numpy(self.mask[pos]),
            "row": torch.from_numpy(rows.astype(np.int64)),
            "pos": torch.from_numpy(pos.astype(np.int64)),
        })
        if "landmarks" in self.inputs:
            batch["landmarks"] = torch.from_numpy(np.ascontiguousarray(self.data.landmarks[rows]))
            if self.small is not None:
                batch["landmarks"] = batch["landmarks"].float() * (self.small.shape[2] / self.stored)
        if "parsing" in self.inputs:
            batch["parsing"] = torch.from_numpy(np.ascontiguousarray(self.data.parsing[rows]))
        if self.clips is not None:
            index = self.data.index.iloc[rows]
            keys = (index["subject"] + "/" + index["video"]).to_numpy()
            batch["clip"] = torch.arange(len(chosen)).repeat_interleave(chosen.shape[1])
            batch["video"] = torch.from_numpy(np.unique(keys, return_inverse=True)[1].astype(np.int64))
            batch["frame"] = torch.from_numpy(index["frame"].to_numpy().astype(np.int64))
        return batch


_RESIZED: dict[tuple[str, int], np.ndarray] = {}


def resized_frames(data: PreparedDataset, size: int) -> np.ndarray:
    """Every frame of ``data`` resized to ``size`` (uint8 [N, size, size, 3]), kept for the process's
    later cells (keyed by the dataset's fingerprint). Bilinear with antialiasing, as
    :func:`aubench.data.augment.normalise` resizes a batch; only the rounding to uint8 differs."""
    import torch.nn.functional as F

    key = (f"{data.root}:{data.meta.get('fingerprint')}", size)
    if key not in _RESIZED:
        if len(_RESIZED) >= 4:
            _RESIZED.pop(next(iter(_RESIZED)))
        out = np.empty((len(data.frames), size, size, 3), np.uint8)
        for i in range(0, len(out), 1024):
            x = torch.from_numpy(np.array(data.frames[i:i + 1024])).permute(0, 3, 1, 2).float()
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            out[i:i + 1024] = x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        _RESIZED[key] = out
    return _RESIZED[key]


def make_loader(ds: FrameBatches, batch_size: int, *, shuffle: bool, seed: int = 0, num_workers: int = 0,
                pin_memory: bool = False, drop_last: bool = False) -> torch.utils.data.DataLoader:
    """A DataLoader yielding whole batches; the shuffle order depends only on ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.utils.data.RandomSampler(ds, generator=gen) if shuffle else torch.utils.data.SequentialSampler(ds)
    sampler = torch.utils.data.BatchSampler(base, batch_size, drop_last=drop_last and len(ds) > batch_size)
    return torch.utils.data.DataLoader(ds, sampler=sampler, batch_size=None, num_workers=num_workers,
                                       pin_memory=pin_memory, persistent_workers=False)
