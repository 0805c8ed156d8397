"""Registers the chapter-2 multi-task models (VMNC, VMNS, MRNN, MONET), MONET's loss and recipes, and
the toy dataset of §2.5.1 with its protocol (``monet-toy``: train on the 500-point draw, test on the
250-point test draw)."""
from __future__ import annotations

from pathlib import Path

from aubench import DatasetSpec, Fold, LossSpec, MethodSpec, ModelSpec, ProtocolSpec, hookimpl, load_reference_tables

__version__ = "0.1.0"
_HERE = Path(__file__).parent


TOY_TASKS = (1, 2, 3, 4, 5)


@hookimpl
def aubench_register_datasets():
    return [DatasetSpec(name="monet-toy", au_set=TOY_TASKS, label_kind="occurrence",
                        prepare="aubench_monet.toy:prepare_toy", fingerprint="aubench_monet.toy:toy_fingerprint",
                        subjects=("train", "val", "test"), synthetic=True, params={"n_tasks": 5, "seed": 0},
                        description="MONET's toy dataset (thesis §2.5.1): 2-D points, 5 nested binary tasks "
                                    "(columns AU1-AU5), train/val/test draws of 500/250/250 as subjects")]


@hookimpl
def aubench_register_protocols():
    return [ProtocolSpec(name="monet-toy", version="v1", train_dataset="monet-toy", test_dataset="monet-toy",
                         folds=(Fold(name="test", test_subjects=("test",), train_subjects=("train",)),),
                         eval_aus=TOY_TASKS, metric="accuracy",
                         description="MONET toy (§2.5.1): train on the train draw, test on the test draw; "
                                     "the monet recipes pick preset=toy for it"),
            ProtocolSpec(name="monet-toy-val", version="v1", train_dataset="monet-toy", test_dataset="monet-toy",
                         folds=(Fold(name="val", test_subjects=("val",), train_subjects=("train",)),),
                         eval_aus=TOY_TASKS, metric="accuracy",
                         description="MONET toy (§2.5.1) on the validation draw, for choices such as the "
                                     "warm-up n (`aubench monet-toy --table warmup`)")]


@hookimpl
def aubench_register_models():
    return [ModelSpec(name="multitask", factory="aubench_monet.model:MultiTaskNet", context=("seed",),
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


@hookimpl
def aubench_cell_end(cell, record, error):
    """Draw each finished MONET cell's soft order as ``soft_order.png`` beside its record (Fig. 2.12 style).

    Needs matplotlib (``pip install 'aubench[plots]'``); without it the record still holds Ω and
    ``aubench plot order <cell folder>`` draws it later."""
    if error is not None or record is None or "soft_order" not in record.model_extras:
        return
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        return
    from aubench_monet.plots import soft_order_heatmap

    soft_order_heatmap(cell.run_dir, extras=record.model_extras)


@hookimpl
def aubench_register_commands(cli):
    """``aubench plot order <cell folder>`` and ``aubench monet-toy`` (the toy reproductions of §2.5.1)."""
    cli.add_plot("order", "MONET's learned soft order, timestep x AU (thesis Fig. 2.12)", _draw_order)
    from aubench_monet.toy import add_arguments, run_command

    add_arguments(cli.add_command("monet-toy", "reproduce the thesis' toy Tables 2.1 and 2.2 (§2.5.1)", run_command))


def _draw_order(run_dir, out):
    from aubench_monet.plots import soft_order_heatmap

    return soft_order_heatmap(run_dir, out)
