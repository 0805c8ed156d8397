"""Evaluating a trained checkpoint on a protocol fold without training (``aubench evaluate``).

The checkpoint's own recipe (from its metadata) rebuilds the model; its weights load strictly; the
fold's test frames are predicted and scored exactly as a trained cell's are, and a normal result
record is written, so a downloaded model lands on the leaderboard like a trained one. Its record's
``init_checkpoint`` names the source and revision with ``evaluated: true``, and the leaderboard
labels the row with that source.

Refused: weights trained on any subject of the fold it would test (same dataset), an AU set that
does not cover the protocol's AUs, or the same AUs in another order (outputs are mapped by AU
number when the protocol's AUs are a subset); another preprocessing id warns (an error with
``strict``).
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aubench.checkpoints import WEIGHTS_FILE, check_compatible
from aubench.errors import CheckpointError, ResultExistsError

if TYPE_CHECKING:
    from aubench.hub import HubCheckpoint
    from aubench.records import ResultRecord
    from aubench.registry import Registry

__all__ = ["evaluate_checkpoint", "evaluate_source"]


def _selection(ckpt: HubCheckpoint) -> str:
    from aubench.hub import META_FILE

    for name, key in (("record.json", "selection"), (META_FILE, "selection")):
        if (ckpt.path / name).is_file():
            return str(json.loads((ckpt.path / name).read_text()).get(key))
    return "as trained (the checkpoint does not say how its weights were selected)"


def _origin(ckpt: HubCheckpoint, protocol: str) -> str:
    """What names the leaderboard row: on its own protocol, the checkpoint's whole run (every fold tests
    its own fold: one row); on another protocol, the checkpoint itself (one row per checkpoint)."""
    if ckpt.meta.protocol != protocol:
        return ckpt.source
    if ckpt.source.startswith("hf://"):
        return ckpt.source.rsplit("/", 1)[0] if ckpt.source.count("/") > 3 else ckpt.source
    return str(ckpt.path.parent.parent if (ckpt.path / "record.json").is_file() else ckpt.path.parent)


def _check_aus(model_aus: tuple[int, ...], protocol_aus: tuple[int, ...], source: str) -> None:
    if tuple(model_aus) == tuple(protocol_aus):
        return
    if sorted(model_aus) == sorted(protocol_aus):
        raise CheckpointError(f"{source} predicts AUs {list(model_aus)}, the protocol's AUs in another order "
                              f"({list(protocol_aus)}); its outputs would be read with the wrong meaning")
    missing = [a for a in protocol_aus if a not in model_aus]
    if missing:
        raise CheckpointError(f"{source} predicts AUs {list(model_aus)} and cannot be scored on AUs {missing} of "
                              "the protocol; use a checkpoint trained on a superset of the protocol's AUs")


def evaluate_checkpoint(ckpt: HubCheckpoint, registry: Registry, protocol: str, fold: str, runs_dir: Path, *,
                        strict: bool = False, overwrite: bool = False, progress: bool = True,
                        device: str = "auto") -> ResultRecord:
    """Score one checkpoint on one fold; write and return the cell's record."""
    import warnings

    from omegaconf import OmegaConf
    from safetensors.torch import load_file

    from aubench.build import build_model, model_inputs
    from aubench.cells import Cell, _fold
    from aubench.engine import FitResult, Runtime, _record, evaluate
    from aubench.features import cache_features
    from aubench.results import cell_dir, variant_name
    from aubench.split import frame_sets, split_cell
    from aubench.stats import TrainStats

    t_start, meta = time.time(), ckpt.meta
    proto = registry.get("protocol", protocol)
    cfg = OmegaConf.create(meta.config)
    cfg.engine.device = device
    origin = _origin(ckpt, proto.id)
    tag = hashlib.sha256(origin.encode()).hexdigest()[:8]
    variant = variant_name(meta.preset, list(cfg.get("overrides", [])), meta.config_hash) + f"@{tag}"
    f = _fold(proto, fold)
    cell = Cell(method=meta.method, protocol=proto, fold=f, seed=int(cfg.seed), preset=meta.preset,
                run_dir=cell_dir(Path(runs_dir), proto.id, meta.method, variant, f.name, int(cfg.seed)),
                config_hash=meta.config_hash, config=cfg)
    if cell.record_path.exists() and not overwrite:
        raise ResultExistsError(f"{cell.record_path} exists; pass --overwrite to replace it")
    data = split_cell(cell, registry, progress)
    _check_aus(meta.au_set, data.eval_aus, ckpt.source)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_compatible(meta, ckpt.source, au_set=meta.au_set, test_dataset=data.test_ds.name, strict=strict,
                         preprocessing_id=str(data.test_ds.meta.get("preprocessing_id")),
                         test_subjects=f.test_subjects, user=f"{proto.id} fold {f.name}")
    for w in caught:
        warnings.warn(str(w.message), stacklevel=2)
    data.train_aus = tuple(meta.au_set)  # the model's outputs; scored AUs are mapped by number
    sets = frame_sets(data, model_inputs(cfg, registry), cell)
    stats = TrainStats.from_labels(data.train_aus, sets.train.labels, sets.train.mask)
    model = build_model(cfg, registry, data.train_aus, stats,
                        {"seed": cell.seed, "fold": f.name, "run_dir": cell.run_dir})
    try:
        model.load_state_dict(load_file(str(ckpt.path / WEIGHTS_FILE)), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{ckpt.source} does not fit the model its recipe builds with this code "
                              f"({str(exc).splitlines()[0]}); use the aubench and plugin versions it names "
                              f"({meta.versions})") from None
    rt = Runtime.for_cell(cell)
    rt.place(model)
    cell.run_dir.mkdir(parents=True, exist_ok=True)
    cache_features(model, sets, rt, cfg, keys=("test",))
    ev = evaluate(model, cell, data, sets, rt)
    init = {"source": ckpt.source, "origin": origin, "revision": ckpt.revision, "evaluated": True,
            "trained_protocol": meta.protocol, "trained_fold": meta.fold, "trained_dataset": meta.train_dataset,
            "test_subject_hash": meta.test_subject_hash, "trained_versions": meta.versions,
            "notes": [str(w.message) for w in caught]}
    record = _record(cell, data, sets, stats, model, init, FitResult([], None, 0.0, 0), ev, rt, t_start,
                     registry.versions_for(cfg))
    record.selection = _selection(ckpt)
    record.write(cell.record_path)
    return record


def evaluate_source(source: str, registry: Registry, protocol: str, runs_dir: Path, *, fold: str | None = None,
                    strict: bool = False, overwrite: bool = False, progress: bool = True, device: str = "auto",
                    echo: Callable[[str], Any] = print) -> list[ResultRecord]:
    """Evaluate every checkpoint a source names: each on its own fold when it was trained on this
    protocol, else on ``fold`` or on every fold of the protocol."""
    from aubench.hub import resolve_checkpoints

    proto = registry.get("protocol", protocol)
    records, ckpts = [], resolve_checkpoints(source, registry)
    if fold and len(ckpts) > 1:  # a whole run on its own protocol: the checkpoint of that fold
        ckpts = [c for c in ckpts if (c.meta.protocol, c.meta.fold) == (proto.id, fold)] or ckpts
    for ckpt in ckpts:
        meta = ckpt.meta
        folds = [fold] if fold else [meta.fold] if meta.protocol == proto.id else [f.name for f in proto.folds]
        for f in folds:
            rec = evaluate_checkpoint(ckpt, registry, proto.id, f, runs_dir, strict=strict, overwrite=overwrite,
                                      progress=progress, device=device)
            echo(f"done  {meta.method} [{rec.variant}] {proto.id} fold {f}: F1 {rec.f1_avg:.1f} on "
                 f"{rec.n_test_frames} frames -> {rec.path}")
            records.append(rec)
    return records
