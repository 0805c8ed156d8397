"""The conformance suite's base and its data checks: :class:`ConformanceError`, datasets and protocols.

Import them from :mod:`aubench.testing`, which re-exports everything here.
"""
from __future__ import annotations

import inspect
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from aubench.registry import Registry

__all__ = ["ConformanceError", "check_dataset", "check_protocol"]


class ConformanceError(AssertionError):
    """A component broke the plugin contract: ``kind``, ``name``, ``plugin``, ``check`` say which and where."""

    def __init__(self, kind: str, name: str, plugin: str, check: str, detail: str, fix: str):
        super().__init__(f"{kind} {name!r} (plugin {plugin!r}) fails the check '{check}': {detail}. {fix}")
        self.kind, self.name, self.plugin, self.check = kind, name, plugin, check


def _registry(registry: Registry | None) -> Registry:
    from aubench.registry import get_registry

    return registry or get_registry()


class _Checker:
    """Raises :class:`ConformanceError` for one component."""

    def __init__(self, kind: str, name: str, registry: Registry):
        self.kind, self.name, self.plugin = kind, name, registry.owner(kind, name)

    def require(self, ok: Any, check: str, detail: str, fix: str) -> None:
        if not ok:
            raise ConformanceError(self.kind, self.name, self.plugin, check, detail, fix)

    def call(self, check: str, fn: Callable[[], Any], fix: str) -> Any:
        try:
            return fn()
        except ConformanceError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of the component is reported as its own
            raise ConformanceError(self.kind, self.name, self.plugin, check, f"{type(exc).__name__}: {exc}", fix) from exc


def check_dataset(name: str, registry: Registry | None = None, prepare_params: dict[str, Any] | None = None,
                  out_dir: Path | None = None) -> Any:
    """The dataset's spec is coherent and, for synthetic datasets, its fingerprint is stable and follows its
    parameters. With ``prepare_params`` (for a synthetic dataset: small generator parameters; for a real
    one: where its raw copy is), a small instance is prepared into ``out_dir`` and checked: AU set, label
    codes, subjects, and the recorded content hash. Returns the prepared dataset, if any."""
    from aubench.data.prepared import PreparedDataset
    from aubench.specs import resolve_factory

    reg = _registry(registry)
    c = _Checker("dataset", name, reg)
    spec = reg.get("dataset", name)
    c.require(spec.au_set and len(set(spec.au_set)) == len(spec.au_set) and all(isinstance(a, int) for a in spec.au_set),
              "AU set", f"au_set={spec.au_set}", "list each AU number once")
    c.require(spec.label_kind in ("occurrence", "intensity"), "label kind", f"label_kind={spec.label_kind!r}",
              "use 'occurrence' (0/1/unknown) or 'intensity' (0-5)")
    c.require(len(set(spec.subjects or ())) == len(spec.subjects or ()), "subjects", "a subject is listed twice",
              "list each subject once")
    prepare = c.call("prepare", lambda: resolve_factory(spec.prepare), "fix the prepare string of its DatasetSpec")
    sig = inspect.signature(prepare).parameters
    c.require(("out_dir" in sig and "progress" in sig) or any(p.kind is p.VAR_KEYWORD for p in sig.values()),
              "prepare signature", f"prepare{inspect.signature(prepare)}",
              "define prepare(out_dir, progress=True, **params)")
    if spec.synthetic:
        fp = c.call("fingerprint", lambda: resolve_factory(spec.fingerprint), "fix the fingerprint string")
        first, second = fp(spec.name, dict(spec.params)), fp(spec.name, dict(spec.params))
        c.require(isinstance(first, str) and first == second, "fingerprint stable", f"{first!r} then {second!r}",
                  "hash only the generator's parameters and source")
        if prepare_params:
            c.require(fp(spec.name, {**spec.params, **prepare_params}) != first, "fingerprint follows parameters",
                      f"parameters {prepare_params} kept fingerprint {first}", "hash every generator parameter")
    if prepare_params is None:
        return None
    out = Path(out_dir or tempfile.mkdtemp(prefix="aubench-conformance-")) / spec.name
    params = {**dict(spec.params), **prepare_params} if spec.synthetic else dict(prepare_params)
    c.call("prepares", lambda: prepare(out_dir=out, progress=False, **params), "see the error")
    ds = c.call("loads", lambda: PreparedDataset(out), "write the folder with aubench.PreparedWriter")
    c.require(tuple(ds.au_set) == tuple(spec.au_set), "prepared AU set", f"{ds.au_set} vs the spec's {spec.au_set}",
              "write the spec's AUs")
    codes = set(np.unique(ds.codes).tolist())
    allowed = set(range(6)) if spec.label_kind == "intensity" else {0, 1}
    unknown = {int(ds.meta.get("unknown_code"))} if ds.meta.get("unknown_code") is not None else set()
    c.require(codes <= allowed | unknown | {-1}, "label codes", f"codes {sorted(codes - allowed - unknown)} found",
              f"store {sorted(allowed)} and the unknown code {sorted(unknown)}")
    c.require(not spec.subjects or set(ds.subjects) <= set(spec.subjects), "prepared subjects",
              f"{sorted(set(ds.subjects) - set(spec.subjects or ()))[:5]} are not in the spec's subjects",
              "name subjects as the spec does")
    c.call("content hash", ds.verify, "prepare it again")
    return ds


def check_protocol(name: str, registry: Registry | None = None) -> None:
    """Folds are named once and test disjoint subjects; a within-dataset fold never trains on its test
    subjects; the evaluated AUs exist in both datasets; listed subjects exist in their dataset's spec."""
    from aubench.leaderboard import METRICS

    reg = _registry(registry)
    proto = reg.get("protocol", name)
    c = _Checker("protocol", proto.id, reg)
    c.require(proto.metric in METRICS, "metric", f"metric={proto.metric!r}", f"use one of {sorted(METRICS)}")
    train, test = reg.get("dataset", proto.train_dataset), reg.get("dataset", proto.test_dataset)
    names = [f.name for f in proto.folds]
    c.require(names and len(set(names)) == len(names), "fold names", f"folds {names}", "name each fold once")
    seen: dict[str, str] = {}
    source = None
    if proto.models_from is not None:  # a transfer protocol: every fold tests the same subjects with another model
        source = next((p for p in reg.specs["protocol"].values() if proto.models_from in (p.id, p.name)), None)
        c.require(source is not None, "models_from", f"models_from={proto.models_from!r} is no registered protocol",
                  "name the protocol whose fold models it evaluates (name@version)")
        unknown = sorted({f.name for f in proto.folds} - {f.name for f in source.folds})
        c.require(not unknown, "models_from folds", f"folds {unknown} are not folds of {source.id}",
                  "name each fold like the source fold whose model it evaluates (aubench.transfer_folds)")
    for fold in proto.folds:
        c.require(fold.test_subjects, "test subjects", f"fold {fold.name} tests no subject", "list its test subjects")
        again = [] if source is not None else sorted(s for s in fold.test_subjects if s in seen)
        c.require(not again, "folds disjoint", f"{again} are tested in fold {seen.get(again[0]) if again else ''} and "
                  f"fold {fold.name}", "test each subject in one fold")
        seen.update((s, fold.name) for s in fold.test_subjects)
        if not proto.cross_dataset and fold.train_subjects is not None:
            leak = sorted(set(fold.train_subjects) & set(fold.test_subjects))
            c.require(not leak, "subject-exclusive", f"fold {fold.name} trains and tests on {leak}",
                      "remove the test subjects from its training list")
        for subjects, ds in ((fold.test_subjects, test), (fold.train_subjects or (), train)):
            missing = sorted(set(subjects) - set(ds.subjects)) if ds.subjects else []
            c.require(not missing, "subjects exist", f"fold {fold.name} names {missing[:5]}, not subjects of {ds.name}",
                      "use the dataset's subject names")
    for aus, ds, what in ((proto.eval_aus, test, "evaluated"), (proto.eval_aus, train, "evaluated"),
                          (proto.train_aus or (), train, "trained")):
        missing = [a for a in aus if a not in ds.au_set]
        c.require(not missing, "AUs exist", f"{what} AUs {missing} are not AUs of {ds.name}",
                  "evaluate only AUs both datasets label")
