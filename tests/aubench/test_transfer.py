"""Transfer protocols (``ProtocolSpec.models_from``): another protocol's fold models, evaluated on other data."""
import pytest

from aubench import ConfigError, Fold, ProtocolSpec, hookimpl
from aubench.cells import plan_cells, run_cells


def test_a_transfer_cell_evaluates_the_source_folds_model_as_it_is_and_trains_nothing(registry, runs):
    from conftest import FAST
    from safetensors.torch import load_file

    from aubench.records import load_record

    cells = plan_cells(registry, "vmnc-bce", "tiny-folds-cross", folds=["2"], overrides=FAST, runs_dir=runs)
    cell, src = cells[0], cells[0].depends_on
    assert (src.method, src.protocol.id, src.fold.name, src.seed) == ("vmnc-bce", "tiny-3fold@v1", "2", 0)
    assert src.config_hash == cell.config_hash and list(src.config.overrides) == FAST  # the same recipe
    assert set(cell.fold.train_subjects) == {"F001", "F002", "F005", "F006"}  # what fold 2 trains on
    [out] = run_cells(cells, registry, progress=False, echo=lambda m: None)
    rec, trained = out.record, load_record(src.record_path)
    assert out.status == "done" and rec.history == [] and rec.timings["train_seconds"] == 0
    assert rec.dataset == "tiny-disfa" and rec.aus == [1, 2, 4, 6, 12] and rec.train_subjects == trained.train_subjects
    assert rec.init_checkpoint["skipped_tensors"] == 0 and rec.init_checkpoint["from"]["protocol"] == "tiny-3fold@v1"
    assert "tiny-3fold@v1 fold 2, evaluated as it is" in rec.selection
    ours, theirs = load_file(str(cell.run_dir / "model.safetensors")), load_file(str(src.run_dir / "model.safetensors"))
    assert ours.keys() == theirs.keys() and all(ours[k].equal(theirs[k]) for k in ours)


def test_a_transfer_protocol_refuses_folds_that_train_on_other_subjects_or_a_recipe_that_differs(runs, tmp_path):
    from conftest import FAST, TINY_DISFA, TINY_SUBJECTS, make_registry

    class Extra:
        @hookimpl
        def aubench_register_protocols(self):
            return [ProtocolSpec(name="bad-transfer", version="v1", train_dataset="tiny-bp4d", test_dataset="tiny-disfa",
                                 folds=(Fold("1", TINY_DISFA, TINY_SUBJECTS),), eval_aus=(1, 2), train_aus=(1, 2),
                                 models_from="tiny-3fold@v1")]

        @hookimpl
        def aubench_register_methods(self):
            from aubench import MethodSpec
            return [MethodSpec(name="vmnc-other")]

        @hookimpl
        def aubench_config_search_paths(self):
            return [tmp_path / "conf"]

    conf = tmp_path / "conf" / "method"
    conf.mkdir(parents=True)
    (conf / "vmnc-other.yaml").write_text(
        "# @package _global_\ndefaults:\n  - /method/vmnc-bce\n  - _self_\npresets:\n  smoke:\n    protocols:\n"
        "      tiny-folds-cross:\n        epochs: 3\n")
    reg = make_registry(("extra", Extra()))
    with pytest.raises(ConfigError, match="must train on what tiny-3fold@v1 fold 1 trains on"):
        plan_cells(reg, "vmnc-bce", "bad-transfer", overrides=FAST, runs_dir=runs)
    with pytest.raises(ConfigError, match="composes differently for the two protocols"):
        plan_cells(reg, "vmnc-other", "tiny-folds-cross", runs_dir=runs)


def test_a_transfer_cell_without_its_source_refuses_to_evaluate_untrained_weights(registry, runs):
    import dataclasses

    from conftest import FAST

    from aubench.engine import run_cell
    from aubench.errors import CheckpointError

    cell = plan_cells(registry, "vmnc-bce", "tiny-folds-cross", folds=["1"], overrides=FAST, runs_dir=runs)[0]
    orphan = dataclasses.replace(cell, depends_on=None)
    with pytest.raises(CheckpointError, match="evaluates the models of tiny-3fold@v1, but this cell names none"):
        run_cell(orphan, registry, progress=False)
    assert not orphan.record_path.exists()
