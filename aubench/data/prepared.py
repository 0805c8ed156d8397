"""The prepared-dataset format.

A prepared dataset is a folder::

    meta.json       format version, AU set, label kind, preprocessing id, fingerprint, complete flag
    index.csv       one row per frame: subject, video, frame, then one label column per AU ("AU1", ...)
    frames.npy      uint8 [N, H, W, 3], memory-mapped at load: decoding never repeats per epoch
    features.npy    instead of frames.npy, for vector datasets: float32 [N, D] (meta["feature_dim"] = D),
                    batched as ``batch["x"]`` (e.g. the MONET toy dataset, 2-D points)
    landmarks.npy   optional float32 [N, 68, 2], iBUG order, pixel coordinates of frames.npy
    parsing.npy     optional uint8 [N, H, W], face-parsing classes listed in meta["parsing_classes"]

Label codes are stored raw: occurrence datasets use 0/1 and ``meta["unknown_code"]`` (BP4D's 9)
for unknown; intensity datasets store 0-5 and protocols binarise them. The writer builds the folder
under ``<name>.partial`` and renames it into place only when complete, so an interrupted
preparation is never mistaken for a finished one.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aubench.errors import DatasetError

if TYPE_CHECKING:
    from aubench.specs import DatasetSpec

__all__ = ["PreparedDataset", "PreparedWriter", "FORMAT_VERSION", "dataset_dir", "ensure_prepared", "aubench_home"]

FORMAT_VERSION = 1
PARSING_CLASSES = ("background", "skin", "brows", "eyes", "nose", "lips", "mouth", "hair")


def aubench_home() -> Path:
    """Root of aubench's caches (``$AUBENCH_HOME``, default ``~/.cache/aubench``; set but empty counts as
    unset: never the current folder)."""
    return Path(os.environ.get("AUBENCH_HOME") or Path.home() / ".cache" / "aubench").expanduser()


def dataset_dir(name: str) -> Path:
    """Where the prepared dataset ``name`` lives (``$AUBENCH_DATA`` or ``$AUBENCH_HOME/datasets``)."""
    env = os.environ.get("AUBENCH_DATA")
    root = Path(env).expanduser() if env else aubench_home() / "datasets"
    for folder, what in ((root, "AUBENCH_DATA" if env else "the datasets folder"), (aubench_home(), "AUBENCH_HOME")):
        if folder.exists() and not folder.is_dir():
            raise DatasetError(f"{what} {folder} is a file, not a folder; point it at a folder (or unset it)")
    return root / name


def _hash_file(path: Path, h: Any) -> None:
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)


ARRAYS = ("frames.npy", "features.npy", "landmarks.npy", "parsing.npy")


def _content_facts(root: Path) -> dict[str, Any]:
    """What ``meta.json`` records of the content: a hash of everything, of ``index.csv`` alone (checked at
    every load), and each array's shape and dtype (checked at every load, from the headers)."""
    h = hashlib.sha256()
    for fname in ("index.csv", *ARRAYS):
        if (root / fname).exists():
            _hash_file(root / fname, h)
    index_hash = hashlib.sha256((root / "index.csv").read_bytes()).hexdigest()[:16]
    arrays = {}
    for fname in ARRAYS:
        if (root / fname).exists():
            arr = np.load(root / fname, mmap_mode="r")
            arrays[fname] = {"shape": list(arr.shape), "dtype": str(arr.dtype)}
    return {"content_hash": h.hexdigest()[:16], "index_hash": index_hash, "arrays": arrays}


class PreparedWriter:
    """Writes a prepared dataset atomically: arrays go to ``<out>.partial`` until :meth:`finish`."""

    def __init__(self, out_dir: Path, *, name: str, au_set: Sequence[int], label_kind: str,
                 image_size: int, n_frames: int, with_landmarks: bool = False, with_parsing: bool = False,
                 unknown_code: int | None = 9, feature_dim: int | None = None):
        self.out_dir = Path(out_dir)
        self.tmp = self.out_dir.with_name(self.out_dir.name + ".partial")
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)
        self.meta: dict[str, Any] = {
            "format_version": FORMAT_VERSION, "name": name, "au_set": [int(a) for a in au_set],
            "label_kind": label_kind, "unknown_code": unknown_code, "image_size": int(image_size),
            "n_frames": int(n_frames), "has_landmarks": with_landmarks, "has_parsing": with_parsing,
            "parsing_classes": list(PARSING_CLASSES) if with_parsing else [],
        }
        shape = (n_frames, image_size, image_size)
        if feature_dim is not None:  # a vector dataset: features.npy instead of frames.npy
            if with_landmarks or with_parsing:
                raise DatasetError(f"{name}: a vector dataset (feature_dim={feature_dim}) has no landmarks or parsing maps")
            self.meta["feature_dim"] = int(feature_dim)
        self.features = (np.lib.format.open_memmap(self.tmp / "features.npy", "w+", np.float32, (n_frames, int(feature_dim)))
                         if feature_dim is not None else None)
        self.frames = (np.lib.format.open_memmap(self.tmp / "frames.npy", "w+", np.uint8, shape + (3,))
                       if feature_dim is None else None)
        self.landmarks = (np.lib.format.open_memmap(self.tmp / "landmarks.npy", "w+", np.float32, (n_frames, 68, 2))
                          if with_landmarks else None)
        self.parsing = (np.lib.format.open_memmap(self.tmp / "parsing.npy", "w+", np.uint8, shape)
                        if with_parsing else None)

    def finish(self, index: Any, **meta: Any) -> Path:
        """Write the index table and metadata, fingerprint the content, and move into place."""
        au_cols = [f"AU{a}" for a in self.meta["au_set"]]
        missing = [c for c in ["subject", "video", "frame", *au_cols] if c not in index.columns]
        if missing:
            raise DatasetError(f"index for {self.out_dir} lacks columns {missing}")
        if len(index) != self.meta["n_frames"]:
            raise DatasetError(f"index has {len(index)} rows but {self.meta['n_frames']} frames were allocated")
        for arr in (self.frames, self.features, self.landmarks, self.parsing):
            if arr is not None:
                arr.flush()
        del self.frames, self.features, self.landmarks, self.parsing
        index.to_csv(self.tmp / "index.csv", index=False)
        self.meta.update(meta)
        self.meta.update(_content_facts(self.tmp))
        self.meta.setdefault("fingerprint", self.meta["content_hash"])
        self.meta["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.meta["complete"] = True
        (self.tmp / "meta.json").write_text(json.dumps(self.meta, indent=2))
        if self.out_dir.exists():
            shutil.rmtree(self.out_dir)
        os.replace(self.tmp, self.out_dir)
        return self.out_dir


class PreparedDataset:
    """A prepared dataset opened for reading (arrays memory-mapped, index in memory)."""

    def __init__(self, root: Path):
        import pandas as pd

        self.root = Path(root)
        meta_path = self.root / "meta.json"
        if not meta_path.is_file():
            partial = self.root.with_name(self.root.name + ".partial")
            extra = f" An unfinished preparation exists at {partial}." if partial.exists() else ""
            raise DatasetError(
                f"No prepared dataset at {self.root} (missing {meta_path.name}).{extra} "
                "Prepare it with `aubench data prepare <dataset> <raw-root>`; synthetic datasets are "
                "generated automatically by `aubench run`."
            )
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{meta_path} is not valid JSON ({exc}); delete {self.root} and prepare it again.") from exc
        if not self.meta.get("complete"):
            raise DatasetError(f"{self.root} is not marked complete; delete it and prepare it again.")
        if self.meta.get("format_version") != FORMAT_VERSION:
            raise DatasetError(
                f"{self.root} has format version {self.meta.get('format_version')}, this aubench reads "
                f"{FORMAT_VERSION}; prepare it again."
            )
        self.au_set: tuple[int, ...] = tuple(self.meta["au_set"])
        try:
            self.index = pd.read_csv(self.root / "index.csv", dtype={"subject": str, "video": str})
            vector = self.meta.get("feature_dim") is not None
            self.features = np.load(self.root / "features.npy", mmap_mode="r") if vector else None
            self.frames = None if vector else np.load(self.root / "frames.npy", mmap_mode="r")
            self.landmarks = np.load(self.root / "landmarks.npy", mmap_mode="r") if self.meta["has_landmarks"] else None
            self.parsing = np.load(self.root / "parsing.npy", mmap_mode="r") if self.meta["has_parsing"] else None
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{self.root} is corrupt or incomplete: {exc}. Delete it and prepare it again.") from exc
        n = len(self.index)
        for label, arr in (("frames.npy", self.frames), ("features.npy", self.features), ("landmarks.npy", self.landmarks),
                           ("parsing.npy", self.parsing)):
            if arr is not None and arr.shape[0] != n:
                raise DatasetError(
                    f"{self.root / label} has {arr.shape[0]} rows but index.csv has {n}; the dataset is corrupt. "
                    "Delete it and prepare it again."
                )
        self._check_recorded_content()
        self.codes = self.index[[f"AU{a}" for a in self.au_set]].to_numpy(np.int16)

    def _check_recorded_content(self) -> None:
        """``index.csv`` and the arrays' shapes must be what ``meta.json`` recorded when the dataset was
        prepared: an edited label file must not train under the old fingerprint."""
        again = "Prepare it again (or restore the file); `aubench data verify` checks every byte."
        if "index_hash" in self.meta:
            actual = hashlib.sha256((self.root / "index.csv").read_bytes()).hexdigest()[:16]
            if actual != self.meta["index_hash"]:
                raise DatasetError(f"{self.root / 'index.csv'} changed after the dataset was prepared (hash {actual}, "
                                   f"meta.json says {self.meta['index_hash']}); its labels no longer match the "
                                   f"fingerprint {self.meta.get('fingerprint')}. {again}")
        for fname, facts in (self.meta.get("arrays") or {}).items():
            arr = {"frames.npy": self.frames, "features.npy": self.features, "landmarks.npy": self.landmarks,
                   "parsing.npy": self.parsing}.get(fname)
            if arr is None or list(arr.shape) != facts["shape"] or str(arr.dtype) != facts["dtype"]:
                found = "missing" if arr is None else f"{list(arr.shape)} {arr.dtype}"
                raise DatasetError(f"{self.root / fname} is {found}, meta.json says {facts['shape']} {facts['dtype']}. "
                                   + again)

    def verify(self) -> list[str]:
        """Hash every file against ``meta.json`` (``aubench data verify``); return what was checked."""
        facts = _content_facts(self.root)
        if facts["content_hash"] != self.meta.get("content_hash"):
            raise DatasetError(f"{self.root}: the content hash is {facts['content_hash']}, meta.json says "
                               f"{self.meta.get('content_hash')}; a file changed after preparation. Prepare it again.")
        checked = [f"content hash {facts['content_hash']} over index.csv and {', '.join(facts['arrays'])}"]
        if "index_hash" not in self.meta:
            checked.append("no per-load checks recorded (prepared by an older aubench); prepare it again to get them")
        return checked

    @property
    def name(self) -> str:
        return self.meta["name"]

    @property
    def fingerprint(self) -> str:
        return self.meta["fingerprint"]

    @property
    def subjects(self) -> list[str]:
        return sorted(self.index["subject"].unique())

    def __len__(self) -> int:
        return len(self.index)

    def labels(self, aus: Sequence[int], positive_threshold: int = 2) -> tuple[np.ndarray, np.ndarray]:
        """Binary labels and the validity mask for ``aus`` (in that order), for all frames.

        Occurrence codes: 1 positive, 0 negative, anything else (9) unknown. Intensity codes:
        ``>= positive_threshold`` positive. An AU missing from this dataset is unknown everywhere.
        """
        n = len(self)
        y = np.zeros((n, len(aus)), np.float32)
        mask = np.zeros((n, len(aus)), bool)
        for j, au in enumerate(aus):
            if au not in self.au_set:
                continue
            col = self.codes[:, self.au_set.index(au)]
            if self.meta["label_kind"] == "intensity":
                valid = (col >= 0) & (col <= 5)
                y[:, j] = col >= positive_threshold
            else:
                valid = (col == 0) | (col == 1)
                y[:, j] = col == 1
            mask[:, j] = valid
        y[~mask] = 0
        return y, mask

    def rows_for(self, subjects: Sequence[str]) -> np.ndarray:
        """Row indices of all frames of these subjects, in index order."""
        known = set(self.index["subject"].unique())
        missing = sorted(set(subjects) - known)
        if missing:
            shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
            raise DatasetError(
                f"{len(missing)} subject(s) ({shown}) are not in the prepared dataset {self.root}. The protocol expects them; "
                "prepare the full dataset, or check that the raw copy is complete (`aubench data check`)."
            )
        return np.flatnonzero(self.index["subject"].isin(list(subjects)).to_numpy())


def ensure_prepared(spec: DatasetSpec, *, force: bool = False, progress: bool = True) -> PreparedDataset:
    """Open the prepared dataset of ``spec``, generating it first if it is synthetic and missing.

    A synthetic dataset whose stored fingerprint does not match the generator parameters is
    regenerated, so a changed generator never silently serves stale data.
    """
    from aubench.locks import wait_lock
    from aubench.specs import resolve_factory

    out = dataset_dir(spec.name)
    if force or needs_building(spec):
        with wait_lock(out.with_name(out.name + ".lock")):  # one process generates; the others wait for it
            if force or needs_building(spec):
                resolve_factory(spec.prepare)(out_dir=out, progress=progress, **dict(spec.params))
    return PreparedDataset(out)


def needs_building(spec: DatasetSpec) -> bool:
    """Whether ``spec`` is built here (generated, or derived from other prepared datasets) and its prepared
    copy is missing or was built from other parameters or generator code than the current ones."""
    from aubench.specs import resolve_factory

    if not (spec.synthetic or spec.derived):
        return False
    return _stored_fingerprint(dataset_dir(spec.name)) != resolve_factory(spec.fingerprint)(spec.name, dict(spec.params))


def _stored_fingerprint(out: Path) -> str | None:
    try:
        return json.loads((out / "meta.json").read_text()).get("fingerprint")
    except (OSError, json.JSONDecodeError):
        return None
