"""VMNC: a shared encoder and a common linear multi-label head (thesis §2.5, "vanilla multi-task network
with common head"), with the frequency-based bias initialisation of thesis eq. (2.38)."""
from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from aubench.errors import ConfigError

__all__ = ["VMNC", "create_backbone"]


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


class VMNC(nn.Module):
    """Encoder -> dropout -> Linear(K). ``forward(batch)`` returns ``{"logits": [B, K]}``."""

    def __init__(self, au_set: tuple[int, ...], stats: Any = None, backbone: str = "resnet18",
                 pretrained: bool | str = False, dropout: float = 0.0, bias_init: bool = True,
                 backbone_kwargs: dict[str, Any] | None = None):
        super().__init__()
        self.au_set = tuple(au_set)
        self.encoder = create_backbone(backbone, pretrained, **(backbone_kwargs or {}))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.encoder.num_features, len(self.au_set))
        if bias_init and stats is not None:
            with torch.no_grad():  # eq. (2.38): start at the training prior f_t
                self.head.bias.copy_(torch.as_tensor(stats.bias_init(), dtype=torch.float32))

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"logits": self.head(self.dropout(self.encoder(batch["image"])))}
