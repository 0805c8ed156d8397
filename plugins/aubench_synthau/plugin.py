"""Registers the SynthAU variants and their protocols (mirrors of the real BP4D/DISFA protocols).

Synthetic subjects carry BP4D's and DISFA's subject IDs, so the protocols use the exact JAA-Net
partitions of the real datasets.
"""
from __future__ import annotations

from aubench import (
    BP4D_AUS,
    BP4D_SUBJECTS,
    DISFA_AUS,
    DISFA_EVAL_AUS,
    DISFA_SUBJECTS,
    FOLD_CONVENTION,
    JAANET_BP4D_PARTS,
    JAANET_DISFA_PARTS,
    DatasetSpec,
    Fold,
    ProtocolSpec,
    hookimpl,
    jaanet_folds,
    transfer_folds,
    union_folds,
)
from aubench_synthau.variants import PROTOCOL_VERSION

__version__ = "0.1.0"

CROSS_AUS = (1, 2, 4, 6, 12)
UNION_AUS = tuple(sorted(set(BP4D_AUS) | set(DISFA_AUS)))  # the 17 AUs of the ABAW3 authors' merged set
PREPARE = "aubench_synthau.generate:prepare"
FINGERPRINT = "aubench_synthau.generate:synth_fingerprint"


@hookimpl
def aubench_register_datasets():
    return [
        DatasetSpec(name="synth-bp4d", au_set=BP4D_AUS, label_kind="occurrence", prepare=PREPARE, fingerprint=FINGERPRINT,
                    subjects=BP4D_SUBJECTS, synthetic=True, params={"label_noise": 0.05},
                    description="SynthAU, BP4D-like: 41 subjects x 8 tasks, 12 AUs, 0/1/9 occurrence codes"),
        DatasetSpec(name="synth-disfa", au_set=DISFA_AUS, label_kind="intensity", prepare=PREPARE, fingerprint=FINGERPRINT,
                    subjects=DISFA_SUBJECTS, synthetic=True, params={"label_noise": 0.05},
                    description="SynthAU, DISFA-like: 27 subjects, one video each, 12 AUs with 0-5 intensities"),
        DatasetSpec(name="synth-bp4d-noisy", au_set=BP4D_AUS, label_kind="occurrence",
                    prepare=PREPARE, fingerprint=FINGERPRINT, subjects=BP4D_SUBJECTS, synthetic=True,
                    params={"variant": "synth-bp4d", "label_noise": 0.3},
                    description="synth-bp4d with 30% of positive AU episodes annotated as absent (label noise)"),
        DatasetSpec(name="synth-union", au_set=UNION_AUS, label_kind="occurrence", prepare="aubench.data.union:prepare_union",
                    fingerprint="aubench.data.union:union_fingerprint", subjects=BP4D_SUBJECTS + DISFA_SUBJECTS,
                    synthetic=True, params={"sources": ["synth-bp4d", "synth-disfa"], "positive_threshold": 2},
                    description="synth-bp4d + synth-disfa over their 17 AUs, unknown where a dataset does not label"),
    ]



@hookimpl
def aubench_register_protocols():
    return [
        ProtocolSpec(name="synth-bp4d-3fold", version=PROTOCOL_VERSION, train_dataset="synth-bp4d", test_dataset="synth-bp4d",
                     folds=jaanet_folds(JAANET_BP4D_PARTS), eval_aus=BP4D_AUS, default=True,
                     description="subject-exclusive 3-fold CV on synth-bp4d with BP4D's JAA-Net partitions",
                     fold_convention=FOLD_CONVENTION),
        ProtocolSpec(name="synth-disfa-3fold", version=PROTOCOL_VERSION, train_dataset="synth-disfa", test_dataset="synth-disfa",
                     folds=jaanet_folds(JAANET_DISFA_PARTS), eval_aus=DISFA_EVAL_AUS, positive_threshold=2,
                     default=True,
                     description="subject-exclusive 3-fold CV on synth-disfa (8 AUs, intensity >= 2) with DISFA's "
                                 "JAA-Net partitions", fold_convention=FOLD_CONVENTION),
        ProtocolSpec(name="synth-bp4d-folds-to-synth-disfa", version=PROTOCOL_VERSION, train_dataset="synth-bp4d",
                     test_dataset="synth-disfa", models_from=f"synth-bp4d-3fold@{PROTOCOL_VERSION}",
                     folds=transfer_folds(jaanet_folds(JAANET_BP4D_PARTS), DISFA_SUBJECTS, BP4D_SUBJECTS),
                     eval_aus=CROSS_AUS, train_aus=BP4D_AUS, positive_threshold=2, default=True,
                     description="cross-dataset, the default: synth-bp4d-3fold's three fold models (no training of "
                                 "its own) tested on all 27 synth-disfa subjects on the shared AUs 1, 2, 4, 6, 12 "
                                 "(intensity >= 2); a row averages three models",
                     fold_convention=FOLD_CONVENTION),
        ProtocolSpec(name="synth-bp4d-to-synth-disfa", version=PROTOCOL_VERSION, train_dataset="synth-bp4d",
                     test_dataset="synth-disfa",
                     folds=(Fold(name="all", test_subjects=DISFA_SUBJECTS, train_subjects=BP4D_SUBJECTS),),
                     eval_aus=CROSS_AUS, train_aus=BP4D_AUS, positive_threshold=2,
                     description="cross-dataset: train on all of synth-bp4d (12 AUs), test on all 27 synth-disfa "
                                 "subjects on the shared AUs 1, 2, 4, 6, 12 (intensity >= 2)"),
        ProtocolSpec(name="synth-disfa-to-synth-bp4d", version=PROTOCOL_VERSION, train_dataset="synth-disfa",
                     test_dataset="synth-bp4d",
                     folds=(Fold(name="all", test_subjects=BP4D_SUBJECTS, train_subjects=DISFA_SUBJECTS),),
                     eval_aus=CROSS_AUS, train_aus=DISFA_AUS, positive_threshold=2,
                     description="cross-dataset, the other way: train on all of synth-disfa (12 AUs, intensity "
                                 ">= 2), test on all 41 synth-bp4d subjects on the shared AUs 1, 2, 4, 6, 12"),
        ProtocolSpec(name="synth-bp4d-noisy-3fold", version=PROTOCOL_VERSION, train_dataset="synth-bp4d-noisy",
                     test_dataset="synth-bp4d-noisy", folds=jaanet_folds(JAANET_BP4D_PARTS), eval_aus=BP4D_AUS,
                     description="3-fold CV on synth-bp4d-noisy (30% missed positive episodes), for noise-robust losses",
                     fold_convention=FOLD_CONVENTION),
        ProtocolSpec(name="synth-union-3fold", version=PROTOCOL_VERSION, train_dataset="synth-union", test_dataset="synth-union",
                     folds=union_folds(jaanet_folds(JAANET_BP4D_PARTS), jaanet_folds(JAANET_DISFA_PARTS)), eval_aus=UNION_AUS,
                     description="3-fold CV on synth-bp4d + synth-disfa together (the ABAW3 union training, §4.3): "
                                 "17 AUs, each scored on the frames of the dataset that labels it",
                     fold_convention=FOLD_CONVENTION),
    ]

