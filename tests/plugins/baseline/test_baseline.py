"""The baseline plugin: VMNC and the BCE / weighted BCE / Dice losses."""
import numpy as np
import pytest
import torch

from aubench import TrainStats, soft_dice
from aubench.registry import Registry
from aubench.testing import AUS, check_model, toy_stats
from aubench_baseline.losses import DiceLoss, WeightedBCELoss


def stats_for(freq):
    freq = np.asarray(freq, float)
    return TrainStats(tuple(range(1, len(freq) + 1)), freq * 1000, np.full(len(freq), 1000.0), 1000)


def test_vmnc_conforms_with_a_tiny_backbone():
    model = check_model("vmnc", Registry(), backbone="test_resnet")
    # eq. (2.38): the head starts at the training prior
    assert np.allclose(model.head.bias.detach().numpy(), toy_stats(AUS).bias_init(), atol=1e-6)


def test_thesis_and_jaanet_weighted_bce_are_the_same_loss():
    logits, labels = torch.randn(16, 4), (torch.rand(16, 4) < 0.3).float()
    batch, s = {"labels": labels, "mask": torch.ones(16, 4, dtype=torch.bool)}, stats_for([0.05, 0.2, 0.4, 0.6])
    thesis = WeightedBCELoss(normalise="thesis")({"logits": logits}, batch, s)[0]
    jaanet = WeightedBCELoss(normalise="jaanet")({"logits": logits}, batch, s)[0]
    assert thesis.item() == pytest.approx(jaanet.item())
    assert s.inverse_frequency_weights().sum() == pytest.approx(1.0)
    assert s.jaanet_weights().sum() == pytest.approx(4.0)


def test_dice_loss_is_eq_2_40_in_batch_form_with_jaanet_weights():
    torch.manual_seed(0)
    logits, labels = torch.randn(8, 3), (torch.rand(8, 3) < 0.4).float()
    mask = torch.rand(8, 3) > 0.2
    s = stats_for([0.1, 0.3, 0.5])
    value, _ = DiceLoss()({"logits": logits}, {"labels": labels, "mask": mask}, s)
    p, m = torch.sigmoid(logits), mask.float()
    direct = []
    for t in range(3):  # Σ over the batch's labelled frames, then the ratio, per AU
        num = 2 * (labels[:, t] * p[:, t] * m[:, t]).sum() + 1
        den = (labels[:, t] ** 2 * m[:, t]).sum() + (p[:, t] ** 2 * m[:, t]).sum() + 1
        direct.append(1 - num / den)
    w = torch.as_tensor(s.jaanet_weights(), dtype=torch.float32)
    assert value.item() == pytest.approx((w * torch.stack(direct)).sum().item() / 3, rel=1e-5)
    per_example, _ = soft_dice(p, labels, mask, reduction="example")
    assert per_example.item() != pytest.approx(soft_dice(p, labels, mask)[0].item())


@pytest.mark.parametrize("method,epochs,bp4d_epochs,scratch", [("vmnc-bce", 2, 4, 6), ("ls-vals", 2, 4, 6),
                                                              ("monet", 3, 6, 6), ("mtts-fp", 2, 3, 6),
                                                              ("fantrans", 2, 4, 4)])
def test_synth_disfa_folds_start_from_the_same_methods_synth_bp4d_model_of_the_fold_and_seed(method, epochs, bp4d_epochs,
                                                                                            scratch, tmp_path):
    from aubench.cells import plan_cells

    reg = Registry()
    cells = plan_cells(reg, method, "synth-disfa-3fold", seeds=[3], runs_dir=tmp_path)
    for cell in cells:
        dep = cell.depends_on
        assert (dep.method, dep.protocol.id, dep.fold.name, dep.seed) == (method, "synth-bp4d-3fold@v2", cell.fold.name, 3)
        assert cell.config.epochs == epochs and dep.depends_on is None and dep.config.epochs == bp4d_epochs
    # the per-protocol value: synth-disfa -> synth-bp4d tests on synth-bp4d, so it still trains from scratch
    (reverse,) = plan_cells(reg, method, "synth-disfa-to-synth-bp4d", seeds=[3], runs_dir=tmp_path)
    assert reverse.depends_on is None and reverse.config.epochs == scratch
