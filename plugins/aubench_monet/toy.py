"""MONET's toy dataset (thesis §2.5.1) and the reproduction of its Tables 2.1 and 2.2 through the harness.

**The dataset.** X ~ U([-1, 1]²) and T binary tasks on X⁽¹⁾. Eq. (2.37) is garbled in our copy
(read literally, with b_i^t = −1 + (i − 1)/2^t, task 1 would be positive on two separate intervals);
the prose and Fig. 2.6 define it unambiguously and we follow them: task 1 is positive left of x = 0,
and task t splits each of the 2^(t−1) zones of task t − 1 in half, positive on the left half. With
z = (x + 1)/2 ∈ [0, 1], task t is positive iff the t-th binary digit of z is 0. Task t has 2^t − 1
boundaries, but given tasks 1…t − 1 it is a single-threshold problem, so the identity order is best.
It is the ``monet-toy`` dataset: its 500 / 250 / 250 draws are the subjects ``train``, ``val`` and
``test``; the ``monet-toy`` protocol tests on ``test``, ``monet-toy-val`` on ``val`` (for choices).

**The reproduction** runs ordinary harness cells: the ``monet`` recipe's ``toy`` preset (the
implementation details of §2.5.1: a 4 × 64 ReLU encoder, 64-unit GRU cells, L = 20, Adam 5e-4 decayed
by 0.99 per epoch, 500 epochs, batch 64, order selector Adam 5e-3, M = 120, k = 100) with one override
list per table row (:func:`table_variants`) and one cell per seed. Finished cells are kept and
skipped, so an interrupted reproduction resumes; ``--jobs`` runs cells in parallel processes. The
thesis' numbers are the plugin's reference tables, so the leaderboard shows both.

The thesis tunes k and the warm-up n on validation without giving the values: k = 100 is the value
its Fig. 2.8 discusses; n is chosen on ``monet-toy-val`` by ``--table warmup`` (n in 0, 10, 25, 50
epochs of 500). Unlike the thesis' runs, which we read as new draws, aubench's runs share the one
draw (seed 0) and differ by the cell's seed (initialisation, the M sampled orders, dropout).

    aubench monet-toy --table warmup --runs 3 --jobs 2   # MONET's warm-up n on validation
    aubench monet-toy --table 2.2 --runs 10 --jobs 2     # VMNC, VMNS, MRNN, MONET, oracle
    aubench monet-toy --table 2.1 --runs 10 --jobs 2     # order selection variants
    aubench monet-toy --table all --jobs 2               # the three, n chosen by the first
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from aubench import AubenchError, ConfigError, load_reference_tables

__all__ = ["toy_labels", "toy_split", "prepare_toy", "toy_fingerprint", "table_variants", "run_table", "reproduce",
           "reproduce_all", "choose_warmup", "render_table", "DEFAULT_WARMUP", "IDENTITY"]

#: MONET's warm-up n (in epochs of 500) per table, as chosen by ``--table warmup`` on validation:
#: n = 0 overall (Table 2.2), and the best n > 0 for the warm-up rows of Table 2.1.
DEFAULT_WARMUP = {"2.2": 0, "2.1": 10}
IDENTITY = [1, 2, 3, 4, 5]
TABLES = ("2.1", "2.2", "warmup")
_HERE = Path(__file__).parent


def toy_labels(x1: np.ndarray, n_tasks: int) -> np.ndarray:
    """Task t (1-based) is positive iff the t-th binary digit of z = (x1 + 1) / 2 is 0."""
    z = np.clip((np.asarray(x1) + 1) / 2, 0, 1 - 1e-12)
    return np.stack([(np.floor(z * 2 ** t) % 2 == 0) for t in range(1, n_tasks + 1)], 1).astype(np.float32)


def toy_split(n_tasks: int, seed: int, sizes: tuple[int, int, int] = (500, 250, 250)) -> list[tuple[np.ndarray, np.ndarray]]:
    """Train, validation and test draws of X ~ U([-1, 1]²) with their ``n_tasks`` labels."""
    rng = np.random.default_rng(seed)
    out = []
    for n in sizes:
        x = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
        out.append((x, toy_labels(x[:, 0], n_tasks)))
    return out


TOY_SPLITS = ("train", "val", "test")


def toy_fingerprint(name: str, params: dict[str, Any]) -> str:
    """Fingerprint of a prepared toy dataset: its parameters and the generator's source."""
    import hashlib
    import inspect

    unknown = set(params) - {"n_tasks", "seed"}
    if unknown:
        raise ConfigError(f"unknown toy dataset parameters {sorted(unknown)}; known: n_tasks, seed")
    code = inspect.getsource(toy_labels) + inspect.getsource(toy_split)
    blob = json.dumps({"name": name, "n_tasks": 5, "seed": 0, **params, "code": code}, sort_keys=True)
    return "toy-" + hashlib.sha256(blob.encode()).hexdigest()[:16]


def prepare_toy(out_dir: Path, progress: bool = True, n_tasks: int = 5, seed: int = 0) -> Path:
    """Write :func:`toy_split` as a prepared vector dataset (the ``monet-toy`` dataset plugin).

    The three draws are its pseudo-subjects ``train``, ``val`` and ``test``; task t is AU column t.
    """
    import pandas as pd

    from aubench import PreparedWriter

    out_dir = Path(out_dir)
    splits = toy_split(n_tasks, seed)
    tasks = tuple(range(1, n_tasks + 1))
    writer = PreparedWriter(out_dir, name=out_dir.name, au_set=tasks, label_kind="occurrence", image_size=0,
                            n_frames=sum(len(x) for x, _ in splits), unknown_code=None, feature_dim=2)
    rows, i = [], 0
    for split, (x, y) in zip(TOY_SPLITS, splits):
        writer.features[i:i + len(x)] = x
        i += len(x)
        rows += [{"subject": split, "video": split, "frame": f, **{f"AU{t}": int(v) for t, v in zip(tasks, lab)}}
                 for f, lab in enumerate(y)]
    return writer.finish(pd.DataFrame(rows), fingerprint=toy_fingerprint(out_dir.name, {"n_tasks": n_tasks, "seed": seed}),
                         preprocessing_id="monet-toy-v1")


# --------------------------------------------------------------------------- the reproduction


def _scaled(warmup: int, epochs: int) -> int:
    """The warm-up keeps its share of training when a shorter run than 500 epochs is asked for."""
    return int(round(warmup * epochs / 500))


def table_variants(table: str, warmup: int | None = None, keep: int = 100, epochs: int = 500,
                   grid: tuple[int, ...] = (0, 10, 25, 50)) -> dict[str, list[str]]:
    """The rows of a table as overrides of the ``monet`` recipe's ``toy`` preset (which has k = 100, n = 0)."""
    n = _scaled(DEFAULT_WARMUP.get(table, 0) if warmup is None else warmup, epochs)
    common = ([f"epochs={epochs}"] if epochs != 500 else []) + ([f"model.keep={keep}"] if keep != 100 else [])
    warm = [f"model.warmup={n}"] if n else []
    if table == "2.2":
        rows = {"VMNC": ["model.head=vmnc"], "VMNS": ["model.head=vmns"], "MRNN": ["model.head=mrnn"],
                "MONET": warm, "Oracle": ["+model.orders=[[0,1,2,3,4]]", "model.keep=null"]}
    elif table == "2.1":
        rows = {"hard selection": ["model.selection=hard", "model.keep=null", *warm],
                "MONET": ["model.keep=null"], "MONET + warm-up": ["model.keep=null", *warm],
                "MONET + order dropout": [], "MONET + warm-up + order dropout": warm}
    elif table == "warmup":
        rows = {f"n = {g}": [f"model.warmup={_scaled(g, epochs)}"] if g else [] for g in grid}
    else:
        raise ConfigError(f"table={table!r}; use one of {TABLES}")
    return {label: [*common, *ov] for label, ov in rows.items()}


def run_table(table: str, runs: int = 10, *, runs_dir: Path | str = "runs", jobs: int = 1, epochs: int = 500,
              warmup: int | None = None, keep: int = 100, grid: tuple[int, ...] = (0, 10, 25, 50),
              progress: bool = True, registry: Any = None) -> dict[str, list[Any]]:
    """Run (or resume) a table's cells; return each row's result records (one per seed).

    ``table="warmup"`` runs MONET + warm-up + order dropout for each n of ``grid`` on the validation
    draw (protocol ``monet-toy-val``); the others run on the test draw (``monet-toy``).
    """
    from aubench import get_registry, plan_cells, run_cells

    reg = registry or get_registry()
    protocol = "monet-toy-val" if table == "warmup" else "monet-toy"
    planned = [(label, cell) for label, ov in table_variants(table, warmup, keep, epochs, grid).items()
               for cell in plan_cells(reg, "monet", protocol, seeds=list(range(runs)), overrides=["preset=toy", *ov],
                                      runs_dir=runs_dir)]
    planned.sort(key=lambda item: item[1].seed)  # seed-major: a stopped run has every row at fewer seeds
    outcomes = run_cells([c for _, c in planned], reg, progress=progress, jobs=jobs,
                         echo=lambda m: print(m, file=sys.stderr))
    failed = [o.cell.label for o in outcomes if o.status == "failed"]
    if failed:
        raise AubenchError(f"{len(failed)} toy cell(s) failed (see failed.json in their folders): {failed[:3]}")
    results: dict[str, list[Any]] = {}
    for (label, _), outcome in zip(planned, outcomes):
        results.setdefault(label, []).append(outcome.record)
    return results


def reproduce(table: str, runs: int = 10, warmup: int | None = None, **kw: Any) -> str:
    """Run (or resume) a table with :func:`run_table` and return its Markdown beside the thesis."""
    results = run_table(table, runs, warmup=warmup, **kw)
    return render_table(table, results, {"runs": runs, "epochs": kw.get("epochs", 500), "keep": kw.get("keep", 100),
                                         "grid": list(kw.get("grid", (0, 10, 25, 50))),
                                         "warmup": DEFAULT_WARMUP.get(table, 0) if warmup is None else warmup})


def _accuracy(rec: Any) -> float:
    return float(np.mean([rec.per_au[str(t)]["accuracy"] for t in rec.aus]))


def _finds_identity(rec: Any) -> bool:
    top = rec.model_extras.get("top_orders") or []
    return bool(top) and top[0]["order"] == IDENTITY


def choose_warmup(results: dict[str, list[Any]]) -> tuple[int, int]:
    """The warm-up n with the best mean validation accuracy in a ``--table warmup`` run, and the best n > 0."""
    by = {int(label.removeprefix("n = ")): np.mean([_accuracy(r) for r in recs]) for label, recs in results.items()}
    best = max(by, key=by.get)
    warm = [n for n in by if n > 0]
    return best, max(warm, key=by.get) if warm else best


def _thesis(table: str) -> dict[str, dict[str, float]]:
    for ref in load_reference_tables(_HERE / "references"):
        if ref.protocol.startswith("monet-toy@") and f"Table {table} " in ref.source:
            return {label: dict(row) for label, row in ref.rows.items()}
    return {}


def render_table(table: str, results: dict[str, list[Any]], meta: dict[str, Any]) -> str:
    """A table's Markdown: our per-row accuracy (from the cells' records) beside the thesis'."""
    thesis = _thesis(table)
    title = "warm-up length on validation" if table == "warmup" else f"thesis Table {table}"
    setting = f"warm-up n in {meta['grid']}" if table == "warmup" else f"warm-up n = {meta['warmup']}"
    lines = [f"# MONET toy reproduction, {title}", "",
             f"Toy dataset (thesis §2.5.1), T = 5, {meta['runs']} runs x {meta['epochs']} epochs, {setting}, "
             f"order dropout k = {meta['keep']} of M = 120; harness cells of `monet` with `preset=toy`.", ""]
    if table == "2.2":
        lines += ["| method | task 1 | task 2 | task 3 | task 4 | task 5 | mean | thesis mean |",
                  "|---|---|---|---|---|---|---|---|"]
        for label, recs in results.items():
            acc = np.mean([[r.per_au[str(t)]["accuracy"] for t in r.aus] for r in recs], 0)
            ref = thesis.get(label, {})
            cells = " | ".join(f"{a:.1f} ({ref.get(str(t + 1), float('nan')):.1f})" for t, a in enumerate(acc))
            lines.append(f"| {label} | {cells} | **{acc.mean():.1f}** ± {np.std([_accuracy(r) for r in recs]):.1f} | "
                         f"{ref.get('avg', float('nan')):.1f} |")
        found = sum(_finds_identity(r) for r in results.get("MONET", []))
        lines += ["", f"Per task: ours (thesis). MONET finds the identity order in {found}/{meta['runs']} runs."]
    elif table == "warmup":
        best, best_warm = choose_warmup(results)
        lines += ["| MONET + warm-up + order dropout | validation accuracy | finds identity |", "|---|---|---|"]
        for label, recs in results.items():
            val = f"{np.mean([_accuracy(r) for r in recs]):.1f}"
            lines.append(f"| {label} | {f'**{val}**' if label == f'n = {best}' else val} | "
                         f"{sum(_finds_identity(r) for r in recs)}/{len(recs)} |")
        lines += ["", f"Chosen on validation: n = {best}; for the warm-up rows of Table 2.1 (n > 0): n = {best_warm}."]
    else:
        lines += ["| order selection | mean accuracy | thesis | finds identity | thesis |", "|---|---|---|---|---|"]
        for label, recs in results.items():
            ref = thesis.get(label, {})
            accs = [_accuracy(r) for r in recs]
            lines.append(f"| {label} | **{np.mean(accs):.1f}** ± {np.std(accs):.1f} | {ref.get('avg', float('nan')):.1f} | "
                         f"{sum(_finds_identity(r) for r in recs)}/{len(recs)} | "
                         f"{ref.get('identity found (of 10)', float('nan')):g}/10 |")
    return "\n".join(lines) + "\n"


def reproduce_all(runs: int = 10, warmup_runs: int = 3, **kw: Any) -> str:
    """The whole chain, as the thesis does it: choose n on validation, then Tables 2.2 and 2.1 with it.

    ``kw`` goes to :func:`run_table` (runs_dir, jobs, epochs, keep, grid, ...)."""
    meta = {"runs": warmup_runs, "epochs": kw.get("epochs", 500), "keep": kw.get("keep", 100),
            "grid": list(kw.get("grid", (0, 10, 25, 50))), "warmup": 0}
    results = run_table("warmup", warmup_runs, **kw)
    best, best_warm = choose_warmup(results)
    return "\n".join([render_table("warmup", results, meta), reproduce("2.2", runs, warmup=best, **kw),
                      reproduce("2.1", runs, warmup=best_warm, **kw)])


# --------------------------------------------------------------------------- command line


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``aubench monet-toy``."""
    import os

    p.add_argument("--table", choices=[*TABLES, "all"], required=True,
                   help="2.1, 2.2, warmup (MONET + warm-up + dropout for each --grid n, on validation), or all "
                        "(warmup, then 2.2 and 2.1 with the n it chose)")
    p.add_argument("--runs", type=int, default=10, help="seeds per row (default 10, as the thesis)")
    p.add_argument("--warmup-runs", type=int, default=3, help="seeds of the warm-up choice with --table all (default 3)")
    p.add_argument("--epochs", type=int, default=500)
    p.add_argument("--jobs", type=int, default=2, help="cells in parallel processes (default 2)")
    p.add_argument("--warmup", type=int, default=None,
                   help="MONET warm-up n in epochs of 500 (default: validation's choice, 0 for 2.2, 10 for 2.1)")
    p.add_argument("--keep", type=int, default=100, help="order dropout: orders kept per example, k (default 100)")
    p.add_argument("--grid", default="0,10,25,50", help="warm-up lengths for --table warmup (default 0,10,25,50)")
    p.add_argument("--runs-dir", type=Path, default=Path(os.environ.get("AUBENCH_RUNS", "runs")))
    p.add_argument("--no-progress", action="store_true")
    return p


def run_command(args: argparse.Namespace) -> int:
    """Run what :func:`add_arguments` parsed and print the tables."""
    kw = {"runs_dir": args.runs_dir, "jobs": args.jobs, "epochs": args.epochs, "keep": args.keep,
          "grid": tuple(int(n) for n in args.grid.split(",")), "progress": not args.no_progress}
    if args.table == "all":
        print(reproduce_all(args.runs, args.warmup_runs, **kw))
    else:
        print(reproduce(args.table, args.runs, warmup=args.warmup, **kw))
    return 0
