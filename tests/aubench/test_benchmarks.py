"""The benchmarks that must be ready before the machine they are for: `bench_gpu.py` runs its whole
code path on CPU (`--device cpu --tiny`), the calibration loop gives a positive rate, the robustness
report pairs the two thread settings cell by cell, and the channels_last comparison trains each smoke model
in both memory formats."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def benchmarks(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    yield
    for name in ("bench_gpu", "bench_calibration", "bench_robustness", "bench_channels_last"):
        sys.modules.pop(name, None)


def test_bench_gpu_runs_its_code_path_on_cpu(benchmarks, capsys, monkeypatch):
    import bench_gpu

    monkeypatch.setattr(bench_gpu, "BP4D_TRAIN_FRAMES", 1000)
    assert bench_gpu.main(["--device", "cpu", "--tiny"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "img/s" not in line]
    assert [r.split(" | ")[0][2:] for r in rows] == [label for label, _, _ in bench_gpu.RECIPES]
    assert "random weights" in out and "73 min" in out
    monkeypatch.setattr(bench_gpu.torch.cuda, "is_available", lambda: False)
    assert bench_gpu.main(["--device", "cuda"]) == 2  # "no CUDA device here", not a traceback


def test_calibration_is_a_positive_rate(benchmarks):
    import bench_calibration

    assert bench_calibration.calibrate(steps=2, repeats=1) > 0


def test_robustness_report_pairs_the_thread_settings_by_cell(benchmarks):
    from types import SimpleNamespace as R

    import bench_robustness

    def rec(seed, f1, fold=1):
        return R(method="m", protocol_id="p@v1", fold=fold, seed=seed, f1_avg=f1)

    both = {"threads=1": [rec(0, 50.0), rec(1, 40.0), rec(2, 30.0)],
            "threads=2": [rec(0, 50.0), rec(1, 44.0), rec(0, 10.0, fold=2)]}  # only seeds 0-1 of fold 1 pair up
    line = bench_robustness.thread_effect(both)
    assert "2 cells measured in both: 1 changed" in line
    assert "median |ΔF1| 2.0, largest 4.0 (m, p@v1 fold 1 seed 1)" in line
    assert bench_robustness.thread_effect({"threads=1": [rec(0, 50.0)]}) is None


def test_channels_last_comparison_steps_each_smoke_model_in_both_formats(benchmarks, capsys):
    import bench_channels_last

    assert bench_channels_last.main(["--rounds", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "ms/step" not in line]
    assert len(rows) == 3
    assert all(float(row.split("|")[-2]) > 0 for row in rows)
