"""Registers the chapter-2 multi-task models (VMNC, VMNS, MRNN, MONET), MONET's loss and recipes."""
from __future__ import annotations

from pathlib import Path

from aubench import LossSpec, MethodSpec, ModelSpec, hookimpl
from aubench.specs import load_reference_tables

__version__ = "0.1.0"
_HERE = Path(__file__).parent


@hookimpl
def aubench_register_models():
    return [ModelSpec(name="multitask", factory="aubench_monet.model:MultiTaskNet",
                      description="shared encoder + VMNC / VMNS / MRNN / MONET head (thesis chapter 2)")]


@hookimpl
def aubench_register_losses():
    return [LossSpec(name="monet", factory="aubench_monet.losses:MONETLoss",
                     description="mixture log-likelihood over orders, eq. (2.27), + optional Dice (eq. 2.40)")]


@hookimpl
def aubench_register_methods():
    return [
        MethodSpec(name="monet", description="MONET: task-wise GRU cells, learned soft order, warm-up, order dropout"),
        MethodSpec(name="monet-vmns", description="VMNS: shared encoder, task-specific dense heads", default=False),
        MethodSpec(name="monet-mrnn", description="MRNN: one shared GRU cell, one arbitrary order, MC sampling", default=False),
    ]


@hookimpl
def aubench_config_search_paths():
    return [_HERE / "conf"]


@hookimpl
def aubench_register_references():
    return load_reference_tables(_HERE / "references")
