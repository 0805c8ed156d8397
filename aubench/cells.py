"""Cells and sweeps: planning the cells of a request, and running a list of them.

A cell is one method recipe on one fold of one protocol with one seed. :func:`plan_cells` composes
the recipe once per (method, protocol) and expands folds × seeds; :func:`run_cells` runs a list,
skipping finished cells, isolating failures (one failed cell never ends the sweep), and, with
``jobs > 1``, running cells in parallel worker processes, each with ``cores / jobs`` threads.
"""
from __future__ import annotations

import contextlib
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aubench.errors import AubenchError, ConfigError, UnknownNameError
from aubench.results import atomic_write_json, cell_dir, variant_name
from aubench.specs import Fold, ProtocolSpec
from aubench.workers import Workers

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
    depends_on: Cell | None = field(repr=False, default=None)  # the cell whose weights this one starts from

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
    status: str  # "done" | "skipped" | "failed" | "busy" (another process holds the cell's lock) | "stale" (kept, but
    #              the weights it started from changed since)
    record: ResultRecord | None = None
    error: str | None = None
    seconds: float = 0.0


def _fold(proto: ProtocolSpec, key: str) -> Fold:
    try:
        return proto.fold(key)
    except KeyError:
        raise UnknownNameError(f"fold of {proto.id}", str(key), [f.name for f in proto.folds]) from None


def plan_cells(registry: Registry, method: str, protocol: str, *, folds: list[str] | None = None,
               seeds: list[int] | None = None, overrides: list[str] = (), runs_dir: Path | str = "runs",
               _chain: tuple[str, ...] = (), _composed: dict[tuple, Any] | None = None) -> list[Cell]:
    """Expand a method × protocol request into cells, composing the recipe once.

    ``seeds`` default to the recipe's ``seed`` (0 unless overridden with ``seed=...``). A recipe with
    ``init.from`` gets, per cell, the cell it starts from (``Cell.depends_on``, see :func:`_dependency`);
    a cell of a transfer protocol, the cell whose model it evaluates (:func:`_model_source`).
    """
    from aubench.config import compose, config_hash

    proto = registry.get("protocol", protocol)
    composed = {} if _composed is None else _composed  # one request's recipes, composed once (read-only configs)
    key = (method, tuple(overrides), proto.id)
    if key not in composed:
        composed[key] = compose(method, overrides, registry=registry, dataset=proto.train_dataset, protocol=proto.id)
    cfg = composed[key]
    chash = config_hash(cfg)
    variant = variant_name(cfg.preset, list(cfg.overrides), chash)
    name = registry.get("method", method).name
    chosen = proto.folds if not folds else [_fold(proto, f) for f in folds]
    seeds = [int(cfg.seed)] if seeds is None else seeds
    cells = [Cell(method=name, protocol=proto, fold=f, seed=int(s), preset=cfg.preset,
                  run_dir=cell_dir(Path(runs_dir), proto.id, name, variant, f.name, int(s)), config_hash=chash,
                  config=cfg)
             for f in chosen for s in seeds]
    if proto.models_from is not None:
        for cell in cells:
            cell.depends_on = _model_source(registry, cell, runs_dir, _chain, composed)
    elif cfg.init.get("from") is not None:
        if cfg.init.checkpoint:
            raise ConfigError(f"{name}: init.checkpoint and init.from are both set; a cell starts from one of them")
        for cell in cells:
            cell.depends_on = _dependency(registry, cell, runs_dir, _chain, composed)
    return cells


def _dependency(registry: Registry, cell: Cell, runs_dir: Path | str, chain: tuple[str, ...],
                composed: dict[tuple, Any]) -> Cell:
    """The cell ``init.from`` names for ``cell``: ``method`` (``same``: the cell's), and the protocol, fold and seed listed in
    ``same`` (default all three) taken from ``cell``; otherwise ``protocol``, ``seed`` and ``fold`` (a
    name, or ``allowed``: a fold whose training subjects exclude this cell's test subjects, the same
    name preferred — the JAA-Net rule for starting DISFA folds from BP4D models)."""
    from omegaconf import OmegaConf

    spec = OmegaConf.to_container(cell.config.init["from"], resolve=True)
    unknown = sorted(set(spec) - {"method", "same", "protocol", "fold", "seed", "preset", "overrides"})
    if unknown or "method" not in spec:
        raise ConfigError(f"{cell.method}: init.from needs `method` and takes same, protocol, fold, seed, preset, "
                          f"overrides{f'; not {unknown}' if unknown else ''}")
    same = spec.get("same", ["protocol", "fold", "seed"])
    if "protocol" not in same and "protocol" not in spec:
        raise ConfigError(f"{cell.method}: init.from must name a protocol, or list it in `same`")
    if spec["method"] == "same":  # the cell's own method (e.g. every FAN-Trans variant from its BP4D run)
        spec["method"] = cell.method
    proto = cell.protocol if "protocol" in same else registry.get("protocol", str(spec["protocol"]))
    seed = cell.seed if "seed" in same else int(spec.get("seed", 0))
    if "fold" in same or spec.get("fold") == "allowed":
        allowed = [f for f in proto.folds if _may_start_from(f, proto, cell)]
        named = [f for f in allowed if f.name == cell.fold.name]
        if (not named and "fold" in same) or not allowed:
            raise ConfigError(f"{cell.label}: init.from {spec['method']} on {proto.id} has no fold "
                              f"{'named ' + cell.fold.name + ' ' if 'fold' in same else ''}whose training "
                              f"subjects exclude this cell's test subjects; name one with init.from.fold")
        fold = (named or allowed)[0].name
    else:
        fold = str(spec["fold"])
    key = f"{spec['method']} {proto.id} {fold} {seed}"
    if key in chain:
        raise ConfigError(f"init.from forms a circle: {' -> '.join((*chain, key))}")
    overrides = [*_engine_of(cell), *spec.get("overrides", []), *([f"preset={spec['preset']}"] if spec.get("preset") else [])]
    return plan_cells(registry, str(spec["method"]), proto.id, folds=[fold], seeds=[seed], overrides=overrides,
                      runs_dir=runs_dir, _chain=(*chain, key), _composed=composed)[0]


def _model_source(registry: Registry, cell: Cell, runs_dir: Path | str, chain: tuple[str, ...],
                  composed: dict[tuple, Any]) -> Cell:
    """The cell whose model a transfer protocol's cell evaluates: the same method, overrides and seed on the
    fold of the same name of ``models_from``, which must train on the same subjects of the same dataset with
    the same recipe (otherwise the number would belong to another model than the row says)."""
    proto = cell.protocol
    source = registry.get("protocol", str(proto.models_from))
    try:
        fold = source.fold(cell.fold.name)
    except KeyError:
        raise ConfigError(f"{proto.id} evaluates the models of {source.id}, which has no fold {cell.fold.name!r} "
                          f"(folds: {', '.join(f.name for f in source.folds)})") from None
    subjects = registry.get("dataset", source.train_dataset).subjects
    trained = set(fold.train_subjects or [s for s in subjects if s not in set(fold.test_subjects)])
    if source.train_dataset != proto.train_dataset or trained != set(cell.fold.train_subjects or ()):
        raise ConfigError(f"{proto.id} fold {cell.fold.name} must train on what {source.id} fold {fold.name} trains on "
                          f"({source.train_dataset}, {len(trained)} subjects) to evaluate its models; build its folds "
                          "with aubench.transfer_folds")
    neutral = [o for o in _engine_of(cell) if o not in set(cell.config.overrides)]
    dep = plan_cells(registry, cell.method, source.id, folds=[fold.name], seeds=[cell.seed],
                     overrides=[*cell.config.overrides, *neutral], runs_dir=runs_dir,
                     _chain=(*chain, f"{cell.method} {proto.id} {cell.fold.name} {cell.seed}"), _composed=composed)[0]
    if dep.config_hash != cell.config_hash:
        raise ConfigError(f"{cell.label} evaluates the model of {dep.label}, but {cell.method}'s recipe composes "
                          f"differently for the two protocols (config {cell.config_hash} vs {dep.config_hash}: a "
                          f"per-protocol preset value?); a transfer protocol reports the source's model as it is")
    return dep


def _interleaved(cells: list[Cell]) -> list[Cell]:
    """The cells in turns, one method at a time (the first cell of every method, then the second, ...): the
    workers then rarely start two cells of one method together, which would wait on the same lock while
    one of them builds what both read (a frozen-feature store), and one method's long cells spread out."""
    by_method: dict[str, list[Cell]] = {}
    for cell in cells:
        by_method.setdefault(cell.method, []).append(cell)
    turns = max((len(group) for group in by_method.values()), default=0)
    return [group[i] for i in range(turns) for group in by_method.values() if i < len(group)]


def _engine_of(cell: Cell) -> list[str]:
    """The engine settings a dependency inherits from the cell that starts from it: the engine overrides
    it was planned with (e.g. ``engine.device=cpu``, which names both cells' variants) and the values of
    the result-neutral options (``engine.threads``: a one-thread run trains its dependencies on one
    thread too, so they reproduce what the same command gives when run on its own)."""
    from omegaconf import OmegaConf

    from aubench.config import RESULT_NEUTRAL

    given = [o for o in (cell.config.get("overrides") or []) if o.split("=")[0].lstrip("+~").startswith("engine.")]
    neutral = [f"{key}={'null' if (v := OmegaConf.select(cell.config, key)) is None else v}" for key in RESULT_NEUTRAL]
    return [*given, *neutral]


def _may_start_from(fold: Fold, proto: ProtocolSpec, cell: Cell) -> bool:
    """Whether weights trained on ``fold`` of ``proto`` saw none of ``cell``'s test subjects."""
    if proto.train_dataset != cell.protocol.test_dataset:
        return True
    if fold.train_subjects is not None:
        return not set(fold.train_subjects) & set(cell.fold.test_subjects)
    return set(cell.fold.test_subjects) <= set(fold.test_subjects)  # trained on everyone else


def _record_failure(cell: Cell, exc: BaseException, tb: str) -> str:
    cell.run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cell.run_dir / "failed.json", {"cell": cell.label, "error": f"{type(exc).__name__}: {exc}",
                                                      "traceback": tb, "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return str(exc) if isinstance(exc, AubenchError) else f"{type(exc).__name__}: {exc}"


def _run_one(cell: Cell, registry: Registry | None, overwrite: bool, progress: bool,
             threads: int | None) -> CellOutcome:
    """Run a cell under its lock, turning an exception into a ``failed`` outcome (with ``failed.json``) and
    a cell another process is running into a ``busy`` one."""
    from aubench.distributed import is_main
    from aubench.engine import run_cell
    from aubench.locks import CellBusy, cell_lock
    from aubench.records import load_record
    from aubench.registry import get_registry

    if threads:
        import torch

        torch.set_num_threads(threads)
    t0 = time.time()
    try:
        with cell_lock(cell.run_dir) if is_main() else contextlib.nullcontext():  # torchrun: rank 0 holds it
            if cell.record_path.exists() and not overwrite:  # finished by another process meanwhile
                return CellOutcome(cell, "skipped", load_record(cell.record_path))
            try:
                record = run_cell(cell, registry or get_registry(), overwrite=overwrite, progress=progress)
            except Exception as exc:  # isolate the cell
                return CellOutcome(cell, "failed", None, _record_failure(cell, exc, traceback.format_exc()),
                                   time.time() - t0)
    except CellBusy as busy:
        return CellOutcome(cell, "busy", None, f"{busy} is running it")
    return CellOutcome(cell, "done", record, None, time.time() - t0)


def _echo_outcome(outcome: CellOutcome, echo: Callable[[str], Any]) -> None:
    cell = outcome.cell
    if outcome.status == "done" and outcome.record is None:  # torchrun's other ranks: rank 0 reports
        return
    if outcome.status == "busy":
        echo(f"busy  {cell.label}: {outcome.error}; run again later to pick up its result")
    elif outcome.status == "skipped":  # (cells finished before the sweep are reported when it starts)
        echo(f"skip  {cell.label}: finished by another process meanwhile")
    elif outcome.status == "failed":
        echo(f"FAIL  {cell.label}: {outcome.error} (traceback in {cell.run_dir / 'failed.json'})")
    elif outcome.status == "done":
        resumed = outcome.record.timings.get("resumed_from_epoch")
        echo(f"done  {cell.label}: {_score_text(outcome.record, cell.protocol)} on {outcome.record.n_test_frames} "
             f"frames (test subjects #{cell.fold.test_hash}) in {outcome.seconds:.0f}s"
             + (f", resumed from epoch {resumed}" if resumed else ""))


def _score_text(rec: ResultRecord, protocol: ProtocolSpec) -> str:
    from aubench.leaderboard import METRICS, score

    return f"{METRICS[protocol.metric]} {score(rec, protocol.metric):.1f}"


def _with_dependencies(cells: list[Cell]) -> list[Cell]:
    """Every cell once (by run folder), each after the cell it starts from."""
    ordered: dict[Path, Cell] = {}

    def visit(cell: Cell) -> None:
        if cell.run_dir not in ordered:
            if cell.depends_on is not None:
                visit(cell.depends_on)
            ordered[cell.run_dir] = cell
    for cell in cells:
        visit(cell)
    return list(ordered.values())


def run_cells(cells: list[Cell], registry: Registry, *, overwrite: bool = False, progress: bool = True,
              echo: Callable[[str], Any] = print, jobs: int = 1, workers: Workers | None = None) -> list[CellOutcome]:
    """Run cells; a failing cell is recorded (``failed.json``) and the sweep goes on.

    Finished cells (with a ``record.json``) are skipped unless ``overwrite``, or reported ``stale`` (and kept)
    when their recipe composes differently now or the weights they started from (``init.from``) changed
    since; a cell listed twice
    (the same run folder) runs once. The cells a recipe starts from (``init.from``) run first when
    they have not finished (``overwrite`` does not redo them), and a cell whose dependency failed fails
    naming it. With ``jobs > 1`` the cells run in that many worker processes (started fresh, so plugins
    come from entry points), each with ``cores // jobs`` torch threads unless the recipe sets
    ``engine.threads``; a cell starts once its dependency has finished; ``workers`` (started earlier, with
    ``jobs`` processes) are used instead of new ones. Outcomes are returned in the order of ``cells``.
    """
    from aubench.checkpoints import WEIGHTS_FILE, stale_start
    from aubench.records import load_record

    requested = {cell.run_dir for cell in cells}
    outcomes: dict[Path, CellOutcome] = {}
    todo: list[Cell] = []
    finished: dict[Path, ResultRecord] = {}  # kept, checked against their starting cell once it is settled
    redone: set[Path] = set()

    def settle(cell: Cell) -> CellOutcome:
        """A finished cell is skipped, unless its recipe composes differently now (an edited recipe file or
        default: the folder is named by preset and overrides only) or the weights it started from changed."""
        rec, dep = finished[cell.run_dir], cell.depends_on
        why = None if dep is None else stale_start(rec.init_checkpoint, dep.run_dir / WEIGHTS_FILE, dep.label)
        if rec.config_hash != cell.config_hash:
            why = (f"it was trained with another recipe (config {rec.config_hash}; {cell.method}'s composes to "
                   f"{cell.config_hash} now: `aubench show {cell.method}`); --overwrite redoes it with this one")
        if why is not None:
            echo(f"STALE {cell.label}: {why}")
            return CellOutcome(cell, "stale", rec, why)
        echo(f"skip  {cell.label}: finished before ({_score_text(rec, cell.protocol)}; --overwrite to redo)")
        return CellOutcome(cell, "skipped", rec)

    for cell in _with_dependencies(cells):
        redo = overwrite and cell.run_dir in requested
        if cell.record_path.exists() and not redo:
            finished[cell.run_dir] = load_record(cell.record_path)
            if cell.depends_on is not None and cell.depends_on.run_dir in redone:  # its start runs again first
                todo.append(cell)
            else:
                outcomes[cell.run_dir] = settle(cell)
        else:
            todo.append(cell)
            redone.add(cell.run_dir)

    def blocked(cell: Cell) -> CellOutcome | None:
        dep = cell.depends_on
        if dep is not None and outcomes[dep.run_dir].status in ("failed", "busy"):
            what = "failed" if outcomes[dep.run_dir].status == "failed" else "another process is running"
            error = f"it starts from {dep.label}, which {what}"
            return CellOutcome(cell, "failed", None, _record_failure(cell, ConfigError(error), error))
        return None

    if jobs <= 1 or len(todo) <= 1:
        for cell in todo:
            if cell.run_dir in finished:
                outcomes[cell.run_dir] = settle(cell)
                continue
            outcomes[cell.run_dir] = blocked(cell) or _run_one(cell, registry, cell.run_dir in requested and overwrite,
                                                               progress, None)
            _echo_outcome(outcomes[cell.run_dir], echo)
        return [outcomes[cell.run_dir] for cell in cells]
    from concurrent.futures import FIRST_COMPLETED, wait

    threads = max(1, (os.cpu_count() or 1) // jobs)
    waiting, running = _interleaved(todo), {}
    with contextlib.ExitStack() as stack:
        if workers is None or workers.pool is None:
            workers = stack.enter_context(Workers(jobs))
        pool = workers.pool
        workers.build((n for c in waiting for n in (c.protocol.train_dataset, c.protocol.test_dataset)), registry)
        while waiting or running:
            for cell in [c for c in waiting if c.depends_on is None or c.depends_on.run_dir in outcomes]:
                waiting.remove(cell)
                if cell.run_dir in finished:
                    outcomes[cell.run_dir] = settle(cell)
                    continue
                if (failed := blocked(cell)) is not None:
                    outcomes[cell.run_dir] = failed
                    _echo_outcome(failed, echo)
                    continue
                running[pool.submit(_run_one, cell, None, cell.run_dir in requested and overwrite, False,
                                    threads)] = cell
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                cell = running.pop(fut)
                outcomes[cell.run_dir] = fut.result()
                _echo_outcome(outcomes[cell.run_dir], echo)
    return [outcomes[cell.run_dir] for cell in cells]
