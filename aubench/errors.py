"""One error hierarchy for aubench.

Every error says what went wrong *and* what to do next. Catch :class:`AubenchError`
to handle all of them; the CLI prints the message without a traceback.
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
    "did_you_mean",
]


class AubenchError(Exception):
    """Base class of every error aubench raises on purpose."""


class PluginError(AubenchError):
    """A plugin failed to load or registered something invalid."""


class UnknownNameError(AubenchError, KeyError):
    """A dataset, model, loss, method or protocol name that no plugin registered."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        known, name = sorted(map(str, known)), str(name)
        self.kind, self.name, self.known = kind, name, known
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        listing = ", ".join(known) if known else "(none registered)"
        super().__init__(
            f"Unknown {kind} {name!r}.{hint} Known {kind}s: {listing}. "
            f"Run `aubench list` to see every registered {kind} and the plugin that provides it."
        )

    def __str__(self) -> str:  # KeyError would add quotes around the message
        return self.args[0]


class DuplicateNameError(PluginError):
    """Two plugins registered the same name for the same kind of component."""


class ConfigError(AubenchError):
    """A recipe, override or option that cannot be resolved."""


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


def did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
