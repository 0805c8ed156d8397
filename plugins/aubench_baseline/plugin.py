"""Registers the VMNC baseline model, the BCE / weighted-BCE / Dice losses and their recipes."""
from __future__ import annotations

from pathlib import Path

from aubench import LossSpec, MethodSpec, ModelSpec, hookimpl

__version__ = "0.1.0"
_HERE = Path(__file__).parent


@hookimpl
def aubench_register_models():
    return [ModelSpec(name="vmnc", factory="aubench_baseline.models:VMNC",
                      description="timm CNN encoder + one linear multi-label head (thesis §2.5, VMNC)")]


@hookimpl
def aubench_register_losses():
    return [
        LossSpec(name="bce", factory="aubench_baseline.losses:BCELoss", description="masked binary cross-entropy"),
        LossSpec(name="weighted_bce", factory="aubench_baseline.losses:WeightedBCELoss",
                 description="BCE weighted per AU by inverse training frequency (JAA-Net weights, sum = K)"),
        LossSpec(name="dice", factory="aubench_baseline.losses:DiceLoss",
                 description="frequency-weighted soft Dice, thesis eq. (2.40)"),
    ]


@hookimpl
def aubench_register_methods():
    return [
        MethodSpec(name="vmnc-bce", description="VMNC trained with plain BCE"),
        MethodSpec(name="vmnc-wbce", description="VMNC trained with JAA-Net frequency-weighted BCE"),
        MethodSpec(name="vmnc-wbce-dice", description="VMNC with weighted BCE + 0.5 x Dice (thesis eq. 2.39-2.40)"),
    ]


@hookimpl
def aubench_config_search_paths():
    return [_HERE / "conf"]
