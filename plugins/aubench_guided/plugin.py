"""Registers the guided AU transformers of the Tallec thesis (chapter 3) and the ABAW3 multi-label
transformer: two models, their loss, one method per configuration of Tables 3.1 and 3.4-3.6 (the rest
are overrides of them, named in the reference tables), the published tables and the attention plot."""
from __future__ import annotations

from pathlib import Path

from aubench import LossSpec, MethodSpec, ModelSpec, hookimpl, load_reference_tables

__version__ = "0.1.0"
_HERE = Path(__file__).parent

METHODS = {
    "mtts": "Hybrid ResNet-50 + transformer, one task token per AU (MTTS, thesis §3.4.2, Table 3.1)",
    "mttc": "Hybrid ResNet-50 + transformer, one common task token (MTTC, thesis §3.4.2, Table 3.1)",
    "mtts-pattel-mono": "MTTS + privileged attention loss on 1/4 of the heads, mono-prior (thesis §3.5.1, Table 3.4)",
    "mtts-pattel-multi": "MTTS + privileged attention loss on 1/4 of the heads, per-AU priors (thesis §3.5.1, Table 3.4)",
    "mtts-h2p": "MTTS + head-to-prior guidance: 10 heads, one Table 3.2 location each (thesis §3.5.1, Tables 3.4-3.5)",
    "mtts-fp": "MTTS + soft face-parsing attention prior, λ_S = 0.1 (thesis §3.5.3, Tables 3.5-3.6)",
    "mlt": "ABAW3 multi-label transformer: InceptionV3 tokens, label-token self- and cross-attention (CVPRW 2022)",
}
DEFAULT = ("mtts-fp",)


@hookimpl
def aubench_register_models():
    return [
        ModelSpec(name="guided_transformer", factory="aubench_guided.model:GuidedTransformer", context=("train_data",),
                  inputs_for="aubench_guided.model:model_inputs",
                  description="hybrid CNN + transformer with MTTS/MTTC decoders and landmark / face-parsing guidance"),
        ModelSpec(name="multilabel_transformer", factory="aubench_guided.model:MultiLabelTransformer",
                  description="ABAW3 multi-label transformer: CNN tokens, self-attention, label-token decoder"),
    ]


@hookimpl
def aubench_register_losses():
    return [LossSpec(name="guided", factory="aubench_guided.losses:GuidedLoss",
                     reads=("logits", "attention", "task_priors", "head_priors"),
                     description="(weighted) BCE + Dice + PAtteL (thesis eq. 3.31) + head-to-prior (eq. 3.33)")]


@hookimpl
def aubench_register_methods():
    return [MethodSpec(name=name, description=text, default=name in DEFAULT) for name, text in METHODS.items()]


@hookimpl
def aubench_config_search_paths():
    return [_HERE / "conf"]


@hookimpl
def aubench_register_references():
    return load_reference_tables(_HERE / "references")


@hookimpl
def aubench_register_commands(cli):
    """``aubench plot attention <cell folder>``: cross-attention per head and AU over a test face."""
    cli.add_plot("attention", "cross-attention per head and AU over a test face (thesis Fig. 3.5 / 3.9)", _draw_attention)


def _draw_attention(run_dir, out):
    from aubench_guided.plots import draw_attention

    return draw_attention(run_dir, out)
