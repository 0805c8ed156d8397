"""aubench: a plugin-based benchmark harness for facial Action Unit detection.

The public API is re-exported here; everything else is internal. Importing this package is cheap
(no torch): heavy modules load when a cell is built.
"""
from __future__ import annotations

__version__ = "0.1.0"

from aubench.errors import (
    AubenchError,
    ConfigError,
    DatasetError,
    DuplicateNameError,
    NonFiniteLossError,
    PluginError,
    ResultExistsError,
    UnknownNameError,
)
from aubench.hookspecs import hookimpl
from aubench.registry import Registry, get_registry
from aubench.specs import DatasetSpec, Fold, LossSpec, MethodSpec, ModelSpec, ProtocolSpec, ReferenceTable

__all__ = [
    "__version__",
    "hookimpl",
    "Registry",
    "get_registry",
    "DatasetSpec",
    "ModelSpec",
    "LossSpec",
    "MethodSpec",
    "ProtocolSpec",
    "Fold",
    "ReferenceTable",
    "AubenchError",
    "ConfigError",
    "DatasetError",
    "DuplicateNameError",
    "NonFiniteLossError",
    "PluginError",
    "ResultExistsError",
    "UnknownNameError",
]
