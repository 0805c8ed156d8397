"""CAFE for AUs (arXiv 2408.10614, eqs. 2-9; supplementary Alg. 1), on frozen feature maps.

* F: fixed features of a frozen model, a map [B, C, H, W] (the paper's CLIP: ViT-B/16 patch tokens,
  14 x 14 at 224 px, through timm; a FAN / timm map via FAN-Trans's extractors, e.g. the SynthAU FAN;
  or, ``kind: encoder``, the last map of an encoder trained by another cell and loaded through
  ``init.from`` + ``init.rename``, what the smoke preset uses). The authors' code uses CLIP's pooled
  512-d embedding; AUs are local, so we keep the patch map (the classification and separation terms
  pool it).
* f: a trainable network's last feature map (``forward_features`` of a timm model; the paper's
  ResNet-18: layer 4); Alg. 1 step 6 "resizing f": a 1 x 1 convolution to C channels, bilinear resize
  to H x W, sigmoid: M = σ(resize(f)) in (0, 1), shaped like F.
* eq. 2: F̃ = F ⊙ M.
* eq. 3 (classification): an FC layer on the global average of F̃ gives the deployed per-AU logits
  (multi-label: BCE instead of the paper's cross-entropy, in the loss).
* eq. 4-5 (separation, no FC): the C channels are split into K consecutive pieces, one per AU of the
  training set (the last piece takes the remainder); in training each piece drops a random 10/73 of
  its channels (the authors' 10 of 73); a piece's logit is the max of its channels' averages.
  Multi-label choice: a per-AU learnable offset is added to that max (initialised to the training
  prior, eq. 2.38 of the Tallec thesis), because a BCE logit must be able to say "absent", which a max of
  non-negative features cannot; the paper's softmax over classes needs no offset.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from aubench import ConfigError

__all__ = ["CAFE", "CLIPFeatures", "EncoderFeatures", "piece_sizes", "piece_logits"]


def piece_sizes(channels: int, pieces: int) -> list[int]:
    """Consecutive pieces of ``channels // pieces`` channels, the last one taking the remainder."""
    if channels < pieces:
        raise ConfigError(f"CAFE needs at least one channel per AU: {channels} channels for {pieces} AUs")
    n = channels // pieces
    return [n] * (pieces - 1) + [channels - n * (pieces - 1)]


def piece_logits(pooled: torch.Tensor, sizes: list[int], keep: torch.Tensor | None = None) -> torch.Tensor:
    """eq. 4-5: the max over each piece's (kept) channels of ``pooled`` [B, C] -> [B, K]."""
    if keep is not None:  # dropped channels cannot win the max
        pooled = pooled.masked_fill(~keep, float("-inf"))
    return torch.stack([part.max(1).values for part in torch.split(pooled, sizes, dim=1)], 1)


class CLIPFeatures(nn.Module):
    """The frozen CLIP image encoder through timm, returning its patch tokens as a map [B, D, H/16, W/16]."""

    def __init__(self, name: str = "vit_base_patch16_clip_224.openai", pretrained: bool | str = True):
        super().__init__()
        import timm

        from aubench import create_backbone

        self.net = create_backbone(name, pretrained) if pretrained else timm.create_model(name, num_classes=0)
        self.net.requires_grad_(False)
        self.net.eval()
        self.out_channels = self.net.num_features
        self.weights = str(pretrained)

    def train(self, mode: bool = True) -> CLIPFeatures:
        super().train(False)
        return self

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.net.forward_features(x)[:, self.net.num_prefix_tokens:]  # [B, N, D]
        side = int(round(tokens.shape[1] ** 0.5))
        return tokens.transpose(1, 2).reshape(x.shape[0], -1, side, side)


class EncoderFeatures(nn.Module):
    """A frozen encoder's last feature map [B, C, H, W] (``forward_features`` of a timm or aubench backbone).
    Built with random weights: they must come from another cell, e.g. the smoke preset's
    ``init.from: {method: vmnc-bce}`` with ``init.rename: {encoder.: frozen.net.}`` (that cell's encoder,
    trained on the same training subjects); :meth:`CAFE.after_init` refuses a cell where they did not."""

    def __init__(self, name: str = "aubench_smoke_cnn", pretrained: bool = False, **backbone: Any):
        super().__init__()
        from aubench import create_backbone

        if pretrained:
            raise ConfigError("cafe: model.frozen.kind=encoder loads its weights from another cell (init.from); "
                              "set model.frozen.pretrained=false, or use kind=clip / timm for published weights")
        self.net = create_backbone(name, False, **backbone)
        self.net.requires_grad_(False)
        self.net.eval()
        self.out_channels = self.net.num_features
        self.weights = "another cell's encoder (init.from)"

    def train(self, mode: bool = True) -> EncoderFeatures:
        super().train(False)
        return self

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)


class CAFE(nn.Module):
    """See the module docstring; ``forward`` returns ``logits`` (eq. 3), ``piece_logits`` (eq. 5) and
    ``masked`` (F̃, for the diverse loss)."""

    def __init__(self, au_set: tuple[int, ...], stats: Any = None, frozen: dict | None = None,
                 mask_net: str = "resnet18", mask_pretrained: bool | str = False, drop: float = 10 / 73,
                 input_size: int = 224, bias_init: bool = True, train_data: Any = None,
                 train_subjects: list[str] | None = None):
        super().__init__()
        from aubench import create_backbone

        frozen = dict(frozen or {"kind": "clip"})
        kind = frozen.pop("kind", "clip")
        if kind == "clip":
            self.frozen = CLIPFeatures(**frozen)
        elif kind == "encoder":
            self.frozen = EncoderFeatures(**frozen)
        else:  # FAN-Trans's extractors: the public FAN, a timm map, or the SynthAU FAN
            from aubench_fantrans.backbone import build_backbone

            self.frozen = build_backbone(kind, context={"train_data": train_data, "train_subjects": train_subjects,
                                                        "input_size": input_size}, **frozen)
        channels = self.frozen.out_channels
        self.sizes = piece_sizes(channels, len(au_set))
        self.drop = float(drop)
        self.mask_net = create_backbone(mask_net, mask_pretrained)
        self.to_mask = nn.Conv2d(self.mask_net.num_features, channels, kernel_size=1)
        self.fc = nn.Linear(channels, len(au_set))
        self.piece_offset = nn.Parameter(torch.zeros(len(au_set)))
        if bias_init and stats is not None:
            with torch.no_grad():
                prior = torch.as_tensor(stats.bias_init(), dtype=torch.float32)
                self.fc.bias.copy_(prior)
                self.piece_offset.copy_(prior)

    def extract_frozen(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.frozen(batch["image"])

    def after_init(self, init: dict[str, Any] | None) -> None:
        """An ``encoder`` frozen part must have been loaded from another cell by an ``init.rename`` onto it
        (which checks that every one of its tensors was): never CAFE on a random frozen encoder by mistake,
        also when a rename fills only another part (e.g. the mask network)."""
        renamed_to = list(((init or {}).get("rename") or {}).values())
        if isinstance(self.frozen, EncoderFeatures) and not any("frozen.net.".startswith(p) for p in renamed_to):
            raise ConfigError("cafe: model.frozen.kind=encoder takes its weights from another cell; set init.from "
                              "(e.g. {method: vmnc-bce}) and an init.rename onto the frozen part (e.g. {encoder.: "
                              f"frozen.net.}}; given: {renamed_to or 'none'}), as the smoke preset does")
        if init and init.get("rename"):
            self.frozen.weights = f"{init['source']} ({init['rename']})"

    def record_extras(self) -> dict[str, Any]:
        return {"frozen_weights": getattr(self.frozen, "weights", None),
                "frozen_pretraining": getattr(self.frozen, "pretraining", None), "pieces": self.sizes}

    def sigmoid_mask(self, image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Alg. 1 step 6: M = σ(resize(f)) in (0, 1), [B, C, H, W]."""
        f = self.to_mask(self.mask_net.forward_features(image))
        return torch.sigmoid(F.interpolate(f, size=size, mode="bilinear", align_corners=False))

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        fixed = batch["features"].float() if "features" in batch else self.extract_frozen(batch).float()
        masked = fixed * self.sigmoid_mask(batch["image"], tuple(fixed.shape[-2:]))  # eq. 2
        pooled = masked.mean((2, 3))
        keep = None
        if self.training and self.drop > 0:  # eq. 4: channel dropping within each piece
            keep = torch.rand(pooled.shape, device=pooled.device) >= self.drop
            firsts = torch.cumsum(torch.tensor([0, *self.sizes[:-1]]), 0).to(pooled.device)
            keep[:, firsts] = True  # a piece never loses every channel
        return {"logits": self.fc(pooled),  # eq. 3
                "piece_logits": piece_logits(pooled, self.sizes, keep) + self.piece_offset,  # eq. 5
                "masked": masked}
