"""The benchmarks that must be ready before the machine they are for: `bench_gpu.py` runs its whole
code path on CPU (`--device cpu --tiny`), and the calibration loop gives a positive rate."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def benchmarks(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    yield
    for name in ("bench_gpu", "bench_calibration"):
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
