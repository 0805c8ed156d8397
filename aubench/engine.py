"""The engine: trains one cell (method × protocol fold × seed) and evaluates it.

A cell is isolated: it reads prepared data, trains with the recipe on the fold's training subjects
only, predicts the test subjects with the final (or validation-selected) weights, and writes its
result record atomically. A checkpoint after every epoch lets an interrupted cell resume where it
stopped; a finished record is never overwritten unless asked.

Model contract (see also :class:`aubench.specs.ModelSpec`): ``forward(batch) -> dict`` with
``logits`` [B, K] (K = the protocol's training AUs) or ``probs``; optional methods:

``configure_optimizers(optim, sched, steps_per_epoch, epochs)``
    returns a list of ``{"optimizer", "scheduler" (optional), "start_epoch" (optional, 0-based)}``
    for methods with several optimisers or warm-up (an optimiser is not stepped before its
    ``start_epoch``); without it the engine builds one optimiser from ``optim``/``sched`` over
    ``model.param_groups(optim)`` if defined, else over all trainable parameters.
``extract_frozen(batch) -> Tensor``
    features of a frozen backbone; with it the engine may cache features once
    (``engine.cache_features``) and then passes them as ``batch["features"]``.
``on_epoch_start(epoch)``
    called before each epoch (0-based), e.g. to anneal a temperature.
``record_extras() -> dict``
    JSON-able facts about the trained model saved in the result record (e.g. MONET's soft order).
"""
from __future__ import annotations

import json
import math
import random
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aubench.errors import AubenchError, ConfigError, DatasetError, NonFiniteLossError
from aubench.results import RECORD_SCHEMA_VERSION, atomic_write_json, cell_dir, environment, variant_name
from aubench.specs import Fold, ProtocolSpec, resolve_factory

__all__ = ["Cell", "plan_cells", "run_cell", "select_device", "CellOutcome"]


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
    config: Any = field(repr=False, default=None)

    @property
    def label(self) -> str:
        return f"{self.method} [{self.preset}] {self.protocol.id} fold {self.fold.name} seed {self.seed}"

    @property
    def record_path(self) -> Path:
        return self.run_dir / "record.json"


@dataclass
class CellOutcome:
    cell: Cell
    status: str  # "done" | "skipped" | "failed"
    record: dict[str, Any] | None = None
    error: str | None = None
    seconds: float = 0.0


def plan_cells(registry: Any, method: str, protocol: str, *, folds: list[str] | None = None,
               seeds: list[int] | None = None, overrides: list[str] = (), runs_dir: Path | str = "runs") -> list[Cell]:
    """Expand a method × protocol request into cells, composing the recipe once.

    ``seeds`` default to the recipe's ``seed`` (0 unless overridden with ``seed=...``).
    """
    from aubench.config import compose, config_hash

    proto = registry.get("protocol", protocol)
    synthetic = registry.get("dataset", proto.train_dataset).synthetic
    cfg = compose(method, overrides, registry=registry, synthetic=synthetic)
    chash = config_hash(cfg)
    variant = variant_name(cfg.preset, list(cfg.overrides), chash)
    chosen = proto.folds if not folds else [_fold(proto, f) for f in folds]
    seeds = [int(cfg.seed)] if seeds is None else seeds
    return [Cell(method=registry.get("method", method).name, protocol=proto, fold=f, seed=int(s), preset=cfg.preset,
                 run_dir=cell_dir(Path(runs_dir), proto.id, registry.get("method", method).name, variant, f.name, int(s)),
                 config_hash=chash, config=cfg)
            for f in chosen for s in seeds]


def _fold(proto: ProtocolSpec, key: str) -> Fold:
    try:
        return proto.fold(key)
    except KeyError:
        from aubench.errors import UnknownNameError

        raise UnknownNameError(f"fold of {proto.id}", str(key), [f.name for f in proto.folds]) from None


def select_device(requested: str = "auto") -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"engine.device={requested} but CUDA is not available; use engine.device=auto or cpu.")
    return requested


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


# --------------------------------------------------------------------------- data


@dataclass
class _CellData:
    train_ds: Any
    test_ds: Any
    train_rows: np.ndarray
    test_rows: np.ndarray
    val_rows: np.ndarray
    train_aus: tuple[int, ...]
    eval_aus: tuple[int, ...]
    train_subjects: list[str]
    val_subjects: list[str]


def _cell_data(cell: Cell, registry: Any, cfg: Any, progress: bool) -> _CellData:
    from aubench.data.prepared import ensure_prepared

    proto = cell.protocol
    train_ds = ensure_prepared(registry.get("dataset", proto.train_dataset), progress=progress)
    test_ds = train_ds if not proto.cross_dataset else ensure_prepared(
        registry.get("dataset", proto.test_dataset), progress=progress)
    test_subjects = list(cell.fold.test_subjects)
    if cell.fold.train_subjects is not None:
        train_subjects = list(cell.fold.train_subjects)
    else:
        train_subjects = [s for s in train_ds.subjects if proto.cross_dataset or s not in set(test_subjects)]
    if not proto.cross_dataset and set(train_subjects) & set(test_subjects):
        raise ConfigError(f"{proto.id} fold {cell.fold.name}: subjects {sorted(set(train_subjects) & set(test_subjects))} "
                          "are in both the training and the test set")
    val_subjects: list[str] = []
    if cfg.selection.rule == "val":
        n_val = int(cfg.selection.val_subjects)
        if not 0 < n_val < len(train_subjects):
            raise ConfigError(f"selection.val_subjects={n_val} must be between 1 and {len(train_subjects) - 1}")
        rng = np.random.default_rng(cell.seed)
        val_subjects = sorted(rng.choice(sorted(train_subjects), n_val, replace=False).tolist())
        train_subjects = [s for s in train_subjects if s not in set(val_subjects)]
    elif cfg.selection.rule != "final":
        raise ConfigError(f"selection.rule={cfg.selection.rule!r}; use 'final' or 'val'")
    train_aus = tuple(getattr(proto, "train_aus", None) or proto.eval_aus)
    missing = [a for a in proto.eval_aus if a not in train_aus]
    if missing:
        raise ConfigError(f"{proto.id}: evaluated AUs {missing} are not among the trained AUs {train_aus}")
    return _CellData(train_ds, test_ds, train_ds.rows_for(train_subjects), test_ds.rows_for(test_subjects),
                     train_ds.rows_for(val_subjects) if val_subjects else np.zeros(0, int),
                     train_aus, tuple(proto.eval_aus), train_subjects, val_subjects)


# --------------------------------------------------------------------------- building


def _build_losses(cfg: Any, registry: Any) -> list[tuple[str, float, Any]]:
    from omegaconf import OmegaConf

    items = cfg.loss if OmegaConf.is_list(cfg.loss) else [cfg.loss]
    losses = []
    for item in items:
        params = OmegaConf.to_container(item, resolve=True)
        name = params.pop("name")
        weight = float(params.pop("weight", 1.0))
        spec = registry.get("loss", name)
        try:
            losses.append((name, weight, resolve_factory(spec.factory)(**params)))
        except TypeError as exc:
            raise ConfigError(f"loss {name!r} rejected its parameters {params}: {exc}") from exc
    return losses


def _build_model(cfg: Any, registry: Any, au_set: tuple[int, ...], stats: Any) -> tuple[Any, tuple[str, ...]]:
    from omegaconf import OmegaConf

    params = OmegaConf.to_container(cfg.model, resolve=True)
    name = params.pop("name")
    spec = registry.get("model", name)
    try:
        model = resolve_factory(spec.factory)(au_set=au_set, stats=stats, **params)
    except TypeError as exc:
        raise ConfigError(f"model {name!r} rejected its parameters {params}: {exc}") from exc
    return model, tuple(spec.inputs)


def _check_input_kind(model: Any, cfg: Any, data: Any) -> None:
    """Vector datasets (``batch["x"]``) need a model that reads vectors (``model.vector_input``), and vice versa."""
    for ds in {id(d): d for d in (data.train_ds, data.test_ds)}.values():
        vector_data = ds.features is not None
        if vector_data != bool(getattr(model, "vector_input", False)):
            have, need = ("feature vectors", "images") if vector_data else ("images", "vectors")
            hint = (f"use a model that reads batch['x']: the monet recipes' `preset=toy`, or `model.input_dim="
                    f"{ds.features.shape[1]}` for the multitask model" if vector_data else "drop model.input_dim")
            raise ConfigError(f"dataset {ds.name} holds {have} but model {cfg.model.name!r} takes {need}: {hint}")


def _build_optimizers(model: Any, cfg: Any, steps_per_epoch: int, epochs: int) -> list[dict[str, Any]]:
    import torch
    from omegaconf import OmegaConf

    optim = OmegaConf.to_container(cfg.optim, resolve=True)
    sched = OmegaConf.to_container(cfg.sched, resolve=True) if cfg.get("sched") else {"name": "none"}
    if hasattr(model, "configure_optimizers"):
        return list(model.configure_optimizers(optim, sched, steps_per_epoch, epochs))
    groups = model.param_groups(optim) if hasattr(model, "param_groups") else [
        p for p in model.parameters() if p.requires_grad]
    name = optim.pop("name", "adamw").lower()
    classes = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}
    if name not in classes:
        raise ConfigError(f"optim.name={name!r}; use one of {sorted(classes)}")
    if "betas" in optim:
        optim["betas"] = tuple(optim["betas"])
    opt = classes[name](groups, **optim)
    return [{"optimizer": opt, "scheduler": build_scheduler(opt, sched), "start_epoch": 0}]


def build_scheduler(opt: Any, sched: dict[str, Any]) -> Any:
    """Per-epoch learning-rate schedules named in recipes: none, step, exponential, cosine."""
    import torch

    sched = dict(sched)
    name = sched.pop("name", "none")
    if name == "none":
        return None
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=int(sched["step_size"]), gamma=float(sched["gamma"]))
    if name == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(opt, gamma=float(sched["gamma"]))
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=int(sched["t_max"]))
    raise ConfigError(f"sched.name={name!r}; use none, step, exponential or cosine")


# --------------------------------------------------------------------------- running


def _to_device(batch: dict[str, Any], device: str, channels_last: bool, cfg: Any, gen: Any | None) -> dict[str, Any]:
    import torch

    from aubench.data.augment import augment_batch, normalise

    out = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    if "image" not in out:  # a vector dataset: batch["x"] goes to the model as it is
        return out
    out["image"] = out["image"].float() / 255.0
    if gen is not None and cfg.get("augment"):
        out = augment_batch(out, cfg.augment, gen)
    inp = cfg.get("input") or {}
    stored = out["image"].shape[-1]
    out["image"] = normalise(out["image"], inp.get("mean", (0.5, 0.5, 0.5)), inp.get("std", (0.5, 0.5, 0.5)),
                             inp.get("size"))
    size = out["image"].shape[-1]
    if size != stored:  # landmarks and parsing maps follow the image to the model's input size
        if "landmarks" in out:
            out["landmarks"] = out["landmarks"].float() * (size / stored)
        if "parsing" in out:
            import torch.nn.functional as F

            out["parsing"] = F.interpolate(out["parsing"][:, None].float(), size=(size, size),
                                           mode="nearest")[:, 0].to(torch.uint8)
    if channels_last:
        out["image"] = out["image"].contiguous(memory_format=torch.channels_last)
    return out


def _predict(model: Any, loader: Any, device: str, cfg: Any, amp: bool, channels_last: bool,
             cache: Any = None) -> np.ndarray:
    import torch

    model.eval()
    outs = []
    with torch.no_grad(), torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=amp):
        for batch in loader:
            b = _to_device(batch, device, channels_last, cfg, None)
            if cache is not None:
                b["features"] = cache[batch["pos"]].to(device)
            res = model(b)
            probs = res["probs"] if "probs" in res else torch.sigmoid(res["logits"].float())
            outs.append(probs.float().cpu().numpy())
    return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)


def _feature_cache(model: Any, ds: Any, device: str, cfg: Any, amp: bool, channels_last: bool) -> Any:
    import torch

    from aubench.data.loader import make_loader

    chunks = []
    model.eval()
    with torch.no_grad(), torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=amp):
        for batch in make_loader(ds, int(cfg.engine.eval_batch_size), shuffle=False):
            chunks.append(model.extract_frozen(_to_device(batch, device, channels_last, cfg, None)).to(
                torch.float16).cpu())
    return torch.cat(chunks)


def _save_checkpoint(path: Path, model: Any, opts: list[dict[str, Any]], epoch: int, extra: dict[str, Any]) -> None:
    import torch

    state = {"model": model.state_dict(), "epoch": epoch, **extra,
             "optimizers": [o["optimizer"].state_dict() for o in opts],
             "schedulers": [o["scheduler"].state_dict() if o.get("scheduler") else None for o in opts],
             "torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state(), "py_rng": random.getstate()}
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def run_cell(cell: Cell, registry: Any, *, overwrite: bool = False, progress: bool = True,
             stop_after_epoch: int | None = None) -> dict[str, Any]:
    """Train and evaluate one cell; return its result record.

    ``stop_after_epoch`` interrupts training after that epoch (leaving a checkpoint), as a crash
    would; it exists so resume can be tested.
    """
    import torch
    from omegaconf import OmegaConf
    from tqdm.auto import tqdm

    from aubench.data.loader import FrameBatches, make_loader
    from aubench.metrics import au_metrics, moving_average
    from aubench.stats import TrainStats

    cfg = cell.config
    if cell.record_path.exists() and not overwrite:
        from aubench.errors import ResultExistsError

        raise ResultExistsError(f"{cell.record_path} exists; pass --overwrite to replace it")
    cell.run_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    _seed_everything(cell.seed)
    device = select_device(str(cfg.engine.device))
    on_cuda = device.startswith("cuda")
    amp = bool(cfg.engine.amp) and on_cuda
    channels_last = bool(cfg.engine.channels_last) and on_cuda
    if cfg.engine.get("threads"):
        torch.set_num_threads(int(cfg.engine.threads))

    data = _cell_data(cell, registry, cfg, progress)
    thr = cell.protocol.positive_threshold
    y_tr, m_tr = data.train_ds.labels(data.train_aus, thr)
    y_te, m_te = data.test_ds.labels(data.eval_aus, thr)
    stats = TrainStats.from_labels(data.train_aus, y_tr[data.train_rows], m_tr[data.train_rows])
    if (stats.valid == 0).any():
        raise DatasetError(f"{cell.label}: AUs {[a for a, v in zip(data.train_aus, stats.valid) if v == 0]} have no "
                           "labelled training frames; this protocol cannot train them")

    model, inputs = _build_model(cfg, registry, data.train_aus, stats)
    _check_input_kind(model, cfg, data)
    init_from = _init_from_checkpoint(model, cfg, cell, data) if cfg.get("init") and cfg.init.checkpoint else None
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    losses = _build_losses(cfg, registry)
    train_set = FrameBatches(data.train_ds, data.train_rows, y_tr[data.train_rows], m_tr[data.train_rows], inputs)
    test_set = FrameBatches(data.test_ds, data.test_rows, y_te[data.test_rows], m_te[data.test_rows], inputs)
    val_set = (FrameBatches(data.train_ds, data.val_rows, y_tr[data.val_rows], m_tr[data.val_rows], inputs)
               if len(data.val_rows) else None)
    eval_cols = [data.train_aus.index(a) for a in data.eval_aus]

    cache_mode = cfg.engine.cache_features
    use_cache = hasattr(model, "extract_frozen") and (
        cache_mode is True or (cache_mode == "auto" and not cfg.get("augment")))
    caches = {}
    if use_cache:
        for key, ds in (("train", train_set), ("test", test_set), ("val", val_set)):
            if ds is not None:
                caches[key] = _feature_cache(model, ds, device, cfg, amp, channels_last)

    batch_size = int(cfg.batch_size)
    epochs = int(cfg.epochs)
    steps_per_epoch = max(1, math.ceil(len(train_set) / batch_size))
    opts = _build_optimizers(model, cfg, steps_per_epoch, epochs)
    fwd = torch.compile(model) if cfg.engine.compile else model

    ckpt_path = cell.run_dir / "checkpoint.pt"
    start_epoch, history, best = 0, [], {"score": -1.0, "epoch": None, "state": None}
    if ckpt_path.exists() and not overwrite:
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        if state.get("config_hash") == cell.config_hash:
            model.load_state_dict(state["model"])
            for o, s, sc in zip(opts, state["optimizers"], state["schedulers"]):
                o["optimizer"].load_state_dict(s)
                if sc is not None and o.get("scheduler"):
                    o["scheduler"].load_state_dict(sc)
            start_epoch, history = int(state["epoch"]), list(state.get("history", []))
            best = state.get("best", best)
            torch.set_rng_state(state["torch_rng"])
            np.random.set_state(state["numpy_rng"])
            random.setstate(state["py_rng"])
    (cell.run_dir / "failed.json").unlink(missing_ok=True)
    registry.hook.aubench_cell_start(cell=cell, config=cfg)

    bar = tqdm(total=epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch, desc=cell.label, unit="step",
               disable=not progress, leave=False)
    train_seconds = 0.0
    for epoch in range(start_epoch, epochs):
        if hasattr(model, "on_epoch_start"):
            model.on_epoch_start(epoch)
        model.train()
        gen = torch.Generator().manual_seed(cell.seed * 100003 + epoch)
        loader = make_loader(train_set, batch_size, shuffle=True, seed=cell.seed * 7919 + epoch,
                             num_workers=int(cfg.engine.num_workers), pin_memory=on_cuda, drop_last=True)
        sums: dict[str, float] = {}
        n_img, n_steps, t0 = 0, 0, time.time()
        for step, batch in enumerate(loader):
            b = _to_device(batch, device, channels_last, cfg, gen)
            if use_cache:
                b["features"] = caches["train"][batch["pos"]].to(device)
            with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=amp):
                outputs = fwd(b)
            outputs = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in outputs.items()}
            total, terms = 0.0, {}
            for name, weight, loss_fn in losses:
                value, sub = loss_fn(outputs, b, stats)
                total = total + weight * value
                terms[name] = float(value.detach())
                terms.update({f"{name}/{k}": float(v) for k, v in sub.items()})
            if not torch.isfinite(total):
                raise NonFiniteLossError(epoch + 1, step, {"total": float(total.detach()), **terms})
            for o in opts:
                o["optimizer"].zero_grad(set_to_none=True)
            total.backward()
            for o in opts:
                if epoch >= int(o.get("start_epoch", 0)):
                    o["optimizer"].step()
            terms["loss"] = float(total.detach())
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v
            n_img += len(b["labels"])
            n_steps += 1
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{terms['loss']:.4f}")
        for o in opts:
            if o.get("scheduler") is not None and epoch >= int(o.get("start_epoch", 0)):
                o["scheduler"].step()
        dt = time.time() - t0
        train_seconds += dt
        logs = {k: v / max(n_steps, 1) for k, v in sums.items()}
        logs.update({"epoch": epoch + 1, "seconds": dt, "images_per_s": n_img / max(dt, 1e-9),
                     "lr": float(opts[0]["optimizer"].param_groups[0]["lr"])})
        if val_set is not None:
            vp = _predict(model, make_loader(val_set, int(cfg.engine.eval_batch_size), shuffle=False), device, cfg,
                          amp, channels_last, caches.get("val"))
            logs["val_f1"] = au_metrics(vp, val_set.labels, val_set.mask, data.train_aus)["f1_avg"]
            if logs["val_f1"] > best["score"]:
                best = {"score": logs["val_f1"], "epoch": epoch + 1,
                        "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
        history.append(logs)
        registry.hook.aubench_epoch_end(cell=cell, epoch=epoch + 1, logs=logs)
        _save_checkpoint(ckpt_path, model, opts, epoch + 1, {"config_hash": cell.config_hash, "history": history,
                                                               "best": best})
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < epochs:
            bar.close()
            raise KeyboardInterrupt(f"stopped after epoch {epoch + 1} (checkpoint kept at {ckpt_path})")
    bar.close()

    if best["state"] is not None:
        model.load_state_dict(best["state"])
    t_eval = time.time()
    probs = _predict(model, make_loader(test_set, int(cfg.engine.eval_batch_size), shuffle=False), device, cfg, amp,
                     channels_last, caches.get("test"))
    # test_set batches come back in row order (sequential sampler, sorted rows)
    probs = probs[:, eval_cols]
    index = data.test_ds.index.iloc[data.test_rows]
    pp = OmegaConf.to_container(cfg.postprocess, resolve=True)
    if pp.get("name", "none") == "moving_average":
        groups = (index["subject"] + "/" + index["video"]).to_numpy()
        probs = moving_average(probs, groups, index["frame"].to_numpy(), int(pp["window"]))
    elif pp.get("name", "none") != "none":
        raise ConfigError(f"postprocess.name={pp['name']!r}; use none or moving_average")
    metrics = au_metrics(probs, test_set.labels, test_set.mask, data.eval_aus)
    eval_seconds = time.time() - t_eval

    np.savez_compressed(cell.run_dir / "predictions.npz", probs=probs.astype(np.float32), labels=test_set.labels,
                        mask=test_set.mask, subject=index["subject"].to_numpy().astype(str),
                        video=index["video"].to_numpy().astype(str), frame=index["frame"].to_numpy(),
                        aus=np.array(data.eval_aus))
    _save_weights(model, cell, data, stats)
    record = {
        "schema_version": RECORD_SCHEMA_VERSION,
        "method": cell.method, "preset": cell.preset, "overrides": list(cfg.overrides),
        "config_hash": cell.config_hash,
        "dataset": data.test_ds.name, "train_dataset": data.train_ds.name,
        "protocol": cell.protocol.name, "protocol_version": cell.protocol.version, "protocol_id": cell.protocol.id,
        "fold": cell.fold.name, "test_subject_hash": cell.fold.test_hash, "test_subjects": list(cell.fold.test_subjects),
        "train_subjects": data.train_subjects, "val_subjects": data.val_subjects, "seed": cell.seed,
        "aus": list(data.eval_aus), "train_aus": list(data.train_aus), "positive_threshold": thr,
        "per_au": metrics["per_au"], "f1_avg": metrics["f1_avg"], "threshold": metrics["threshold"],
        "n_test_frames": int(len(test_set)), "n_train_frames": int(len(train_set)),
        "init_checkpoint": init_from,
        "selection": ("final weights after a fixed schedule" if cfg.selection.rule == "final" else
                      f"best epoch ({best['epoch']}) by F1 on {len(data.val_subjects)} held-out training subjects"),
        "postprocess": pp,
        "data": {"train_fingerprint": data.train_ds.fingerprint, "test_fingerprint": data.test_ds.fingerprint,
                 "preprocessing_id": data.test_ds.meta.get("preprocessing_id"),
                 "detection_failed_fraction": data.test_ds.meta.get("detection_failed_fraction")},
        "train_stats": stats.as_dict(),
        "model_extras": model.record_extras() if hasattr(model, "record_extras") else {},
        "history": history,
        "timings": {"train_seconds": train_seconds, "eval_seconds": eval_seconds,
                    "total_seconds": time.time() - t_start},
        "environment": environment(device),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    atomic_write_json(cell.record_path, record)
    ckpt_path.unlink(missing_ok=True)
    return record


def _init_from_checkpoint(model: Any, cfg: Any, cell: Cell, data: _CellData) -> dict[str, Any]:
    """Start from an earlier cell's weights, refusing any trained on this cell's test subjects.

    The checkpoint's metadata names its training dataset and subjects; when that dataset is the one
    this cell tests on and the subject lists overlap, the numbers would be contaminated.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(str(cfg.init.checkpoint)).expanduser()
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise ConfigError(f"init.checkpoint={cfg.init.checkpoint!r} is not a model.safetensors file (or a cell folder)")
    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata() or {}
    trained_on = set(filter(None, meta.get("train_subjects", "").split(",")))
    overlap = sorted(trained_on & set(cell.fold.test_subjects))
    if meta.get("train_dataset") == data.test_ds.name and overlap:
        raise ConfigError(
            f"init.checkpoint {path} was trained on {meta.get('train_dataset')} subjects {overlap[:5]}"
            f"{'...' if len(overlap) > 5 else ''}, which this cell ({cell.protocol.id} fold {cell.fold.name}) tests on. "
            "Start from a checkpoint whose training subjects exclude this fold's test subjects."
        )
    state = load_file(str(path))
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if cfg.init.strict and len(usable) != len(own):
        raise ConfigError(f"init.checkpoint {path}: {len(own) - len(usable)} tensors missing or of another shape; "
                          "set init.strict=false to load the matching ones")
    model.load_state_dict(usable, strict=False)
    return {"path": str(path), "protocol": meta.get("protocol"), "fold": meta.get("fold"),
            "train_dataset": meta.get("train_dataset"), "test_subject_hash": meta.get("test_subject_hash"),
            "loaded_tensors": len(usable), "skipped_tensors": len(own) - len(usable)}


def _save_weights(model: Any, cell: Cell, data: _CellData, stats: Any) -> None:
    """Final weights as safetensors with the metadata a checkpoint must carry (AU order, fold hash, ...)."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"method": cell.method, "preset": cell.preset, "protocol": cell.protocol.id, "fold": cell.fold.name,
            "test_subject_hash": cell.fold.test_hash, "train_subjects": ",".join(data.train_subjects),
            "au_set": ",".join(map(str, data.train_aus)), "train_dataset": data.train_ds.name,
            "train_fingerprint": data.train_ds.fingerprint, "config_hash": cell.config_hash, "threshold": "0.5",
            "preprocessing_id": str(data.train_ds.meta.get("preprocessing_id")),
            "config": json.dumps(_plain(cell.config))}
    save_file(_dedupe_shared(state), str(cell.run_dir / "model.safetensors"), metadata=meta)


def _plain(cfg: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)


def _dedupe_shared(state: dict[str, Any]) -> dict[str, Any]:
    seen: dict[int, str] = {}
    out = {}
    for k, v in state.items():
        ptr = v.data_ptr()
        out[k] = v.clone() if ptr in seen and v.numel() else v
        seen.setdefault(ptr, k)
    return out


def run_cells(cells: list[Cell], registry: Any, *, overwrite: bool = False, progress: bool = True,
              echo: Any = print) -> list[CellOutcome]:
    """Run cells one after another; a failing cell is recorded and the sweep goes on."""
    outcomes = []
    for cell in cells:
        t0 = time.time()
        if cell.record_path.exists() and not overwrite:
            rec = json.loads(cell.record_path.read_text())
            echo(f"skip  {cell.label}: finished before (F1 {rec['f1_avg']:.1f}; --overwrite to redo)")
            outcomes.append(CellOutcome(cell, "skipped", rec))
            continue
        try:
            record = run_cell(cell, registry, overwrite=overwrite, progress=progress)
        except (Exception, KeyboardInterrupt) as exc:  # isolate the cell
            if isinstance(exc, KeyboardInterrupt) and not str(exc).startswith("stopped after epoch"):
                raise
            tb = traceback.format_exc()
            cell.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(cell.run_dir / "failed.json", {"cell": cell.label, "error": f"{type(exc).__name__}: {exc}",
                                                              "traceback": tb, "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
            registry.hook.aubench_cell_end(cell=cell, record=None, error=exc)
            msg = str(exc) if isinstance(exc, AubenchError) else f"{type(exc).__name__}: {exc}"
            echo(f"FAIL  {cell.label}: {msg} (traceback in {cell.run_dir / 'failed.json'})")
            outcomes.append(CellOutcome(cell, "failed", None, msg, time.time() - t0))
            continue
        registry.hook.aubench_cell_end(cell=cell, record=record, error=None)
        dt = time.time() - t0
        echo(f"done  {cell.label}: F1 {record['f1_avg']:.1f} on {record['n_test_frames']} frames "
             f"(test subjects #{cell.fold.test_hash}) in {dt:.0f}s")
        outcomes.append(CellOutcome(cell, "done", record, None, dt))
    return outcomes

