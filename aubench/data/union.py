"""One prepared dataset from several: the union of their AU sets, unknown where a source does not label.

Training on BP4D and DISFA together (the ABAW3 paper's §4.3: "pretraining on the reunion of the
different AU sets and masking the BCE loss for the AU that are not annotated") needs frames of both
in one training set, with each frame's labels for the AUs its dataset annotates and *unknown* (code 9)
for the others, so every masked loss leaves them out. Intensity labels are binarised at the
threshold first (the merged dataset holds occurrence codes). Frames, landmarks and parsing maps are
copied as they are; sources must share the image size and have disjoint subjects.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aubench.data.prepared import PreparedDataset, PreparedWriter
from aubench.errors import DatasetError

__all__ = ["merge_prepared", "prepare_union", "union_fingerprint", "UNKNOWN"]

UNKNOWN = 9
CHUNK = 2048


def merge_prepared(out_dir: Path, sources: Sequence[PreparedDataset], *, name: str, positive_threshold: int = 2,
                   fingerprint: str | None = None) -> Path:
    """Write the union of ``sources`` into ``out_dir`` (see the module docstring); returns ``out_dir``."""
    import pandas as pd

    if len(sources) < 2:
        raise DatasetError(f"{name}: a union needs at least two prepared datasets, got {len(sources)}")
    sizes = {int(s.meta["image_size"]) for s in sources}
    if len(sizes) > 1:
        raise DatasetError(f"{name}: the sources have image sizes {sorted(sizes)}; prepare them at one size "
                           "(--size) before taking their union")
    seen: dict[str, str] = {}
    for s in sources:
        for subject in s.subjects:
            if subject in seen:
                raise DatasetError(f"{name}: subject {subject!r} is in both {seen[subject]} and {s.name}; a union "
                                   "needs disjoint subjects")
            seen[subject] = s.name
    au_set = sorted({int(a) for s in sources for a in s.meta["au_set"]})
    landmarks = all(s.landmarks is not None for s in sources)
    parsing = all(s.parsing is not None for s in sources)
    if parsing and len({tuple(s.meta.get("parsing_classes") or ()) for s in sources}) > 1:
        raise DatasetError(f"{name}: the sources' parsing maps use different class lists; prepare them alike")
    writer = PreparedWriter(out_dir, name=name, au_set=au_set, label_kind="occurrence", image_size=sizes.pop(),
                            n_frames=sum(len(s) for s in sources), with_landmarks=landmarks, with_parsing=parsing,
                            unknown_code=UNKNOWN)
    parts, start = [], 0
    for s in sources:
        y, m = s.labels(au_set, positive_threshold)  # AUs the source lacks come back masked everywhere
        part = s.index[["subject", "video", "frame"]].reset_index(drop=True).copy()
        part["source"] = s.name
        for k, a in enumerate(au_set):
            part[f"AU{a}"] = np.where(m[:, k], y[:, k], UNKNOWN).astype(np.int64)
        parts.append(part)
        for lo in range(0, len(s), CHUNK):
            hi = min(lo + CHUNK, len(s))
            writer.frames[start + lo:start + hi] = s.frames[lo:hi]
            if landmarks:
                writer.landmarks[start + lo:start + hi] = s.landmarks[lo:hi]
            if parsing:
                writer.parsing[start + lo:start + hi] = s.parsing[lo:hi]
        start += len(s)
    extra = {"sources": {s.name: s.fingerprint for s in sources}, "positive_threshold": int(positive_threshold)}
    if fingerprint:
        extra["fingerprint"] = fingerprint
    return writer.finish(pd.concat(parts, ignore_index=True), **extra)


def _source_fingerprint(spec: Any) -> str:
    """A source's data: a generated or derived source's expected fingerprint, a real one's stored fingerprint."""
    from aubench.data.prepared import dataset_dir
    from aubench.specs import resolve_factory

    if spec.synthetic or spec.derived:
        return resolve_factory(spec.fingerprint)(spec.name, dict(spec.params))
    meta = dataset_dir(spec.name) / "meta.json"
    try:
        return json.loads(meta.read_text())["fingerprint"]
    except (OSError, ValueError, KeyError):
        raise DatasetError(f"the union needs {spec.name} prepared first (no {meta}): "
                           f"`aubench data prepare {spec.name} <raw-root>`") from None


def union_fingerprint(name: str, params: dict[str, Any]) -> str:
    """``DatasetSpec.fingerprint`` of a union (``params``: ``sources``, ``positive_threshold``): changes when
    a source's data or this module would."""
    from aubench.registry import get_registry

    reg = get_registry()
    parts = [_source_fingerprint(reg.get("dataset", src)) for src in params["sources"]]
    code = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    blob = "/".join([name, code, str(params.get("positive_threshold", 2)), *parts])
    return "union-" + hashlib.sha256(blob.encode()).hexdigest()[:16]


def prepare_union(out_dir: Path, sources: list[str], positive_threshold: int = 2, progress: bool = True,
                  **_: Any) -> Path:
    """``DatasetSpec.prepare`` of a union: open (generating synthetic ones) the sources, merge into ``out_dir``."""
    from aubench.data.prepared import ensure_prepared
    from aubench.registry import get_registry

    reg = get_registry()
    name = Path(out_dir).name
    fingerprint = union_fingerprint(name, {"sources": sources, "positive_threshold": positive_threshold})
    opened = [ensure_prepared(reg.get("dataset", src), progress=progress) for src in sources]
    return merge_prepared(out_dir, opened, name=name, positive_threshold=positive_threshold, fingerprint=fingerprint)
