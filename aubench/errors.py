"""One error hierarchy for aubench.

Every error says what went wrong *and* what to do next. Catch :class:`AubenchError`
to handle all of them; the CLI prints the message without a traceback. The tree::

    AubenchError                  anything aubench raises on purpose
    ├── PluginError               a plugin failed to load or registered something invalid
    │   ├── DuplicateNameError    two plugins registered one name
    │   └── ContractError         a model or loss broke its contract on a cell's first batch
    ├── UnknownNameError          a name no plugin registered (also a KeyError)
    ├── ConfigError               a recipe, override or option that cannot be resolved
    │   └── CheckpointError       weights whose metadata do not fit the cell that loads them
    ├── DatasetError              a raw or prepared dataset that is missing, incomplete or corrupt
    ├── RecordError               a result record that is unreadable or does not match its schema
    ├── NonFiniteLossError        training produced NaN or infinity
    └── ResultExistsError         a finished result would be overwritten without the explicit option
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "AubenchError",
    "PluginError",
    "UnknownNameError",
    "DuplicateNameError",
    "ConfigError",
    "DatasetError",
    "NonFiniteLossError",
    "ResultExistsError",
    "CheckpointError",
    "ContractError",
    "RecordError",
    "did_you_mean",
]


class AubenchError(Exception):
    """Base class of every error aubench raises on purpose."""


class PluginError(AubenchError):
    """A plugin failed to load or registered something invalid; ``plugin`` names it when one is to blame."""

    def __init__(self, message: str, plugin: str | None = None):
        super().__init__(message)
        self.plugin = plugin


class UnknownNameError(AubenchError, KeyError):
    """A dataset, model, loss, method or protocol name that no plugin registered."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        known, name = sorted(map(str, known)), str(name)
        self.kind, self.name, self.known = kind, name, known
        listing = ", ".join(known) if known else "(none registered)"
        head, _, tail = kind.partition(" ")  # "fold of p@v" -> "folds of p@v"
        plural = " ".join(filter(None, [_plural(head), tail]))
        super().__init__(
            f"Unknown {kind} {name!r}.{did_you_mean(name, known)} Known {plural}: {listing}. "
            f"Run `aubench list` to see what is registered and the plugin that provides it."
        )

    def __str__(self) -> str:  # KeyError would add quotes around the message
        return self.args[0]


class ContractError(PluginError):
    """A model's outputs or a loss's result do not follow the contract (checked on the first batch)."""


class DuplicateNameError(PluginError):
    """Two plugins registered the same name for the same kind of component."""


class ConfigError(AubenchError):
    """A recipe, override or option that cannot be resolved."""


class CheckpointError(ConfigError):
    """Weights whose metadata record is missing or does not fit the cell that would load them."""


class RecordError(AubenchError):
    """A result record that cannot be read or does not match the record schema."""


class DatasetError(AubenchError):
    """A prepared or raw dataset that is missing, incomplete or corrupt."""


class NonFiniteLossError(AubenchError):
    """Training produced a NaN or infinite loss; carries the step and the loss terms."""

    def __init__(self, epoch: int, step: int, terms: dict[str, float]):
        self.epoch, self.step, self.terms = epoch, step, terms
        shown = ", ".join(f"{k}={v:.4g}" for k, v in terms.items())
        super().__init__(
            f"Non-finite loss at epoch {epoch}, step {step} (terms: {shown}). "
            "Lower the learning rate (`optim.lr=...`), check the input normalisation, "
            "or disable mixed precision (`engine.amp=false`)."
        )


class ResultExistsError(AubenchError):
    """A finished result would be overwritten without the explicit option."""


def _plural(noun: str) -> str:
    if noun.endswith(("s", "x", "sh", "ch")):
        return noun + "es"
    return noun + "s"


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the names of ``known`` close to ``name``, else an empty string."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
