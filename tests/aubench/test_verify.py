"""`aubench leaderboard --verify`: numbers recomputed from predictions and the dataset's labels."""
import json

import numpy as np
import pytest
from conftest import FAST

from aubench import RecordError
from aubench.cells import plan_cells
from aubench.cli import main
from aubench.engine import run_cell
from aubench.verify import verify_records


@pytest.fixture
def finished(registry, runs):
    cell = plan_cells(registry, "vmnc-bce", "tiny-3fold", folds=["1"], overrides=FAST, runs_dir=runs)[0]
    run_cell(cell, registry, progress=False)
    return cell


def test_a_finished_run_verifies_against_its_predictions_and_dataset(finished, runs, capsys):
    report = verify_records(runs)
    assert report.records == 1 and report.against_data == 1 and not report.without_data
    assert main(["leaderboard", "--verify", "--runs-dir", str(runs)]) == 0
    assert "verified 1 record(s)" in capsys.readouterr().out


def test_an_edited_score_is_caught(finished, runs, capsys):
    data = json.loads(finished.record_path.read_text())
    data["f1_avg"] += 0.5
    finished.record_path.write_text(json.dumps(data))
    with pytest.raises(RecordError, match="f1_avg is .* but its predictions give"):
        verify_records(runs)
    assert main(["leaderboard", "--verify", "--runs-dir", str(runs)]) == 2
    assert str(finished.record_path) in capsys.readouterr().err


def test_stored_labels_that_are_not_the_datasets_are_caught(finished, runs):
    path = finished.run_dir / "predictions.npz"
    with np.load(path) as npz:
        data = {k: npz[k] for k in npz.files}
    # two frames swap names: the scores still add up, but the labels are no longer those frames' labels
    i, j = next((i, j) for i in range(len(data["labels"])) for j in range(i) if
                (data["labels"][i] != data["labels"][j]).any() and data["subject"][i] == data["subject"][j])
    data["frame"][[i, j]] = data["frame"][[j, i]]
    data["video"][[i, j]] = data["video"][[j, i]]
    np.savez_compressed(path, **data)
    with pytest.raises(RecordError, match="stored labels differ from the prepared tiny-bp4d's labels"):
        verify_records(runs)


def test_a_record_of_other_data_is_caught(finished, runs):
    data = json.loads(finished.record_path.read_text())
    data["data"]["test_fingerprint"] = "synth-0000"
    finished.record_path.write_text(json.dumps(data))
    with pytest.raises(RecordError, match="recorded on data synth-0000"):
        verify_records(runs)


def test_missing_predictions_are_named(finished, runs):
    (finished.run_dir / "predictions.npz").unlink()
    with pytest.raises(RecordError, match="no predictions.npz beside it"):
        verify_records(runs)
