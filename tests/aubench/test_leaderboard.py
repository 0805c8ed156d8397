from pathlib import Path

import pytest

from aubench.leaderboard import aggregate, render
from aubench.records import RECORD_SCHEMA_VERSION, ResultRecord, load_records
from aubench.registry import Registry
from aubench.specs import ReferenceTable

ROOT = Path(__file__).resolve().parents[2]


def test_committed_leaderboard_is_up_to_date_with_its_records():
    records = load_records(ROOT / "leaderboard" / "records")
    assert records, "leaderboard/records holds the committed default SynthAU run"
    reg = Registry()
    expected = render(records, reg.references, protocols=reg.specs["protocol"], methods=reg.names("method"),
                      plot_dir="plots")
    actual = (ROOT / "leaderboard" / "LEADERBOARD.md").read_text()
    assert actual == expected, "leaderboard/LEADERBOARD.md is stale: run `make leaderboard`"


def test_committed_default_run_covers_every_default_method_and_protocol():
    reg = Registry()
    table = aggregate(load_records(ROOT / "leaderboard" / "records"))
    defaults = {p.id for p in reg.specs["protocol"].values() if p.default}
    assert defaults <= set(table)
    for proto in defaults:
        assert {r["method"] for r in table[proto]} >= {m.name for m in reg.specs["method"].values() if m.default}


def test_a_row_not_above_the_all_positive_floor_is_marked_and_not_bolded():
    text = render([_rec("a", "1", 30.0, rate=0.25), _rec("b", "1", 60.0, rate=0.25)], uncertainty=False)
    assert "| 30.0 ± 0.0 (not above *all positive*) |" in text and "**60.0** ± 0.0" in text

def _rec(method, fold, f1, rate=0.25, proto="p@v1"):
    name, _, version = proto.partition("@")
    return ResultRecord(
        schema_version=RECORD_SCHEMA_VERSION, method=method, preset="smoke", overrides=[], config_hash="c",
        dataset="d", train_dataset="d", protocol=name, protocol_version=version, protocol_id=proto, fold=fold,
        test_subject_hash=f"h{fold}", test_subjects=["s"], train_subjects=["t"], val_subjects=[], seed=0, aus=[1],
        train_aus=[1], positive_threshold=2, per_au={"1": {"f1": f1, "positive_rate": rate}}, f1_avg=f1,
        threshold=0.5, n_test_frames=10, n_train_frames=20, init_checkpoint=None, selection="final", postprocess={},
        data={}, train_stats={}, model_extras={}, history=[], timings={}, environment={}, config={},
        versions={"aubench": "0.1.0"})


def test_rows_are_mean_and_std_over_folds_with_the_all_positive_floor():
    text = render([_rec("a", "1", 50.0), _rec("a", "2", 60.0), _rec("b", "1", 70.0), _rec("b", "2", 70.0)],
                  uncertainty=False)
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    assert "**70.0** ± 0.0" in lines[2] and "**55.0** ± 7.1" in lines[3]  # sorted best first
    assert "*all positive*" in lines[4] and "40.0 ± 0.0" in lines[4]  # 2*.25/1.25
    assert "1:h1, 2:h2" in text
    assert "Measured on a CPU its records do not name: 4 cells." in text
    gpu, cpu = _rec("a", "1", 50.0), _rec("a", "2", 60.0)
    gpu.environment, cpu.environment = {"device": "cuda", "gpu": "NVIDIA H200"}, {"device": "cpu", "cpu": "AMD EPYC (AVX512)"}
    assert "Measured on AMD EPYC (AVX512): 1 cell, NVIDIA H200 (cuda): 1 cell." in render([gpu, cpu], uncertainty=False)


def test_our_row_and_its_published_row_are_side_by_side_with_the_difference():
    ref = ReferenceTable(source="Paper X, Table 1", protocol="p@v1", rows={"Theirs": {"1": 44.4, "avg": 44.4},
                                                                          "Other": {"1": 30.0, "avg": 30.0}},
                         method={"Theirs": "a"})
    text = render([_rec("a", "1", 50.0)], [("plug", ref)], uncertainty=False)
    block = text[text.index("### Ours beside the published rows"):]
    assert "| ours: a [smoke]" in block and "| published: Theirs" in block and "| Δ (ours − published) | +5.6" in block
    rest = text[text.index("### Published rows without an aubench row"):]
    assert "| Other " in rest and "| Theirs " not in rest
    # published rows are matched on the full protocol id, version included
    other_version = ReferenceTable(source="Paper X", protocol="p@v2", rows={"Theirs": {"avg": 44.4}},
                                   method={"Theirs": "a"})
    text = render([_rec("a", "1", 50.0)], [("plug", other_version)], uncertainty=False)
    assert "### Ours beside" not in text and "## p@v2\n\nNo aubench results on this protocol yet." in text


def test_a_published_average_that_is_not_the_mean_of_its_aus_is_flagged_not_fixed():
    ref = ReferenceTable(source="Paper Y", protocol="q@v1", rows={"Z": {"1": 40.0, "2": 50.0, "avg": 47.0}},
                         method={"Z": "no-such-method"}, file="refs/paper_y.json")
    reg = Registry()
    with pytest.warns(UserWarning, match="refs/paper_y.json: protocol 'q@v1' is not registered"):
        text = render([], [("plug", ref)], protocols=reg.specs["protocol"], methods=reg.names("method"))
    assert "| 47.0 " in text and "**Check:** protocol 'q@v1' is not registered" in text
    assert "**Check:** row 'Z': printed average 47.0 is not the mean of its AUs (45.00); kept as printed" in text
    assert "unknown aubench methods ['no-such-method']" in text


def test_every_committed_number_is_recomputed_from_its_stored_predictions():
    from aubench.verify import verify_records

    report = verify_records(ROOT / "leaderboard" / "records", datasets=False)
    assert report.records == len(load_records(ROOT / "leaderboard" / "records"))


def test_a_private_runs_folder_can_leave_out_protocols_it_has_no_rows_for():
    ref = ReferenceTable(source="Paper Y", protocol="q@v1", rows={"Z": {"avg": 1.0}})
    assert "## q@v1" in render([_rec("a", "1", 50.0)], [("plug", ref)], uncertainty=False)
    assert "## q@v1" not in render([_rec("a", "1", 50.0)], [("plug", ref)], uncertainty=False, all_published=False)


def test_an_unscored_au_shows_as_na_and_is_named_in_the_notes():
    rec = _rec("a", "1", 50.0)
    rec.per_au["1"]["scored"] = False
    text = render([rec, _rec("a", "2", 60.0)], uncertainty=False)
    assert "no labelled test frame, left out of the average: AU1 (fold 1)" in text
    lone = _rec("b", "1", 40.0)
    lone.per_au["1"]["scored"] = False
    assert "| n/a " in render([lone], uncertainty=False)


def test_a_row_that_averages_cells_of_two_recipes_is_reported():
    """A fold redone after a recipe edit sits in the same row (folders are named by preset and overrides)."""
    import dataclasses

    from aubench.leaderboard import aggregate

    edited = dataclasses.replace(_rec("a", "2", 60.0), config_hash="d")
    with pytest.warns(UserWarning, match=r"p@v1 a \[smoke\] averages cells of 2 recipes \(config c, d\)"):
        aggregate([_rec("a", "1", 50.0), edited])
