"""Print FAN-Trans' size the way the supplementary (§3) reports it, at 256 × 256 and 12 AUs.

    aubench fantrans-size [--conv-dim 192] [--variant fan4-cut2]

Counted on a randomly initialised model: parameter counts and compute do not depend on the weights.
"""
from __future__ import annotations

import argparse

SUPPLEMENTARY = {"frozen_params_used": "~12.15 M", "learnable_params": "~4.5 M", "inference_head_params": "~2.8 M",
                 "backbone_gmacs": "13.97 G flops", "head_gmacs": "3.03 G flops"}


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``aubench fantrans-size``."""
    p.add_argument("--conv-dim", type=int, default=192, help="width of the convolution module (default 192)")
    p.add_argument("--variant", default="fan4-cut2", choices=["fan4-cut2", "fan2"], help="the frozen FAN")
    return p


def run_command(args: argparse.Namespace) -> int:
    """Print every figure of the supplementary's §3 beside ours."""
    import torch

    from aubench_fantrans.model import FANTrans, complexity

    torch.manual_seed(0)
    model = FANTrans(tuple(range(1, 13)), None, conv_dim=args.conv_dim,
                     backbone={"kind": "fan", "variant": args.variant, "allow_random": True})
    for key, value in complexity(model).items():
        shown = f"{value / 1e6:.3f} M" if "params" in key else f"{value:.2f} GMAC"
        print(f"{key:24s} {shown:>14s}   supplementary: {SUPPLEMENTARY.get(key, '-')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m aubench_fantrans.report", description=__doc__.splitlines()[0])
    return run_command(add_arguments(p).parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
