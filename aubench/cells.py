"""Cells and sweeps: planning the cells of a request, and running a list of them.

A cell is one method recipe on one fold of one protocol with one seed. :func:`plan_cells` composes
the recipe once per (method, protocol) and expands folds × seeds; :func:`run_cells` runs a list,
skipping finished cells, isolating failures (one failed cell never ends the sweep), and, with
``jobs > 1``, running cells in parallel worker processes, each with ``cores / jobs`` threads.
"""
from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aubench.errors import AubenchError, UnknownNameError
from aubench.results import atomic_write_json, cell_dir, variant_name
from aubench.specs import Fold, ProtocolSpec

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from aubench.records import ResultRecord
    from aubench.registry import Registry

__all__ = ["Cell", "CellOutcome", "plan_cells", "run_cells"]


@dataclass
class Cell:
    """One unit of work: a method recipe on one fold of one protocol with one seed."""

    method: str
    protocol: ProtocolSpec
    fold: Fold
    seed: int
    preset: str
    run_dir: Path
    config_hash: str
    config: DictConfig | None = field(repr=False, default=None)

    @property
    def label(self) -> str:
        overrides = list(self.config.overrides) if self.config is not None else []
        variant = self.preset + (f" + {' '.join(overrides)}" if overrides else "")
        return f"{self.method} [{variant}] {self.protocol.id} fold {self.fold.name} seed {self.seed}"

    @property
    def record_path(self) -> Path:
        return self.run_dir / "record.json"


@dataclass
class CellOutcome:
    cell: Cell
    status: str  # "done" | "skipped" | "failed"
    record: ResultRecord | None = None
    error: str | None = None
    seconds: float = 0.0


def _fold(proto: ProtocolSpec, key: str) -> Fold:
    try:
        return proto.fold(key)
    except KeyError:
        raise UnknownNameError(f"fold of {proto.id}", str(key), [f.name for f in proto.folds]) from None


def plan_cells(registry: Registry, method: str, protocol: str, *, folds: list[str] | None = None,
               seeds: list[int] | None = None, overrides: list[str] = (), runs_dir: Path | str = "runs") -> list[Cell]:
    """Expand a method × protocol request into cells, composing the recipe once.

    ``seeds`` default to the recipe's ``seed`` (0 unless overridden with ``seed=...``).
    """
    from aubench.config import compose, config_hash

    proto = registry.get("protocol", protocol)
    cfg = compose(method, overrides, registry=registry, dataset=proto.train_dataset)
    chash = config_hash(cfg)
    variant = variant_name(cfg.preset, list(cfg.overrides), chash)
    name = registry.get("method", method).name
    chosen = proto.folds if not folds else [_fold(proto, f) for f in folds]
    seeds = [int(cfg.seed)] if seeds is None else seeds
    return [Cell(method=name, protocol=proto, fold=f, seed=int(s), preset=cfg.preset,
                 run_dir=cell_dir(Path(runs_dir), proto.id, name, variant, f.name, int(s)), config_hash=chash,
                 config=cfg)
            for f in chosen for s in seeds]


def _record_failure(cell: Cell, exc: BaseException, tb: str) -> str:
    cell.run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cell.run_dir / "failed.json", {"cell": cell.label, "error": f"{type(exc).__name__}: {exc}",
                                                      "traceback": tb, "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return str(exc) if isinstance(exc, AubenchError) else f"{type(exc).__name__}: {exc}"


def _run_one(cell: Cell, registry: Registry | None, overwrite: bool, progress: bool,
             threads: int | None) -> CellOutcome:
    """Run a cell, turning an exception into a ``failed`` outcome (with ``failed.json``)."""
    from aubench.engine import run_cell
    from aubench.registry import get_registry

    if threads:
        import torch

        torch.set_num_threads(threads)
    t0 = time.time()
    try:
        record = run_cell(cell, registry or get_registry(), overwrite=overwrite, progress=progress)
    except Exception as exc:  # isolate the cell
        return CellOutcome(cell, "failed", None, _record_failure(cell, exc, traceback.format_exc()), time.time() - t0)
    return CellOutcome(cell, "done", record, None, time.time() - t0)


def _echo_outcome(outcome: CellOutcome, echo: Callable[[str], Any]) -> None:
    cell = outcome.cell
    if outcome.status == "failed":
        echo(f"FAIL  {cell.label}: {outcome.error} (traceback in {cell.run_dir / 'failed.json'})")
    elif outcome.status == "done":
        resumed = outcome.record.timings.get("resumed_from_epoch")
        echo(f"done  {cell.label}: {_score_text(outcome.record, cell.protocol)} on {outcome.record.n_test_frames} "
             f"frames (test subjects #{cell.fold.test_hash}) in {outcome.seconds:.0f}s"
             + (f", resumed from epoch {resumed}" if resumed else ""))


def _score_text(rec: ResultRecord, protocol: ProtocolSpec) -> str:
    from aubench.leaderboard import METRICS, score

    return f"{METRICS[protocol.metric]} {score(rec, protocol.metric):.1f}"


def run_cells(cells: list[Cell], registry: Registry, *, overwrite: bool = False, progress: bool = True,
              echo: Callable[[str], Any] = print, jobs: int = 1) -> list[CellOutcome]:
    """Run cells; a failing cell is recorded (``failed.json``) and the sweep goes on.

    Finished cells (with a ``record.json``) are skipped unless ``overwrite``; a cell listed twice
    (the same run folder) runs once. With ``jobs > 1`` the cells run in that many worker processes
    (started fresh, so plugins come from entry points), each with ``cores // jobs`` torch threads
    unless the recipe sets ``engine.threads``. Outcomes are returned in the order of ``cells``.
    """
    from aubench.records import load_record

    outcomes: dict[int, CellOutcome] = {}
    todo, first = [], {}
    for i, cell in enumerate(cells):
        if first.setdefault(cell.run_dir, i) != i:
            continue
        if cell.record_path.exists() and not overwrite:
            rec = load_record(cell.record_path)
            echo(f"skip  {cell.label}: finished before ({_score_text(rec, cell.protocol)}; --overwrite to redo)")
            outcomes[i] = CellOutcome(cell, "skipped", rec)
        else:
            todo.append(i)
    if jobs <= 1 or len(todo) <= 1:
        for i in todo:
            outcomes[i] = _run_one(cells[i], registry, overwrite, progress, None)
            _echo_outcome(outcomes[i], echo)
        return [outcomes[first[cell.run_dir]] for cell in cells]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_run_one, cells[i], None, overwrite, False, threads): i for i in todo}
        for fut in as_completed(futures):
            outcomes[futures[fut]] = fut.result()
            _echo_outcome(outcomes[futures[fut]], echo)
    return [outcomes[first[cell.run_dir]] for cell in cells]
