"""The calibration figure: images/s of one fixed, bare training loop (a small CNN defined here, never
changed, 32 x 32 inputs, batch 64, AdamW, single thread). A default run's wall time on two machines
is comparable through the ratio of their calibration figures; `bench_default_run.py` and
`bench_overhead.py` print it beside their numbers.

    python benchmarks/bench_calibration.py
"""
from __future__ import annotations

import statistics
import time

import torch
from torch import nn


def _net() -> nn.Module:
    layers: list[nn.Module] = []
    c = 3
    for i, w in enumerate((16, 32, 64, 128)):
        layers += [nn.Conv2d(c, w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
        if i:
            layers += [nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
        c = w
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 12))


def calibrate(steps: int = 30, repeats: int = 3) -> float:
    """Median over ``repeats`` of the images/s of ``steps`` training steps (after 3 warm-up steps),
    on one thread (the thread count is restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(64, 3, 32, 32, generator=gen)
        y = (torch.rand(64, 12, generator=gen) < 0.3).float()
        rates = []
        for _ in range(repeats):
            torch.manual_seed(0)
            net = _net()
            opt = torch.optim.AdamW(net.parameters(), 1e-3)
            for i in range(steps + 3):
                if i == 3:
                    t = time.perf_counter()
                loss = nn.functional.binary_cross_entropy_with_logits(net(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            rates.append(steps * 64 / (time.perf_counter() - t))
        return statistics.median(rates)
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    from aubench.results import cpu_name

    print(f"calibration: {calibrate():.0f} images/s (fixed bare loop, 1 thread, 32 px, batch 64) on {cpu_name()}")
