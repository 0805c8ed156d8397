"""Per-frame computation over a frame set, and the frozen-backbone feature cache.

A model with a frozen backbone exposes ``extract_frozen(batch)``, returning a tensor or a dict of
tensors per frame (several feature maps, e.g. a global vector and a spatial map). With
``engine.cache_features`` the engine computes them once per frame set and passes them to ``forward``
as ``batch["features"]``: ``auto`` caches when the recipe has no augmentation; ``true`` always,
which with augmentation means the features of the *un-augmented* frame (a frozen branch that should
not see the augmentation), while ``image`` is augmented as usual; ``false`` never.

``engine.feature_store``: ``memory`` (default) keeps the cache in RAM; ``disk`` writes it once under
``$AUBENCH_HOME/features/<key>/`` as float16 ``.npy`` files, memory-mapped on use and shared by every
cell whose key matches: the frozen weights, the dataset fingerprint, the input size, normalisation and
test view, the model section of the recipe, and the code (the source of aubench and of every package a
module of the model comes from, torch's version), so that a store is never read by code other than what
wrote it. For single frames (no clips) the store holds every frame of the dataset, so the folds and
protocols of one dataset (same seed, hence the same frozen weights) compute it once between them, one
process at a time (a lock per key); clip sets are stored per set of rows. Features never depend on how
they are stored, so the store is a result-neutral option.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aubench.data.device import to_device

if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig

    from aubench.data.loader import FrameBatches
    from aubench.engine import Runtime
    from aubench.split import FrameSets

__all__ = ["FeatureCache", "per_frame", "cache_features", "feature_key", "frozen_state"]


class FeatureCache:
    """Cached features of a frame set, by frame position: one tensor, or several by name. ``rows``: the
    arrays hold a whole dataset and position ``p`` of the frame set is its row ``rows[p]``."""

    def __init__(self, arrays: dict[str, Any], single: bool, rows: np.ndarray | None = None):
        self.arrays, self.single, self.rows = arrays, single, rows

    def take(self, pos: torch.Tensor, device: str, channels_last: bool = False) -> Any:
        """The features of the frames at ``pos``, on ``device``; 4-D maps channels_last when the cell's
        runtime uses it (as its images are)."""
        import torch

        index = pos.cpu().numpy()
        if self.rows is not None:
            index = self.rows[index]
            pos = torch.from_numpy(index)
        out = {k: (torch.from_numpy(np.ascontiguousarray(a[index])) if isinstance(a, np.ndarray) else a[pos.cpu()])
               .to(device) for k, a in self.arrays.items()}
        if channels_last:
            out = {k: t.contiguous(memory_format=torch.channels_last) if t.ndim == 4 else t for k, t in out.items()}
        return out[""] if self.single else out


def batches(frames: FrameBatches, rt: Runtime, cfg: DictConfig, cache: FeatureCache | None) -> Iterator[dict[str, Any]]:
    """Evaluation batches in loader order, on the device, with cached features when there are some."""
    from aubench.data.loader import make_loader

    for batch in make_loader(frames, int(cfg.engine.eval_batch_size), shuffle=False):
        b = to_device(batch, rt.device, rt.channels_last, cfg, None)
        if cache is not None:
            b["features"] = cache.take(batch["pos"], rt.device, rt.channels_last)
        yield b


def per_frame(fn: Callable[[dict[str, Any]], Any], frames: FrameBatches, rt: Runtime, cfg: DictConfig,
              cache: FeatureCache | None = None) -> Any:
    """``fn(batch)`` (a tensor, or a dict of tensors) for every frame of ``frames`` in row order, float32 on
    the CPU; a frame met in several clips gets the mean of its outputs, so every frame has exactly one."""
    import torch

    totals: dict[str, torch.Tensor] = {}
    count, single = torch.zeros(len(frames.rows)), True
    with torch.inference_mode(), rt.autocast():
        for b in batches(frames, rt, cfg, cache):
            out, pos = fn(b), b["pos"].cpu()
            single = not isinstance(out, dict)
            for key, value in ({"": out} if single else out).items():
                value = value.float().cpu()
                if key not in totals:
                    _check_fits(len(frames.rows), value.shape[1:], fn)
                    totals[key] = torch.zeros((len(frames.rows), *value.shape[1:]))
                totals[key].index_add_(0, pos, value)
            count.index_add_(0, pos, torch.ones(len(pos)))
    means = {k: t / count.view(-1, *[1] * (t.ndim - 1)) for k, t in totals.items()}
    if not means:
        return torch.zeros((0, 0))
    return means[""] if single else means


def available_memory() -> int:
    """Bytes of RAM free now (Linux and macOS sysconf; a large number where the platform cannot say)."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def _check_fits(n: int, shape: Any, fn: Callable[..., Any]) -> None:
    """Refuse, before allocating, per-frame outputs that cannot fit in RAM (e.g. FAN-Trans' paper-size
    768 x 64 x 64 feature maps cached for a whole BP4D fold: ~1.2 TB in float32)."""
    from aubench.errors import ConfigError

    need, free = n * int(np.prod(tuple(shape), dtype=np.int64)) * 4, available_memory()
    if need > free:
        what = getattr(fn, "__name__", "per-frame outputs")
        raise ConfigError(
            f"{what} of {n} frames, {tuple(shape)} each, need {need / 2**30:.1f} GiB of RAM in float32 and "
            f"{free / 2**30:.1f} GiB are free. For frozen features set engine.cache_features=false "
            "(the frozen backbone then runs every step: on a GPU that is also the faster path for large feature "
            "maps, benchmarks/README.md), or run on a machine with more memory.")


def frozen_state(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The tensors the frozen features can depend on, by name: every frozen parameter, and the buffers of
    the modules that train no parameter of their own (a frozen backbone's BatchNorm statistics).

    The buffers of trained modules (the head's BatchNorm statistics) are left out: the frozen part never
    runs them, and a cell that starts from another cell's weights (``init.from``) loads different ones,
    which would otherwise give every such cell its own copy of the same features."""
    out = []
    for prefix, module in model.named_modules():
        own = dict(module.named_parameters(recurse=False))
        trains = any(p.requires_grad for p in own.values())
        dot = f"{prefix}." if prefix else ""
        out += [(dot + n, p) for n, p in own.items() if not p.requires_grad]
        if not trains:
            out += [(dot + n, b) for n, b in module.named_buffers(recurse=False) if b is not None]
    return sorted(out, key=lambda item: item[0])


def feature_key(model: torch.nn.Module, frames: FrameBatches, cfg: DictConfig, rt: Runtime) -> str:
    """What the cached features depend on: frozen weights, data, frames (rows), input view, the model recipe,
    how they were computed (device kind and bf16 autocast change their values) and by which code
    (:func:`_code_of`): a store written by other code is never read as this code's."""
    import torch
    from omegaconf import OmegaConf

    digest = hashlib.sha256(json.dumps([_code_of(model), torch.__version__]).encode())
    for name, tensor in frozen_state(model):
        digest.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    view = {"model": OmegaConf.to_container(cfg.model, resolve=True), "input": OmegaConf.to_container(cfg.get("input") or {}),
            "crop": (cfg.get("augment") or {}).get("crop"), "data": frames.data.fingerprint,
            "device": rt.device.split(":")[0], "amp": rt.amp, "channels_last": rt.channels_last,
            "resized_at_load": frames.small is not None}  # uint8 frames resized once vs per batch in float
    digest.update(json.dumps(view, sort_keys=True, default=str).encode() + np.asarray(frames.rows).tobytes())
    return digest.hexdigest()[:20]


def _code_of(model: torch.nn.Module) -> list[str]:
    """aubench and every package a module of ``model`` comes from (a frozen extractor may be another plugin's,
    or timm's), each with a hash of its source as the registry hashes plugins (a lone module: its file);
    torch is named by its version in the key instead."""
    import inspect
    import sys

    from aubench import registry

    out = []
    for name in sorted({type(m).__module__.split(".")[0] for m in model.modules()} - {"torch"} | {"aubench"}):
        module = sys.modules[name]
        path = Path(inspect.getfile(module))
        digest = registry._source_hash(path.parent) if hasattr(module, "__path__") else \
            hashlib.sha256(path.read_bytes()).hexdigest()[:10]
        out.append(f"{name} {digest}")
    return out


def _whole_dataset(frames: FrameBatches) -> FrameBatches:
    """Every frame of ``frames``' dataset, with the same inputs and size (labels are not read)."""
    from aubench.data.loader import FrameBatches

    n, k = len(frames.data.index), frames.labels.shape[1]
    return FrameBatches(frames.data, np.arange(n), np.zeros((n, k), np.float32), np.zeros((n, k), bool),
                        frames.inputs, None, frames.small.shape[1] if frames.small is not None else None)


def _on_disk(model: torch.nn.Module, frames: FrameBatches, rt: Runtime, cfg: DictConfig) -> FeatureCache:
    from aubench.data.prepared import aubench_home
    from aubench.locks import wait_lock

    rows = np.asarray(frames.rows) if frames.clips is None else None
    source = _whole_dataset(frames) if rows is not None else frames
    root = aubench_home() / "features" / feature_key(model, source, cfg, rt)
    with wait_lock(root.with_name(root.name + ".lock")):  # another worker computing the same: wait, then reuse
        if not (root / "meta.json").is_file():
            _write_features(model, source, rt, cfg, root)
    meta = json.loads((root / "meta.json").read_text())
    return FeatureCache({n: np.load(root / f"{i}.npy", mmap_mode="r") for i, n in enumerate(meta["names"])},
                        meta["single"], rows)


def _write_features(model: torch.nn.Module, frames: FrameBatches, rt: Runtime, cfg: DictConfig, root: Any) -> None:
    """Compute the frozen features of ``frames`` and write them under ``root`` (atomically: a partial folder
    renamed when complete)."""
    out = per_frame(model.extract_frozen, frames, rt, cfg)
    named = {"": out} if not isinstance(out, dict) else out
    tmp = root.with_name(root.name + f".partial{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for i, value in enumerate(named.values()):
        np.save(tmp / f"{i}.npy", value.numpy().astype(np.float16))
    (tmp / "meta.json").write_text(json.dumps({"names": list(named), "single": not isinstance(out, dict),
                                               "frames": len(frames.rows)}))
    try:
        os.replace(tmp, root)
    except OSError:  # another process wrote the same features first
        shutil.rmtree(tmp, ignore_errors=True)


def cache_features(model: torch.nn.Module, sets: FrameSets, rt: Runtime, cfg: DictConfig,
                   keys: tuple[str, ...] = ("train", "test", "val")) -> None:
    """Fill ``sets.caches`` when the model has a frozen backbone and the recipe allows it (module doc)."""
    import torch

    mode = cfg.engine.cache_features
    if not hasattr(model, "extract_frozen") or not (mode is True or (mode == "auto" and not cfg.get("augment"))):
        return
    model.eval()
    for key in keys:
        if (frames := getattr(sets, key)) is None:
            continue
        if cfg.engine.get("feature_store", "memory") == "disk":
            sets.caches[key] = _on_disk(model, frames, rt, cfg)
        else:
            out = per_frame(model.extract_frozen, frames, rt, cfg)
            named = {"": out} if not isinstance(out, dict) else out
            sets.caches[key] = FeatureCache({k: v.to(torch.float16) for k, v in named.items()}, not isinstance(out, dict))
