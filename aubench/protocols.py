"""The standard facts every BP4D/DISFA-shaped protocol shares: AU sets, subjects, JAA-Net partitions.

Defined once here; the real-data and SynthAU plugins (and any other) import them from ``aubench``.

AU sets: BP4D's 12 occurrence-coded AUs; DISFA's 12 intensity-coded AUs, of which the standard
protocol evaluates 8 (:data:`DISFA_EVAL_AUS`, intensity >= 2 is positive).

The JAA-Net partitions (ZhiwenShao/JAANet ``data/{BP4D,DISFA}_part{1,2,3}_path.txt``), identical in
ME-GraphAU, FG-Net and the ABAW3 code. aubench's convention: **fold k tests part k** and trains on
the other two parts. Other codebases number differently (ME-GraphAU's fold 1 tests part 3; JAA-Net
names models by their training parts, ``combine_1_2`` tests part 3): compare by the test-subject
hash printed with every result, not by the fold number.
"""
from __future__ import annotations

from aubench.specs import Fold

__all__ = ["union_folds", "transfer_folds", "BP4D_AUS", "DISFA_AUS", "DISFA_EVAL_AUS", "BP4D_SUBJECTS", "DISFA_SUBJECTS",
           "JAANET_BP4D_PARTS", "JAANET_DISFA_PARTS", "jaanet_folds", "FOLD_CONVENTION"]

BP4D_AUS: tuple[int, ...] = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
DISFA_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)
DISFA_EVAL_AUS: tuple[int, ...] = (1, 2, 4, 6, 9, 12, 25, 26)

JAANET_BP4D_PARTS: tuple[tuple[str, ...], ...] = (
    ("F001", "M007", "F018", "F008", "F002", "M004", "F010", "F009", "M012", "M001", "F016", "M014", "F023", "M008"),
    ("M011", "F003", "M010", "M002", "F005", "F022", "M018", "M017", "F013", "M016", "F020", "F011", "M013", "M005"),
    ("F007", "F015", "F006", "F019", "M006", "M009", "F012", "M003", "F004", "F021", "F017", "M015", "F014"),
)
JAANET_DISFA_PARTS: tuple[tuple[str, ...], ...] = (
    ("SN002", "SN010", "SN001", "SN026", "SN027", "SN032", "SN030", "SN009", "SN016"),
    ("SN013", "SN018", "SN011", "SN028", "SN012", "SN006", "SN031", "SN021", "SN024"),
    ("SN003", "SN029", "SN023", "SN025", "SN008", "SN005", "SN007", "SN017", "SN004"),
)

#: the 41 BP4D subjects (F001-F023, M001-M018) and the 27 DISFA subjects, sorted
BP4D_SUBJECTS: tuple[str, ...] = tuple(sorted(s for part in JAANET_BP4D_PARTS for s in part))
DISFA_SUBJECTS: tuple[str, ...] = tuple(sorted(s for part in JAANET_DISFA_PARTS for s in part))

FOLD_CONVENTION = (
    "fold k tests JAA-Net part k and trains on the other two parts. "
    "ME-GraphAU fold 1/2/3 = aubench fold 3/2/1; JAA-Net combine_2_3/1_3/1_2 = aubench fold 1/2/3; "
    "FG-Net labels/0,1,2 and Tallec's jaanet folds 0,1,2 = aubench fold 1/2/3."
)


def jaanet_folds(parts: tuple[tuple[str, ...], ...]) -> tuple[Fold, ...]:
    """Three subject-exclusive folds: fold k tests part k, trains on the remaining parts."""
    folds = []
    for k, test in enumerate(parts):
        train = tuple(s for j, part in enumerate(parts) if j != k for s in part)
        folds.append(Fold(name=str(k + 1), test_subjects=tuple(test), train_subjects=train))
    return tuple(folds)


def transfer_folds(source: tuple[Fold, ...], test_subjects: tuple[str, ...],
                   source_subjects: tuple[str, ...]) -> tuple[Fold, ...]:
    """The folds of a transfer protocol (``ProtocolSpec.models_from``): fold k trains on what ``source``'s fold k
    trains on (``source_subjects`` minus its test subjects when it says "all others") and tests on
    ``test_subjects``, all of another dataset."""
    return tuple(Fold(name=f.name, test_subjects=tuple(test_subjects),
                      train_subjects=f.train_subjects if f.train_subjects is not None
                      else tuple(s for s in source_subjects if s not in set(f.test_subjects)))
                 for f in source)


def union_folds(*fold_lists: tuple[Fold, ...]) -> tuple[Fold, ...]:
    """Folds of a union of datasets: fold k tests every dataset's fold-k test subjects together and trains on
    every dataset's fold-k training subjects (the ABAW3 union training, e.g. BP4D and DISFA's JAA-Net parts).
    A fold that trains on "all others" (``train_subjects=None``) keeps that meaning in the union."""
    return tuple(Fold(name=parts[0].name, test_subjects=tuple(s for f in parts for s in f.test_subjects),
                      train_subjects=None if any(f.train_subjects is None for f in parts)
                      else tuple(s for f in parts for s in f.train_subjects))
                 for parts in zip(*fold_lists))
