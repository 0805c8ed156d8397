"""Cells that start from other cells (``init.from``): a two-stage method runs with one command, its
stage-1 cells first, one leaderboard row per stage, and the subject-overlap refusal still holds."""
import json

import pytest
from conftest import FAST, make_registry

from aubench import MethodSpec, hookimpl
from aubench.cells import plan_cells, run_cells
from aubench.cli import main
from aubench.errors import ConfigError
from aubench.registry import reset_registry

STAGE1 = '["epochs=1", "batch_size=16", "augment.shift=1"]'


class TwoStage:
    def __init__(self, conf):
        self.conf = conf

    @hookimpl
    def aubench_register_methods(self):
        return [MethodSpec(name="stage2"), MethodSpec(name="stage2-fixed-fold"), MethodSpec(name="stage2-cross")]

    @hookimpl
    def aubench_config_search_paths(self):
        return [self.conf]


def _registry(tmp_path):
    conf = tmp_path / "conf" / "method"
    conf.mkdir(parents=True)
    base = "# @package _global_\ndefaults:\n  - /recipe/vmnc\n  - _self_\nloss:\n  name: bce\n"
    (conf / "stage2.yaml").write_text(base + f"init:\n  from:\n    method: vmnc-bce\n    overrides: {STAGE1}\n")
    (conf / "stage2-fixed-fold.yaml").write_text(
        base + f"init:\n  from:\n    method: vmnc-bce\n    same: [protocol, seed]\n    fold: '1'\n    overrides: {STAGE1}\n")
    (conf / "stage2-cross.yaml").write_text(
        base + "init:\n  from:\n    method: vmnc-bce\n    same: [seed]\n    protocol: tiny-3fold\n    fold: allowed\n"
        f"    overrides: {STAGE1}\n")
    return make_registry(("twostage", TwoStage(tmp_path / "conf")))


def test_one_command_runs_both_stages_in_order_and_the_board_has_a_row_per_stage(tmp_path, capsys):
    reg = _registry(tmp_path)
    reset_registry(reg)
    runs = tmp_path / "runs"
    try:
        assert main(["run", "stage2", "--protocol", "tiny-3fold", "--runs-dir", str(runs), "--no-progress", *FAST]) == 0
    finally:
        reset_registry(None)
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("done")]
    assert len(lines) == 6 and all(lines.index(next(x for x in lines if f"vmnc-bce [smoke + {STAGE1[2:10]}" in x
                                                     and f"fold {f} " in x)) <
                                   lines.index(next(x for x in lines if x.startswith("done  stage2") and f"fold {f} " in x))
                                   for f in "123")
    records = {(r["method"], r["fold"]): r for r in map(lambda p: json.loads(p.read_text()), runs.rglob("record.json"))}
    assert len(records) == 6
    for fold in "123":
        start = records[("stage2", fold)]["init_checkpoint"]
        assert start["from"] == {"method": "vmnc-bce", "preset": "smoke", "config_hash": records[("vmnc-bce", fold)]
                                 ["config_hash"], "protocol": "tiny-3fold@v1", "fold": fold, "seed": 0}
        assert start["loaded_tensors"] > 0 and start["skipped_tensors"] == 0
    assert len({records[("stage2", f)]["config_hash"] for f in "123"}) == 1  # one recipe: one leaderboard row
    board = (runs / "LEADERBOARD.md").read_text()
    assert board.count("| stage2 ") >= 1 and board.count("| vmnc-bce ") >= 1


def test_a_dependency_that_saw_the_test_subjects_is_refused_and_a_failed_one_fails_its_dependents(tmp_path):
    reg = _registry(tmp_path)
    cells = plan_cells(reg, "stage2-fixed-fold", "tiny-3fold", folds=["2"], overrides=FAST, runs_dir=tmp_path / "r")
    assert cells[0].depends_on.fold.name == "1"
    (outcome,) = run_cells(cells, reg, progress=False, echo=lambda m: None)
    assert outcome.status == "failed" and "F003" in outcome.error and "tests on" in outcome.error
    broken = plan_cells(reg, "stage2", "tiny-3fold", folds=["3"],
                        overrides=[*FAST, "init.from.overrides=['model.backbone=no_such_backbone']"],
                        runs_dir=tmp_path / "t")
    first, second = run_cells([broken[0].depends_on, *broken], reg, progress=False, echo=lambda m: None)
    assert first.status == "failed" and second.status == "failed"
    assert "starts from vmnc-bce" in second.error and "which failed" in second.error


def test_another_protocol_fold_by_the_allowed_rule(tmp_path):
    reg = _registry(tmp_path)
    (cell,) = plan_cells(reg, "stage2-cross", "tiny-cross", overrides=FAST, runs_dir=tmp_path / "r")
    assert cell.depends_on.protocol.id == "tiny-3fold@v1" and cell.depends_on.fold.name == "1"
    (outcome,) = run_cells([cell], reg, progress=False, echo=lambda m: None)
    assert outcome.status == "done" and outcome.record.init_checkpoint["from"]["protocol"] == "tiny-3fold@v1"


def test_a_dependency_runs_on_the_engine_settings_of_the_cell_that_starts_from_it(tmp_path):
    reg = _registry(tmp_path)
    (cell,) = plan_cells(reg, "stage2", "tiny-3fold", folds=["1"], runs_dir=tmp_path / "r",
                         overrides=[*FAST, "engine.threads=1", "engine.device=cpu", "engine.feature_store=disk"])
    dep = cell.depends_on.config.engine
    assert (dep.threads, dep.device, dep.feature_store) == (1, "cpu", "disk")
    assert "engine.device=cpu" in cell.depends_on.label and "threads" not in cell.depends_on.label  # neutral
    (plain,) = plan_cells(reg, "stage2", "tiny-3fold", folds=["1"], runs_dir=tmp_path / "r", overrides=FAST)
    assert plain.depends_on.config.engine.threads is None and "engine" not in plain.depends_on.label


def test_bad_dependency_specs_are_refused_at_planning(tmp_path):
    reg = _registry(tmp_path)
    with pytest.raises(ConfigError, match="init.checkpoint and init.from are both set"):
        plan_cells(reg, "stage2", "tiny-3fold", overrides=["init.checkpoint=x"], runs_dir=tmp_path)
    with pytest.raises(ConfigError, match="needs `method`.*not \\['methd'\\]"):
        plan_cells(reg, "stage2", "tiny-3fold", overrides=["~init.from.method", "+init.from.methd=x"], runs_dir=tmp_path)


def test_a_result_whose_starting_weights_changed_is_kept_but_stale_for_run_verify_and_the_board(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from aubench.checkpoints import WEIGHTS_FILE, weights_digest
    from aubench.errors import RecordError
    from aubench.leaderboard import write_leaderboard
    from aubench.verify import verify_records

    reg = _registry(tmp_path)
    runs = tmp_path / "runs"
    (cell,) = plan_cells(reg, "stage2", "tiny-3fold", folds=["1"], overrides=FAST, runs_dir=runs)
    dep_weights = cell.depends_on.run_dir / WEIGHTS_FILE
    assert [o.status for o in run_cells([cell], reg, progress=False, echo=lambda m: None)] == ["done"]
    record = json.loads(cell.record_path.read_text())
    assert record["init_checkpoint"]["weights_digest"] == weights_digest(dep_weights)
    assert verify_records(runs, datasets=False).starts == 1

    # the starting cell trained again: its record goes, it runs first, gives the same weights, so the result holds
    (cell.depends_on.record_path).unlink()
    said = []
    assert [o.status for o in run_cells([cell], reg, progress=False, echo=said.append)] == ["skipped"]
    assert said[0].startswith("done  vmnc-bce") and said[1].startswith("skip  stage2")

    # ... or other weights (another machine, another code): the finished result is kept, and refused
    with safe_open(str(dep_weights), "pt") as fh:
        meta = fh.metadata()
    save_file({k: v + 1 for k, v in load_file(str(dep_weights)).items()}, str(dep_weights), metadata=meta)
    before = cell.record_path.read_bytes()
    said = []
    (outcome,) = run_cells([cell], reg, progress=False, echo=said.append)
    assert outcome.status == "stale" and "rerun it with --overwrite" in outcome.error
    assert said[-1].startswith("STALE stage2") and cell.record_path.read_bytes() == before
    with pytest.raises(RecordError, match="no longer belongs to its starting point"):
        verify_records(runs, datasets=False)
    with pytest.warns(UserWarning, match="skipped .*record.json: it started from vmnc-bce"):
        board = write_leaderboard(runs, tmp_path / "board.md", reg).read_text()
    assert "| stage2 " not in board and "| vmnc-bce " in board
    reset_registry(reg)
    try:
        assert main(["run", "stage2", "--protocol", "tiny-3fold", "--fold", "1", "--runs-dir", str(runs),
                     "--no-progress", *FAST]) == 1
        assert main(["run", "stage2", "--protocol", "tiny-3fold", "--fold", "1", "--runs-dir", str(runs),
                     "--no-progress", "--overwrite", *FAST]) == 0
    finally:
        reset_registry(None)
    assert verify_records(runs, datasets=False).starts == 1
