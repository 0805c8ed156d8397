import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from aubench.metrics import all_positive_f1, au_metrics, mean_std, moving_average


def test_f1_agrees_with_sklearn_on_masked_data():
    rng = np.random.default_rng(0)
    probs = rng.random((500, 4))
    labels = (rng.random((500, 4)) < [0.1, 0.3, 0.5, 0.05]).astype(float)
    mask = rng.random((500, 4)) > 0.1
    out = au_metrics(probs, labels, mask, (1, 2, 4, 6))
    for j, au in enumerate((1, 2, 4, 6)):
        m = mask[:, j]
        y, p = labels[m, j], probs[m, j] >= 0.5
        assert out["per_au"][str(au)]["f1"] == pytest.approx(100 * f1_score(y, p, zero_division=0))
        assert out["per_au"][str(au)]["precision"] == pytest.approx(100 * precision_score(y, p, zero_division=0))
        assert out["per_au"][str(au)]["recall"] == pytest.approx(100 * recall_score(y, p, zero_division=0))
        assert out["per_au"][str(au)]["support"] == int(y.sum())
    assert out["f1_avg"] == pytest.approx(np.mean([out["per_au"][str(a)]["f1"] for a in (1, 2, 4, 6)]))


def test_masked_entries_change_nothing():
    probs = np.array([[0.9], [0.1], [0.9]])
    labels = np.array([[1.0], [0.0], [0.0]])
    full = au_metrics(probs, labels, np.array([[True], [True], [True]]), (1,))
    masked = au_metrics(probs, labels, np.array([[True], [True], [False]]), (1,))
    assert full["per_au"]["1"]["f1"] == pytest.approx(200 / 3)
    assert masked["per_au"]["1"]["f1"] == pytest.approx(100.0)


def test_threshold_is_inclusive_at_half():
    out = au_metrics(np.array([[0.5]]), np.array([[1.0]]), None, (1,))
    assert out["per_au"]["1"]["f1"] == 100.0


def test_all_positive_predictor_matches_its_formula():
    labels = np.array([[1.0]] * 3 + [[0.0]] * 7)
    out = au_metrics(np.ones_like(labels), labels, None, (12,))
    assert out["per_au"]["12"]["f1"] == pytest.approx(all_positive_f1(0.3))
    assert all_positive_f1(0.3) == pytest.approx(200 * 0.3 / 1.3)


def test_mean_std_uses_sample_std():
    assert mean_std([1.0, 3.0]) == pytest.approx((2.0, np.sqrt(2.0)))
    assert mean_std([5.0]) == (5.0, 0.0)


def test_moving_average_stays_within_each_video_and_follows_frame_order():
    probs = np.array([[0.0], [1.0], [0.0], [1.0], [1.0]])
    groups = np.array(["a", "a", "a", "b", "b"])
    order = np.array([3, 1, 2, 1, 2])  # rows of video a are out of order
    out = moving_average(probs, groups, order, 3)
    # video a in frame order: frames 1,2,3 -> 1,0,0 ; centred means: .5, 1/3, 0
    assert out[1, 0] == pytest.approx(0.5)
    assert out[2, 0] == pytest.approx(1 / 3)
    assert out[0, 0] == pytest.approx(0.0)
    assert out[3:, 0] == pytest.approx([1.0, 1.0])


def test_an_au_without_a_labelled_test_frame_is_left_out_of_the_average_with_a_warning():
    import warnings

    probs = np.array([[0.9, 0.2], [0.8, 0.7], [0.1, 0.9]])
    labels = np.array([[1, 0], [1, 1], [0, 1]])
    mask = np.array([[True, False], [True, False], [True, False]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = au_metrics(probs, labels, mask, (1, 2))
    assert out["unscored"] == [2] and out["per_au"]["2"]["scored"] is False
    assert out["f1_avg"] == out["per_au"]["1"]["f1"] == 100.0  # not (100 + 0) / 2
    assert any("AUs [2] have no labelled test frame" in str(w.message) for w in caught)
