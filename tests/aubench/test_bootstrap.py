"""Subject-level bootstrap intervals and paired ranks with ties."""
import numpy as np
import pytest

from aubench.bootstrap import interval, ranks_with_ties, row_replicates, subject_counts
from aubench.metrics import au_metrics
from aubench.records import RECORD_SCHEMA_VERSION, ResultRecord

SUBJECTS = [f"S{i:02d}" for i in range(12)]


def cell(tmp_path, name, probs, labels, fold="1", subjects=SUBJECTS):
    """A record of one cell with its predictions.npz; frames are spread evenly over ``subjects``."""
    folder = tmp_path / name / fold
    folder.mkdir(parents=True)
    n, k = labels.shape
    subj = np.array([subjects[i % len(subjects)] for i in range(n)])
    mask = np.ones_like(labels, bool)
    np.savez(folder / "predictions.npz", probs=probs, labels=labels, mask=mask, subject=subj)
    m = au_metrics(probs, labels, mask, list(range(1, k + 1)))
    return ResultRecord(
        schema_version=RECORD_SCHEMA_VERSION, method=name, preset="smoke", overrides=[], config_hash="c", dataset="d",
        train_dataset="d", protocol="p", protocol_version="v1", protocol_id="p@v1", fold=fold, test_subject_hash="h",
        test_subjects=list(subjects), train_subjects=[], val_subjects=[], seed=0, aus=list(range(1, k + 1)),
        train_aus=list(range(1, k + 1)), positive_threshold=2, per_au=m["per_au"], f1_avg=m["f1_avg"], threshold=0.5,
        n_test_frames=n, n_train_frames=0, init_checkpoint=None, selection="final", postprocess={}, data={},
        train_stats={}, model_extras={}, history=[], timings={}, environment={}, config={}, versions={},
        path=folder / "record.json")


@pytest.fixture
def labels():
    return (np.random.default_rng(0).random((600, 4)) < 0.3).astype(np.float32)


def test_subject_counts_add_up_to_the_fold_totals(tmp_path, labels):
    probs = np.random.default_rng(1).random(labels.shape).astype(np.float32)
    rec = cell(tmp_path, "a", probs, labels)
    counts = subject_counts(rec.path.parent / "predictions.npz", SUBJECTS).sum(0)
    for j, au in enumerate(rec.aus):
        tp, fp, fn = counts[j, :3]
        assert 100 * 2 * tp / (2 * tp + fp + fn) == pytest.approx(rec.per_au[str(au)]["f1"])


def test_the_interval_holds_the_score_and_identical_rows_share_a_rank(tmp_path, labels):
    rng = np.random.default_rng(2)
    noisy = np.clip(labels + rng.normal(0, 0.45, labels.shape), 0, 1).astype(np.float32)
    a, b = cell(tmp_path, "a", noisy, labels), cell(tmp_path, "b", noisy, labels)
    ra, rb = row_replicates([a]), row_replicates([b])
    low, high = interval(ra)
    assert low < a.f1_avg < high and high - low > 1  # 12 subjects: a few points of uncertainty
    assert ranks_with_ties([a.f1_avg, b.f1_avg], [ra, rb]) == [1, 1]


def test_a_clearly_better_row_ranks_alone_and_a_close_one_ties(tmp_path, labels):
    rng = np.random.default_rng(3)
    base = np.clip(labels + rng.normal(0, 0.45, labels.shape), 0, 1).astype(np.float32)
    # as good a predictor, with its own errors: a difference the 12 test subjects cannot resolve
    close = np.clip(labels + rng.normal(0, 0.45, labels.shape), 0, 1).astype(np.float32)
    perfect = labels.copy()
    recs = [cell(tmp_path, n, p, labels) for n, p in (("perfect", perfect), ("base", base), ("close", close))]
    reps = [row_replicates([r]) for r in recs]
    ranks = ranks_with_ties([r.f1_avg for r in recs], reps)
    assert ranks[0] == 1 and ranks[1] == ranks[2] == 2


def test_a_cell_without_predictions_gives_no_replicates(tmp_path, labels):
    rec = cell(tmp_path, "a", labels, labels)
    (rec.path.parent / "predictions.npz").unlink()
    assert row_replicates([rec]) is None


def test_predictions_that_do_not_give_their_records_score_are_named_and_the_board_renders(tmp_path, labels):
    from aubench import RecordError
    from aubench.leaderboard import render

    good = cell(tmp_path, "good", labels, labels)
    bad = cell(tmp_path, "bad", np.clip(labels + 0.3, 0, 1), labels)
    bad.f1_avg += 3.0  # the record no longer matches its predictions
    with pytest.raises(RecordError, match="does not give its record's score"):
        row_replicates([bad])
    with pytest.warns(UserWarning, match=r"bad \[smoke\]: .*predictions.npz does not give its record's score"):
        text = render([good, bad])
    assert "| good " in text and "| n/a " in text
