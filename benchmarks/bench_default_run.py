"""Wall time of the default run (`aubench run --all` on SynthAU, datasets generated from scratch in an
empty AUBENCH_HOME) in a fresh runs folder, with each method's share of the cells' time taken from the
result records, and the calibration figure (`bench_calibration.py`) read before and after the run, to set
it beside another machine's (the two readings differ when the machine's speed drifted meanwhile).

    python benchmarks/bench_default_run.py [--jobs N] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bench_calibration import calibrate

from aubench.results import cpu_name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=0, help="aubench run --jobs (0: one per core)")
    ap.add_argument("--keep", type=Path, help="runs folder to keep (default: a temporary one)")
    ap.add_argument("extra", nargs="*", help="more `aubench run` arguments (e.g. seed=1 engine.threads=2)")
    args = ap.parse_args()
    cal = calibrate()
    with tempfile.TemporaryDirectory() as tmp:
        runs = args.keep or Path(tmp) / "runs"
        env = {**os.environ, "AUBENCH_HOME": str(Path(tmp) / "home")}
        env.pop("AUBENCH_JOBS", None)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "aubench.cli", "run", "--all", "--runs-dir", str(runs), "--no-progress",
                        "--jobs", str(args.jobs), *args.extra], check=True, env=env)
        wall = time.perf_counter() - t
        cal_after = calibrate()  # the machine's speed drifts: read it on both sides of the run
        per: dict[str, float] = defaultdict(float)
        cells: dict[str, int] = defaultdict(int)
        parts: dict[str, float] = defaultdict(float)
        for path in Path(runs).rglob("record.json"):
            rec = json.loads(path.read_text())
            per[rec["method"]] += rec["timings"]["total_seconds"]
            cells[rec["method"]] += 1
            for part in ("train_seconds", "eval_seconds"):
                parts[part] += rec["timings"][part]
    total = sum(per.values())
    print(f"\n{'method':16s} {'cells':>5s} {'cell-seconds':>12s} {'share':>6s}")
    for method, seconds in sorted(per.items(), key=lambda kv: -kv[1]):
        print(f"{method:16s} {cells[method]:5d} {seconds:12.1f} {seconds / total:6.1%}")
    train, evaluation = parts["train_seconds"], parts["eval_seconds"]
    print(f"of the cell-seconds: training {train / total:.1%}, evaluation {evaluation / total:.1%}, the rest "
          f"{(total - train - evaluation) / total:.1%} (generating SynthAU, feature stores, waiting on their locks, "
          "building models)")
    print(f"default run: {wall:.0f} s wall ({wall / 60:.1f} min; goal 4 min on the machine that set it), "
          f"calibration {cal:.0f} images/s before, {cal_after:.0f} after, cpu {cpu_name()}")


if __name__ == "__main__":
    main()
