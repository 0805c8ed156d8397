"""VLS / VALS / RHLS (Tallec thesis, chapter 4) against hand-computed targets."""
import numpy as np
import pytest
import torch
from conftest import FAST

from aubench.cells import plan_cells
from aubench.engine import run_cell
from aubench.stats import TrainStats
from aubench_labelsmoothing.losses import RHLSLoss, VALSLoss, VLSLoss, rhls_alphas, smoothed_targets

Y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])


def stats_for(freq):
    freq = np.asarray(freq, float)
    return TrainStats(tuple(range(1, len(freq) + 1)), freq * 1000, np.full(len(freq), 1000.0), 1000)


def test_vls_targets_eq_4_5():
    t = VLSLoss(alpha=0.1).targets(Y, stats_for([0.3, 0.3]))
    assert torch.allclose(t, torch.tensor([[0.95, 0.05], [0.05, 0.95]]))


def test_vals_derived_and_printed_forms():
    s = stats_for([0.3, 0.3])
    derived = VALSLoss(alpha_pos=0.0, alpha_neg=0.5).targets(Y, s)
    printed = VALSLoss(alpha_pos=0.0, alpha_neg=0.5, form="printed").targets(Y, s)
    assert torch.allclose(derived, torch.tensor([[1.0, 0.25], [0.25, 1.0]]))
    assert torch.allclose(printed, torch.tensor([[1.0, 0.5], [0.5, 1.0]]))
    both = VALSLoss(alpha_pos=0.2, alpha_neg=0.4).targets(Y, s)
    assert torch.allclose(both, torch.tensor([[0.9, 0.2], [0.2, 0.9]]))


def test_alpha_neg_075_crosses_the_threshold_only_in_the_printed_form():
    neg = torch.zeros(1, 1)
    assert smoothed_targets(neg, 0.0, 0.75, "derived").item() == pytest.approx(0.375)
    assert smoothed_targets(neg, 0.0, 0.75, "printed").item() == pytest.approx(0.75)


def test_rhls_alphas_eq_4_11_by_hand():
    a_pos, a_neg = rhls_alphas(np.array([0.2, 0.5, 0.8]), beta=0.25)
    assert a_neg == pytest.approx([0.25 * 0.6 / 0.8, 0.0, 0.0])
    assert a_pos == pytest.approx([0.0, 0.0, 0.25 * 0.6 / 0.8])
    t = RHLSLoss(beta=0.25).targets(torch.tensor([[0.0, 0.0, 1.0]]), stats_for([0.2, 0.5, 0.8]))
    assert t[0].tolist() == pytest.approx([0.1875 / 2, 0.0, 1 - 0.1875 / 2])


@pytest.mark.parametrize("form", ["derived", "printed"])
def test_rhls_never_touches_the_minority_class(form):
    freqs = np.linspace(0.01, 0.99, 99)
    loss = RHLSLoss(beta=1.0, form=form)
    ones = loss.targets(torch.ones(1, len(freqs)), stats_for(freqs))[0].numpy()
    zeros = loss.targets(torch.zeros(1, len(freqs)), stats_for(freqs))[0].numpy()
    assert (ones[freqs <= 0.5] == 1.0).all()  # positives are the minority: untouched
    assert (zeros[freqs >= 0.5] == 0.0).all()  # negatives are the minority: untouched


def test_beta_one_balances_each_au_in_expectation_only_in_the_derived_form():
    freqs = np.array([0.02, 0.1, 0.3, 0.5, 0.7, 0.95])
    for form, expected in (("derived", np.full(len(freqs), 0.5)), ("printed", None)):
        loss = RHLSLoss(beta=1.0, form=form)
        pos = loss.targets(torch.ones(1, len(freqs)), stats_for(freqs))[0].numpy()
        neg = loss.targets(torch.zeros(1, len(freqs)), stats_for(freqs))[0].numpy()
        mean_target = freqs * pos + (1 - freqs) * neg
        if expected is not None:
            assert mean_target == pytest.approx(expected)
        else:  # the printed equations overshoot: the class balance flips to 1 - f instead of 1/2
            assert mean_target == pytest.approx(1 - freqs)


def test_loss_is_bce_on_the_smoothed_targets_and_ignores_masked_labels():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3]])
    mask = torch.tensor([[True, True], [True, False]])
    s = stats_for([0.2, 0.6])
    loss = RHLSLoss(beta=0.5)
    value, _ = loss({"logits": logits}, {"labels": Y, "mask": mask}, s)
    t = loss.targets(Y, s)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, t, reduction="none")
    expected = (bce[:, 0].mean() + bce[0, 1]) / 2
    assert value.item() == pytest.approx(expected.item())
    flipped = Y.clone()
    flipped[1, 1] = 0.0
    assert loss({"logits": logits}, {"labels": flipped, "mask": mask}, s)[0].item() == pytest.approx(value.item())


def test_frequencies_come_from_the_training_subjects_of_the_cell(registry, runs):
    cell = plan_cells(registry, "ls-rhls", "tiny-3fold", folds=["2"], overrides=FAST, runs_dir=runs)[0]
    rec = run_cell(cell, registry, progress=False)
    from aubench.data.prepared import PreparedDataset, dataset_dir

    ds = PreparedDataset(dataset_dir("tiny-bp4d"))
    y, m = ds.labels(ds.au_set)
    rows = ds.rows_for(rec.train_subjects)
    expected = TrainStats.from_labels(ds.au_set, y[rows], m[rows]).frequency
    assert rec.train_stats["frequency"] == pytest.approx(expected, abs=1e-5)
    assert not set(rec.train_subjects) & set(cell.fold.test_subjects)


def test_the_paper_preset_runs_on_the_thesis_mtts_and_vmnc_stays_a_preset():
    from aubench.config import compose
    from aubench.registry import Registry

    reg = Registry()
    paper = compose("ls-rhls", ["preset=paper"], registry=reg)
    assert paper.model.name == "guided_transformer" and paper.model.decoder == "mtts" and paper.model.stage == 3
    assert paper.model.lr_rule.batch == paper.batch_size == 32 and paper.model.input_size == 224
    assert (paper.optim.name, paper.optim.lr, paper.sched.gamma, paper.epochs) == ("adam", 5e-5, 0.75, 2)
    assert paper.loss.name == "rhls"
    vmnc = compose("ls-rhls", ["preset=paper-vmnc"], registry=reg)
    assert vmnc.model.name == "vmnc" and vmnc.model.backbone == "resnet50"
    assert compose("ls-rhls", ["preset=smoke"], registry=reg).model.name == "vmnc"
