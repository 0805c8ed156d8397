"""The typed records plugins register: datasets, models, losses, methods, protocols, references.

Specs are plain frozen dataclasses that import nothing heavy. Factories are given as
``"package.module:attribute"`` strings (or callables) and resolved only when a cell is built,
so ``aubench list`` and ``--help`` never import torch or build a model.
"""
from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aubench.errors import PluginError, did_you_mean

__all__ = [
    "DatasetSpec",
    "ModelSpec",
    "LossSpec",
    "MethodSpec",
    "Fold",
    "ProtocolSpec",
    "ReferenceTable",
    "CheckpointSpec",
    "resolve_factory",
    "subject_hash",
    "load_reference_tables",
]

def resolve_factory(factory: str | Callable[..., Any]) -> Callable[..., Any]:
    """Import ``"pkg.module:attr"`` (or return a callable unchanged)."""
    if callable(factory):
        return factory
    module_name, _, attr = factory.partition(":")
    if not attr:
        raise PluginError(f"factory {factory!r} must look like 'package.module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PluginError(f"factory {factory!r}: module {module_name!r} cannot be imported ({exc}); check the "
                          "registering plugin's factory string and that its package is installed") from exc
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise PluginError(f"factory {factory!r}: module {module_name!r} has no attribute {attr!r}"
                          f"{did_you_mean(attr, [n for n in dir(module) if not n.startswith('_')])}") from exc


def subject_hash(subjects: tuple[str, ...] | list[str]) -> str:
    """Short, order-independent hash of a subject list; printed in every result and checkpoint."""
    return hashlib.sha256(",".join(sorted(subjects)).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its AU set, its subjects, and how to obtain the prepared form.

    ``prepare`` is called as ``prepare(out_dir=Path, **params)`` and must write a prepared
    dataset (see :mod:`aubench.data.prepared`) into ``out_dir``. For a synthetic dataset it
    generates the data; for a real one it is called as ``prepare(out_dir=Path, raw_root=Path, **options)``.
    ``check(raw_root=Path, **options)`` (real datasets) scans a raw copy and returns an object with
    ``counts`` (dict), ``issues`` (each printable, with a ``level`` of "error" or "warning").
    ``label_kind`` is ``"occurrence"`` (codes 0/1, ``unknown_code`` masked) or ``"intensity"``
    (0-5, binarised by the protocol's threshold).
    ``fingerprint(name, params)`` (required for synthetic datasets) returns the fingerprint the
    generated data must carry in its ``meta.json``: cached data with another one is generated again,
    so it must change whenever the generator's output would (hash its parameters and its source).
    ``derived=True`` marks a dataset built from other prepared datasets (e.g. the union of BP4D and
    DISFA, :func:`aubench.merge_prepared`): like a synthetic one it is built on first use and rebuilt
    when its ``fingerprint`` (which hashes its sources') changes, but it is real data (``preset=auto``
    picks ``paper``) and needs its sources prepared.
    """

    name: str
    au_set: tuple[int, ...]
    label_kind: str
    prepare: str | Callable[..., Any]
    subjects: tuple[str, ...] = ()
    synthetic: bool = False
    check: str | Callable[..., Any] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    fingerprint: str | Callable[..., str] | None = None
    derived: bool = False


@dataclass(frozen=True)
class ModelSpec:
    """A model factory: ``factory(au_set=tuple, stats=TrainStats, **cfg) -> nn.Module``.

    This is the model contract, written once (CONTRIBUTING links here). The module's
    ``forward(batch: dict) -> dict`` returns ``logits`` of shape ``[B, len(au_set)]`` in the order of
    ``au_set`` (or ``probs``, already in [0, 1]); it may return more (branch logits, attention maps)
    for its losses. ``batch`` holds ``image`` (normalised float [B, 3, H, W]; ``x`` [B, D] for a vector
    dataset), ``labels``, ``mask`` and, when listed in ``inputs``, ``landmarks`` / ``parsing``.
    Forward may run under bf16 autocast on CUDA. Optional members the engine uses:

    ``configure_optimizers(optim, sched, steps_per_epoch, epochs) -> list[dict]``
        ``{"optimizer", "scheduler" (optional), "start_epoch" (optional, 0-based)}`` per optimiser, for
        several optimisers or warm-ups; build them with :func:`aubench.build_optimizer` and
        :func:`aubench.build_scheduler`. Without it: one optimiser over ``param_groups(optim)`` if
        defined, else over every trainable parameter.
    ``extract_frozen(batch) -> Tensor``
        features of a frozen backbone; the engine may cache them (``engine.cache_features``) and
        then passes them as ``batch["features"]``.
    ``on_epoch_start(epoch)``
        called before each epoch (0-based), e.g. to anneal a temperature.
    ``after_init(init: dict | None)``
        called once the engine has loaded the recipe's starting weights (``init.checkpoint`` / ``init.from``;
        ``None`` when it starts from scratch), with what was loaded (the record's ``init_checkpoint``): a
        model whose frozen part must come from another cell raises here rather than train on random weights.
    ``record_extras() -> dict``
        JSON-able facts saved in the record's ``model_extras`` (e.g. MONET's soft order).
    ``vector_input = True``
        the model reads ``batch["x"]`` (vector datasets) instead of ``batch["image"]``.
    ``stochastic_inference = True``
        eval-mode predictions are Monte-Carlo draws (e.g. MONET's roll-outs); they must restart from a
        seed whenever the model enters eval mode, so a reloaded checkpoint predicts the same.

    ``inputs_for`` (optional, ``"pkg.module:function"`` or a callable) takes the recipe's model parameters
    and returns the batch inputs that configuration reads, added to ``inputs``: a model whose guidance
    is a recipe option (landmarks for one prior, parsing maps for another) asks only for what it uses,
    and frames without parsing maps are resized once per cell.

    ``context`` lists facts of the cell the factory is given as keyword arguments: ``seed`` (the
    cell's seed), ``fold`` (the fold name), ``run_dir`` (the cell folder), ``train_data`` (the prepared
    training dataset) and ``train_subjects`` (the cell's training subjects), e.g. to pre-train a frozen
    part on them. ``train_data`` is ``None`` when the weights come from a checkpoint (evaluation).
    """

    name: str
    factory: str | Callable[..., Any]
    inputs: tuple[str, ...] = ()
    description: str = ""
    context: tuple[str, ...] = ()
    inputs_for: str | Callable[..., tuple[str, ...]] | None = None


@dataclass(frozen=True)
class LossSpec:
    """A loss factory: ``factory(**cfg) -> loss`` with ``loss(outputs, batch, stats) -> (scalar, terms)``.

    ``terms`` is a dict of floats logged per epoch. ``stats`` is a
    :class:`aubench.stats.TrainStats` computed on the training subjects of the cell. ``reads`` names
    the model outputs the loss trains through, first the per-AU scores: ``logits`` (default) or
    ``probs`` for a model that returns calibrated scores and trains through them; the conformance
    suite checks gradients through that output.
    """

    name: str
    factory: str | Callable[..., Any]
    description: str = ""
    reads: tuple[str, ...] = ("logits",)


@dataclass(frozen=True)
class MethodSpec:
    """A method is a recipe: a Hydra config ``method/<config>.yaml`` in a plugin's search path.

    The recipe names a model and a loss, the optimiser and schedule, augmentation, epochs and
    ``presets`` (``paper``/``smoke``). ``default`` methods run in ``aubench run --all``.
    """

    name: str
    config: str = ""
    description: str = ""
    default: bool = True

    @property
    def config_name(self) -> str:
        return self.config or self.name


@dataclass(frozen=True)
class Fold:
    """One split of a protocol: the test subjects, and the train subjects (default: all others)."""

    name: str
    test_subjects: tuple[str, ...]
    train_subjects: tuple[str, ...] | None = None

    @property
    def test_hash(self) -> str:
        return subject_hash(self.test_subjects)


@dataclass(frozen=True)
class ProtocolSpec:
    """A versioned evaluation protocol: exact subject lists per fold, AU subset, binarisation.

    ``train_dataset`` and ``test_dataset`` differ for cross-dataset protocols; ``au_map`` then maps
    each evaluated AU to itself in both datasets (the AUs must be in both AU sets).
    ``train_aus`` are the AUs models are trained on (default: ``eval_aus``); cross-dataset protocols
    train on the source's full AU set and evaluate the shared subset.
    ``positive_threshold`` binarises intensity labels (``>= threshold`` is positive).
    ``metric`` is what the leaderboard ranks by: ``"f1"`` (AU detection) or ``"accuracy"`` (per-task
    accuracy, for multi-task benchmarks such as MONET's toy).
    ``models_from`` makes a *transfer* protocol: it trains nothing and evaluates the models of another
    protocol's folds (a name or ``name@version``; each fold here names a fold there and trains on the same
    subjects, e.g. BP4D's three fold models tested on DISFA, :func:`aubench.protocols.transfer_folds`).
    A changed protocol gets a new ``version``; it is never edited silently.
    """

    name: str
    version: str
    train_dataset: str
    test_dataset: str
    folds: tuple[Fold, ...]
    eval_aus: tuple[int, ...]
    train_aus: tuple[int, ...] | None = None
    positive_threshold: int = 2
    default: bool = False
    description: str = ""
    fold_convention: str = ""
    metric: str = "f1"
    models_from: str | None = None

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def cross_dataset(self) -> bool:
        return self.train_dataset != self.test_dataset

    def fold(self, key: str | int) -> Fold:
        for i, f in enumerate(self.folds):
            if str(key) in (f.name, str(i)):
                return f
        raise KeyError(key)


@dataclass(frozen=True)
class ReferenceTable:
    """Published numbers (percent) to show beside ours on the leaderboard.

    ``rows`` maps a row label to ``{au_number: value, ..., "avg": value}`` (other keys, such as
    ``avg_std``, are extra columns). ``method`` optionally names the aubench method that reproduces
    a row: a method name, or ``"method [variant]"`` as the leaderboard names a recipe variant.
    ``metric`` is ``"f1"`` or ``"accuracy"``, as the protocol's. ``comparable=False`` marks numbers of
    another task (e.g. expression-recognition accuracy) kept for the record: their ``protocol`` is a
    label, not a registered protocol, and the leaderboard says they compare with no aubench row.
    """

    source: str
    protocol: str
    rows: Mapping[str, Mapping[str, float]]
    method: Mapping[str, str] = field(default_factory=dict)
    note: str = ""
    metric: str = "f1"
    comparable: bool = True
    file: str = ""  # where it was loaded from, for messages (set by load_reference_tables)


@dataclass(frozen=True)
class CheckpointSpec:
    """A released checkpoint a plugin names: ``aubench evaluate --checkpoint NAME`` and
    ``init.checkpoint=NAME`` fetch ``hf://repo_id@revision/fold`` (see :mod:`aubench.hub`).

    ``name`` is dotted by convention (``fantrans.bp4d-fold1``); pin ``revision`` to a commit so the
    name always means the same weights.
    """

    name: str
    repo_id: str
    fold: str
    protocol: str
    revision: str | None = None
    description: str = ""


def load_reference_tables(folder: str | Path) -> list[ReferenceTable]:
    """Every ``*.json`` in ``folder`` as a :class:`ReferenceTable` (how plugins ship published tables)."""
    return [ReferenceTable(**json.loads(p.read_text()), file=str(p)) for p in sorted(Path(folder).glob("*.json"))]
