"""``synth-union``: synth-bp4d and synth-disfa as one training set over the union of their 17 AUs, each
frame unknown (masked) on the AUs its dataset does not label (:func:`aubench.data.union.merge_prepared`)."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

__all__ = ["prepare", "union_fingerprint"]


def _sources(sources: list[str]) -> list[Any]:
    from aubench import get_registry

    reg = get_registry()
    return [reg.get("dataset", name) for name in sources]


def union_fingerprint(name: str, params: dict[str, Any]) -> str:
    """Changes whenever a source's data (its own fingerprint) or the merge code would."""
    import inspect

    from aubench import merge_prepared, resolve_factory

    parts = [resolve_factory(spec.fingerprint)(spec.name, dict(spec.params)) for spec in _sources(params["sources"])]
    code = hashlib.sha256(Path(inspect.getsourcefile(merge_prepared)).read_bytes()).hexdigest()[:12]
    blob = "/".join([name, code, str(params.get("positive_threshold", 2)), *parts])
    return "union-" + hashlib.sha256(blob.encode()).hexdigest()[:16]


def prepare(out_dir: Path, sources: list[str], positive_threshold: int = 2, progress: bool = True, **_: Any) -> Path:
    """Generate the sources if needed, then merge them into ``out_dir``."""
    from aubench import ensure_prepared, merge_prepared

    name = Path(out_dir).name
    opened = [ensure_prepared(spec, progress=progress) for spec in _sources(sources)]
    return merge_prepared(out_dir, opened, name=name, positive_threshold=positive_threshold,
                          fingerprint=union_fingerprint(name, {"sources": sources,
                                                               "positive_threshold": positive_threshold}))
