"""aubench: a plugin-based benchmark harness for facial Action Unit detection.

This module is the public API: everything a plugin or a user script needs is importable from
``aubench``, and a plugin imports nothing else from the package (a test enforces it). Importing it
is cheap (no torch): names from heavy modules load on first access.

* the plugin contract: :data:`hookimpl`, the specs, :func:`load_reference_tables`;
* shared facts: the BP4D/DISFA AU sets and subjects, the JAA-Net partitions and :func:`jaanet_folds`;
* building blocks: :class:`TrainStats`, :func:`masked_bce`, :func:`soft_dice`, :func:`per_au_mean`,
  :func:`create_backbone`, :class:`PreparedWriter`, :class:`Scan` / :class:`Issue` (raw-data checks);
* the builders a model's ``configure_optimizers`` uses and the engine's own entry points;
* the result and checkpoint records; the conformance checks (:func:`check_model`, ...);
* the error tree (:mod:`aubench.errors` documents it).
"""
from __future__ import annotations

__version__ = "0.1.0"

from aubench.errors import (
    AubenchError,
    CheckpointError,
    ConfigError,
    ContractError,
    DatasetError,
    DuplicateNameError,
    NonFiniteLossError,
    PluginError,
    RecordError,
    ResultExistsError,
    UnknownNameError,
    did_you_mean,
)
from aubench.hookspecs import hookimpl
from aubench.protocols import (
    BP4D_AUS,
    BP4D_SUBJECTS,
    DISFA_AUS,
    DISFA_EVAL_AUS,
    DISFA_SUBJECTS,
    FOLD_CONVENTION,
    JAANET_BP4D_PARTS,
    JAANET_DISFA_PARTS,
    jaanet_folds,
    transfer_folds,
    union_folds,
)
from aubench.registry import Registry, get_registry
from aubench.scan import Issue, Scan
from aubench.specs import (
    CheckpointSpec,
    DatasetSpec,
    Fold,
    LossSpec,
    MethodSpec,
    ModelSpec,
    ProtocolSpec,
    ReferenceTable,
    load_reference_tables,
    resolve_factory,
    subject_hash,
)

#: names loaded on first access, from the module that defines them (they import torch, numpy or pandas)
_LAZY = {
    "TrainStats": "aubench.stats",
    "masked_bce": "aubench.lossutils",
    "soft_dice": "aubench.lossutils",
    "per_au_mean": "aubench.lossutils",
    "DICE_REDUCTIONS": "aubench.lossutils",
    "create_backbone": "aubench.backbones",
    "SmokeCNN": "aubench.backbones",
    "PreparedWriter": "aubench.data.prepared",
    "PreparedDataset": "aubench.data.prepared",
    "ensure_prepared": "aubench.data.prepared",
    "PARSING_CLASSES": "aubench.data.prepared",
    "dataset_dir": "aubench.data.prepared",
    "merge_prepared": "aubench.data.union",
    "FrameBatches": "aubench.data.loader",
    "to_device": "aubench.data.device",
    "parsing_from_landmarks": "aubench.data.parsing",
    "build_model": "aubench.build",
    "model_inputs": "aubench.build",
    "build_losses": "aubench.build",
    "build_optimizer": "aubench.build",
    "build_optimizers": "aubench.build",
    "build_scheduler": "aubench.build",
    "Cell": "aubench.cells",
    "plan_cells": "aubench.cells",
    "run_cells": "aubench.cells",
    "run_cell": "aubench.engine",
    "ResultRecord": "aubench.records",
    "load_record": "aubench.records",
    "load_records": "aubench.records",
    "CheckpointMeta": "aubench.checkpoints",
    "read_meta": "aubench.checkpoints",
    "au_metrics": "aubench.metrics",
    "check_model": "aubench.testing",
    "check_loss": "aubench.testing",
    "check_method": "aubench.testing",
    "toy_batch": "aubench.testing",
    "toy_stats": "aubench.testing",
    "pyplot": "aubench.plots",
    "die_with_parent": "aubench.locks",
    "wait_lock": "aubench.locks",
    "aubench_home": "aubench.data.prepared",
}

__all__ = [
    "__version__",
    "hookimpl",
    "Registry",
    "get_registry",
    "DatasetSpec",
    "ModelSpec",
    "LossSpec",
    "MethodSpec",
    "ProtocolSpec",
    "Fold",
    "ReferenceTable",
    "CheckpointSpec",
    "load_reference_tables",
    "resolve_factory",
    "subject_hash",
    "BP4D_AUS",
    "BP4D_SUBJECTS",
    "DISFA_AUS",
    "DISFA_EVAL_AUS",
    "DISFA_SUBJECTS",
    "FOLD_CONVENTION",
    "JAANET_BP4D_PARTS",
    "JAANET_DISFA_PARTS",
    "jaanet_folds",
    "transfer_folds",
    "union_folds",
    "Issue",
    "Scan",
    "AubenchError",
    "CheckpointError",
    "ConfigError",
    "ContractError",
    "DatasetError",
    "DuplicateNameError",
    "NonFiniteLossError",
    "PluginError",
    "RecordError",
    "ResultExistsError",
    "UnknownNameError",
    "did_you_mean",
    *_LAZY,
]


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'aubench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
