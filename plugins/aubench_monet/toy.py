"""MONET's toy dataset (thesis §2.5.1) and a CPU reproduction of Tables 2.1 and 2.2.

**The dataset.** X ~ U([-1, 1]²) and T binary tasks on X⁽¹⁾. Eq. (2.37) is garbled in our copy
(read literally, with b_i^t = −1 + (i − 1)/2^t, task 1 would be positive on two separate intervals);
the prose and Fig. 2.6 define it unambiguously and we follow them: task 1 is positive left of x = 0,
and task t splits each of the 2^(t−1) zones of task t − 1 in half, positive on the left half. With
z = (x + 1)/2 ∈ [0, 1], task t is positive iff the t-th binary digit of z is 0. Task t has 2^t − 1
boundaries, but given tasks 1…t − 1 it is a single-threshold problem, so the identity order is best.

**The reproduction** (implementation details of §2.5.1): 500 / 250 / 250 samples (train / validation
/ test), a shared encoder of four 64-unit ReLU layers, 64-unit heads (VMNC, VMNS) or GRU cells
(MRNN, MONET), L = 20 inference samples, Adam with base learning rate 5e-4 decayed by 0.99 per
epoch, 500 epochs, batch 64, order selector Adam at 5e-3. The thesis tunes MONET's k and n on the
validation set without giving the values; we use k = 100 of M = 120 orders (the value its Fig. 2.8
discusses) and choose n on validation with ``--table warmup`` (n in 0, 10, 25, 50). Accuracy is
measured on the test set at threshold 0.5, per task, averaged over runs.

Validation (3 runs) prefers no warm-up at all (n = 0: 95.0; 10: 92.9; 25: 88.9; 50: 91.5), so
Table 2.2's MONET uses n = 0 and Table 2.1's warm-up rows the best n > 0, n = 10
(:data:`DEFAULT_WARMUP`; ``--warmup N`` overrides both).

    python -m aubench_monet.toy --table 2.2 --runs 10    # VMNC, VMNS, MRNN, MONET, oracle
    python -m aubench_monet.toy --table warmup --runs 3  # MONET's warm-up n on validation
    python -m aubench_monet.toy --table 2.1 --runs 10    # order selection variants, M = 120
    python -m aubench_monet.toy --table all --out DIR    # the three, n chosen by the first (about 2.3 h)

With ``--out PATH`` every finished run is appended to ``PATH.runs.jsonl`` at once, so an interrupted
reproduction resumes where it stopped; ``PATH.md`` and ``PATH.json`` are written at the end.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from aubench import AubenchError, ConfigError, ResultExistsError

__all__ = ["toy_labels", "toy_split", "prepare_toy", "toy_fingerprint", "train_toy", "TABLE_2_1", "TABLE_2_2",
           "DEFAULT_WARMUP", "reproduce", "reproduce_all", "choose_warmup"]

#: MONET's warm-up n (in epochs of 500) per table, as chosen by ``--table warmup`` on validation:
#: n = 0 overall (Table 2.2), and the best n > 0 for the warm-up rows of Table 2.1.
DEFAULT_WARMUP = {"2.2": 0, "2.1": 10}

TABLE_2_2 = {  # thesis Table 2.2: accuracy per task (%), T = 5, mean over 10 runs
    "VMNC": [98.7, 97.6, 92.4, 65.2, 54.0, 81.5], "VMNS": [98.7, 97.5, 72.8, 51.5, 52.9, 74.9],
    "MRNN": [93.7, 93.6, 80.1, 60.5, 51.3, 75.9], "MONET": [99.4, 98.3, 95.8, 90.0, 68.2, 90.1],
    "Oracle": [99.6, 98.6, 96.1, 92.1, 80.6, 93.4],
}
TABLE_2_1 = {  # thesis Table 2.1: (mean accuracy %, runs that find the identity order out of 10)
    "hard selection": (74.2, 0), "MONET": (89.2, 8), "MONET + warm-up": (89.3, 9),
    "MONET + order dropout": (89.8, 10), "MONET + warm-up + order dropout": (90.1, 10),
}
VARIANTS_2_1 = {  # (hard selection, warm-up, order dropout)
    "hard selection": (True, True, False),
    "MONET": (False, False, False),
    "MONET + warm-up": (False, True, False),
    "MONET + order dropout": (False, False, True),
    "MONET + warm-up + order dropout": (False, True, True),
}


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


def train_toy(head: str, n_tasks: int = 5, seed: int = 0, epochs: int = 500, batch: int = 64, lr: float = 5e-4,
              decay: float = 0.99, **head_cfg: Any) -> dict[str, Any]:
    """Train one model on one toy draw; return test accuracy per task and MONET's order facts."""
    import torch

    from aubench import TrainStats
    from aubench_monet.losses import MONETLoss
    from aubench_monet.model import MultiTaskNet

    torch.manual_seed(seed)
    (xtr, ytr), (xva, yva), (xte, yte) = toy_split(n_tasks, seed)
    stats = TrainStats.from_labels(tuple(range(1, n_tasks + 1)), ytr, np.ones_like(ytr, bool))
    cfg = {"infer_orders": 20, "infer_samples": 1, "order_seed": seed, **head_cfg}
    model = MultiTaskNet(tuple(range(1, n_tasks + 1)), stats, head=head, input_dim=2, hidden=64, **cfg)
    opts = model.configure_optimizers({"name": "adam", "lr": lr}, {"name": "exponential", "gamma": decay},
                                      math.ceil(len(xtr) / batch), epochs)
    loss_fn = MONETLoss()
    X, Y = torch.from_numpy(xtr), torch.from_numpy(ytr)
    M = torch.ones_like(Y, dtype=torch.bool)
    g = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.on_epoch_start(epoch)
        model.train()
        perm = torch.randperm(len(X), generator=g)
        for i in range(0, len(X), batch):
            idx = perm[i:i + batch]
            b = {"x": X[idx], "labels": Y[idx], "mask": M[idx]}
            loss, _ = loss_fn(model(b), b, stats)
            for o in opts:
                o["optimizer"].zero_grad(set_to_none=True)
            loss.backward()
            for o in opts:
                if epoch >= o.get("start_epoch", 0):
                    o["optimizer"].step()
        for o in opts:
            if o.get("scheduler") is not None:
                o["scheduler"].step()
    model.eval()

    def accuracy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = model({"x": torch.from_numpy(x)})
            probs = out["probs"] if "probs" in out else torch.sigmoid(out["logits"])
        return ((probs.numpy() >= 0.5) == (y > 0.5)).mean(0) * 100

    acc = accuracy(xte, yte)
    result = {"head": head, "seed": seed, "accuracy": acc.tolist(), "mean": float(acc.mean()),
              "val_mean": float(accuracy(xva, yva).mean())}
    if head == "monet":
        extras = model.record_extras()
        best = extras["top_orders"][0]["order"]
        result.update(best_order=best, finds_identity=best == list(range(1, n_tasks + 1)),
                      soft_order=extras["soft_order"])
    return result


def _job(args: tuple) -> dict:
    import torch

    name, head, cfg, seed, epochs = args
    torch.set_num_threads(1)
    res = train_toy(head, seed=seed, epochs=epochs, **cfg)
    res["name"] = name
    return res


def _jobs_2_2(runs: int, epochs: int, warmup: int, keep: int) -> list[tuple]:
    specs = [("VMNC", "vmnc", {}), ("VMNS", "vmns", {}), ("MRNN", "mrnn", {}),
             ("MONET", "monet", {"n_orders": 120, "keep": keep, "warmup": _scaled(warmup, epochs)}),
             ("Oracle", "monet", {"orders": [[0, 1, 2, 3, 4]], "warmup": 0})]
    return [(n, h, c, s, epochs) for n, h, c in specs for s in range(runs)]


def _jobs_2_1(runs: int, epochs: int, warmup: int, keep: int) -> list[tuple]:
    jobs = []
    for name, (hard, warm, drop) in VARIANTS_2_1.items():
        cfg = {"n_orders": 120, "selection": "hard" if hard else "soft", "keep": keep if drop else None,
               "warmup": _scaled(warmup, epochs) if warm else 0}
        jobs += [(name, "monet", cfg, s, epochs) for s in range(runs)]
    return jobs


def _jobs_warmup(runs: int, epochs: int, grid: list[int], keep: int) -> list[tuple]:
    """MONET + warm-up + order dropout for each warm-up n of ``grid``: n is chosen on validation (§2.5.1)."""
    return [(f"n = {n}", "monet", {"n_orders": 120, "keep": keep, "warmup": _scaled(n, epochs)}, s, epochs)
            for n in grid for s in range(runs)]


def _key(job: tuple) -> str:
    return json.dumps(job, sort_keys=True)


def _scaled(warmup: int, epochs: int) -> int:
    """The warm-up keeps its share of training when a shorter run than 500 epochs is asked for."""
    return int(round(warmup * epochs / 500))


def reproduce(table: str, runs: int = 10, epochs: int = 500, workers: int = 2, out: Path | None = None,
              warmup: int | None = None, keep: int = 100, progress: bool = True, grid: tuple[int, ...] = (0, 10, 25, 50),
              overwrite: bool = False) -> str:
    """Run a table's experiments (in parallel processes) and return a Markdown table beside the thesis.

    ``table="warmup"`` instead compares warm-up lengths ``grid`` on the validation split. ``warmup``
    defaults to the table's :data:`DEFAULT_WARMUP`."""
    if warmup is None:
        warmup = DEFAULT_WARMUP.get(table, 0)
    if out is not None and Path(out).with_suffix(".md").exists() and not overwrite:
        raise ResultExistsError(f"{Path(out).with_suffix('.md')} exists; pass --overwrite to replace it or another --out")
    if table == "2.2":
        jobs = _jobs_2_2(runs, epochs, warmup, keep)
    elif table == "2.1":
        jobs = _jobs_2_1(runs, epochs, warmup, keep)
    elif table == "warmup":
        jobs = _jobs_warmup(runs, epochs, list(grid), keep)
    else:
        raise ConfigError(f"table={table!r}; use '2.1', '2.2' or 'warmup'")
    jobs.sort(key=lambda j: j[3])  # seed-major: a stopped run has every row at fewer seeds
    t0 = time.time()
    from tqdm.auto import tqdm

    log = Path(out).with_suffix(".runs.jsonl") if out is not None else None
    done: dict[str, dict] = {}
    if log is not None and log.exists():  # resume: runs finished by an interrupted invocation
        for line in log.read_text().splitlines():
            rec = json.loads(line)
            done[rec["key"]] = rec["result"]
    todo = [j for j in jobs if _key(j) not in done]
    if done:
        print(f"resuming: {len(jobs) - len(todo)} of {len(jobs)} runs already in {log}", file=sys.stderr)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(_job, j): j for j in todo}
        for fut in tqdm(as_completed(futures), total=len(todo), desc=f"Table {table}", unit="run", disable=not progress):
            key = _key(futures[fut])
            done[key] = fut.result()
            if log is not None:
                log.parent.mkdir(parents=True, exist_ok=True)
                with log.open("a") as f:
                    f.write(json.dumps({"key": key, "result": done[key]}) + "\n")
    results = [done[_key(j)] for j in jobs]
    meta = {"table": table, "runs": runs, "epochs": epochs, "warmup": warmup, "keep": keep, "grid": list(grid),
            "workers": workers, "wall_seconds": time.time() - t0, "resumed": len(jobs) - len(todo)}
    text = render_table(meta, results)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps({**meta, "results": results}, indent=1))
        out.with_suffix(".md").write_text(_titled(table, text))
        log.unlink(missing_ok=True)  # every run is in the .json now
    return text


def _titled(table: str, text: str) -> str:
    title = "warm-up length on validation" if table == "warmup" else f"thesis Table {table}"
    return f"# MONET toy reproduction, {title}\n\n{text}"


def choose_warmup(results: list[dict]) -> tuple[int, int]:
    """The warm-up n with the best mean validation accuracy in a ``--table warmup`` run, and the best n > 0."""
    by: dict[int, list[float]] = {}
    for r in results:
        by.setdefault(int(r["name"].removeprefix("n = ")), []).append(r["val_mean"])
    best = max(by, key=lambda n: np.mean(by[n]))
    warm = [n for n in by if n > 0]
    return best, max(warm, key=lambda n: np.mean(by[n])) if warm else best


def reproduce_all(out_dir: Path, runs: int = 10, warmup_runs: int = 3, **kw: Any) -> str:
    """The whole chain, as the thesis does it: choose n on validation, then Tables 2.2 and 2.1 with it.

    Writes ``monet_toy_warmup``, ``monet_toy_table_2_2`` and ``monet_toy_table_2_1`` (``.md`` and
    ``.json``) into ``out_dir``; ``kw`` goes to :func:`reproduce` (epochs, workers, keep, grid, ...).
    Run again after an interruption, it keeps the finished tables and resumes the unfinished one."""
    out_dir = Path(out_dir)

    def table(name: str, n_runs: int, out: Path, **extra: Any) -> str:
        if out.with_suffix(".json").exists() and not kw.get("overwrite"):  # finished by an earlier invocation
            print(f"using the finished {out.with_suffix('.md')} (--overwrite runs it again)", file=sys.stderr)
            return out.with_suffix(".md").read_text()
        return _titled(name, reproduce(name, n_runs, out=out, **extra, **kw))

    texts = [table("warmup", warmup_runs, out_dir / "monet_toy_warmup")]
    best, best_warm = choose_warmup(json.loads((out_dir / "monet_toy_warmup.json").read_text())["results"])
    texts.append(table("2.2", runs, out_dir / "monet_toy_table_2_2", warmup=best))
    texts.append(table("2.1", runs, out_dir / "monet_toy_table_2_1", warmup=best_warm))
    return "\n".join(texts)


def render_table(meta: dict[str, Any], results: list[dict]) -> str:
    """The Markdown table of a reproduction (``meta`` and ``results`` as stored in its ``.json``)."""
    table, grid = meta["table"], meta.get("grid", [])
    by: dict[str, list[dict]] = {}
    for r in results:
        by.setdefault(r["name"], []).append(r)
    setting = f"warm-up n in {grid}" if table == "warmup" else f"warm-up n = {meta['warmup']}"
    resumed = meta.get("resumed", 0)
    lines = [f"Toy dataset (thesis §2.5.1), T = 5, {meta['runs']} runs x {meta['epochs']} epochs, {setting}, "
             f"order dropout k = {meta['keep']} of M = 120; wall time {meta['wall_seconds']:.0f} s with "
             f"{meta.get('workers', 2)} worker(s)" + (f", {resumed} runs resumed from an earlier invocation" if resumed else "")
             + ".", ""]
    if table == "2.2":
        lines += ["| method | task 1 | task 2 | task 3 | task 4 | task 5 | mean | thesis mean |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, rs in by.items():
            acc = np.mean([r["accuracy"] for r in rs], 0)
            std = np.std([r["mean"] for r in rs])
            lines.append(f"| {name} | " + " | ".join(f"{a:.1f} ({t:.1f})" for a, t in zip(acc, TABLE_2_2[name]))
                         + f" | **{acc.mean():.1f}** ± {std:.1f} | {TABLE_2_2[name][-1]:.1f} |")
        lines += ["", "Per task: ours (thesis)."]
        if "MONET" in by:
            rs = by["MONET"]
            lines[-1] += f" MONET finds the identity order in {sum(r['finds_identity'] for r in rs)}/{len(rs)} runs."
    elif table == "warmup":
        lines += ["| MONET + warm-up + order dropout | validation accuracy | test accuracy | finds identity |",
                  "|---|---|---|---|"]
        best, best_warm = choose_warmup(results)
        for name, rs in by.items():
            val = f"{np.mean([r['val_mean'] for r in rs]):.1f}"
            lines.append(f"| {name} | {f'**{val}**' if name == f'n = {best}' else val} | "
                         f"{np.mean([r['mean'] for r in rs]):.1f} | {sum(r['finds_identity'] for r in rs)}/{len(rs)} |")
        lines += ["", f"Chosen on validation: n = {best}; for the warm-up rows of Table 2.1 (n > 0): n = {best_warm}."]
    else:
        lines += ["| order selection | mean accuracy | thesis | finds identity | thesis |", "|---|---|---|---|---|"]
        for name, rs in by.items():
            mean = np.mean([r["mean"] for r in rs])
            found = sum(r["finds_identity"] for r in rs)
            ref = TABLE_2_1[name]
            lines.append(f"| {name} | **{mean:.1f}** ± {np.std([r['mean'] for r in rs]):.1f} | {ref[0]:.1f} | "
                         f"{found}/{len(rs)} | {ref[1]}/10 |")
    return "\n".join(lines) + "\n"


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``aubench monet-toy`` (and ``python -m aubench_monet.toy``)."""
    p.add_argument("--render", type=Path, default=None, metavar="JSON",
                   help="only re-render the Markdown table beside a reproduction's .json")
    p.add_argument("--table", choices=["2.1", "2.2", "warmup", "all"],
                   help="2.1, 2.2, warmup (MONET + warm-up + dropout for each --grid n, on validation), or all "
                        "(warmup, then 2.2 and 2.1 with the n it chose; --out is then a folder)")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--warmup-runs", type=int, default=3, help="runs of the warm-up choice with --table all (default 3)")
    p.add_argument("--epochs", type=int, default=500)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--warmup", type=int, default=None,
                   help="MONET warm-up n in epochs of 500 (default: validation's choice, 0 for 2.2, 10 for 2.1)")
    p.add_argument("--keep", type=int, default=100, help="order dropout: orders kept per example, k (default 100)")
    p.add_argument("--out", type=Path, default=None, help="write <out>.md and <out>.json")
    p.add_argument("--grid", default="0,10,25,50", help="warm-up lengths for --table warmup (default 0,10,25,50)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out table")
    p.add_argument("--no-progress", action="store_true")
    return p


def run_command(args: argparse.Namespace) -> int:
    """Run what :func:`add_arguments` parsed; refusing to replace a finished table raises a one-line error."""
    if args.render is not None:
        data = json.loads(args.render.read_text())
        text = _titled(data["table"], render_table(data, data["results"]))
        args.render.with_suffix(".md").write_text(text)
        print(text)
        return 0
    if args.table is None:
        raise ConfigError("--table is required (or --render JSON)")
    grid = tuple(int(n) for n in args.grid.split(","))
    if args.table == "all":
        print(reproduce_all(args.out or Path("runs/reproductions"), args.runs, args.warmup_runs, epochs=args.epochs,
                            workers=args.workers, keep=args.keep, progress=not args.no_progress, grid=grid,
                            overwrite=args.overwrite))
    else:
        print(reproduce(args.table, args.runs, args.epochs, args.workers, args.out, args.warmup, args.keep,
                        not args.no_progress, grid, args.overwrite))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = add_arguments(argparse.ArgumentParser(prog="python -m aubench_monet.toy", description=__doc__.split("\n\n")[0]))
    try:
        return run_command(p.parse_args(argv))
    except AubenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
