"""The aubench plugin contract: every hook a plugin may implement.

Plugins are modules (or objects) with functions decorated by :data:`hookimpl` and named like the
specs below. They are found through the ``aubench`` entry-point group; bundled plugins under
``plugins/`` are registered exactly that way too.

Calling conventions (pluggy):

* hooks are always called with keyword arguments; an implementation may accept any *subset* of
  a hook's arguments, so new arguments can be added without breaking plugins;
* registration hooks are called once per process, when the registry is first needed; each
  implementation returns a list of specs (or ``None``) and the lists are concatenated;
* lifecycle hooks are called for every plugin; their return values are ignored; an exception in
  an observer fails the cell, so observers should catch their own I/O errors.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from pathlib import Path

    from omegaconf import DictConfig

    from aubench.cells import Cell
    from aubench.commands import Commands
    from aubench.records import ResultRecord
    from aubench.specs import (
        CheckpointSpec,
        DatasetSpec,
        LossSpec,
        MethodSpec,
        ModelSpec,
        ProtocolSpec,
        ReferenceTable,
    )

PROJECT = "aubench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --------------------------------------------------------------------------- registration


@hookspec
def aubench_register_datasets() -> list[DatasetSpec]:
    """Return the datasets this plugin provides.

    :return: a list of :class:`aubench.specs.DatasetSpec` (names unique across all plugins).
    Called once; results of all plugins are concatenated.
    """


@hookspec
def aubench_register_models() -> list[ModelSpec]:
    """Return the model factories this plugin provides.

    :return: a list of :class:`aubench.specs.ModelSpec`. Factories are import strings resolved only
        when a cell builds the model, so registering must not import torch.
    """


@hookspec
def aubench_register_losses() -> list[LossSpec]:
    """Return the losses this plugin provides.

    :return: a list of :class:`aubench.specs.LossSpec`; a loss is called
        ``loss(outputs, batch, stats) -> (scalar tensor, dict of float terms)``.
    """


@hookspec
def aubench_register_methods() -> list[MethodSpec]:
    """Return the methods (recipes) this plugin provides.

    :return: a list of :class:`aubench.specs.MethodSpec`; each names a ``method/<name>.yaml``
        config that must exist in a directory returned by :func:`aubench_config_search_paths`.
    """


@hookspec
def aubench_register_protocols() -> list[ProtocolSpec]:
    """Return the evaluation protocols this plugin provides.

    :return: a list of :class:`aubench.specs.ProtocolSpec`; ``name@version`` must be unique.
    """


@hookspec
def aubench_register_references() -> list[ReferenceTable]:
    """Return published result tables to show beside aubench's results on the leaderboard.

    :return: a list of :class:`aubench.specs.ReferenceTable`.
    """


@hookspec
def aubench_register_checkpoints() -> list[CheckpointSpec]:
    """Return released checkpoints on the Hugging Face Hub, usable by name.

    :return: a list of :class:`aubench.specs.CheckpointSpec`; names must be unique. ``aubench list
        checkpoints`` shows them; ``--checkpoint NAME`` and ``init.checkpoint=NAME`` fetch them.
    """


@hookspec
def aubench_config_search_paths() -> list[str | Path]:
    """Return directories holding this plugin's Hydra configs (``method/*.yaml`` and others).

    :return: absolute directory paths; they are appended to Hydra's search path in registration
        order, after aubench's own ``conf`` directory.
    """


@hookspec
def aubench_register_commands(cli: Commands) -> None:
    """Add subcommands, options and plots to the ``aubench`` command line (datasette's ``register_commands``).

    :param cli: a :class:`aubench.commands.Commands`: ``cli.add_command(name, help, run)`` returns the
        argparse parser of a new ``aubench NAME`` (``run(args) -> exit status``);
        ``cli.add_options("data prepare" | "data check", datasets, title)`` returns an argument group
        whose values are passed as keyword arguments to those datasets' ``prepare`` / ``check``;
        ``cli.add_plot(kind, help, draw)`` adds ``aubench plot KIND <cell folder>``.
    Called once per command line, for every plugin, before arguments are parsed; must not import torch.
    """


# --------------------------------------------------------------------------- lifecycle


@hookspec
def aubench_cell_start(cell: Cell, config: DictConfig) -> None:
    """Called when a cell starts (also on resume), before its data are loaded.

    :param cell: the :class:`aubench.Cell` (method, protocol, fold, seed, run directory).
    :param config: the resolved recipe (``omegaconf.DictConfig``), read-only by convention.
    """


@hookspec
def aubench_epoch_end(cell: Cell, epoch: int, logs: dict[str, float]) -> None:
    """Called after every training epoch, once its resume checkpoint is written.

    :param cell: the running :class:`aubench.Cell`.
    :param epoch: the epoch that just finished, counted from 1.
    :param logs: mean loss terms of the epoch, learning rates, images per second.
    """


@hookspec
def aubench_cell_end(cell: Cell, record: ResultRecord | None, error: BaseException | None) -> None:
    """Called when a cell finishes, successfully (``record`` set) or not (``error`` set).

    Fired by :func:`aubench.run_cell` itself, at the same level as ``aubench_cell_start``: every
    started cell ends, also when ``run_cell`` is called directly.

    :param cell: the finished :class:`aubench.Cell`.
    :param record: the :class:`aubench.ResultRecord` that was written, or ``None`` if the cell failed.
    :param error: the exception that failed the cell, or ``None``.
    """
