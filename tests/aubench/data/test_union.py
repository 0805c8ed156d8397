"""The union of two prepared datasets (ABAW3 §4.3): every AU of both, unknown where a source does not label."""
import numpy as np
import pytest
import torch

from aubench.data.prepared import PreparedDataset, ensure_prepared
from aubench.data.union import UNKNOWN, merge_prepared
from aubench.errors import DatasetError


def test_the_union_keeps_each_frame_and_masks_the_aus_its_dataset_does_not_label(registry, tmp_path):
    bp4d, disfa = (ensure_prepared(registry.get("dataset", n), progress=False) for n in ("tiny-bp4d", "tiny-disfa"))
    out = PreparedDataset(merge_prepared(tmp_path / "tiny-union", [bp4d, disfa], name="tiny-union"))
    assert len(out) == len(bp4d) + len(disfa) and out.subjects == sorted(bp4d.subjects + disfa.subjects)
    assert out.meta["au_set"] == sorted(set(bp4d.meta["au_set"]) | set(disfa.meta["au_set"]))
    assert np.array_equal(np.asarray(out.frames[len(bp4d):]), np.asarray(disfa.frames))
    assert np.array_equal(np.asarray(out.parsing[:len(bp4d)]), np.asarray(bp4d.parsing))
    y, m = out.labels([5, 7, 1])
    src = out.index["source"].to_numpy()
    assert not m[src == "tiny-bp4d", 0].any() and not m[src == "tiny-disfa", 1].any()  # AU5 is DISFA's, AU7 BP4D's
    # DISFA's intensities arrive binarised at 2, BP4D's occurrence codes (and its 9s) as they were
    yd, md = disfa.labels([1], 2)
    assert np.array_equal(y[src == "tiny-disfa", 2], yd[:, 0]) and np.array_equal(m[src == "tiny-disfa", 2], md[:, 0])
    yb, mb = bp4d.labels([7])
    assert np.array_equal(m[src == "tiny-bp4d", 1], mb[:, 0])
    assert (out.index.loc[src == "tiny-bp4d", "AU5"] == UNKNOWN).all()
    with pytest.raises(DatasetError, match="is in both"):
        merge_prepared(tmp_path / "again", [bp4d, bp4d], name="again")


def test_union_folds_join_each_datasets_fold_k_and_keep_all_others():
    from aubench import Fold, union_folds

    a = (Fold("1", ("A1",), ("A2",)), Fold("2", ("A2",), ("A1",)))
    b = (Fold("1", ("B1",), ("B2",)), Fold("2", ("B2",), ("B1",)))
    joined = union_folds(a, b)
    assert [(f.name, f.test_subjects, f.train_subjects) for f in joined] == [
        ("1", ("A1", "B1"), ("A2", "B2")), ("2", ("A2", "B2"), ("A1", "B1"))]
    others = union_folds(a, (Fold("1", ("B1",)), Fold("2", ("B2",))))
    assert others[0].train_subjects is None  # "all others", never an empty training set


def test_masked_aus_never_enter_a_union_trained_loss(registry, tmp_path):
    from aubench.testing import toy_stats
    from aubench_guided.losses import GuidedLoss

    bp4d, disfa = (ensure_prepared(registry.get("dataset", n), progress=False) for n in ("tiny-bp4d", "tiny-disfa"))
    out = PreparedDataset(merge_prepared(tmp_path / "tiny-union", [bp4d, disfa], name="tiny-union"))
    aus = tuple(out.meta["au_set"])
    rows = np.r_[0:8, len(bp4d):len(bp4d) + 8]  # frames of both sources in one batch
    y, m = out.labels(aus)
    labels, mask = torch.from_numpy(y[rows]).float(), torch.from_numpy(m[rows])
    logits = torch.randn(len(rows), len(aus), requires_grad=True)
    loss = GuidedLoss(weights="jaanet", dice=1.0)
    value, _ = loss({"logits": logits}, {"labels": labels, "mask": mask}, toy_stats(aus))
    flipped, _ = loss({"logits": logits}, {"labels": torch.where(mask, labels, 1 - labels), "mask": mask}, toy_stats(aus))
    assert torch.allclose(value, flipped)
    value.backward()
    assert float(logits.grad[~mask].abs().sum()) == 0.0 and float(logits.grad[mask].abs().sum()) > 0
