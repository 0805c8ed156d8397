"""Batched, device-side augmentation and normalisation of face crops.

One random similarity transform per image (rotation, scale, shift, horizontal flip) is applied to
the image with ``grid_sample`` and to landmarks / parsing maps consistently; brightness/contrast
jitter follows. All randomness comes from the generator passed in, so runs are reproducible.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["augment_batch", "crop_batch", "mixup", "normalise", "IBUG_FLIP"]

# iBUG 68-point indices after a horizontal flip (left/right features swap).
IBUG_FLIP = (
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + list(range(27, 31)) + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65]
)


def augment_batch(batch: dict[str, torch.Tensor], cfg: Any, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Augment ``batch["image"]`` (float in [0,1], [B,3,H,W]) in place of the batch dict.

    ``cfg`` keys (all optional): ``hflip`` probability, ``rotate`` degrees (±), ``scale`` [lo, hi],
    ``shift`` pixels (±, at the stored resolution), ``brightness`` (± added) and ``contrast`` (± fraction),
    ``brightness_scale`` (multiplied by 1 ± it), ``saturation`` (± fraction, a blend with the grey image)
    and ``hue`` (± fraction of the colour circle, rotated about the grey axis), as torchvision's
    ColorJitter does them. ``mixup`` (α) blends each image and its labels with another of the batch
    (Zhang et al., ICLR 2018), last.
    """
    img = batch["image"]
    B, _, H, W = img.shape
    dev = img.device
    group = _groups(batch, B)  # the frames of one clip share their draws

    def u(lo: float, hi: float) -> torch.Tensor:
        return (torch.rand(len(group.unique()), generator=gen) * (hi - lo) + lo)[group].to(dev)

    rot = float(cfg.get("rotate", 0) or 0)
    sc = cfg.get("scale") or [1.0, 1.0]
    sh = float(cfg.get("shift", 0) or 0)
    flip = (torch.rand(len(group.unique()), generator=gen) < float(cfg.get("hflip", 0) or 0))[group].to(dev)
    angle = u(-rot, rot) * math.pi / 180
    scale = u(float(sc[0]), float(sc[1]))
    tx, ty = u(-sh, sh) * 2 / W, u(-sh, sh) * 2 / H
    if rot or sc[0] != 1 or sc[1] != 1 or sh or flip.any():
        # theta maps output coords to input coords (normalised [-1, 1]).
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        fx = torch.where(flip, -1.0, 1.0)
        theta = torch.stack([torch.stack([cos * fx, -sin, tx], 1), torch.stack([sin * fx, cos, ty], 1)], 1)
        grid = F.affine_grid(theta, list(img.shape), align_corners=False)
        batch["image"] = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)
        if "parsing" in batch:
            par = batch["parsing"].unsqueeze(1).float()
            batch["parsing"] = F.grid_sample(par, grid, mode="nearest", align_corners=False).squeeze(1).to(torch.uint8)
        if "landmarks" in batch:
            lm = batch["landmarks"].float()
            norm = torch.stack([lm[..., 0] * 2 / W - 1, lm[..., 1] * 2 / H - 1], -1) - torch.stack([tx, ty], 1)[:, None]
            # invert theta's linear part: output = R(-angle) * scale * (input - t), mirrored when flipped
            c, s = torch.cos(angle) * scale, torch.sin(angle) * scale
            x = (c[:, None] * norm[..., 0] + s[:, None] * norm[..., 1]) * fx[:, None]
            y = -s[:, None] * norm[..., 0] + c[:, None] * norm[..., 1]
            out = torch.stack([(x + 1) * W / 2, (y + 1) * H / 2], -1)
            flipped = out[:, IBUG_FLIP]
            batch["landmarks"] = torch.where(flip[:, None, None], flipped, out)
    br = float(cfg.get("brightness", 0) or 0)
    ct = float(cfg.get("contrast", 0) or 0)
    if br or ct:
        x = batch["image"]
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * u(1 - ct, 1 + ct).view(B, 1, 1, 1) + mean + u(-br, br).view(B, 1, 1, 1)
        batch["image"] = x.clamp(0, 1)
    bs, sat, hue = (float(cfg.get(k, 0) or 0) for k in ("brightness_scale", "saturation", "hue"))
    if bs:
        batch["image"] = (batch["image"] * u(1 - bs, 1 + bs).view(B, 1, 1, 1)).clamp(0, 1)
    if sat:
        x = batch["image"]
        grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
        batch["image"] = (grey + (x - grey) * u(1 - sat, 1 + sat).view(B, 1, 1, 1)).clamp(0, 1)
    if hue:
        batch["image"] = _rotate_hue(batch["image"], u(-hue, hue) * 2 * math.pi)
    if float(cfg.get("mixup", 0) or 0):
        batch = mixup(batch, float(cfg["mixup"]), gen)
    return batch


def mixup(batch: dict[str, torch.Tensor], alpha: float, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """mixup (Zhang et al., ICLR 2018; the ABAW3 recipe's §4.3): one λ ~ Beta(α, α) per batch, every image
    and its labels blended with those of a random partner, ``λ x_i + (1 − λ) x_perm(i)``; a label counts
    only where both frames are labelled (the masks are combined with AND), so unknown labels stay out."""
    import numpy as np

    from aubench.errors import ConfigError

    blocked = [k for k in ("landmarks", "parsing", "clip") if k in batch]
    if blocked:
        raise ConfigError(f"augment.mixup blends two frames, and the model's {blocked} cannot be blended: drop "
                          "augment.mixup for this model")
    lam = float(np.random.default_rng(int(torch.randint(2 ** 31 - 1, (1,), generator=gen))).beta(alpha, alpha))
    perm = torch.randperm(batch["image"].shape[0], generator=gen).to(batch["image"].device)
    batch["image"] = lam * batch["image"] + (1 - lam) * batch["image"][perm]
    labels = batch["labels"].float()
    batch["labels"] = lam * labels + (1 - lam) * labels[perm]
    batch["mask"] = batch["mask"] & batch["mask"][perm]
    return batch


def _groups(batch: dict[str, torch.Tensor], n: int) -> torch.Tensor:
    """Which draw each image uses: its clip's (``batch["clip"]``), or its own."""
    return batch["clip"].cpu() if "clip" in batch else torch.arange(n)


def _rotate_hue(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate each image's colours by ``angle`` (radians) about the grey axis (a hue shift, [B,3,H,W])."""
    c, s = torch.cos(angle), torch.sin(angle)
    k = 1 / 3
    r3 = math.sqrt(k)
    row = [c + (1 - c) * k, k * (1 - c) - r3 * s, k * (1 - c) + r3 * s]
    m = torch.stack([torch.stack(row, -1), torch.stack([row[2], row[0], row[1]], -1),
                     torch.stack([row[1], row[2], row[0]], -1)], 1)  # [B, 3, 3]
    return torch.einsum("bij,bjhw->bihw", m.to(x.dtype), x).clamp(0, 1)


def crop_batch(batch: dict[str, torch.Tensor], size: int, gen: torch.Generator | None) -> dict[str, torch.Tensor]:
    """Crop ``size`` x ``size`` from every image: at a random place per image when ``gen`` is given
    (training), else the centre (the test view); landmarks move and parsing maps are cropped with it."""
    img = batch["image"]
    B, _, H, W = img.shape
    if size > min(H, W):
        raise ValueError(f"augment.crop={size} is larger than the stored {H}x{W} frames")
    if gen is None:
        oy = torch.full((B,), (H - size) // 2)
        ox = torch.full((B,), (W - size) // 2)
    else:  # one place per clip
        group = _groups(batch, B)
        oy = torch.randint(0, H - size + 1, (len(group.unique()),), generator=gen)[group]
        ox = torch.randint(0, W - size + 1, (len(group.unique()),), generator=gen)[group]
    oy, ox = oy.to(img.device), ox.to(img.device)
    ar = torch.arange(size, device=img.device)
    ys, xs = (oy[:, None] + ar)[:, :, None], (ox[:, None] + ar)[:, None, :]
    b = torch.arange(B, device=img.device)[:, None, None]
    batch["image"] = img.permute(0, 2, 3, 1)[b, ys, xs].permute(0, 3, 1, 2)
    if "parsing" in batch:
        batch["parsing"] = batch["parsing"][b, ys, xs]
    if "landmarks" in batch:
        batch["landmarks"] = batch["landmarks"].float() - torch.stack([ox, oy], 1)[:, None].to(torch.float32)
    return batch


def normalise(img: torch.Tensor, mean: Any, std: Any, size: int | None) -> torch.Tensor:
    """Resize to ``size`` (if given and different) and normalise with per-channel mean/std."""
    if size and img.shape[-1] != size:
        img = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    m = torch.tensor(list(mean), device=img.device, dtype=img.dtype).view(1, -1, 1, 1)
    s = torch.tensor(list(std), device=img.device, dtype=img.dtype).view(1, -1, 1, 1)
    return (img - m) / s
