"""Learning-rate schedules per epoch or per step with warm-up, optimiser phases, and what the history logs."""
import math

import pytest
import torch
from conftest import FAST

from aubench.build import build_scheduler, end_epoch, step_optimizers
from aubench.cells import plan_cells
from aubench.engine import run_cell
from aubench.errors import ConfigError


def _opt(lr=1.0):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _run(opts, epochs, steps):
    seen = []
    for epoch in range(epochs):
        for _ in range(steps):
            seen.append(opts[0]["optimizer"].param_groups[0]["lr"])
            step_optimizers(opts, epoch)
        end_epoch(opts, epoch)
    return seen


def test_linear_warmup_then_cosine_per_step_reaches_its_end():
    opt = _opt()
    sched = build_scheduler(opt, {"name": "cosine", "interval": "step", "warmup_steps": 5, "epochs": 3}, 10)
    lrs = _run([{"optimizer": opt, "scheduler": sched}], epochs=3, steps=10)
    assert lrs[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert lrs[5] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 24 / 25)))
    assert all(a >= b for a, b in zip(lrs[5:], lrs[6:]))  # monotone after warm-up


def test_per_epoch_schedules_are_torch_schedulers_and_warmup_epochs_work_per_step():
    opt = _opt()
    assert isinstance(build_scheduler(opt, {"name": "cosine", "epochs": 4}), torch.optim.lr_scheduler.CosineAnnealingLR)
    opt = _opt()
    sched = build_scheduler(opt, {"name": "none", "interval": "step", "warmup_epochs": 1}, 4)
    assert _run([{"optimizer": opt, "scheduler": sched}], epochs=2, steps=4) == pytest.approx(
        [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0])
    with pytest.raises(ConfigError, match="warmup_steps needs sched.interval=step"):
        build_scheduler(_opt(), {"name": "cosine", "warmup_steps": 3, "epochs": 2})
    with pytest.raises(ConfigError, match="sched.interval='batch'"):
        build_scheduler(_opt(), {"name": "cosine", "interval": "batch", "epochs": 2})


def test_an_optimiser_phase_stops_at_its_end_epoch_and_every_rate_is_logged():
    a, b = _opt(1.0), _opt(0.5)
    opts = [{"optimizer": a, "scheduler": None}, {"optimizer": b, "scheduler": None, "start_epoch": 1, "end_epoch": 2}]
    moved = []
    for epoch in range(3):
        before = b.param_groups[0]["params"][0].detach().clone()
        b.param_groups[0]["params"][0].grad = torch.ones(1)
        a.param_groups[0]["params"][0].grad = torch.ones(1)
        step_optimizers(opts, epoch)
        moved.append(not torch.equal(before, b.param_groups[0]["params"][0].detach()))
        rates = end_epoch(opts, epoch)
    assert moved == [False, True, False] and rates == {"lr": 1.0, "lr/1": 0.5}


def test_a_cell_with_a_per_step_cosine_ends_at_zero_on_the_steps_the_loader_yields(registry, runs):
    (cell,) = plan_cells(registry, "vmnc-bce", "tiny-3fold", folds=["1"], runs_dir=runs,
                         overrides=[*FAST, "epochs=2", "sched.name=cosine", "+sched.interval=step", "+sched.warmup_steps=1"])
    rec = run_cell(cell, registry, progress=False)
    assert 0 < rec.history[0]["lr"] < cell.config.optim.lr
    assert rec.history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # the cosine ends exactly on the last real step
