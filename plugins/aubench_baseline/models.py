"""VMNC: a shared encoder and a common linear multi-label head (thesis §2.5, "vanilla multi-task network
with common head"), with the frequency-based bias initialisation of thesis eq. (2.38)."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from aubench import create_backbone

__all__ = ["VMNC"]


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
