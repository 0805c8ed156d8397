"""Faults: processes killed at any moment, two processes on one runs folder, a full disk, pool workers whose
parent dies. Real processes, real signals."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

RUN = ["run", "monet-vmns", "--protocol", "monet-toy", "--no-progress", "epochs=40"]


def _env(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, AUBENCH_HOME=str(tmp_path / "home"))


def _aubench(args, env, **kw):
    return subprocess.Popen([sys.executable, "-m", "aubench.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def _results(runs: Path) -> dict[str, tuple]:
    out = {}
    for rec in sorted(runs.rglob("record.json")):
        data = json.loads(rec.read_text())
        pred = np.load(rec.parent / "predictions.npz")
        out[str(rec.relative_to(runs))] = (data["per_au"], data["f1_avg"], pred["probs"].tobytes())
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run (and the generated toy dataset, shared by the other runs)."""
    tmp = tmp_path_factory.mktemp("ref")
    t0 = time.monotonic()
    proc = _aubench([*RUN, "--runs-dir", str(tmp / "runs")], _env(tmp))
    assert proc.wait(timeout=300) == 0, proc.stdout.read()
    return tmp, _results(tmp / "runs"), time.monotonic() - t0


def test_sigkill_at_random_moments_then_rerun_gives_the_uninterrupted_result(reference, tmp_path):
    home, expected, seconds = reference
    env, runs = _env(home), tmp_path / "runs"
    rng = random.Random(7)
    kills = 0
    for _ in range(5):
        proc = _aubench([*RUN, "--runs-dir", str(runs)], env)
        # startup, training, evaluation, writing: wherever it is. Relative to the uninterrupted run's time
        # (5 s on a fast machine, 20 s on a slow one), so that each attempt, which resumes with less left
        # to do, is still cut short on any machine
        time.sleep(rng.uniform(0.3, 0.6) * seconds)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        for rec in runs.rglob("record.json"):  # a record, when present, is whole and valid
            json.loads(rec.read_text())
    proc = _aubench([*RUN, "--runs-dir", str(runs)], env)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert kills >= 2
    assert _results(runs) == expected
    # what a kill can leave behind is only ever a temporary name no reader opens as a result
    finished = {"record.json", "predictions.npz", "model.safetensors", ".lock", "LEADERBOARD.md"}
    leftovers = {p.name for p in runs.rglob("*") if p.is_file() and p.suffix != ".png"} - finished  # png: plots
    assert all(name.startswith(".") or name == "checkpoint.tmp" for name in leftovers), leftovers


def test_two_processes_on_one_runs_folder_share_the_cells_without_corrupting_them(reference, tmp_path):
    home, _, _ = reference
    env, runs = _env(home), tmp_path / "runs"
    args = [*RUN, "--seeds", "3", "--runs-dir", str(runs)]
    first, second = _aubench(args, env), _aubench(args, env)
    outs = [p.communicate(timeout=300)[0] for p in (first, second)]
    assert first.returncode == second.returncode == 0, outs
    done = sum(line.startswith("done") for out in outs for line in out.splitlines())
    others = sum(line.startswith(("busy", "skip")) for out in outs for line in out.splitlines())
    assert done == 3 and others == 3, outs  # each cell trained once; the other process skipped it or found it busy
    assert len(_results(runs)) == 3


def test_a_full_disk_keeps_the_previous_result_and_says_so(reference, tmp_path):
    home, expected, _ = reference
    env, runs = _env(home), tmp_path / "runs"
    proc = _aubench([*RUN, "--runs-dir", str(runs)], env)
    assert proc.wait(timeout=300) == 0
    before = {p: p.read_bytes() for p in runs.rglob("*") if p.is_file() and p.suffix in (".json", ".npz")}
    limit = ("import resource, signal, runpy, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
             "resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000)); sys.argv = ['aubench', *sys.argv[1:]]; "
             "runpy.run_module('aubench.cli', run_name='__main__')")
    full = subprocess.run([sys.executable, "-c", limit, *RUN, "--runs-dir", str(runs), "--overwrite"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert full.returncode != 0
    assert "File too large" in full.stdout + full.stderr and "Traceback" not in full.stderr
    after = {p: p.read_bytes() for p in before}
    assert after == before and _results(runs) == expected  # the finished result is still there, readable


def test_preparation_workers_exit_when_the_preparing_process_is_killed(tmp_path):
    script = f"""
import sys, time
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from fixtures.raw_trees import write_bp4d_tree
from aubench_realdata.plugin import prepare_bp4d

def slow(img):
    time.sleep(0.5)
    return None

write_bp4d_tree({str(tmp_path / 'raw')!r}, subjects=4, frames_per_video=20, awkward=False)
print("ready", flush=True)
prepare_bp4d({str(tmp_path / 'out')!r}, {str(tmp_path / 'raw')!r}, detector=slow, image_size=16, workers=2,
             progress=False)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    children: set[int] = set()
    for _ in range(100):
        time.sleep(0.1)
        children = {int(c) for t in Path(f"/proc/{proc.pid}/task").iterdir()
                    for c in (t / "children").read_text().split()}
        if len(children) >= 2:
            break
    assert len(children) >= 2, "the pool did not start"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.time() + 10
    while time.time() < deadline and any(Path(f"/proc/{c}").exists() and "Z" not in _state(c) for c in children):
        time.sleep(0.1)
    assert not [c for c in children if Path(f"/proc/{c}").exists() and "Z" not in _state(c)], "orphaned workers"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return "Z"
