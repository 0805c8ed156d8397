"""The GPU path measured: bf16 autocast, channels_last, pinned memory, non-blocking copies and
inference-mode evaluation, on BP4D-shaped data, for the `paper` presets of FAN-Trans (frozen FAN
features cached and not), VMNC and MONET.

It writes a SynthAU BP4D raw tree in the official layout at 256 px (the writer the real-data tests
use), prepares it through the real BP4D preparation (flat-background detector: no weights needed),
then times steady-state training steps and evaluation of each recipe through the engine's own step
function, and extrapolates the time of one BP4D fold (~98k training frames x the recipe's epochs,
plus its test frames) to set beside the FAN-Trans paper's 73 minutes per fold. Weights are random
(timing does not need trained ones); the output says so.

    python benchmarks/bench_gpu.py                        # on a CUDA machine: one table, < 8 min on an H100
    python benchmarks/bench_gpu.py --device cpu --tiny    # the same code on CPU in seconds (the tests run it)
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
BP4D_TRAIN_FRAMES = 98_000  # ~2/3 of BP4D's ~146k labelled frames (a JAA-Net fold's training part)
BP4D_TEST_FRAMES = 48_000
PAPER_MINUTES = {"fantrans": 73}  # FAN-Trans supplementary: training time per fold

#: (label, method, overrides) — `paper` presets with random weights
RECIPES = [
    ("fantrans (features cached)", "fantrans", ["model.backbone.allow_random=true", "engine.cache_features=true"]),
    ("fantrans (FAN every step)", "fantrans", ["model.backbone.allow_random=true", "engine.cache_features=false"]),
    ("vmnc-bce", "vmnc-bce", ["model.pretrained=false"]),
    ("vmnc-bce (float32: no autocast)", "vmnc-bce", ["model.pretrained=false", "engine.amp=false"]),
    ("monet", "monet", ["model.pretrained=false"]),
]


def prepare(tmp: Path, tiny: bool) -> Path:
    """A BP4D-layout raw tree of SynthAU, prepared like a licensed copy; returns the prepared folder."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fixtures.raw_trees import write_bp4d_tree

    from aubench_realdata.plugin import prepare_bp4d
    from aubench_realdata.prepare import box_from_background

    size = 48 if tiny else 256
    raw = tmp / "raw"
    write_bp4d_tree(raw, subjects=4, frames_per_video=2 if tiny else 24, image_size=size, awkward=False)
    return prepare_bp4d(tmp / "data" / "bp4d", raw, detector=box_from_background, image_size=size, progress=False)


def protocol_plugin() -> Any:
    from aubench import BP4D_AUS, Fold, ProtocolSpec, hookimpl

    class Bench:
        @hookimpl
        def aubench_register_protocols(self):
            return [ProtocolSpec(name="bp4d-gpu-bench", version="v1", train_dataset="bp4d", test_dataset="bp4d",
                                 folds=(Fold("1", ("F001",)),), eval_aus=BP4D_AUS,
                                 description="bench_gpu.py: one subject held out of the prepared SynthAU tree")]
    return Bench()


def measure(reg: Any, method: str, overrides: list[str], device: str, tiny: bool, runs: Path) -> dict[str, Any]:
    """Steady-state training images/s (after warm-up steps), the share of each step spent waiting for
    the loader, peak GPU memory, GPU utilisation when NVML is there, and evaluation images/s."""
    from aubench.build import build_losses, build_model, build_optimizers, model_inputs
    from aubench.cells import plan_cells
    from aubench.data.device import to_device
    from aubench.data.loader import make_loader
    from aubench.engine import Runtime, _step, _train_stats, predict
    from aubench.features import cache_features
    from aubench.split import frame_sets, split_cell

    extra = ["preset=paper", f"engine.device={device}", "engine.num_workers=0" if tiny else "engine.num_workers=4"]
    if tiny:
        extra += ["input.size=128", "batch_size=4"] + (["model.input_size=128"] if method == "fantrans" else [])
    cell = plan_cells(reg, method, "bp4d-gpu-bench", overrides=[*overrides, *extra], runs_dir=runs)[0]
    cell.run_dir.mkdir(parents=True, exist_ok=True)
    rt = Runtime.for_cell(cell)
    data = split_cell(cell, reg, False)
    sets = frame_sets(data, model_inputs(cell.config, reg), cell)
    stats = _train_stats(cell, sets, data.train_aus)
    model = build_model(cell.config, reg, data.train_aus, stats, {
        "seed": 0, "fold": "1", "run_dir": cell.run_dir, "train_data": data.train_ds, "train_subjects": data.train_subjects})
    rt.place(model)
    cache_features(model, sets, rt, cell.config)
    cfg, losses = cell.config, build_losses(cell.config, reg)
    bs = int(cfg.batch_size)
    loader = make_loader(sets.train, bs, shuffle=True, num_workers=int(cfg.engine.num_workers), pin_memory=rt.on_cuda,
                         drop_last=True)
    opts = build_optimizers(model, cfg, len(loader), int(cfg.epochs))
    sync = torch.cuda.synchronize if rt.on_cuda else (lambda: None)
    if rt.on_cuda:
        torch.cuda.reset_peak_memory_stats()
    warm, steps = (1, 3) if tiny else (5, 40)
    gen = torch.Generator().manual_seed(0)
    waits, totals, utils, n = [], [], [], 0
    model.train()
    while n < warm + steps:
        it = iter(loader)
        while n < warm + steps:
            t0 = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                break
            t1 = time.perf_counter()
            b = to_device(batch, rt.device, rt.channels_last, cfg, gen)
            if "train" in sets.caches:
                b["features"] = sets.caches["train"].take(batch["pos"], rt.device)
            _step(model, losses, b, stats, rt, opts, 0, n, None)
            sync()
            if n >= warm:
                waits.append(t1 - t0)
                totals.append(time.perf_counter() - t0)
                if rt.on_cuda:
                    try:
                        utils.append(torch.cuda.utilization())
                    except Exception:  # no NVML (pynvml) on this machine
                        pass
            n += 1
    t = time.perf_counter()
    predict(model, sets.test, rt, cfg, sets.caches.get("test"))
    sync()
    eval_rate = len(sets.test.rows) / (time.perf_counter() - t)
    train_rate = bs * len(totals) / sum(totals)
    fold_min = (BP4D_TRAIN_FRAMES * int(cfg.epochs) / train_rate + BP4D_TEST_FRAMES / eval_rate) / 60
    return {"train": train_rate, "eval": eval_rate, "wait": sum(waits) / sum(totals),
            "mem": torch.cuda.max_memory_allocated() / 2**30 if rt.on_cuda else float("nan"),
            "util": statistics.mean(utils) if utils else float("nan"), "epochs": int(cfg.epochs), "batch": bs,
            "fold_min": fold_min, "amp": rt.amp, "channels_last": rt.channels_last}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    ap.add_argument("--tiny", action="store_true", help="48 px frames, a few steps: checks the code path, times nothing")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_gpu.py: no CUDA device here; run it on a GPU machine, or pass --device cpu --tiny", file=sys.stderr)
        return 2
    import os

    from aubench.registry import Registry

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["AUBENCH_DATA"] = str(Path(tmp) / "data")
        t = time.perf_counter()
        prepare(Path(tmp), args.tiny)
        prep = time.perf_counter() - t
        reg = Registry(extra_plugins=[("gpu-bench", protocol_plugin())])
        card = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
        print(f"\n{card}; torch {torch.__version__}; random weights (timing only); raw tree prepared in {prep:.0f} s")
        print("| recipe (paper preset) | batch | train img/s | eval img/s | loader wait | peak GiB | GPU util % "
              "| epochs | min per BP4D fold | paper |")
        print("|---|---|---|---|---|---|---|---|---|---|", flush=True)
        modes = set()
        for label, method, ov in RECIPES:  # each row as soon as it is measured: a cut-short run keeps its rows
            r = measure(reg, method, ov, args.device, args.tiny, Path(tmp) / "runs")
            paper = PAPER_MINUTES.get(label.split()[0])
            print(f"| {label} | {r['batch']} | {r['train']:.0f} | {r['eval']:.0f} | {r['wait']:.0%} | {r['mem']:.1f} | "
                  f"{r['util']:.0f} | {r['epochs']} | {r['fold_min']:.0f} | {f'{paper} min' if paper else ''} |", flush=True)
            modes.add(f"{r['amp']}/{r['channels_last']}")
    print("bf16 autocast and channels_last: " + ", ".join(sorted(modes)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
