"""A protocol fold → the cell's training, validation and test subjects, frames and AUs."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from aubench.errors import ConfigError

if TYPE_CHECKING:
    from aubench.cells import Cell
    from aubench.data.loader import FrameBatches
    from aubench.data.prepared import PreparedDataset
    from aubench.registry import Registry

__all__ = ["CellData", "FrameSets", "split_cell", "frame_sets"]


@dataclass
class CellData:
    """The prepared datasets of a cell and which of their rows, subjects and AUs it uses."""

    train_ds: PreparedDataset
    test_ds: PreparedDataset
    train_rows: np.ndarray
    test_rows: np.ndarray
    val_rows: np.ndarray
    train_aus: tuple[int, ...]
    eval_aus: tuple[int, ...]
    train_subjects: list[str]
    val_subjects: list[str]


def _validation_subjects(cell: Cell, selection: Any, train_subjects: list[str]) -> list[str]:
    """``selection.rule=val`` holds out ``val_subjects`` training subjects, drawn by the cell's seed."""
    if selection.rule == "final":
        return []
    if selection.rule != "val":
        raise ConfigError(f"selection.rule={selection.rule!r}; use 'final' or 'val'")
    n_val = int(selection.val_subjects)
    if not 0 < n_val < len(train_subjects):
        raise ConfigError(f"selection.val_subjects={n_val} must be between 1 and {len(train_subjects) - 1}")
    rng = np.random.default_rng(cell.seed)
    return sorted(rng.choice(sorted(train_subjects), n_val, replace=False).tolist())


def split_cell(cell: Cell, registry: Registry, progress: bool = True) -> CellData:
    """Prepare (or load) the cell's datasets and split them by the protocol fold, subject-exclusively.

    Training subjects are the fold's list when it has one, else every subject of the training
    dataset that is not a test subject (within-dataset protocols); validation subjects, if the
    recipe selects on validation, come out of the training subjects.
    """
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
    val_subjects = _validation_subjects(cell, cell.config.selection, train_subjects)
    train_subjects = [s for s in train_subjects if s not in set(val_subjects)]
    train_aus = tuple(proto.train_aus or proto.eval_aus)
    missing = [a for a in proto.eval_aus if a not in train_aus]
    if missing:
        raise ConfigError(f"{proto.id}: evaluated AUs {missing} are not among the trained AUs {train_aus}")
    return CellData(train_ds, test_ds, train_ds.rows_for(train_subjects), test_ds.rows_for(test_subjects),
                    train_ds.rows_for(val_subjects) if val_subjects else np.zeros(0, int),
                    train_aus, tuple(proto.eval_aus), train_subjects, val_subjects)


@dataclass
class FrameSets:
    """The cell's frames as batch sources, and the frozen-backbone features cached for each."""

    train: FrameBatches
    test: FrameBatches
    val: FrameBatches | None
    caches: dict[str, Any] = field(default_factory=dict)


def frame_sets(data: CellData, inputs: tuple[str, ...], cell: Cell) -> FrameSets:
    """Training, test and validation frames (or clips of frames, with the recipe's ``clip``)."""
    from aubench.data.loader import FrameBatches

    y_tr, m_tr = data.train_ds.labels(data.train_aus, cell.protocol.positive_threshold)
    y_te, m_te = data.test_ds.labels(data.eval_aus, cell.protocol.positive_threshold)

    def frames(ds: Any, rows: np.ndarray, y: np.ndarray, m: np.ndarray) -> FrameBatches:
        return FrameBatches(ds, rows, y[rows], m[rows], inputs, cell.config.get("clip"), size)
    # frames are resized once, up front, unless a crop must see the stored resolution first
    size = None if (cell.config.get("augment") or {}).get("crop") else (cell.config.get("input") or {}).get("size")
    return FrameSets(frames(data.train_ds, data.train_rows, y_tr, m_tr), frames(data.test_ds, data.test_rows, y_te, m_te),
                     frames(data.train_ds, data.val_rows, y_tr, m_tr) if len(data.val_rows) else None)
