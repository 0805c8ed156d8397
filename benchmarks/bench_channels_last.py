"""channels_last against the default (contiguous) memory format on the CPU, for the `smoke` recipes' models:
one training step (forward, backward, AdamW) at their batch and input size, on one thread (what each
`aubench run` worker gets on 2 cores). The two variants alternate in rounds, so that the machine's drift
hits both; prints the median step time of each and the median of the per-round ratios.

    python benchmarks/bench_channels_last.py [--rounds 15]

Why the smoke recipes set ``engine.channels_last: true``: the ratio is below 1 for each model here
(benchmarks/README.md gives the measured figures). It is a memory-format choice, so it changes the
floating-point order (the cells' F1 move like another seed's) but not the method.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from aubench import BP4D_AUS


def smoke_cnn(strides: tuple[int, ...] | None) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    from aubench.backbones import SmokeCNN

    n_au = len(BP4D_AUS)
    if strides:  # the 4 x 4 map kept whole (the guided transformer reads it as tokens)
        model = torch.nn.Sequential(SmokeCNN(strides=strides).features, torch.nn.Flatten(),
                                    torch.nn.Linear(128 * 16, n_au))
    else:  # SmokeCNN pools globally
        model = torch.nn.Sequential(SmokeCNN(), torch.nn.Linear(128, n_au))
    return model, {"x": torch.randn(64, 3, 32, 32)}


def fantrans_head() -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    from aubench_fantrans.model import FANTrans

    model = FANTrans(BP4D_AUS, None, backbone={"kind": "timm", "name": "resnet18", "pretrained": False,
                                                "allow_random": True, "init_seed": 0},
                     input_size=64, conv_dim=64, depth=2)
    return model, {"features": torch.randn(64, 64, 16, 16)}


def stepper(build: Callable[[], tuple[torch.nn.Module, dict[str, torch.Tensor]]], channels_last: bool) -> Callable:
    torch.manual_seed(0)
    model, inputs = build()
    model.train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        inputs = {k: v.contiguous(memory_format=torch.channels_last) for k, v in inputs.items()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)

    def step() -> None:
        out = model(inputs) if "features" in inputs else model(inputs["x"])
        loss = sum(v.sum() for v in out.values() if torch.is_tensor(v)) if isinstance(out, dict) else out.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def compare(build: Callable, rounds: int, steps: int = 5) -> tuple[float, float, float]:
    variants = {cl: stepper(build, cl) for cl in (False, True)}
    for step in variants.values():
        for _ in range(3):
            step()
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for cl, step in variants.items():
            t = time.perf_counter()
            for _ in range(steps):
                step()
            times[cl].append((time.perf_counter() - t) / steps * 1e3)
    ratio = statistics.median(b / a for a, b in zip(times[False], times[True]))
    return statistics.median(times[False]), statistics.median(times[True]), ratio


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    models = {
        "SmokeCNN 32 px (VMNC, label smoothing, MONET's encoder, CAFE's mask network)": lambda: smoke_cnn(None),
        "SmokeCNN 32 px, last stage at stride 1 (mtts-fp's encoder)": lambda: smoke_cnn((2, 2, 2, 1)),
        "FAN-Trans smoke head on 64 x 16 x 16 features": fantrans_head,
    }
    print("| model (batch 64, one thread) | contiguous ms/step | channels_last ms/step | ratio |")
    print("|---|---|---|---|")
    for name, build in models.items():
        a, b, ratio = compare(build, args.rounds)
        print(f"| {name} | {a:.1f} | {b:.1f} | {ratio:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
