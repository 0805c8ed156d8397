"""Checkpoints: the resume state of a running cell, and the final weights with their metadata record.

Two files per cell folder:

``checkpoint.pt``
    training state after the last finished epoch (model, optimisers, schedulers, RNG states, the
    epoch history); written atomically, deleted when the cell finishes. It is only resumed by the
    same recipe, code (aubench's and the plugins' source hashes) and data; otherwise it is refused.
``model.safetensors``
    the final weights, never a pickle, with a :class:`CheckpointMeta` record in the safetensors
    metadata. Loading them elsewhere (``init.checkpoint``) checks the record against the cell: AU
    set and order, preprocessing id, and that no training subject is one the cell tests on.
"""
from __future__ import annotations

import hashlib
import json
import random
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aubench.errors import CheckpointError

if TYPE_CHECKING:
    import torch

    from aubench.cells import Cell
    from aubench.split import CellData

__all__ = ["CHECKPOINT_SCHEMA_VERSION", "CheckpointMeta", "ResumeState", "save_resume_state", "load_resume_state",
           "discard_resume_state", "cell_meta", "save_weights", "read_meta", "check_compatible", "load_init_weights",
           "file_sha256", "weights_digest", "stale_start"]

CHECKPOINT_SCHEMA_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
RESUME_FILE = "checkpoint.pt"


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes (weights: what a record says it started from, what the Hub checks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_digest(path: Path) -> str:
    """SHA-256 of a ``model.safetensors`` file's tensors (sorted names, dtypes, shapes, bytes), not of the file:
    safetensors writes its metadata in no fixed order, so the same weights saved twice differ as files."""
    import struct

    digest = hashlib.sha256()
    with open(path, "rb") as fh:  # one tensor in memory at a time
        (size,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(size))
        for name in sorted(k for k in header if k != "__metadata__"):
            entry = header[name]
            start, end = entry["data_offsets"]
            digest.update(json.dumps([name, entry["dtype"], entry["shape"]]).encode())
            fh.seek(8 + size + start)
            digest.update(fh.read(end - start))
    return digest.hexdigest()


def stale_start(init: dict[str, Any] | None, weights: Path, what: str) -> str | None:
    """Why a finished result no longer matches the weights it started from, or ``None``.

    ``init`` is its record's ``init_checkpoint``, ``weights`` the starting cell's ``model.safetensors`` now.
    A record without the digest (written before it was recorded) or whose starting weights are gone
    cannot be checked, and is not called stale.
    """
    want = (init or {}).get("weights_digest")
    if not want or not weights.is_file():
        return None
    have = weights_digest(weights)
    if have == want:
        return None
    return (f"it started from {what}'s weights {want[:12]}, but {weights} is now {have[:12]} (that cell was "
            "run again since): this result no longer belongs to its starting point; rerun it with --overwrite")


@dataclass(frozen=True)
class CheckpointMeta:
    """What a checkpoint must carry to be used safely elsewhere (stored as safetensors metadata).

    ``au_set`` is the order of the model's outputs; ``train_subjects`` and ``train_dataset`` let a
    loader refuse weights trained on the subjects it would test; ``preprocessing_id``, ``input_size``
    and the normalisation say what images the model expects.
    """

    method: str
    preset: str
    config_hash: str
    protocol: str
    fold: str
    test_subject_hash: str
    train_dataset: str
    train_subjects: tuple[str, ...]
    train_fingerprint: str
    au_set: tuple[int, ...]
    preprocessing_id: str
    input_size: int | None
    input_mean: tuple[float, ...]
    input_std: tuple[float, ...]
    threshold: float
    versions: dict[str, str]
    config: dict[str, Any]
    schema_version: int = CHECKPOINT_SCHEMA_VERSION

    def to_metadata(self) -> dict[str, str]:
        """Flat ``str -> str`` metadata (safetensors' format); lists are comma-joined, dicts JSON."""
        out = {}
        for key, value in asdict(self).items():
            if isinstance(value, (list, tuple)):
                out[key] = ",".join(map(str, value))
            elif isinstance(value, dict):
                out[key] = json.dumps(value, sort_keys=True)
            else:
                out[key] = "" if value is None else str(value)
        return out

    @classmethod
    def from_metadata(cls, meta: dict[str, str], source: str) -> CheckpointMeta:
        missing = [f.name for f in fields(cls) if f.name not in meta and f.name != "schema_version"]
        if missing:
            raise CheckpointError(f"{source} lacks checkpoint metadata {missing}; it was not written by aubench "
                                  "(or by an older version): retrain the cell, or load it with a matching aubench")
        extra = sorted(set(meta) - {f.name for f in fields(cls)} - {"format"})
        if extra:
            raise CheckpointError(f"{source} has checkpoint metadata {extra} that this aubench does not know; it was "
                                  "written by a newer aubench or altered: upgrade aubench, or retrain the cell")
        version = int(meta.get("schema_version", 1))
        if version != CHECKPOINT_SCHEMA_VERSION:
            raise CheckpointError(f"{source} has checkpoint schema {version}; this aubench reads "
                                  f"{CHECKPOINT_SCHEMA_VERSION}. Upgrade aubench or retrain the cell")

        def split(key: str, kind: type = str) -> tuple[Any, ...]:
            return tuple(kind(v) for v in meta[key].split(",") if v)

        return cls(method=meta["method"], preset=meta["preset"], config_hash=meta["config_hash"],
                   protocol=meta["protocol"], fold=meta["fold"], test_subject_hash=meta["test_subject_hash"],
                   train_dataset=meta["train_dataset"], train_subjects=split("train_subjects"),
                   train_fingerprint=meta["train_fingerprint"], au_set=split("au_set", int),
                   preprocessing_id=meta["preprocessing_id"],
                   input_size=int(meta["input_size"]) if meta["input_size"] else None,
                   input_mean=split("input_mean", float), input_std=split("input_std", float),
                   threshold=float(meta["threshold"]), versions=json.loads(meta["versions"]),
                   config=json.loads(meta["config"]), schema_version=version)


# --------------------------------------------------------------------------- resume state


@dataclass
class ResumeState:
    """Where an interrupted cell continues: the next epoch, the history so far, the best validation state."""

    epoch: int = 0
    history: list[dict[str, Any]] | None = None
    best: dict[str, Any] | None = None


def save_resume_state(run_dir: Path, model: torch.nn.Module, opts: list[dict[str, Any]], epoch: int,
                      origin: dict[str, Any], history: list[dict[str, Any]], best: dict[str, Any]) -> None:
    """Write ``checkpoint.pt`` atomically (a crash while writing leaves the previous one intact).

    ``origin`` says what the state was trained by (recipe hash, code versions, data fingerprints);
    :func:`load_resume_state` resumes only from the same origin.
    """
    import torch

    state = {"model": model.state_dict(), "epoch": epoch, "origin": origin, "history": history,
             "best": best, "optimizers": [o["optimizer"].state_dict() for o in opts],
             "schedulers": [o["scheduler"].state_dict() if o.get("scheduler") else None for o in opts],
             "torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state(), "py_rng": random.getstate()}
    path = Path(run_dir) / RESUME_FILE
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_resume_state(run_dir: Path, model: torch.nn.Module, opts: list[dict[str, Any]], origin: dict[str, Any],
                      device: str) -> ResumeState:
    """Restore ``checkpoint.pt`` into ``model`` and ``opts``; nothing to restore gives a fresh state.

    A checkpoint of another origin (recipe, aubench or plugin code, data) or one that no longer fits
    the model is refused: continuing it would mix two experiments in one result.
    """
    import torch

    path = Path(run_dir) / RESUME_FILE
    if not path.exists():
        return ResumeState()
    ways_out = "pass --overwrite to train this cell from the start, or use another --runs-dir"
    state = torch.load(path, map_location=device, weights_only=False)
    theirs = state.get("origin") or {}
    changed = [key for key in sorted(set(origin) | set(theirs)) if origin.get(key) != theirs.get(key)]
    if changed:
        shown = "; ".join(f"{k}: {theirs.get(k)!r} then, {origin.get(k)!r} now" for k in changed)
        raise CheckpointError(f"{path} was written by another recipe, code or data ({shown}); {ways_out}")
    try:
        model.load_state_dict(state["model"])
        for o, s, sc in zip(opts, state["optimizers"], state["schedulers"]):
            o["optimizer"].load_state_dict(s)
            if sc is not None and o.get("scheduler"):
                o["scheduler"].load_state_dict(sc)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path} no longer fits the model ({str(exc).splitlines()[0]}); {ways_out}") from None
    torch.set_rng_state(state["torch_rng"])
    np.random.set_state(state["numpy_rng"])
    random.setstate(state["py_rng"])
    return ResumeState(int(state["epoch"]), list(state.get("history", [])), state.get("best"))


def discard_resume_state(run_dir: Path) -> None:
    (Path(run_dir) / RESUME_FILE).unlink(missing_ok=True)


# --------------------------------------------------------------------------- final weights


def cell_meta(cell: Cell, data: CellData, versions: dict[str, str]) -> CheckpointMeta:
    """The metadata record of a cell's final weights."""
    from omegaconf import OmegaConf

    from aubench.data.device import DEFAULT_MEAN, DEFAULT_STD

    inp = cell.config.get("input") or {}
    return CheckpointMeta(
        method=cell.method, preset=cell.preset, config_hash=cell.config_hash, protocol=cell.protocol.id,
        fold=cell.fold.name, test_subject_hash=cell.fold.test_hash, train_dataset=data.train_ds.name,
        train_subjects=tuple(data.train_subjects), train_fingerprint=data.train_ds.fingerprint,
        au_set=tuple(data.train_aus), preprocessing_id=str(data.train_ds.meta.get("preprocessing_id")),
        input_size=int(inp["size"]) if inp.get("size") else None,
        input_mean=tuple(inp.get("mean", DEFAULT_MEAN)), input_std=tuple(inp.get("std", DEFAULT_STD)),
        threshold=0.5, versions=versions, config=OmegaConf.to_container(cell.config, resolve=True))


def save_weights(run_dir: Path, model: torch.nn.Module, meta: CheckpointMeta) -> Path:
    """Final weights as ``model.safetensors`` with ``meta`` (tensors sharing memory are stored apart)."""
    from safetensors.torch import save_file

    state, seen = {}, set()
    for key, value in model.state_dict().items():
        value = value.detach().cpu().contiguous()
        state[key] = value.clone() if value.data_ptr() in seen and value.numel() else value
        seen.add(value.data_ptr())
    from aubench.results import atomic_path

    path = Path(run_dir) / WEIGHTS_FILE
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta.to_metadata())
    return path


def read_meta(path: Path) -> CheckpointMeta:
    """The :class:`CheckpointMeta` of a ``model.safetensors`` file (or of a cell folder holding one)."""
    from safetensors import safe_open

    path = Path(path).expanduser()
    if path.is_dir():
        path = path / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} is not a model.safetensors file (or a cell folder holding one)")
    with safe_open(str(path), "pt") as fh:
        return CheckpointMeta.from_metadata(fh.metadata() or {}, str(path))


def check_compatible(meta: CheckpointMeta, source: str, *, au_set: tuple[int, ...], preprocessing_id: str,
                     test_dataset: str, test_subjects: tuple[str, ...], strict: bool,
                     user: str = "this cell") -> list[str]:
    """Refuse weights that would give a wrong result in a cell; return warnings for tolerated differences.

    * trained on a subject this cell tests on (same dataset): error, always;
    * the same AUs in another order, or other AUs with as many outputs (a head that would load
      silently with the wrong meaning): error; other AUs with another count: the head is skipped;
    * another preprocessing id: error with ``strict``, else a warning.
    """
    overlap = sorted(set(meta.train_subjects) & set(test_subjects))
    if meta.train_dataset == test_dataset and overlap:
        raise CheckpointError(
            f"{source} was trained on {meta.train_dataset} subjects {overlap[:5]}{'...' if len(overlap) > 5 else ''}, "
            f"which {user} tests on. Use a checkpoint whose training subjects exclude them.")
    if tuple(meta.au_set) != tuple(au_set) and len(meta.au_set) == len(au_set):
        what = "the same AUs in another order" if sorted(meta.au_set) == sorted(au_set) else "other AUs"
        raise CheckpointError(f"{source} predicts AUs {list(meta.au_set)}, {what} than {user}'s {list(au_set)}; "
                              "its output layer would load with the wrong meaning. Use a checkpoint trained on "
                              "this AU set, or one whose output count differs (its head is then skipped)")
    notes = []
    if meta.preprocessing_id != preprocessing_id:
        msg = (f"{source} was trained on images prepared as {meta.preprocessing_id!r}; {user}'s are "
               f"{preprocessing_id!r}")
        if strict:
            raise CheckpointError(msg + "; prepare the data the same way, or set init.strict=false to accept it")
        warnings.warn(msg, stacklevel=2)
        notes.append(msg)
    return notes


def _renamed(state: dict[str, Any], rename: dict[str, str], own: dict[str, Any], source: str) -> dict[str, Any]:
    """``init.rename``: the source tensors under each source prefix, under the model's own prefix instead;
    nothing else. Every model tensor under an own prefix must be filled, with its shape: a part the recipe
    says comes from another cell is never left at its random initialisation."""
    out = {own_p + k[len(src_p):]: v for src_p, own_p in rename.items() for k, v in state.items() if k.startswith(src_p)}
    for own_p in rename.values():
        wanted = [k for k in own if k.startswith(own_p)]
        missing = [k for k in wanted if k not in out or tuple(out[k].shape) != tuple(own[k].shape)]
        if not wanted or missing:
            raise CheckpointError(
                f"init.rename {rename} from {source}: " + (f"the model has no tensor under {own_p!r}" if not wanted else
                f"{len(missing)} of the model's {len(wanted)} tensors under {own_p!r} are missing or of another "
                f"shape in the checkpoint (first: {missing[0]})") + "; check the prefixes and that both recipes "
                "build the same network")
    return out


def load_init_weights(model: torch.nn.Module, cell: Cell, data: CellData) -> dict[str, Any] | None:
    """Start ``model`` from the cell it depends on (``init.from``) or from ``init.checkpoint``, after
    :func:`check_compatible`; return what was loaded (``None`` when the recipe starts from scratch).

    A checkpoint source is a cell folder or ``model.safetensors``, ``hf://org/name[@rev]/fold``, or a
    checkpoint name a plugin registered (see :mod:`aubench.hub`); pickles are refused.

    A cell of a transfer protocol (``ProtocolSpec.models_from``) loads its source cell's model whole: every
    tensor, no rename, whatever the recipe's ``init`` says (it applied to the source cell)."""
    from safetensors.torch import load_file

    from aubench.hub import resolve_checkpoints

    init, dep = cell.config.init, cell.depends_on
    transfer = cell.protocol.models_from is not None
    strict, rename = (True, None) if transfer else (bool(init.strict), init.get("rename"))
    if transfer and dep is None:  # never a transfer protocol's number from untrained weights
        raise CheckpointError(f"{cell.label}: {cell.protocol.id} evaluates the models of {cell.protocol.models_from}, "
                              "but this cell names none; plan it with aubench.plan_cells (`aubench run`)")
    if dep is None and not init.checkpoint:
        return None
    if dep is not None and not (dep.run_dir / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"{cell.label} starts from {dep.label} (init.from), which has not finished: run "
                              "both with `aubench run` (it runs the dependency first)")
    ckpts = resolve_checkpoints(str(dep.run_dir if dep is not None else init.checkpoint))
    if len(ckpts) != 1:
        raise CheckpointError(f"init.checkpoint={init.checkpoint} holds {len(ckpts)} folds "
                              f"({', '.join(c.path.name for c in ckpts)}); name one, e.g. {ckpts[0].source}")
    path, meta = ckpts[0].path / WEIGHTS_FILE, ckpts[0].meta
    notes = check_compatible(meta, f"init.checkpoint {ckpts[0].source}", au_set=data.train_aus,
                             preprocessing_id=str(data.train_ds.meta.get("preprocessing_id")),
                             test_dataset=data.test_ds.name, test_subjects=cell.fold.test_subjects,
                             strict=strict, user=f"this cell ({cell.protocol.id} fold {cell.fold.name})")
    state = load_file(str(path))
    own = model.state_dict()
    if rename:
        state = _renamed(state, dict(rename), own, ckpts[0].source)
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if strict and not rename and len(usable) != len(own):  # rename: _renamed checked its part
        raise CheckpointError(f"init.checkpoint {ckpts[0].source}: {len(own) - len(usable)} tensors missing or of "
                              "another shape; " + (f"{cell.protocol.id} evaluates that model as it is" if transfer
                                                   else "set init.strict=false to load the matching ones"))
    model.load_state_dict(usable, strict=False)
    return {"path": str(path), "weights_digest": weights_digest(path), "source": ckpts[0].source,
            "revision": ckpts[0].revision, "protocol": meta.protocol,
            "fold": meta.fold, "train_dataset": meta.train_dataset, "test_subject_hash": meta.test_subject_hash,
            "loaded_tensors": len(usable), "skipped_tensors": len(own) - len(usable), "notes": notes,
            "rename": dict(rename) if rename else None,
            "from": None if dep is None else {"method": dep.method, "preset": dep.preset, "config_hash": dep.config_hash,
                                              "protocol": dep.protocol.id, "fold": dep.fold.name, "seed": dep.seed}}
