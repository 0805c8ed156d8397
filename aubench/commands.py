"""What a plugin gets to extend the ``aubench`` command line (the ``aubench_register_commands`` hook).

The core names no plugin's flags: a dataset plugin adds the options its ``prepare`` and ``check``
take to ``aubench data prepare`` / ``data check``, a method plugin adds its own subcommands and
``aubench plot`` kinds. Everything here is plain :mod:`argparse`.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aubench.errors import PluginError

__all__ = ["Commands", "PluginOptions"]

#: the core commands a plugin may add options to
EXTENSIBLE = ("data check", "data prepare")


@dataclass
class PluginOptions:
    """Options one plugin added to a core command, and the datasets they are passed to."""

    datasets: tuple[str, ...]
    dests: list[str] = field(default_factory=list)


class _Group:
    """An argument group that remembers the ``dest`` of every option added to it."""

    def __init__(self, group: Any, record: PluginOptions):
        self._group, self._record = group, record

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = self._group.add_argument(*args, **kwargs)
        self._record.dests.append(action.dest)
        return action


class Commands:
    """Handed to ``aubench_register_commands``; see :func:`aubench.hookspecs.aubench_register_commands`."""

    def __init__(self, subparsers: Any, parsers: dict[str, argparse.ArgumentParser]):
        self._subparsers, self._parsers = subparsers, parsers
        self.options: dict[str, list[PluginOptions]] = {name: [] for name in EXTENSIBLE}
        self.plots: dict[str, tuple[str, Callable[..., Any]]] = {}

    def add_command(self, name: str, help: str, run: Callable[[argparse.Namespace], int],
                    description: str | None = None) -> argparse.ArgumentParser:
        """A new subcommand ``aubench NAME``; ``run(args)`` returns the exit status. Add its
        arguments to the returned parser."""
        if name in self._subparsers.choices:
            raise PluginError(f"the command `aubench {name}` exists already; a plugin command needs another name")
        parser = self._subparsers.add_parser(name, help=help, description=description or help)
        parser.set_defaults(run=run)
        return parser

    def add_options(self, command: str, datasets: Sequence[str], title: str) -> _Group:
        """An argument group on a core command (:data:`EXTENSIBLE`) whose values are passed as keyword
        arguments to ``prepare`` / ``check`` of ``datasets``."""
        if command not in self._parsers:
            raise PluginError(f"options can be added to {', '.join(EXTENSIBLE)}, not {command!r}")
        record = PluginOptions(tuple(datasets))
        self.options[command].append(record)
        return _Group(self._parsers[command].add_argument_group(title), record)

    def add_plot(self, kind: str, help: str, draw: Callable[..., Any]) -> None:
        """A drawing ``aubench plot KIND <cell folder> [--out PNG]``: ``draw(run_dir, out) -> Path``."""
        if kind in self.plots:
            raise PluginError(f"`aubench plot {kind}` exists already; a plugin plot needs another name")
        self.plots[kind] = (help, draw)

    def keyword_arguments(self, command: str, dataset: str, args: argparse.Namespace) -> dict[str, Any]:
        """The plugin options of ``command`` that apply to ``dataset``, as keyword arguments."""
        return {dest: getattr(args, dest) for record in self.options[command] if dataset in record.datasets
                for dest in record.dests}
