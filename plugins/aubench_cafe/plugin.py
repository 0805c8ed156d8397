"""Registers CAFE for multi-label AU detection: a model, its loss and a method recipe.

The method is CAFE (Zhang et al., ECCV 2024, arXiv 2408.10614; supplementary Alg. 1): a small trainable
network learns a sigmoid mask over fixed, generalizable face features of a frozen large model; the
masked features are separated by channel into one piece per class, each piece giving its class's
logit without an FC layer, and a channel-diverse loss keeps the channels of a piece apart. Here the
classes are the AUs of the training set (K pieces instead of 7), with the multi-label choices written
beside the equations they replace in :mod:`aubench_cafe.model` and :mod:`aubench_cafe.losses`.
"""
from __future__ import annotations

from pathlib import Path

from aubench import LossSpec, MethodSpec, ModelSpec, hookimpl, load_reference_tables

__version__ = "0.1.0"


@hookimpl
def aubench_register_models():
    return [ModelSpec(name="cafe", factory="aubench_cafe.model:CAFE", context=("train_data", "train_subjects"),
                      description="CAFE: sigmoid mask over frozen features, one channel piece per AU (ECCV 2024)")]


@hookimpl
def aubench_register_losses():
    return [LossSpec(name="cafe", factory="aubench_cafe.losses:CAFELoss", reads=("logits", "piece_logits", "masked"),
                     description="CAFE eq. 9: BCE classification + separation on the AU pieces + channel-diverse loss")]


@hookimpl
def aubench_register_methods():
    return [MethodSpec(name="cafe", default=True,  # README "Robustness": every cell >= 18 points above its floor
                       description="CAFE (Zhang et al., ECCV 2024) for multi-label AUs: masked frozen features "
                                   "separated into one channel piece per AU")]


@hookimpl
def aubench_config_search_paths():
    return [Path(__file__).parent / "conf"]


@hookimpl
def aubench_register_references():
    """The supplementary's FER tables (Tables 1-2), marked ``comparable=False``: expression-recognition
    accuracies, shown for the record, never beside an AU row."""
    return load_reference_tables(Path(__file__).parent / "references")
