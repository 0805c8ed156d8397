"""The mistakes an outside author made writing a plugin from the docs, each ending in a clear message that
names the plugin and the fix, before any training time is spent where the mistake is visible at step 0.

Each case writes the `aubench new-plugin` package, plants one mistake, installs it as an entry point
(importable from a temporary folder), and runs the command that reveals it.
"""
import re
from importlib import metadata

import pytest
from conftest import TinyPlugin

from aubench.cli import main
from aubench.registry import Registry, reset_registry
from aubench.scaffold import new_plugin

# (case, file, old text, new text, command, expected fragments of the output, exit code)
MISTAKES = [
    ("typo'd hook", "plugin.py", "def aubench_register_models(", "def aubench_register_model(",
     ["list", "plugins"], ["BROKEN {n}", "Did you mean 'aubench_register_models'"], 0),
    ("wrong hook argument", "plugin.py", "def aubench_register_losses():", "def aubench_register_losses(registry):",
     ["list", "plugins"], ["BROKEN {n}", "registry"], 0),
    ("wrong output shape", "model.py", 'self.head(self.features(batch["image"]))',
     'self.head(self.features(batch["image"]))[..., None]', "RUN",
     ["model '{n}-net' (plugin '{n}')", "has shape [64, 12, 1], expected [64, 12]"], 1),
    ("K=1 output", "model.py", ("nn.Linear(2 * width * 16, len(au_set))", "stats.bias_init()"),
     ("nn.Linear(2 * width * 16, 1)", "stats.bias_init()[:1]"), "RUN",
     ["model '{n}-net' (plugin '{n}')", "has shape [64, 1], expected [64, 12]"], 1),
    ("NaN loss", "loss.py", "return value, {", "return value * float('nan'), {", "RUN",
     ["loss '{n}-bce' (plugin '{n}')", "before any optimiser step"], 1),
    ("unknown model name", "conf/method/{n}.yaml", "name: {n}-net", "name: {n}-nett", ["show", "{n}"],
     ["Unknown model '{n}-nett'", "Did you mean '{n}-net'"], 2),
    ("missing entry-point module", "ENTRY", "plugin", "plugn", ["list", "plugins"],
     ["BROKEN {n}", "ModuleNotFoundError"], 0),
    ("missing @hookimpl", "plugin.py", "@hookimpl\ndef aubench_register_methods", "def aubench_register_methods",
     ["list", "plugins"], ["WARNING {n}: aubench_register_methods is never called", "@hookimpl"], 0),
    ("missing package header", "conf/method/{n}.yaml", "# @package _global_\n", "", ["show", "{n}"],
     ["does not start with `# @package _global_`"], 2),
    ("misnamed recipe file", "RENAME", "conf/method/{n}.yaml", "conf/method/{n}-recipe.yaml", ["list", "plugins"],
     ["BROKEN {n}", "has no config 'method/{n}.yaml'"], 0),
    ("wrong factory attribute", "plugin.py", 'model:build_model"', 'model:build_modle"', ["show", "{n}"],
     ["model '{n}-net' of plugin '{n}'", "no attribute 'build_modle'", "Did you mean 'build_model'"], 2),
    ("factory without stats", "model.py", "def build_model(au_set, stats, width=16):", "def build_model(au_set, width=16):",
     ["show", "{n}"], ["model '{n}-net' of plugin '{n}'", "takes no ['stats']"], 2),
    ("loss returning a bare tensor", "loss.py", 'return value, {"bce": float(value.detach())}', "return value", "RUN",
     ["loss '{n}-bce' (plugin '{n}')", "must return (scalar tensor, dict of float terms)"], 1),
    ("duplicate loss name", "plugin.py", 'name="{n}-bce"', 'name="bce"', ["list", "plugins"],
     ["BROKEN {n}", "loss 'bce' is registered by both plugin 'baseline' and plugin '{n}'"], 0),
    ("torch imported at top", "plugin.py", "from pathlib import Path\n", "from pathlib import Path\n\nimport torch\n",
     ["doctor"], ["SLOW {n}: importing aubench_{u}.plugin imports torch"], 0),
    ("typo'd recipe key", "conf/method/{n}.yaml", "epochs: 20", "epoch: 20", ["show", "{n}"],
     ["epoch", "Did you mean 'epochs'"], 2),
    ("typo'd augment key", "conf/method/{n}.yaml", "hflip: 0.5", "hlfip: 0.5", ["show", "{n}"],
     ["augment.hlfip", "Did you mean 'hflip'"], 2),
]


@pytest.mark.parametrize(("case", "where", "old", "new", "command", "expected", "code"), MISTAKES,
                         ids=[m[0] for m in MISTAKES])
def test_each_plugin_mistake_gets_a_clear_message(case, where, old, new, command, expected, code, tmp_path,
                                                  monkeypatch, capsys):
    name = "m" + re.sub(r"[^a-z0-9]", "", case)[:20]
    under = name.replace("-", "_")

    def f(text: str) -> str:
        return text.replace("{n}", name).replace("{u}", under)

    pkg = new_plugin(name, tmp_path / "src") / f"aubench_{under}"
    value = f"aubench_{under}.plugin"
    if where == "ENTRY":
        value = value.replace(old, new)
    elif where == "RENAME":
        (pkg / f(old)).rename(pkg / f(new))
    else:
        path = pkg / f(where)
        text = path.read_text()
        for a, b in zip(*((old, new) if isinstance(old, tuple) else ((old,), (new,)))):
            assert f(a) in text, f"the scaffold changed: {a!r} is not in {path.name}"
            text = text.replace(f(a), f(b))
        path.write_text(text)
    monkeypatch.syspath_prepend(str(pkg.parent))
    monkeypatch.setenv("PYTHONPATH", str(pkg.parent))  # `doctor` imports plugins in a fresh interpreter
    ours = metadata.EntryPoint(name=name, value=value, group="aubench")
    real = metadata.entry_points

    def entry_points(*args, **kwargs):  # the module is importlib.metadata itself: other groups stay as they are
        found = real(*args, **kwargs)
        return [*found, ours] if kwargs.get("group") == "aubench" else found

    monkeypatch.setattr("aubench.registry.metadata.entry_points", entry_points)
    with pytest.warns() if "BROKEN" in expected[0] else _no_warning_check():
        reset_registry(Registry(extra_plugins=[("tiny", TinyPlugin())]))
    try:
        args = (["run", name, "--protocol", "tiny-3fold", "--fold", "1", "epochs=1", "--runs-dir",
                 str(tmp_path / "runs"), "--no-progress"] if command == "RUN" else [f(c) for c in command])
        assert main(args) == code
    finally:
        reset_registry(None)
    out = capsys.readouterr()
    text = out.out + out.err
    for fragment in expected:
        assert f(fragment) in text, text
    assert "Traceback" not in text
    if command == "RUN":  # stopped at the first batch: one step, no epoch finished, no checkpoint
        assert not list((tmp_path / "runs").rglob("checkpoint.pt")) and not list((tmp_path / "runs").rglob("record.json"))
    if code == 0 and command[0] == "list":
        assert "vmnc-bce" in main_list_methods(capsys, monkeypatch), "the other plugins keep working"


def _no_warning_check():
    import contextlib

    return contextlib.nullcontext()


def main_list_methods(capsys, monkeypatch) -> str:
    reset_registry(None)
    try:
        main(["list", "methods"])
    finally:
        reset_registry(None)
    return capsys.readouterr().out
