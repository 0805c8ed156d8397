"""``aubench new-plugin NAME``: write a complete, installable plugin package to start from.

The package registers one model, one loss and one method recipe (with ``paper`` and ``smoke``
presets), ships a test file that runs aubench's conformance suite and one smoke cell, and a README
with the checklist a method plugin should meet. It installs with ``pip install -e`` and its tests
pass as written; replace the model and loss with your method's.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aubench.errors import ConfigError, ResultExistsError

__all__ = ["new_plugin", "add_scaffold_command"]

_PYPROJECT = '''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "aubench-{name}"
version = "0.1.0"
description = "{title}: an aubench method plugin"
requires-python = ">=3.10"
dependencies = ["aubench"]

[project.optional-dependencies]
test = ["pytest>=7.4"]

# This entry point is how aubench finds the plugin.
[project.entry-points.aubench]
{name} = "{pkg}.plugin"

[tool.setuptools.packages.find]
include = ["{pkg}*"]

[tool.setuptools.package-data]
"*" = ["*.yaml", "*.json"]
'''

_INIT = '''"""{title}: an aubench method plugin."""
__version__ = "0.1.0"
'''

_PLUGIN = '''"""Registers the {title} model, loss and method. Nothing heavy is imported here (no torch): factories are
named by import strings and loaded only when a cell is built, so `aubench list` stays fast."""
from pathlib import Path

from aubench import LossSpec, MethodSpec, ModelSpec, hookimpl

__version__ = "0.1.0"


@hookimpl
def aubench_register_models():
    return [ModelSpec(name="{name}-net", factory="{pkg}.model:build_model",
                      description="a small CNN with one linear multi-label head (replace with your method)")]


@hookimpl
def aubench_register_losses():
    return [LossSpec(name="{name}-bce", factory="{pkg}.loss:build_loss",
                     description="masked binary cross-entropy (replace with your method's loss)")]


@hookimpl
def aubench_register_methods():
    return [MethodSpec(name="{name}", description="{title} (describe the paper and the table it reproduces)")]


@hookimpl
def aubench_config_search_paths():
    return [Path(__file__).parent / "conf"]
'''

_MODEL = '''"""The model: ``factory(au_set, stats, **params) -> nn.Module`` whose ``forward(batch)`` returns
``{{"logits": [B, len(au_set)]}}`` in the order of ``au_set`` (see ``aubench.ModelSpec``)."""


def build_model(au_set, stats, width=16):
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, width, 3, stride=2, padding=1), nn.ReLU(),
                nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
                nn.AdaptiveAvgPool2d(4), nn.Flatten())
            self.head = nn.Linear(2 * width * 16, len(au_set))
            with torch.no_grad():  # start from the training prior: b_t = log(f_t / (1 - f_t))
                self.head.bias.copy_(torch.as_tensor(stats.bias_init(), dtype=torch.float32))

        def forward(self, batch):
            return {{"logits": self.head(self.features(batch["image"]))}}

    return Net()
'''

_LOSS = '''"""The loss: ``factory(**params)`` returns ``loss(outputs, batch, stats) -> (scalar, terms)``; ``terms``
is a dict of floats (detached) logged per epoch (see ``aubench.LossSpec``)."""
from aubench import masked_bce


def build_loss(smoothing=0.0):
    def loss(outputs, batch, stats):
        targets = batch["labels"] * (1 - smoothing) + 0.5 * smoothing
        value, _ = masked_bce(outputs["logits"], targets, batch["mask"])
        return value, {{"bce": float(value.detach())}}

    return loss
'''

_RECIPE = '''# @package _global_
description: {title}
model:
  name: {name}-net
  width: 32
loss:
  name: {name}-bce
optim:
  name: adamw
  lr: 1.0e-3
augment:
  hflip: 0.5
epochs: 20
batch_size: 32
presets:
  paper: {{}}          # the paper's settings (for real data on a GPU)
  smoke:              # small and fast: CPU, SynthAU
    model:
      width: 16
    epochs: 3
    batch_size: 64
'''

_TEST = '''"""aubench's conformance suite on every component this plugin registers."""
import pytest

from aubench.testing import conformance_cases


@pytest.mark.parametrize("case", conformance_cases("{name}"), ids=str)
def test_conformance(case):
    case.run()
'''

_README = '''# aubench-{name}

{title}: an [aubench](https://pypi.org/project/aubench/) method plugin.

    pip install -e '.[test]'
    aubench list methods            # shows {name}
    aubench show {name}             # the resolved recipe
    aubench run {name} --protocol synth-bp4d-3fold --fold 1
    pytest                          # aubench's conformance suite on this plugin

## Method checklist

- [ ] The model returns `logits` `[B, K]` in the order of `au_set`; `aubench.testing.check_model` passes.
- [ ] The loss returns `(scalar, dict of floats)` and ignores masked labels; `check_loss` passes.
- [ ] The recipe's `paper` preset is the paper's settings, with the paper, table and equation cited in
      the docstrings; every deviation is named in the recipe's comments.
- [ ] The `smoke` preset beats the all-positive predictor on the SynthAU protocols.
- [ ] Published numbers are registered with `aubench_register_references` (`ReferenceTable`).
- [ ] `import {pkg}.plugin` does not import torch (`aubench doctor` checks it).
'''


def new_plugin(name: str, dest: Path, title: str | None = None) -> Path:
    """Write the package ``aubench-NAME`` into ``dest`` (which must not exist or be empty); return it."""
    if not re.fullmatch(r"[a-z][a-z0-9-]*[a-z0-9]", name):
        raise ConfigError(f"plugin name {name!r}: use lower-case letters, digits and '-' (e.g. my-method)")
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise ResultExistsError(f"{dest} exists and is not empty; choose a new folder")
    pkg = "aubench_" + name.replace("-", "_")
    values = {"name": name, "pkg": pkg, "title": title or name}
    files = {"pyproject.toml": _PYPROJECT, "README.md": _README, f"{pkg}/__init__.py": _INIT,
             f"{pkg}/plugin.py": _PLUGIN, f"{pkg}/model.py": _MODEL, f"{pkg}/loss.py": _LOSS,
             f"{pkg}/conf/method/{name}.yaml": _RECIPE, "tests/test_conformance.py": _TEST}
    for rel, template in files.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**values))
    return dest


def add_scaffold_command(cli: Any) -> None:
    """``aubench new-plugin NAME [--dest DIR] [--title TEXT]``."""
    cmd = cli.add_command("new-plugin", "write a complete, installable plugin package to start from", _run,
                          description="Writes aubench-NAME/: an entry point, a model, a loss, a method recipe with "
                                      "paper and smoke presets, a conformance test and a README with the method "
                                      "checklist. Then: pip install -e './aubench-NAME[test]' && pytest aubench-NAME")
    cmd.add_argument("name", help="the method's name, lower-case with '-' (e.g. my-method)")
    cmd.add_argument("--dest", type=Path, default=None, help="folder to write (default: ./aubench-NAME)")
    cmd.add_argument("--title", default=None, help="a one-line description of the method")


def _run(args: Any) -> int:
    dest = new_plugin(args.name, args.dest or Path(f"aubench-{args.name}"), args.title)
    print(f"wrote {dest}/ (package aubench_{args.name.replace('-', '_')}); next:\n"
          f"  pip install -e '{dest}[test]'\n  pytest {dest}\n  aubench run {args.name} --protocol synth-bp4d-3fold")
    return 0
