"""The engine: trains one cell (method × protocol fold × seed) and evaluates it.

A cell trains on the fold's training subjects only, predicts the test subjects with the final (or
validation-selected) weights and writes its record atomically; a checkpoint after every epoch lets
an interrupted cell resume. The model contract is written once, in :class:`aubench.specs.ModelSpec`.
Its parts: :mod:`aubench.cells` (planning, sweeps), :mod:`aubench.split` (fold → subjects),
:mod:`aubench.build` (model, losses, optimisers), :mod:`aubench.checkpoints`, :mod:`aubench.records`;
this module keeps the device, seeding, the fit loop, prediction and the frozen-feature cache.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from aubench.build import build_losses, build_model, build_optimizers, end_epoch, model_inputs, step_optimizers
from aubench.checkpoints import (
    cell_meta,
    discard_resume_state,
    load_init_weights,
    load_resume_state,
    save_resume_state,
    save_weights,
)
from aubench.contract import FirstBatchCheck
from aubench.data.device import to_device
from aubench.distributed import is_main, setup, share, wrap
from aubench.errors import ConfigError, DatasetError, NonFiniteLossError, ResultExistsError
from aubench.features import cache_features, per_frame
from aubench.records import RECORD_SCHEMA_VERSION, ResultRecord
from aubench.results import atomic_path
from aubench.split import CellData, FrameSets, frame_sets, split_cell

if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig

    from aubench.cells import Cell
    from aubench.data.loader import FrameBatches
    from aubench.registry import Registry
    from aubench.stats import TrainStats

__all__ = ["run_cell", "Runtime", "fit", "predict", "evaluate"]


@dataclass
class Runtime:
    """Where and how a cell computes: device, bf16 autocast (CUDA only) and channels_last (``auto``: on
    CUDA; ``true``: on the CPU too)."""

    device: str
    amp: bool
    channels_last: bool

    @classmethod
    def for_cell(cls, cell: Cell) -> Runtime:
        """Seed every generator with the cell's seed and pick the device the recipe asks for."""
        import torch

        engine = cell.config.engine
        random.seed(cell.seed)
        np.random.seed(cell.seed % (2**32))
        torch.manual_seed(cell.seed)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        if engine.get("threads"):
            torch.set_num_threads(int(engine.threads))
        requested = str(engine.device)
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"engine.device={requested} but CUDA is not available; use engine.device=auto or cpu.")
        device = ("cuda" if torch.cuda.is_available() else "cpu") if requested == "auto" else requested
        on_cuda = device.startswith("cuda")
        cl = engine.get("channels_last", "auto")
        return cls(device, bool(engine.amp) and on_cuda, on_cuda if cl == "auto" else bool(cl))

    @property
    def on_cuda(self) -> bool:
        return self.device.startswith("cuda")

    def autocast(self) -> Any:
        import torch

        return torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16, enabled=self.amp)

    def place(self, model: torch.nn.Module) -> None:
        import torch

        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)


# --------------------------------------------------------------------------- data on the device


def _train_stats(cell: Cell, sets: FrameSets, aus: tuple[int, ...]) -> TrainStats:
    from aubench.stats import TrainStats

    stats = TrainStats.from_labels(aus, sets.train.labels, sets.train.mask)
    if (stats.valid == 0).any():
        raise DatasetError(f"{cell.label}: AUs {[a for a, v in zip(aus, stats.valid) if v == 0]} have no "
                           "labelled training frames; this protocol cannot train them")
    return stats


def _check_input_kind(model: torch.nn.Module, cell: Cell, data: CellData) -> None:
    """Vector datasets (``batch["x"]``) need a model that reads vectors (``model.vector_input``), and vice
    versa; the message quotes the protocol's description, where a plugin says how its protocol is run."""
    for ds in {id(d): d for d in (data.train_ds, data.test_ds)}.values():
        vector_data = ds.features is not None
        if vector_data != bool(getattr(model, "vector_input", False)):
            have, need = ("feature vectors", "images") if vector_data else ("images", "vectors")
            hint = ("use a model (or a recipe preset) that reads batch['x'] and sets `vector_input = True`; the "
                    f"vectors have {ds.features.shape[1]} dimensions" if vector_data else
                    "use a model that reads batch['image']")
            about = f" ({cell.protocol.id}: {cell.protocol.description})" if cell.protocol.description else ""
            raise ConfigError(f"dataset {ds.name} holds {have} but model {cell.config.model.name!r} takes {need}: "
                              f"{hint}{about}")


def predict(model: torch.nn.Module, frames: FrameBatches, rt: Runtime, cfg: DictConfig,
            cache: Any = None) -> np.ndarray:
    """Probabilities [N, K] for every frame of ``frames`` in row order (``probs`` or sigmoid of ``logits``)."""
    import torch

    def probs(b: dict[str, Any]) -> torch.Tensor:
        res = model(b)
        return res["probs"] if "probs" in res else torch.sigmoid(res["logits"].float())

    model.eval()
    return per_frame(probs, frames, rt, cfg, cache).numpy()


# --------------------------------------------------------------------------- fitting


@dataclass
class FitResult:
    history: list[dict[str, Any]]
    best_epoch: int | None
    train_seconds: float
    resumed_epochs: int


def _step(model: Any, losses: list[tuple[str, float, Any]], b: dict[str, Any], stats: TrainStats, rt: Runtime,
          opts: list[dict[str, Any]], epoch: int, step: int, check: FirstBatchCheck | None) -> dict[str, float]:
    """One optimisation step; returns the loss terms (floats). ``check``: the first batch's contract checks."""
    import torch

    with rt.autocast():
        outputs = model(b)
    if check is not None:
        check.outputs(outputs, len(b["labels"]))
    outputs = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in outputs.items()}
    total, terms = 0.0, {}
    for name, weight, loss_fn in losses:
        result = loss_fn(outputs, b, stats)
        if check is not None:
            check.loss(name, result)
        value, sub = result
        total = total + weight * value
        terms[name] = float(value.detach())
        terms.update({f"{name}/{k}": float(v) for k, v in sub.items()})
    if not torch.isfinite(total):
        raise NonFiniteLossError(epoch + 1, step, {"total": float(total.detach()), **terms})
    for o in opts:
        o["optimizer"].zero_grad(set_to_none=True)
    total.backward()
    step_optimizers(opts, epoch)
    terms["loss"] = float(total.detach())
    return terms


def fit(cell: Cell, registry: Registry, model: torch.nn.Module, sets: FrameSets, stats: TrainStats, rt: Runtime,
        *, resume: bool = True, progress: bool = True) -> FitResult:
    """Train for ``epochs`` (resuming from ``checkpoint.pt`` when it exists and ``resume``).

    After every epoch: schedulers step, validation F1 is measured (``selection.rule=val``; the best
    epoch's weights are kept), the resume state is written, then ``aubench_epoch_end`` fires. On
    return the model holds the weights to evaluate.
    """
    import torch
    from tqdm.auto import tqdm

    from aubench.data.loader import make_loader
    from aubench.metrics import au_metrics

    cfg, losses = cell.config, build_losses(cell.config, registry)
    batch_size, epochs = int(cfg.batch_size), int(cfg.epochs)
    loader_kw = {"num_workers": int(cfg.engine.num_workers), "pin_memory": rt.on_cuda, "drop_last": True}
    steps_per_epoch = len(make_loader(sets.train, batch_size, shuffle=True, **loader_kw))
    opts = build_optimizers(model, cfg, steps_per_epoch, epochs)
    fwd = wrap(torch.compile(model) if cfg.engine.compile else model, rt.device)  # DDP under torchrun
    check = FirstBatchCheck(cell, registry, len(stats.au_set))
    origin = {"config_hash": cell.config_hash, "versions": registry.versions_for(cfg),
              "data": [sets.train.data.fingerprint, sets.test.data.fingerprint]}
    state = load_resume_state(cell.run_dir, model, opts, origin, rt.device) if resume else None
    start, history = (state.epoch, list(state.history or [])) if state else (0, [])
    best = (state.best if state else None) or {"score": -1.0, "epoch": None, "state": None}
    bar = tqdm(total=epochs * steps_per_epoch, initial=start * steps_per_epoch, desc=cell.label, unit="step",
               disable=not progress, leave=False)
    train_seconds = 0.0
    for epoch in range(start, epochs):
        if hasattr(model, "on_epoch_start"):
            model.on_epoch_start(epoch)
        model.train()
        gen = torch.Generator().manual_seed(cell.seed * 100003 + epoch)
        sums, n_img, n_steps, t0 = {}, 0, 0, time.time()
        for step, batch in enumerate(make_loader(sets.train, batch_size, shuffle=True, seed=cell.seed * 7919 + epoch,
                                                 **loader_kw)):
            b = to_device(batch, rt.device, rt.channels_last, cfg, gen)
            if "train" in sets.caches:
                b["features"] = sets.caches["train"].take(batch["pos"], rt.device, rt.channels_last)
            b = share(b, batch_size)  # this process's part of the batch (all of it in one process)
            first = check if epoch == start and step == 0 else None
            for k, v in _step(fwd, losses, b, stats, rt, opts, epoch, step, first).items():
                sums[k] = sums.get(k, 0.0) + v
            n_img, n_steps = n_img + len(b["labels"]), n_steps + 1
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{sums['loss'] / n_steps:.4f}")
        rates = end_epoch(opts, epoch)
        dt = time.time() - t0
        train_seconds += dt
        logs = {k: v / max(n_steps, 1) for k, v in sums.items()}
        logs.update({"epoch": epoch + 1, "seconds": dt, "images_per_s": n_img / max(dt, 1e-9), **rates})
        if sets.val is not None:
            vp = predict(model, sets.val, rt, cfg, sets.caches.get("val"))
            logs["val_f1"] = au_metrics(vp, sets.val.labels, sets.val.mask, stats.au_set)["f1_avg"]
            if logs["val_f1"] > best["score"]:
                best = {"score": logs["val_f1"], "epoch": epoch + 1,
                        "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
        history.append(logs)
        if is_main():
            save_resume_state(cell.run_dir, model, opts, epoch + 1, origin, history, best)
            registry.hook.aubench_epoch_end(cell=cell, epoch=epoch + 1, logs=logs)
    bar.close()
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    return FitResult(history, best["epoch"], train_seconds, start)


# --------------------------------------------------------------------------- evaluating


@dataclass
class Evaluation:
    probs: np.ndarray  # [N, len(eval_aus)], post-processed
    metrics: dict[str, Any]
    index: Any  # the test frames' rows of the prepared index (subject, video, frame)
    seconds: float


def evaluate(model: torch.nn.Module, cell: Cell, data: CellData, sets: FrameSets, rt: Runtime) -> Evaluation:
    """Predict the test frames, keep the evaluated AUs, post-process, score; store ``predictions.npz``."""
    from omegaconf import OmegaConf

    from aubench.metrics import au_metrics, moving_average

    t0, cfg = time.time(), cell.config
    probs = predict(model, sets.test, rt, cfg, sets.caches.get("test"))  # row order: sequential sampler
    probs = probs[:, [data.train_aus.index(a) for a in data.eval_aus]]
    index = data.test_ds.index.iloc[data.test_rows]
    pp = OmegaConf.to_container(cfg.postprocess, resolve=True)
    if pp.get("name", "none") == "moving_average":
        groups = (index["subject"] + "/" + index["video"]).to_numpy()
        probs = moving_average(probs, groups, index["frame"].to_numpy(), int(pp["window"]))
    elif pp.get("name", "none") != "none":
        raise ConfigError(f"postprocess.name={pp['name']!r}; use none or moving_average")
    metrics = au_metrics(probs, sets.test.labels, sets.test.mask, data.eval_aus)
    with atomic_path(cell.run_dir / "predictions.npz") as tmp:  # never half a file, even on a crash
        np.savez_compressed(tmp, probs=probs.astype(np.float32), labels=sets.test.labels, mask=sets.test.mask,
                            subject=index["subject"].to_numpy().astype(str), video=index["video"].to_numpy().astype(str),
                            frame=index["frame"].to_numpy(), aus=np.array(data.eval_aus))
    return Evaluation(probs, metrics, index, time.time() - t0)


def _record(cell: Cell, data: CellData, sets: FrameSets, stats: TrainStats, model: Any, init: dict | None,
            fitted: FitResult, ev: Evaluation, rt: Runtime, t_start: float, versions: dict[str, str]) -> ResultRecord:
    from omegaconf import OmegaConf

    from aubench.results import environment

    cfg = cell.config
    return ResultRecord(
        schema_version=RECORD_SCHEMA_VERSION, method=cell.method, preset=cell.preset, overrides=list(cfg.overrides),
        config_hash=cell.config_hash, dataset=data.test_ds.name, train_dataset=data.train_ds.name,
        protocol=cell.protocol.name, protocol_version=cell.protocol.version, protocol_id=cell.protocol.id,
        fold=cell.fold.name, test_subject_hash=cell.fold.test_hash, test_subjects=list(cell.fold.test_subjects),
        train_subjects=data.train_subjects, val_subjects=data.val_subjects, seed=cell.seed,
        aus=list(data.eval_aus), train_aus=list(data.train_aus), positive_threshold=cell.protocol.positive_threshold,
        per_au=ev.metrics["per_au"], f1_avg=ev.metrics["f1_avg"], threshold=ev.metrics["threshold"],
        n_test_frames=len(sets.test.rows), n_train_frames=len(sets.train.rows), init_checkpoint=init,
        selection=(f"the model of {cell.depends_on.protocol.id} fold {cell.depends_on.fold.name}, evaluated as it is"
                   if cell.protocol.models_from is not None else "final weights after a fixed schedule"
                   if cfg.selection.rule == "final" else
                   f"best epoch ({fitted.best_epoch}) by F1 on {len(data.val_subjects)} held-out training subjects"),
        postprocess=OmegaConf.to_container(cfg.postprocess, resolve=True),
        data={"train_fingerprint": data.train_ds.fingerprint, "test_fingerprint": data.test_ds.fingerprint,
              "preprocessing_id": data.test_ds.meta.get("preprocessing_id"),
              "detection_failed_fraction": data.test_ds.meta.get("detection_failed_fraction")},
        train_stats=stats.as_dict(),
        model_extras=model.record_extras() if hasattr(model, "record_extras") else {},
        history=fitted.history,
        timings={"train_seconds": fitted.train_seconds, "eval_seconds": ev.seconds, "total_seconds": time.time() - t_start,
                 "resumed_from_epoch": fitted.resumed_epochs,  # train_seconds: this process's; before it resumed:
                 "train_seconds_before_resume": sum(h["seconds"] for h in fitted.history[:fitted.resumed_epochs])},
        environment=environment(rt.device), config=OmegaConf.to_container(cfg, resolve=True), versions=versions)


def run_cell(cell: Cell, registry: Registry, *, overwrite: bool = False, progress: bool = True) -> ResultRecord | None:
    """Train and evaluate one cell; write and return its result record (None on torchrun's other ranks).

    ``aubench_cell_start`` fires first and ``aubench_cell_end`` last (under torchrun, on rank 0 only), with
    the record or with the exception that failed the cell (which is then re-raised).
    """
    if cell.record_path.exists() and not overwrite:
        raise ResultExistsError(f"{cell.record_path} exists; pass --overwrite to replace it")
    cell.run_dir.mkdir(parents=True, exist_ok=True)
    (cell.run_dir / "failed.json").unlink(missing_ok=True)
    t_start = time.time()
    if is_main():  # under torchrun the hooks see one cell, as in one process
        registry.hook.aubench_cell_start(cell=cell, config=cell.config)
    try:
        rt = Runtime.for_cell(cell)
        processes = setup(rt.device)  # > 1 under torchrun: this process trains its share of each batch
        data = split_cell(cell, registry, progress)
        sets = frame_sets(data, model_inputs(cell.config, registry), cell)
        stats = _train_stats(cell, sets, data.train_aus)
        model = build_model(cell.config, registry, data.train_aus, stats, {
            "seed": cell.seed, "fold": cell.fold.name, "run_dir": cell.run_dir, "train_data": data.train_ds,
            "train_subjects": data.train_subjects})
        _check_input_kind(model, cell, data)
        init = load_init_weights(model, cell, data)  # None: from scratch
        transfer = cell.protocol.models_from is not None  # the whole model comes from a trained cell
        if hasattr(model, "after_init") and not transfer:
            model.after_init(init)  # e.g. a part that must come from another cell refuses random weights
        rt.place(model)
        cache_features(model, sets, rt, cell.config, keys=("test",) if transfer else ("train", "test", "val"))
        fitted = (FitResult([], None, 0.0, 0) if transfer else
                  fit(cell, registry, model, sets, stats, rt, resume=not overwrite, progress=progress and is_main()))
        if not is_main():
            return None  # rank 0 evaluates and writes the record
        ev = evaluate(model, cell, data, sets, rt)
        versions = registry.versions_for(cell.config)
        save_weights(cell.run_dir, model, cell_meta(cell, data, versions))
        record = _record(cell, data, sets, stats, model, init, fitted, ev, rt, t_start, versions)
        record.environment["plugin_commits"] = registry.commits_for(cell.config)  # plugins in git checkouts
        record.environment["processes"] = processes
        record.write(cell.record_path)
        discard_resume_state(cell.run_dir)
    except BaseException as exc:
        if is_main():
            registry.hook.aubench_cell_end(cell=cell, record=None, error=exc)
        raise
    registry.hook.aubench_cell_end(cell=cell, record=record, error=None)
    return record
