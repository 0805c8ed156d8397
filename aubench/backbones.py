"""Shared encoders for model plugins: timm CNNs, with local-only pretrained weights."""
from __future__ import annotations

import os
from typing import Any

from torch import nn

from aubench.errors import ConfigError

__all__ = ["create_backbone", "SmokeCNN"]


class SmokeCNN(nn.Module):
    """A plain CNN for the SynthAU ``smoke`` recipes, registered in timm as ``aubench_smoke_cnn``.

    Four stages of 3x3 conv -> BatchNorm -> ReLU (stride 2 at each stage's start, or ``strides``; one more conv in
    stages 2-4), widths 16-32-64-128, global average pooling. On one CPU thread it trains ~2.3x
    (32 px) to ~2.5x (48 px) faster than timm's ``test_resnet`` (``benchmarks/bench_backbones.py``),
    because it never holds a full-resolution map: every stage halves it. Not meant for real datasets.
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128), num_classes: int = 0, in_chans: int = 3,
                 strides: tuple[int, ...] | None = None, **_: Any):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_chans
        strides = tuple(strides or (2,) * len(widths))  # a stride of 1 keeps a stage's resolution (a finer map)
        if len(strides) != len(widths):
            raise ConfigError(f"aubench_smoke_cnn: {len(strides)} strides for {len(widths)} stages")
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, stride=strides[i], padding=1, bias=False), nn.BatchNorm2d(w),
                       nn.ReLU(inplace=True)]
            if i:
                layers += [nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            c = w
        self.features = nn.Sequential(*layers)
        self.num_features = c
        self.head = nn.Linear(c, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: Any) -> Any:
        return self.features(x)

    def forward(self, x: Any) -> Any:
        return self.head(self.forward_features(x).mean((2, 3)))


def _register() -> None:
    from timm.models import register_model
    from timm.models._registry import is_model

    if not is_model("aubench_smoke_cnn"):
        @register_model
        def aubench_smoke_cnn(pretrained: bool = False, **kwargs: Any) -> SmokeCNN:
            if pretrained:
                raise ConfigError("aubench_smoke_cnn has no pretrained weights; set model.pretrained=false")
            kwargs = {k: v for k, v in kwargs.items() if not k.startswith("pretrained_") and k != "cache_dir"}
            return SmokeCNN(**kwargs)


def create_backbone(name: str, pretrained: bool | str = False, **kwargs: Any) -> nn.Module:
    """A timm encoder returning pooled features (``num_classes=0``).

    ``pretrained`` is ``False`` (random init), ``True`` (timm's weights from the local Hugging Face
    cache; never downloaded when ``HF_HUB_OFFLINE=1``) or a path to a local weights file.
    """
    import timm

    _register()
    if not pretrained:
        return timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    if isinstance(pretrained, str) and pretrained not in ("true", "True"):
        if not os.path.isfile(pretrained):
            raise ConfigError(f"model.pretrained={pretrained!r} is not a file; give a local weights file "
                              "(.safetensors or .pth) or set model.pretrained=false")
        return timm.create_model(name, pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": pretrained},
                                 **kwargs)
    try:
        return timm.create_model(name, pretrained=True, num_classes=0, **kwargs)
    except Exception as exc:
        raise ConfigError(
            f"Could not load ImageNet weights for timm model {name!r} ({type(exc).__name__}: {exc}). On a machine "
            f"with network run `python -c \"import timm; timm.create_model('{name}', pretrained=True)\"` once to "
            "fill the Hugging Face cache (~/.cache/huggingface), copy that cache here, or pass a local file with "
            "model.pretrained=/path/to/weights.safetensors; model.pretrained=false trains from scratch."
        ) from exc
