import pytest

from aubench.config import compose, config_hash
from aubench.errors import ConfigError, UnknownNameError


def test_preset_auto_picks_smoke_on_synthetic_and_paper_on_real(registry):
    smoke = compose("vmnc-bce", registry=registry)
    paper = compose("vmnc-bce", registry=registry, dataset="bp4d")
    assert smoke.preset == "smoke" and smoke.model.backbone == "aubench_smoke_cnn"
    assert paper.preset == "paper" and paper.model.backbone == "inception_v3" and paper.optim.lr == 1e-4
    assert "presets" not in smoke


def test_user_overrides_win_over_the_preset(registry):
    cfg = compose("vmnc-bce", ["optim.lr=0.5", "epochs=2", "preset=paper"], registry=registry)
    assert cfg.preset == "paper" and cfg.optim.lr == 0.5 and cfg.epochs == 2
    assert list(cfg.overrides) == ["optim.lr=0.5", "epochs=2"]


def test_keys_added_by_the_preset_can_be_overridden(registry):
    cfg = compose("vmnc-bce", ["+sched.t_max=9"], registry=registry)
    assert cfg.sched.t_max == 9


def test_unknown_override_suggests_the_key(registry):
    with pytest.raises(ConfigError, match=r"'optim.lrr=1'.*Did you mean 'optim.lr'"):
        compose("vmnc-bce", ["optim.lrr=1"], registry=registry)


def test_plus_adds_and_tilde_deletes(registry):
    cfg = compose("vmnc-bce", ["+optim.eps=1e-6", "~augment.contrast"], registry=registry)
    assert cfg.optim.eps == 1e-6 and "contrast" not in cfg.augment


@pytest.mark.parametrize("overrides,message", [
    (["+epoch=2"], r"unknown key 'epoch'\. Did you mean 'epochs'"),
    (["+augment.hlfip=0.5"], r"unknown key 'augment.hlfip'\. Did you mean 'hflip'"),
    (["epochs=abc"], r"epochs='abc' must be int"),
    (["seed=abc"], r"seed='abc' must be int"),
    (["batch_size=abc"], r"batch_size='abc' must be int"),
    (["batch_size=0"], r"batch_size=0 must be at least 1"),
    (["+model.widht=3"], r"\(model 'vmnc' of plugin 'baseline'\): unknown key 'model.widht'"),
    (["loss.name=bce", "+loss.smoothing=0.1"], r"loss 'bce' of plugin 'baseline'.*unknown key 'loss.smoothing'"),
    (["optim.name=rmsprop"], r"optim.name='rmsprop'; use one of \['adam', 'adamw', 'sgd'\]"),
    (["+optim.lrr=3"], r"\(optimiser adamw\): unknown key 'optim.lrr'\. Did you mean 'lr'"),
    (["selection.rule=best"], r"selection.rule='best'; use one of \['final', 'val'\]"),
    (["+engine.treads=1"], r"unknown key 'engine.treads'\. Did you mean 'threads'"),
])
def test_a_recipe_key_or_value_that_would_silently_train_something_else_is_refused(registry, overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        compose("vmnc-bce", overrides, registry=registry)
    assert "plugins/aubench_baseline/conf/method/vmnc-bce.yaml" in str(err.value)


def test_sweep_syntax_is_refused_outside_sweeps(registry):
    with pytest.raises(ConfigError, match="aubench sweep"):
        compose("vmnc-bce", ["optim.lr=1e-3,1e-4"], registry=registry)


def test_unknown_preset(registry):
    with pytest.raises(UnknownNameError, match="Unknown preset of vmnc-bce 'fast'"):
        compose("vmnc-bce", ["preset=fast"], registry=registry)


def test_config_hash_ignores_cell_selection_but_not_recipe(registry):
    a = compose("vmnc-bce", ["seed=3"], registry=registry)
    b = compose("vmnc-bce", registry=registry)
    c = compose("vmnc-bce", ["optim.lr=0.1"], registry=registry)
    assert config_hash(a) == config_hash(b) != config_hash(c)


def test_options_that_cannot_change_a_result_do_not_fork_a_variant_and_the_others_do(registry, runs):
    from aubench.cells import plan_cells

    def cell(*overrides):
        return plan_cells(registry, "vmnc-bce", "tiny-3fold", folds=["1"], overrides=list(overrides), runs_dir=runs)[0]

    plain = cell()
    assert plain.run_dir.parts[-3] == "smoke"
    for neutral in (["engine.threads=1"], ["engine.num_workers=2"], ["engine.threads=1", "engine.num_workers=2"]):
        same = cell(*neutral)
        assert same.run_dir == plain.run_dir and same.config_hash == plain.config_hash, neutral
    for forking in (["engine.device=cpu"], ["engine.amp=false"], ["engine.compile=true"], ["optim.lr=0.1"]):
        other = cell(*forking)
        assert other.run_dir != plain.run_dir and other.config_hash != plain.config_hash, forking


def test_recipe_is_read_only(registry):
    cfg = compose("vmnc-bce", registry=registry)
    from omegaconf.errors import ReadonlyConfigError

    with pytest.raises(ReadonlyConfigError):
        cfg.optim.lr = 1.0


def test_contributing_documents_the_recipe_schema_as_the_code_defines_it():
    from pathlib import Path

    from aubench.schema import schema_markdown

    text = (Path(__file__).resolve().parents[2] / "CONTRIBUTING.md").read_text()
    documented = text.split("<!-- recipe-schema -->\n")[1].split("\n<!-- /recipe-schema -->")[0]
    assert documented == schema_markdown(), "regenerate the table in CONTRIBUTING.md from aubench.schema"


class Recipes:
    """A plugin whose recipes exercise composition: keys of aubench's defaults, required values, a child
    replacing a base's single loss with a list and deleting base keys, per-dataset preset values."""

    def __init__(self, conf):
        self.conf = conf

    from aubench import hookimpl

    @hookimpl
    def aubench_register_methods(self):
        from aubench import MethodSpec
        return [MethodSpec(name=n) for n in ("stage2", "needs-lr", "child")]

    @hookimpl
    def aubench_config_search_paths(self):
        return [self.conf]


def _recipes(tmp_path, child_delete="model.dropout"):
    from conftest import make_registry

    (tmp_path / "method").mkdir(parents=True)
    (tmp_path / "recipe").mkdir()
    head = "# @package _global_\n"
    (tmp_path / "recipe" / "base.yaml").write_text(head + "loss:\n  name: bce\naugment:\n  hflip: 0.5\n")
    (tmp_path / "method" / "stage2.yaml").write_text(
        head + "defaults:\n  - /recipe/vmnc\n  - _self_\nloss:\n  name: bce\ninit:\n  strict: true\n"
        "selection:\n  rule: val\n  val_subjects: 1\npostprocess:\n  name: moving_average\n  window: 3\n"
        "engine:\n  eval_batch_size: 32\n")
    (tmp_path / "method" / "needs-lr.yaml").write_text(
        head + "defaults:\n  - /recipe/vmnc\n  - _self_\nloss:\n  name: bce\nmodel:\n  dropout: ???\n"
        "presets:\n  smoke:\n    datasets:\n      tiny-disfa:\n        model:\n          dropout: 0.5\n"
        "    protocols:\n      tiny-cross:\n        epochs: 3\n")
    (tmp_path / "method" / "child.yaml").write_text(
        head + f"defaults:\n  - /recipe/vmnc\n  - /recipe/base\n  - _self_\n_delete_: [{child_delete}]\n"
        "loss:\n  - name: bce\n  - name: dice\n    weight: 0.5\n")
    return make_registry(("recipes", Recipes(tmp_path)))


def test_a_recipe_sets_init_selection_postprocess_and_engine_keys(tmp_path):
    cfg = compose("stage2", registry=_recipes(tmp_path))
    assert cfg.init.strict is True and cfg.selection.rule == "val" and cfg.postprocess.window == 3
    assert cfg.engine.eval_batch_size == 32 and cfg.engine.num_workers == 0  # the rest from aubench's defaults


def test_a_required_value_must_be_given_and_a_preset_gives_it_per_dataset(tmp_path):
    reg = _recipes(tmp_path)
    with pytest.raises(ConfigError, match=r"requires \['model.dropout'\] \(marked \?\?\?\).*model.dropout=\.\.\."):
        compose("needs-lr", registry=reg)
    assert compose("needs-lr", ["model.dropout=0.1"], registry=reg).model.dropout == 0.1
    shown = compose("needs-lr", registry=reg, dataset="tiny-disfa")  # what `aubench show --protocol` prints
    assert shown.model.dropout == 0.5 and "datasets" not in shown and "protocols" not in shown
    # then the preset's values for the protocol (by name@version or by name), over the dataset's
    assert compose("needs-lr", registry=reg, dataset="tiny-disfa", protocol="tiny-cross@v1").epochs == 3
    assert compose("needs-lr", registry=reg, dataset="tiny-disfa", protocol="tiny-3fold@v1").epochs == shown.epochs != 3
    typo = _recipes(tmp_path / "typo")  # a misspelt protocol is refused, not silently never applied
    recipe = tmp_path / "typo" / "method" / "needs-lr.yaml"
    recipe.write_text(recipe.read_text().replace("tiny-cross:", "tiny-crosss:"))
    with pytest.raises(ConfigError, match="names 'tiny-crosss', which is no registered protocol.*'tiny-cross'"):
        compose("needs-lr", registry=typo, dataset="tiny-disfa", protocol="tiny-cross@v1")


def test_a_child_replaces_a_base_loss_with_a_list_and_deletes_base_keys(tmp_path):
    cfg = compose("child", registry=_recipes(tmp_path))
    assert [item.name for item in cfg.loss] == ["bce", "dice"] and cfg.loss[1].weight == 0.5
    assert "dropout" not in cfg.model and cfg.augment.hflip == 0.5
    with pytest.raises(ConfigError, match=r"_delete_ names 'model.dropot'.*Did you mean 'model.dropout'"):
        compose("child", registry=_recipes(tmp_path / "typo", child_delete="model.dropot"))
