"""A batch on its way to the model: on the device, augmented (training), scaled and normalised."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig

__all__ = ["to_device", "DEFAULT_MEAN", "DEFAULT_STD"]

#: the input normalisation when a recipe's ``input`` does not set one (images scaled to [-1, 1])
DEFAULT_MEAN = DEFAULT_STD = (0.5, 0.5, 0.5)


def to_device(batch: dict[str, Any], device: str, channels_last: bool, cfg: DictConfig,
              gen: torch.Generator | None) -> dict[str, Any]:
    """Move a batch to the device; augment it (training, ``gen`` given), scale and normalise the image.

    Landmarks and parsing maps follow the image to the model's input size.
    """
    import torch

    from aubench.data.augment import augment_batch, normalise

    out = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    if "image" not in out:  # a vector dataset: batch["x"] goes to the model as it is
        return out
    out["image"] = out["image"].float() / 255.0
    if gen is not None and cfg.get("augment"):
        out = augment_batch(out, cfg.augment, gen)
    inp = cfg.get("input") or {}
    stored = out["image"].shape[-1]
    out["image"] = normalise(out["image"], inp.get("mean", DEFAULT_MEAN), inp.get("std", DEFAULT_STD),
                             inp.get("size"))
    size = out["image"].shape[-1]
    if size != stored:
        if "landmarks" in out:
            out["landmarks"] = out["landmarks"].float() * (size / stored)
        if "parsing" in out:
            import torch.nn.functional as F

            out["parsing"] = F.interpolate(out["parsing"][:, None].float(), size=(size, size),
                                           mode="nearest")[:, 0].to(torch.uint8)
    if channels_last:
        out["image"] = out["image"].contiguous(memory_format=torch.channels_last)
    return out
