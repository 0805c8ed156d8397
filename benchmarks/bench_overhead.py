"""Harness overhead: the engine's training loop (`aubench.engine.fit`) against a bare PyTorch loop
written here, on the same model, data, augmentation, optimiser and schedule (vmnc-bce `smoke`, first
fold of synth-bp4d-3fold, 2 epochs). The two alternate, `--repeats` times each; the medians' ratio is
printed (goal <= 1.03). Evaluation likewise: `aubench.engine.predict` against a bare
`inference_mode` loop over the test frames. Also prints the calibration figure
(`bench_calibration.py`), so the numbers can be set beside another machine's.

    python benchmarks/bench_overhead.py [--repeats 3] [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def build(runs: Path, epochs: int):
    """The cell's pieces, as `aubench.engine.run_cell` builds them."""
    from aubench.build import build_model, model_inputs
    from aubench.cells import plan_cells
    from aubench.engine import Runtime, _train_stats
    from aubench.registry import get_registry
    from aubench.split import frame_sets, split_cell

    reg = get_registry()
    cell = plan_cells(reg, "vmnc-bce", "synth-bp4d-3fold", folds=["1"], runs_dir=runs,
                      overrides=[f"epochs={epochs}"])[0]
    cell.run_dir.mkdir(parents=True, exist_ok=True)
    rt = Runtime.for_cell(cell)
    data = split_cell(cell, reg, False)
    sets = frame_sets(data, model_inputs(cell.config, reg), cell)
    stats = _train_stats(cell, sets, data.train_aus)

    def model():
        torch.manual_seed(0)
        m = build_model(cell.config, reg, data.train_aus, stats, {"seed": 0, "fold": cell.fold.name,
                        "run_dir": cell.run_dir, "train_data": data.train_ds, "train_subjects": data.train_subjects})
        rt.place(m)
        return m
    return reg, cell, rt, sets, stats, model


def bare_fit(model, cell, sets, rt) -> int:
    """The same work without the harness: loader, device-side augmentation, BCE, AdamW + cosine."""
    import torch.nn.functional as F

    from aubench.data.device import to_device
    from aubench.data.loader import make_loader

    cfg = cell.config
    opt = torch.optim.AdamW(model.parameters(), lr=float(cfg.optim.lr), weight_decay=float(cfg.optim.weight_decay))
    steps = len(make_loader(sets.train, int(cfg.batch_size), shuffle=True, drop_last=True))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps * int(cfg.epochs))
    n = 0
    for epoch in range(int(cfg.epochs)):
        model.train()
        gen = torch.Generator().manual_seed(epoch)
        for batch in make_loader(sets.train, int(cfg.batch_size), shuffle=True, seed=epoch, drop_last=True):
            b = to_device(batch, rt.device, rt.channels_last, cfg, gen)
            logits = model(b)["logits"]
            m = b["mask"].float()
            loss = (F.binary_cross_entropy_with_logits(logits, b["labels"], reduction="none") * m).sum() / m.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            n += len(b["labels"])
    return n


def bare_predict(model, sets, rt, cfg) -> int:
    from aubench.data.device import to_device
    from aubench.data.loader import make_loader

    model.eval()
    n = 0
    with torch.inference_mode():
        for batch in make_loader(sets.test, int(cfg.engine.eval_batch_size), shuffle=False):
            torch.sigmoid(model(to_device(batch, rt.device, rt.channels_last, cfg, None))["logits"])
            n += len(batch["labels"])
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from bench_calibration import calibrate

    from aubench.engine import fit, predict

    with tempfile.TemporaryDirectory() as tmp:
        reg, cell, rt, sets, stats, model = build(Path(tmp), args.epochs)
        n_train = len(sets.train) // int(cell.config.batch_size) * int(cell.config.batch_size) * args.epochs
        times: dict[str, list[float]] = {"engine": [], "bare": [], "engine eval": [], "bare eval": []}
        for _ in range(args.repeats):
            for kind in ("engine", "bare"):
                m = model()
                t = time.perf_counter()
                if kind == "engine":
                    fit(cell, reg, m, sets, stats, rt, resume=False, progress=False)
                else:
                    bare_fit(m, cell, sets, rt)
                times[kind].append(time.perf_counter() - t)
                t = time.perf_counter()
                if kind == "engine":
                    predict(m, sets.test, rt, cell.config)
                else:
                    bare_predict(m, sets, rt, cell.config)
                times[f"{kind} eval"].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"calibration: {calibrate():.0f} images/s (bench_calibration.py)")
    print(f"torch threads: {torch.get_num_threads()}; {args.repeats} alternating repeats, medians")
    print(f"training:   engine {n_train / med['engine']:7.0f} img/s   bare {n_train / med['bare']:7.0f} img/s   "
          f"ratio {med['engine'] / med['bare']:.3f} (goal <= 1.03)")
    n_test = len(sets.test.rows)
    print(f"evaluation: engine {n_test / med['engine eval']:7.0f} img/s   bare {n_test / med['bare eval']:7.0f} img/s   "
          f"ratio {med['engine eval'] / med['bare eval']:.3f}")


if __name__ == "__main__":
    main()
