"""Training throughput (images/s, forward + backward + AdamW step) of candidate smoke backbones,
relative to ResNet-18, at the SynthAU resolutions. Used to choose the `smoke` presets."""
from __future__ import annotations

import time

import timm
import torch

from aubench.backbones import _register

_register()  # aubench_smoke_cnn

CANDIDATES = ["resnet18", "test_resnet", "aubench_smoke_cnn", "test_efficientnet", "test_convnext", "test_byobnet"]


def rate(name: str, size: int, batch: int = 64, steps: int = 6) -> float:
    model = timm.create_model(name, pretrained=False, num_classes=12)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x = torch.randn(batch, 3, size, size)
    for i in range(steps + 2):
        if i == 2:
            t = time.perf_counter()
        loss = model(x).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t)


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)  # as each `aubench run --jobs` worker on 2 cores
    for size in (32, 48):
        base = rate("resnet18", size)
        for name in CANDIDATES:
            r = base if name == "resnet18" else rate(name, size)
            print(f"{size:3d}px  {name:18s} {r:8.0f} img/s  {r / base:5.1f}x resnet18")


if __name__ == "__main__":
    main()
