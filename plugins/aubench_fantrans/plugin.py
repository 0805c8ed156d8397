"""Registers the FAN-Trans model, its loss, every row of its Table 1 as a method, and its published tables."""
from __future__ import annotations

from pathlib import Path

from aubench import LossSpec, MethodSpec, ModelSpec, hookimpl, load_reference_tables

__version__ = "0.1.0"
_HERE = Path(__file__).parent

TABLE1 = {
    "fantrans": "FAN-Trans, C_T1.C_o2o-T2.C_o2m with learned attention drop and online distillation (Table 1, last)",
    "fantrans-baseline": "Table 1 Baseline: convolution module, average pooling, one FC (no transformer)",
    "fantrans-ct-o2o": "Table 1 C_T.C_o2o: one transformer, one-to-one classifier, no distillation",
    "fantrans-ct-o2m": "Table 1 C_T.C_o2m: one transformer, one-to-many classifier, no distillation",
    "fantrans-ct1-o2o-t1-o2m": "Table 1 C_T1.C_o2o-T1.C_o2m: one transformer, both classifiers, distillation",
    "fantrans-ct1-o2o-t2-o2o": "Table 1 C_T1.C_o2o-T2.C_o2o: two transformers, one-to-one classifiers",
    "fantrans-ct1-o2m-t2-o2m": "Table 1 C_T1.C_o2m-T2.C_o2m: two transformers, one-to-many classifiers",
    "fantrans-f": "Table 1 C_T1.C_o2o-T2.C_o2m-F: full attention (no drop)",
    "fantrans-r": "Table 1 C_T1.C_o2o-T2.C_o2m-R: drop the lower similarities of each row",
    "fantrans-c": "Table 1 C_T1.C_o2o-T2.C_o2m-C: drop the lower similarities of each column",
}


@hookimpl
def aubench_register_models():
    return [ModelSpec(name="fantrans", factory="aubench_fantrans.model:FANTrans", context=("train_data", "train_subjects"),
                      description="frozen FAN features + conv module + attention-drop transformers + diverse classifiers")]


@hookimpl
def aubench_register_losses():
    return [LossSpec(name="fantrans_okd", factory="aubench_fantrans.losses:OKDLoss",
                     description="FAN-Trans eq. (8)-(10): weighted BCE on every pathway + lambda * KL to the ensemble")]


@hookimpl
def aubench_register_methods():
    return [MethodSpec(name=name, description=text, default=(name == "fantrans")) for name, text in TABLE1.items()]


@hookimpl
def aubench_config_search_paths():
    return [_HERE / "conf"]


@hookimpl
def aubench_register_references():
    return load_reference_tables(_HERE / "references")


@hookimpl
def aubench_register_commands(cli):
    """``aubench fantrans-size``: parameters and compute beside the supplementary's §3."""
    from aubench_fantrans.report import add_arguments, run_command

    add_arguments(cli.add_command("fantrans-size", "FAN-Trans' size and compute beside the supplementary (§3)",
                                  run_command))
