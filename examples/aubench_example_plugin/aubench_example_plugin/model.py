import torch
from torch import nn


class LittleCNN(nn.Module):
    """``forward(batch) -> {"logits": [B, K]}`` with K = len(au_set), in the order of ``au_set``."""

    def __init__(self, au_set, stats=None, width=16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        )
        self.head = nn.Linear(2 * width * 16, len(au_set))
        if stats is not None:  # start from the training prior (thesis eq. 2.38)
            with torch.no_grad():
                self.head.bias.copy_(torch.as_tensor(stats.bias_init(), dtype=torch.float32))

    def forward(self, batch):
        return {"logits": self.head(self.features(batch["image"]))}
