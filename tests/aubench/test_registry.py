import inspect
import subprocess
import sys
from importlib import metadata

import pytest
from conftest import make_registry

from aubench import DatasetSpec, MethodSpec, ModelSpec, hookimpl, hookspecs
from aubench.errors import ConfigError, DuplicateNameError, PluginError, UnknownNameError
from aubench.registry import Registry

HOOKS = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("aubench_")]


def test_bundled_plugins_load_through_entry_points():
    eps = {ep.name: ep.value for ep in metadata.entry_points(group="aubench")}
    assert eps["baseline"] == "aubench_baseline.plugin" and eps["synthau"] == "aubench_synthau.plugin"
    reg = Registry()
    assert reg.owner("method", "vmnc-bce") == "baseline"
    assert reg.owner("protocol", "synth-bp4d-3fold") == "synthau"
    infos = {p.name: p for p in reg.plugins()}
    assert "aubench_register_methods" in infos["baseline"].hooks
    assert infos["baseline"].version == "0.1.0"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook))
    assert doc and len(doc) > 60, f"{hook} needs a docstring with purpose, arguments and return contract"


def test_unknown_name_suggests_close_matches():
    reg = Registry()
    with pytest.raises(UnknownNameError, match=r"Unknown method 'vmnc-bc'\. Did you mean 'vmnc-bce'"):
        reg.get("method", "vmnc-bc")
    assert reg.get("protocol", "synth-bp4d-3fold").id == "synth-bp4d-3fold@v2"


def test_duplicate_names_fail_naming_both_plugins():
    class Dup:
        @hookimpl
        def aubench_register_models(self):
            return [ModelSpec(name="vmnc", factory="x:y")]

    with pytest.raises(DuplicateNameError, match=r"model 'vmnc' is registered by both plugin 'baseline' and plugin 'dup'"):
        Registry(extra_plugins=[("dup", Dup())])


def test_broken_plugin_is_named_and_the_others_still_load(monkeypatch):
    broken = metadata.EntryPoint(name="broken", value="aubench_no_such_module_xyz", group="aubench")
    real = list(metadata.entry_points(group="aubench"))
    monkeypatch.setattr("aubench.registry.metadata.entry_points", lambda group: [*real, broken])
    with pytest.warns(UserWarning, match="plugin 'broken'"):
        reg = Registry()
    assert "broken" in reg.load_errors and "ModuleNotFoundError" in reg.load_errors["broken"]
    assert "vmnc-bce" in reg.names("method")


def test_env_vars_select_or_disable_plugins(monkeypatch):
    monkeypatch.setenv("AUBENCH_PLUGINS", "synthau")
    reg = Registry()
    assert reg.names("method") == [] and "synth-bp4d" in reg.names("dataset")
    monkeypatch.delenv("AUBENCH_PLUGINS")
    monkeypatch.setenv("AUBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert Registry().names("dataset") == []


def test_trace_env_var_prints_hook_calls(monkeypatch, capsys):
    monkeypatch.setenv("AUBENCH_TRACE_PLUGINS", "1")
    Registry()
    assert "aubench_register_datasets" in capsys.readouterr().err


def test_wrong_spec_type_and_bad_signature_are_rejected():
    class WrongType:
        @hookimpl
        def aubench_register_datasets(self):
            return [MethodSpec(name="oops")]

    with pytest.raises(PluginError, match=r"plugin 'wrong'.*returned MethodSpec, expected DatasetSpec"):
        Registry(extra_plugins=[("wrong", WrongType())])

    class BadArgs:
        @hookimpl
        def aubench_cell_start(self, cell, nonsense):
            pass

    with pytest.raises(PluginError, match="plugin 'badargs' has an invalid hook implementation"):
        Registry(extra_plugins=[("badargs", BadArgs())])


def test_method_without_config_and_protocol_on_unknown_dataset_fail_at_load():
    class NoConfig:
        @hookimpl
        def aubench_register_methods(self):
            return [MethodSpec(name="ghost")]

    with pytest.raises(PluginError, match=r"method 'ghost' has no config 'method/ghost.yaml'"):
        Registry(extra_plugins=[("noconf", NoConfig())])

    from aubench import Fold, ProtocolSpec

    class BadProto:
        @hookimpl
        def aubench_register_protocols(self):
            return [ProtocolSpec(name="p", version="v1", train_dataset="synth-bp4e", test_dataset="synth-bp4d",
                                 folds=(Fold("1", ("F001",)),), eval_aus=(1,))]

    with pytest.raises(PluginError, match=r"uses dataset 'synth-bp4e'.*Did you mean 'synth-bp4d'"):
        Registry(extra_plugins=[("badproto", BadProto())])


def test_partial_hook_arguments_are_allowed():
    seen = []

    class Observer:
        @hookimpl
        def aubench_cell_end(self, record):  # a subset of (cell, record, error)
            seen.append(record)

    reg = make_registry(("obs", Observer()))
    reg.hook.aubench_cell_end(cell=None, record=None, error=RuntimeError("x"))
    assert seen == [None]


def test_listing_and_help_do_not_import_torch():
    code = ("import sys, aubench.cli as c; c.main(['list']); "
            "assert 'torch' not in sys.modules and 'timm' not in sys.modules, sorted(sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "vmnc-bce" in out.stdout and "synth-bp4d-3fold@v2" in out.stdout


def test_dataset_spec_is_cheap_and_frozen():
    spec = DatasetSpec(name="x", au_set=(1,), label_kind="occurrence", prepare="a:b")
    from dataclasses import FrozenInstanceError

    with pytest.raises(FrozenInstanceError):
        spec.name = "y"


class ShipsAMethod:
    """A plugin with its own config folder, a method recipe in it, and a published table."""

    def __init__(self, conf):
        self.conf = conf

    @hookimpl
    def aubench_register_methods(self):
        return [MethodSpec(name="my-bce", description="vmnc with plain BCE, from another plugin", default=False)]

    @hookimpl
    def aubench_config_search_paths(self):
        return [self.conf]

    @hookimpl
    def aubench_register_references(self):
        from aubench import ReferenceTable

        return [ReferenceTable(source="Someone et al., Table 9", protocol="tiny-3fold@v1",
                               rows={"Theirs": {"1": 50.0, "avg": 50.0}}, method={"Theirs": "my-bce"})]


def test_a_plugin_ships_recipes_from_its_config_folder_and_published_tables(tmp_path):
    from aubench.config import compose
    from aubench.leaderboard import render

    (tmp_path / "method").mkdir()
    (tmp_path / "method" / "my-bce.yaml").write_text("# @package _global_\ndefaults:\n  - /recipe/vmnc\n  - _self_\n"
                                                     "loss:\n  name: bce\nepochs: 3\n")
    reg = make_registry(("ships", ShipsAMethod(tmp_path)))
    assert reg.owner("method", "my-bce") == "ships" and tmp_path in reg.search_paths
    cfg = compose("my-bce", registry=reg)
    assert cfg.loss.name == "bce" and cfg.preset == "smoke" and cfg.epochs == 4  # the smoke preset wins over 3
    board = render([], reg.references)
    section = board[board.index("## tiny-3fold@v1"):]
    assert "No aubench results on this protocol yet" in section
    assert "Someone et al., Table 9 (registered by plugin `ships`)" in section


class AddsCommands:
    """A plugin adding a subcommand, an option of `data check`, and a plot."""

    seen: dict = {}

    @hookimpl
    def aubench_register_commands(self, cli):
        hello = cli.add_command("hello", "say hello", lambda args: print(f"hello {args.name}") or 0)
        hello.add_argument("--name", default="world")
        cli.add_options("data check", ["tiny-real"], "tiny-real").add_argument("--strict-names", action="store_true")
        cli.add_plot("nothing", "draws nothing", lambda run_dir, out: f"drew {run_dir}")

    @hookimpl
    def aubench_register_datasets(self):
        return [DatasetSpec(name="tiny-real", au_set=(1,), label_kind="occurrence", prepare="x:y",
                            check=AddsCommands.check)]

    @staticmethod
    def check(raw_root, strict_names=False):
        from aubench import Scan

        AddsCommands.seen = {"raw_root": raw_root, "strict_names": strict_names}
        return Scan("tiny-real", counts={"files": 0})


def test_plugins_add_commands_options_and_plots(tmp_path, capsys):
    from aubench.cli import main
    from aubench.registry import reset_registry

    reset_registry(make_registry(("adds", AddsCommands())))
    try:
        assert main(["hello", "--name", "AU"]) == 0 and capsys.readouterr().out == "hello AU\n"
        assert main(["data", "check", "tiny-real", str(tmp_path), "--strict-names"]) == 0
        assert AddsCommands.seen == {"raw_root": tmp_path, "strict_names": True}
        assert "0 error(s), 0 warning(s)" in capsys.readouterr().out
        assert main(["plot", "nothing", str(tmp_path)]) == 0 and capsys.readouterr().out == f"drew {tmp_path}\n"
        assert main(["plot", "nothign", str(tmp_path)]) == 2
        assert "Did you mean 'nothing'" in capsys.readouterr().err
    finally:
        reset_registry(None)


def test_a_typo_in_a_recipe_file_is_refused_naming_the_file_also_by_show(tmp_path, capsys):
    from aubench.cli import main
    from aubench.registry import reset_registry

    (tmp_path / "method").mkdir()
    (tmp_path / "method" / "my-bce.yaml").write_text("# @package _global_\ndefaults:\n  - /recipe/vmnc\n  - _self_\n"
                                                     "loss:\n  name: bce\nepoch: 2\n")
    reset_registry(make_registry(("ships", ShipsAMethod(tmp_path))))
    try:
        assert main(["show", "my-bce"]) == 2
    finally:
        reset_registry(None)
    err = capsys.readouterr().err
    assert f"{tmp_path / 'method' / 'my-bce.yaml'}" in err and "unknown key 'epoch'. Did you mean 'epochs'?" in err


def test_a_recipe_without_the_package_header_says_so(tmp_path):
    from aubench.config import compose

    (tmp_path / "method").mkdir()
    (tmp_path / "method" / "my-bce.yaml").write_text("defaults:\n  - /recipe/vmnc\n  - _self_\nloss:\n  name: bce\n")
    reg = make_registry(("ships", ShipsAMethod(tmp_path)))
    with pytest.raises(ConfigError, match=r"my-bce.yaml does not start with `# @package _global_`"):
        compose("my-bce", registry=reg)


def test_a_plugin_whose_commands_fail_is_reported_and_the_rest_of_the_cli_works(capsys):
    from aubench.cli import main
    from aubench.registry import reset_registry

    class Broken:
        @hookimpl
        def aubench_register_commands(self, cli):
            raise RuntimeError("boom")

    reset_registry(make_registry(("broken", Broken())))
    try:
        with pytest.warns(UserWarning, match="plugin 'broken' failed to add its commands .*boom"):
            assert main(["list", "methods"]) == 0
    finally:
        reset_registry(None)
    assert "vmnc-bce" in capsys.readouterr().out
