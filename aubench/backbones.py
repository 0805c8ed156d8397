"""Shared encoders for model plugins: timm CNNs, with local-only pretrained weights."""
from __future__ import annotations

import os
from typing import Any

from torch import nn

from aubench.errors import ConfigError

__all__ = ["create_backbone"]


def create_backbone(name: str, pretrained: bool | str = False, **kwargs: Any) -> nn.Module:
    """A timm encoder returning pooled features (``num_classes=0``).

    ``pretrained`` is ``False`` (random init), ``True`` (timm's weights from the local Hugging Face
    cache; never downloaded when ``HF_HUB_OFFLINE=1``) or a path to a local weights file.
    """
    import timm

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
