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

    ``augment.crop`` crops at random in training and at the centre otherwise (the test view is part of
    the recipe). ``augment.transform`` (``"pkg.module:fn"``) is a plugin's own batch transform,
    ``fn(batch, gen, augment_cfg) -> batch`` on the device in [0, 1] before normalisation; it must move
    ``landmarks`` and ``parsing`` with the image, as the core's transforms do. Landmarks and parsing maps
    follow the image to the model's input size.
    """
    import torch

    from aubench.data.augment import augment_batch, crop_batch, normalise

    stored = batch.pop("stored_size", None)  # frames resized at load (FrameBatches): pixels were given at this width
    out = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    if "image" not in out:  # a vector dataset: batch["x"] goes to the model as it is
        return out
    out["image"] = out["image"].float() / 255.0
    aug = cfg.get("augment") or {}
    if stored is not None and aug.get("shift"):
        aug = {**aug, "shift": float(aug["shift"]) * out["image"].shape[-1] / int(stored)}
    if aug.get("crop"):  # random crop in training, the centre crop (the test view) otherwise
        out = crop_batch(out, int(aug["crop"]), gen)
    if gen is not None and aug:
        out = augment_batch(out, aug, gen)
        if aug.get("transform"):  # a plugin's own batch transform, after the core's
            from aubench.specs import resolve_factory

            out = resolve_factory(str(aug["transform"]))(out, gen, aug)
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
