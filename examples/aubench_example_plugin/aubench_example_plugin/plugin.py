"""Registers one model and one method. Nothing heavy is imported here: the model class is named
by an import string and only loaded when a cell is built."""
from pathlib import Path

from aubench import MethodSpec, ModelSpec, hookimpl

__version__ = "0.1.0"


@hookimpl
def aubench_register_models():
    return [ModelSpec(name="little-cnn", factory="aubench_example_plugin.model:LittleCNN",
                      description="two conv layers and a linear head")]


@hookimpl
def aubench_register_methods():
    return [MethodSpec(name="example-little-cnn", description="LittleCNN trained with weighted BCE",
                       default=False)]


@hookimpl
def aubench_config_search_paths():
    return [Path(__file__).parent / "conf"]
