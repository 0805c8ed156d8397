"""The GPU path, where a CUDA device is visible (skipped elsewhere, CI included). The rest of the suite runs
with CUDA hidden (tests/conftest.py) so that its CPU expectations hold on a GPU machine too; these tests run
`aubench` in subprocesses that see the GPU: bf16 autocast, channels_last, pinned memory and inference-mode
evaluation on real cells, a transfer cell loading its source model onto the GPU, and bench_gpu.py's code."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gpu_env() -> dict[str, str]:
    if shutil.which("nvidia-smi") is None:
        pytest.skip("no NVIDIA GPU here (nvidia-smi not found)")
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "AUBENCH_PLUGINS")}
    visible = os.environ.get("AUBENCH_TEST_CUDA_VISIBLE_DEVICES", "all")
    if visible != "all":
        env["CUDA_VISIBLE_DEVICES"] = visible
    seen = subprocess.run([sys.executable, "-c", "import torch; assert torch.cuda.is_available()"], env=env)
    if seen.returncode:
        pytest.skip("torch sees no CUDA device")
    return env


def _run(env: dict[str, str], *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "aubench.cli", "run", *args, "--jobs", "1", "--no-progress"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _records(runs: Path, protocol: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(runs.glob(f"{protocol}@*/**/record.json"))]


def test_cells_train_and_evaluate_on_the_gpu(gpu_env, tmp_path):
    """MONET (its heads once failed under bf16 autocast on a GPU only) and VMNC on a SynthAU fold, then the
    transfer protocol that loads the fold model onto the GPU and evaluates it on the other dataset."""
    runs = tmp_path / "runs"
    _run(gpu_env, "monet", "--protocol", "monet-toy", "epochs=2", "--runs-dir", str(runs))
    _run(gpu_env, "vmnc-bce", "--protocol", "synth-bp4d-3fold", "--fold", "1", "epochs=1", "--runs-dir", str(runs))
    _run(gpu_env, "vmnc-bce", "--protocol", "synth-bp4d-folds-to-synth-disfa", "--fold", "1", "epochs=1",
         "--runs-dir", str(runs))
    for protocol in ("monet-toy", "synth-bp4d-3fold", "synth-bp4d-folds-to-synth-disfa"):
        (rec,) = _records(runs, protocol)
        assert rec["environment"]["device"] == "cuda" and rec["environment"]["gpu"], protocol
        assert 0 < rec["f1_avg"] <= 100, protocol
    (transfer,) = _records(runs, "synth-bp4d-folds-to-synth-disfa")
    assert transfer["timings"]["train_seconds"] == 0


def test_bench_gpu_runs_on_the_gpu(gpu_env):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--device", "cuda", "--tiny"],
                          env=gpu_env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "random weights" in done.stdout.lower()
