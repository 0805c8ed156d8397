"""Do the default recipes hold on any seed and any CPU? Every default method on every default protocol,
over N seeds and two thread settings (``engine.threads=1``, what each `aubench run` worker gets on 2
cores, and ``engine.threads=2``, which changes the floating-point reduction order the way another CPU
does), then per method and protocol: min, median and
max AU-average F1 over the cells, the all-positive floor, the spread over seeds of the protocol average,
and pass/fail against the rule:

* every cell (each fold, seed and thread setting) beats the all-positive floor by at least 5 points
  (the table also gives the *worst seed margin*: the lowest fold-averaged F1 of one seed, what a
  leaderboard row shows, minus its folds' floor);
* the standard deviation over seeds of the fold-averaged F1 is at most 3 points within a dataset and at
  most 5 across datasets, for each thread setting.

    python benchmarks/bench_robustness.py --seeds 5 --runs-dir runs-robustness
    python benchmarks/bench_robustness.py --methods monet --protocols synth-bp4d-3fold --seeds 3

Cells run in parallel worker processes and are resumable: rerun the same command to finish an
interrupted measurement (the two thread settings live in two runs folders, since ``engine.threads`` is
result-neutral by design and would otherwise share a cell folder). Prints one Markdown table, then
what the second thread setting changed, cell by cell (median and largest |ΔF1|).
"""
from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

from aubench.cells import plan_cells, run_cells
from aubench.metrics import all_positive_f1, mean_std
from aubench.records import load_records
from aubench.registry import get_registry

#: thread settings -> (overrides, cores per cell). `aubench run` gives each worker cores/jobs threads, i.e.
#: one thread on 2 cores; two threads per cell reorders the floating-point reductions like another CPU.
SETTINGS = {"threads=1": (["engine.threads=1"], 1), "threads=2": (["engine.threads=2"], 2)}


def floor(records: list) -> float:
    """The all-positive predictor's AU-average F1 on the same test frames (mean over the cells)."""
    return statistics.mean(statistics.mean(all_positive_f1(r.per_au[str(a)]["positive_rate"]) for a in r.aus)
                           for r in records)


def thread_effect(records: dict[str, list]) -> str | None:
    """What the second reduction order changes: over the cells measured in both settings (same method,
    protocol, fold and seed), the median and largest |ΔF1| and the cell of the largest."""
    def key(r):
        return r.method, r.protocol_id, str(r.fold), r.seed

    one, two = ({key(r): r.f1_avg for r in records.get(s, [])} for s in SETTINGS)
    diffs = sorted((abs(one[k] - two[k]), k) for k in one.keys() & two.keys())
    if not diffs:
        return None
    big, (m, p, fold, seed) = diffs[-1]
    changed = sum(d > 0 for d, _ in diffs)
    return (f"threads=1 vs threads=2, {len(diffs)} cells measured in both: {changed} changed, median |ΔF1| "
            f"{statistics.median(d for d, _ in diffs):.1f}, largest {big:.1f} ({m}, {p} fold {fold} seed {seed})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="cores to fill (jobs = cores / threads)")
    parser.add_argument("--methods", nargs="*", default=None, help="default: every default method")
    parser.add_argument("--protocols", nargs="*", default=None, help="default: every default protocol")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs-robustness"))
    parser.add_argument("--overrides", nargs="*", default=[], help="extra overrides for every cell (e.g. epochs=1)")
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS),
                        help="thread settings to run (default: both)")
    parser.add_argument("--report", action="store_true", help="run nothing: print the table of the records there")
    args = parser.parse_args(argv)
    reg = get_registry()
    methods = args.methods or [m.name for m in reg.specs["method"].values() if m.default]
    protocols = [reg.get("protocol", p) for p in args.protocols] if args.protocols else [
        p for p in reg.specs["protocol"].values() if p.default]
    outcomes = []
    for setting in [] if args.report else args.settings:
        extra, threads = SETTINGS[setting]
        cells = [c for m in methods for p in protocols
                 for c in plan_cells(reg, m, p.id, seeds=list(range(args.seeds)), overrides=[*args.overrides, *extra],
                                     runs_dir=args.runs_dir / setting)]
        print(f"{setting}: {len(cells)} cells ({len(methods)} methods x {len(protocols)} protocols x folds x "
              f"{args.seeds} seeds) in {args.runs_dir / setting}", flush=True)
        outcomes += run_cells(cells, reg, progress=False, jobs=max(1, args.cores // threads), echo=lambda m: None)
    failed = [o for o in outcomes if o.status == "failed"]
    print("| method | protocol | cells (threads=1 / 2) | min | median | max | floor | min margin | worst seed margin "
          "| seed std (threads=1 / 2) | limit | pass |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    verdict = True
    by_setting: dict[str, list] = {s: [] for s in SETTINGS}
    for m in methods:
        for p in protocols:
            recs = {s: [r for r in load_records(args.runs_dir / s / p.id / m)] if (args.runs_dir / s / p.id / m).is_dir()
                    else [] for s in SETTINGS}
            for s, rs in recs.items():
                by_setting[s] += rs
            everything = [r for rs in recs.values() for r in rs]
            if not everything:
                continue
            f1s = sorted(r.f1_avg for r in everything)
            low = floor(everything)
            stds, seed_margins = [], []
            for rs in recs.values():
                seeds = [[r for r in rs if r.seed == s] for s in sorted({r.seed for r in rs})]
                per_seed = [mean_std([r.f1_avg for r in cells])[0] for cells in seeds]
                stds.append(mean_std(per_seed)[1] if len(per_seed) > 1 else float("nan"))
                # what a leaderboard row shows: the fold-averaged F1 of one seed, against its folds' floor
                seed_margins += [f1 - floor(cells) for f1, cells in zip(per_seed, seeds)]
            limit = 5.0 if p.cross_dataset else 3.0
            margin = min(r.f1_avg - floor([r]) for r in everything)  # each cell against its own test frames' floor
            ok = margin >= 5 and all(s <= limit for s in stds if s == s)
            verdict &= ok
            counts = " / ".join(str(len(rs)) for rs in recs.values())
            print(f"| {m} | {p.id} | {counts} "
                  f"| {f1s[0]:.1f} | {statistics.median(f1s):.1f} | {f1s[-1]:.1f} | {low:.1f} | {margin:.1f} | "
                  f"{min(seed_margins):.1f} | "
                  f"{' / '.join(f'{s:.1f}' for s in stds)} | {limit:.0f} | {'pass' if ok else 'FAIL'} |")
    if (effect := thread_effect(by_setting)) is not None:
        print(f"\n{effect}")
    if failed:
        print(f"\n{len(failed)} cell(s) failed: {', '.join(o.cell.label for o in failed[:5])}")
    return 0 if verdict and not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
