"""Small models and losses that exercise engine features (caching, several optimisers, inputs, NaN)."""
from __future__ import annotations

import torch
from torch import nn

from aubench import LossSpec, ModelSpec, hookimpl


class FrozenToy(nn.Module):
    """A frozen conv 'backbone' with a trainable head; counts backbone calls."""

    backbone_calls = 0

    def __init__(self, au_set, stats=None):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.backbone.requires_grad_(False)
        self.head = nn.Linear(8, len(au_set))

    def extract_frozen(self, batch):
        FrozenToy.backbone_calls += 1
        return self.backbone(batch["image"])

    def forward(self, batch):
        feats = batch["features"].float() if "features" in batch else self.extract_frozen(batch)
        return {"logits": self.head(feats)}


class FrozenDictToy(FrozenToy):
    """Like FrozenToy, with two frozen tensors per frame (a vector and a small map)."""

    def extract_frozen(self, batch):
        FrozenToy.backbone_calls += 1
        return {"vec": self.backbone(batch["image"]), "map": nn.functional.adaptive_avg_pool2d(batch["image"], 2)}

    def forward(self, batch):
        feats = batch["features"] if "features" in batch else self.extract_frozen(batch)
        return {"logits": self.head(feats["vec"].float()) + feats["map"].float().mean((1, 2, 3))[:, None]}


class WarmupToy(nn.Module):
    """Two optimisers; the 'order' parameter's optimiser starts at epoch 1 (0-based), like MONET's warm-up."""

    def __init__(self, au_set, stats=None):
        super().__init__()
        self.net = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, len(au_set)))
        self.order = nn.Parameter(torch.zeros(len(au_set)))

    def forward(self, batch):
        return {"logits": self.net(batch["image"]) + self.order}

    def configure_optimizers(self, optim, sched, steps_per_epoch, epochs):
        return [{"optimizer": torch.optim.Adam(self.net.parameters(), lr=1e-2)},
                {"optimizer": torch.optim.Adam([self.order], lr=5e-2), "start_epoch": 1}]


class InputsToy(nn.Module):
    """Needs landmarks and parsing maps; fails loudly if the loader does not provide them."""

    def __init__(self, au_set, stats=None):
        super().__init__()
        self.head = nn.Linear(68 * 2 + 8, len(au_set))

    def forward(self, batch):
        lm, par = batch["landmarks"], batch["parsing"]
        assert lm.shape[1:] == (68, 2) and par.shape[1:] == batch["image"].shape[2:]
        hist = torch.stack([(par == c).float().mean((1, 2)) for c in range(8)], 1)
        return {"logits": self.head(torch.cat([lm.flatten(1) / 32, hist], 1))}


class NaNLoss:
    def __call__(self, outputs, batch, stats):
        return outputs["logits"].sum() * float("nan"), {"bce": 0.7}


class LateNaNLoss:
    """Finite on the first batch, NaN afterwards (a training run that diverges)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, outputs, batch, stats):
        self.calls += 1
        return outputs["logits"].mean() * (1.0 if self.calls == 1 else float("nan")), {"bce": 0.7}


class BareLoss:
    """Returns a tensor instead of (tensor, terms)."""

    def __call__(self, outputs, batch, stats):
        return outputs["logits"].mean()


class ShapeToy(nn.Module):
    """Logits of the wrong shape: [B, K, 1] (``extra_dim``) or a single column."""

    def __init__(self, au_set, stats=None, extra_dim=True):
        super().__init__()
        self.extra_dim = extra_dim
        self.head = nn.Linear(3, len(au_set) if extra_dim else 1)

    def forward(self, batch):
        logits = self.head(batch["image"].mean((2, 3)))
        return {"logits": logits[..., None] if self.extra_dim else logits}


class ClipToy(nn.Module):
    """A temporal model: frames of a clip are averaged over time with learned per-offset weights.
    Records every batch's clip layout (to check the loader and the per-clip augmentation)."""

    seen: list = []

    def __init__(self, au_set, stats=None):
        super().__init__()
        self.frame = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, len(au_set)))
        self.time = nn.Conv1d(len(au_set), len(au_set), 3, padding=1)

    def forward(self, batch):
        clips = int(batch["clip"].max()) + 1
        ClipToy.seen.append({k: batch[k].cpu() for k in ("clip", "video", "frame", "pos")} | {"image": batch["image"]})
        x = self.frame(batch["image"]).view(clips, -1, self.time.in_channels)  # [C, L, K]
        return {"logits": (x + self.time(x.transpose(1, 2)).transpose(1, 2)).reshape(-1, x.shape[-1])}


class ToyComponents:
    @hookimpl
    def aubench_register_models(self):
        return [ModelSpec("frozen_toy", FrozenToy), ModelSpec("warmup_toy", WarmupToy),
                ModelSpec("inputs_toy", InputsToy, inputs=("landmarks", "parsing")), ModelSpec("shape_toy", ShapeToy),
                ModelSpec("clip_toy", ClipToy),
                ModelSpec("frozen_dict_toy", FrozenDictToy)]

    @hookimpl
    def aubench_register_losses(self):
        return [LossSpec("nan_loss", NaNLoss), LossSpec("late_nan_loss", LateNaNLoss), LossSpec("bare_loss", BareLoss)]
