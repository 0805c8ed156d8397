"""Guided transformers (thesis ch. 3) and the ABAW3 model: PE, priors, losses, the parsing prior, decoders."""
import math

import pytest
import torch

from aubench.testing import AUS, toy_batch, toy_stats
from aubench_guided.attention import MultiHeadAttention, sinusoidal_2d
from aubench_guided.losses import GuidedLoss, h2p, pattel
from aubench_guided.model import GuidedTransformer, MultiLabelTransformer, model_inputs
from aubench_guided.priors import LOCATIONS, centres, heatmaps, mono_heatmap, patch_frequencies, prior_index

SMOKE = {"backbone": "aubench_smoke_cnn", "stage": 4, "backbone_kwargs": {"strides": [2, 2, 2, 1]}, "d": 48,
         "heads": 12, "input_size": 32}


def guided(aus=AUS, **kw):
    torch.manual_seed(0)
    return GuidedTransformer(aus, toy_stats(aus), **{**SMOKE, **kw})


def test_position_encoding_is_eq_3_17_3_18_on_a_small_grid():
    d = 8
    pe = sinusoidal_2d(3, 2, d)
    assert pe.shape == (3, 2, d)
    w = [1 / 10000 ** (4 * m / d) for m in (1, 2)]  # w_1 .. w_{d/4}, m from 1 as printed
    for i in range(3):
        for j in range(2):
            row = [f(wm * i) for wm in w for f in (math.cos, math.sin)]
            col = [f(wm * j) for wm in w for f in (math.cos, math.sin)]
            assert pe[i, j].tolist() == pytest.approx(row + col, abs=1e-6)
    with pytest.raises(Exception, match="divisible by 4"):
        sinusoidal_2d(2, 2, 6)


def test_heat_maps_sum_to_one_and_peak_at_their_centres():
    points = torch.tensor([[[[10.0, 30.0]], [[50.0, 6.0]]]])  # two priors, one centre each, (x, y) pixels
    maps = heatmaps(points, (64, 64), (8, 8), sigma=1.0)  # 8 px per patch
    assert maps.shape == (1, 2, 64) and torch.allclose(maps.sum(-1), torch.ones(1, 2))
    assert divmod(int(maps[0, 0].argmax()), 8) == (3, 1)  # y 30 -> row 3, x 10 -> column 1
    assert divmod(int(maps[0, 1].argmax()), 8) == (0, 6)
    # eq. 3.30 directly: exp(-|c~ - centre_ij|^2 / sigma^2), normalised
    c = torch.tensor([10.0, 30.0]) / 8
    grid = torch.stack(torch.meshgrid(torch.arange(8.0) + 0.5, torch.arange(8.0) + 0.5, indexing="ij"), -1)
    direct = torch.exp(-((grid.flip(-1) - c) ** 2).sum(-1)).flatten()
    assert torch.allclose(maps[0, 0], direct / direct.sum(), atol=1e-6)
    # the mono-prior of every landmark also sums to one, and a far-off centre does not underflow to NaN
    lm = toy_batch(size=64)["landmarks"]
    assert torch.allclose(mono_heatmap(lm, (64, 64), (4, 4)).sum(-1), torch.ones(4))
    assert torch.isfinite(heatmaps(torch.full((1, 1, 1, 2), 1e4), (64, 64), (4, 4))).all()


def test_table_3_2_centres_and_the_au_to_location_map():
    lm = torch.zeros(1, 68, 2)
    lm[0, 39], lm[0, 42] = torch.tensor([40.0, 50.0]), torch.tensor([60.0, 50.0])  # scale = 20
    lm[0, 21], lm[0, 22] = torch.tensor([45.0, 40.0]), torch.tensor([55.0, 40.0])
    lm[0, 48], lm[0, 54] = torch.tensor([40.0, 90.0]), torch.tensor([60.0, 90.0])
    c = centres(lm)
    assert c.shape == (1, len(LOCATIONS), 2, 2)
    assert c[0, LOCATIONS.index("inner_brow_above")].tolist() == [[45.0, 30.0], [55.0, 30.0]]  # 1/2 scale above
    assert c[0, LOCATIONS.index("lip_corner")].tolist() == [[40.0, 90.0], [60.0, 90.0]]
    lm[0, 57] = torch.tensor([50.0, 100.0])
    lm[0, [40, 41, 46, 47]] = torch.tensor([[42.0, 52.0], [38.0, 52.0], [62.0, 52.0], [58.0, 52.0]])
    c = centres(lm)
    assert c[0, LOCATIONS.index("lip_below")].tolist() == [[50.0, 110.0]] * 2  # 1/2 scale below the lower lip
    assert c[0, LOCATIONS.index("eye_bottom_below")].tolist() == [[40.0, 72.0], [60.0, 72.0]]  # 1 scale below
    assert c[0, LOCATIONS.index("brow_centre_below")][0, 1] == pytest.approx(lm[0, 19, 1] + 20 / 3)
    assert prior_index((12, 14, 15, 99)) == [7, 7, 7, -1]  # lip corners; AU99 has no Table 3.2 entry


def test_pattel_and_h2p_equal_a_direct_computation():
    torch.manual_seed(0)
    a = torch.randn(2, 4, 3, 5)  # [B, heads, tasks, patches]
    priors = torch.softmax(torch.randn(2, 3, 5), -1)
    got = pattel(a, priors, n_heads=2)
    for b in range(2):
        value = 0.0
        for t in range(3):
            mean = (torch.softmax(a[b, 0, t], -1) + torch.softmax(a[b, 1, t], -1)) / 2  # eq. 3.32
            value -= float((priors[b, t] * mean.log()).sum())  # eq. 3.31
        assert float(got[b]) == pytest.approx(value / 3, rel=1e-5)  # divided by T (losses.py)
    head_priors = torch.softmax(torch.randn(2, 4, 5), -1)
    mask = torch.tensor([True, True, False, False])
    got = h2p(a, head_priors, mask)
    for b in range(2):
        value = 0.0
        for t in range(3):  # eq. 3.34 sums eq. 3.33 over tasks
            value += sum(-float((head_priors[b, h] * torch.log_softmax(a[b, h, t], -1)).sum()) for h in (0, 1)) / 4
        assert float(got[b]) == pytest.approx(value / 3, rel=1e-5)


def test_with_lambda_zero_the_face_parsing_attention_is_plain_attention():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4)
    q, k, prior = torch.randn(2, 3, 16), torch.randn(2, 5, 16), torch.randn(2, 4, 1, 5)
    plain, plain_logits = mha(q, k, k)
    same, same_logits = mha(q, k, k, prior, lam=0.0)
    assert torch.equal(plain, same) and torch.equal(plain_logits, same_logits)
    _, guided_logits = mha(q, k, k, prior, lam=0.5)  # eq. 3.37
    assert torch.allclose(guided_logits, (plain_logits * math.sqrt(4) + 0.5 * prior) / math.sqrt(1.25 * 4), atol=1e-5)
    # the whole model: λ_S = 0 predicts exactly what the unguided model does with the same weights
    batch = toy_batch(size=32)
    base, fp = guided(parsing_lambda=None).eval(), guided(parsing_lambda=0.0).eval()
    fp.load_state_dict(base.state_dict(), strict=False)
    assert torch.allclose(base(batch)["logits"], fp(batch)["logits"], atol=1e-6)


def test_parsing_frequencies_follow_the_class_groups():
    parsing = torch.zeros(1, 4, 4, dtype=torch.uint8)
    parsing[0, :2, :2] = 7  # hair: grouped with the background
    parsing[0, 2:, 2:] = 3
    parsing[0, 3, 3] = 5
    freq = patch_frequencies(parsing, [[0, 7], [1], [2], [3], [4], [5], [6]], (2, 2))
    assert freq.shape == (1, 4, 7) and torch.allclose(freq.sum(-1), torch.ones(1, 4))
    assert freq[0, 0].tolist()[0] == 1.0 and freq[0, 3].tolist()[3] == 0.75 and freq[0, 3].tolist()[5] == 0.25
    with pytest.raises(Exception, match="leaves out the parsing classes"):
        guided(parsing_lambda=0.1, parsing_groups=[["background"], ["skin"]])


def test_mtts_gives_per_au_outputs_in_the_protocols_au_order():
    batch = toy_batch(size=32)
    net = guided().eval()
    out = net(batch)
    assert out["logits"].shape == (4, len(AUS)) and len(out["attention"]) == 2
    assert out["attention"][0].shape == (4, 12, len(AUS), 16)  # 4 x 4 patches
    # reversing the AU set and the per-AU parameters reverses the outputs: column k is AU au_set[k]
    rev = guided(aus=AUS[::-1]).eval()
    state = net.state_dict()
    for key in ("tokens", "weight", "bias"):
        state[key] = state[key].flip(0)
    rev.load_state_dict(state)
    assert torch.allclose(rev(batch)["logits"], out["logits"].flip(1), atol=1e-5)
    # MTTC: one task token, T outputs from its dense layer
    mttc = guided(decoder="mttc").eval()(batch)
    assert mttc["logits"].shape == (4, len(AUS)) and mttc["attention"][0].shape[2] == 1
    with pytest.raises(Exception, match="needs one token per AU"):
        guided(decoder="mttc", landmark_prior="multi")


def test_landmark_priors_of_the_model_and_the_inputs_a_configuration_reads():
    batch = toy_batch(size=32)
    multi = guided(landmark_prior="multi")(batch)
    assert multi["task_priors"].shape == (4, len(AUS), 16)
    assert torch.allclose(multi["task_priors"].sum(-1), torch.ones(4, len(AUS)))
    head = guided(landmark_prior="h2p", h2p_heads=10)(batch)
    assert head["head_mask"].tolist() == [True] * 10 + [False] * 2 and float(head["head_priors"][:, 10:].sum()) == 0
    loss = GuidedLoss()
    value, terms = loss(head, batch, toy_stats())
    assert set(terms) == {"bce", "h2p"}
    value.backward()
    assert model_inputs({"landmark_prior": "h2p"}) == ("landmarks",)
    assert model_inputs({"parsing_lambda": 0.1}) == ("parsing",) and model_inputs({}) == ()


def test_the_learning_rate_rule_of_section_3_4_3():
    net = guided(lr_rule={"base": 1e-2, "scale": 2.5e5, "batch": 32})
    groups = net.param_groups({"lr": 5e-5})
    assert len(groups) == 3 and "lr" not in groups[0]  # the CNN at optim.lr
    assert groups[1]["lr"] == pytest.approx(1e-2 * 32 * 16 / (2.5e5 * math.sqrt(48)))  # q = h·w = 16 patches
    assert groups[2]["lr"] == pytest.approx(1e-2 * 32 * len(AUS) / (2.5e5 * math.sqrt(48)))  # q = T tokens
    n = sum(len(g["params"]) for g in groups)
    assert n == len(list(net.parameters()))


def test_the_abaw3_model_and_its_schedules():
    torch.manual_seed(0)
    net = MultiLabelTransformer(AUS, toy_stats(), backbone="aubench_smoke_cnn", stage=4, d=32, heads=8,
                                backbone_kwargs={"strides": [2, 2, 2, 1]}, input_size=32,
                                transformer_schedule={"batch": 32, "warmup_epochs": 5})
    out = net(toy_batch(size=32))
    assert out["logits"].shape == (4, len(AUS)) and out["attention"][0].shape == (4, 8, len(AUS), 16)
    opts = net.configure_optimizers({"name": "adamw", "lr": 5e-4}, {"name": "exponential", "gamma": 0.99}, 10, 2)
    assert len(opts) == 3 and opts[1]["scheduler"].interval == "step"
    lr = opts[2]["optimizer"].param_groups[0]["lr"]  # the decoder's rate at t = 1: (B L / 25000) d^-1/2 t w^-1.5
    assert lr == pytest.approx(32 * len(AUS) / 25000 * 32 ** -0.5 * 50 ** -1.5)
    with pytest.raises(Exception, match="patch positions"):
        net(toy_batch(size=48))
    with pytest.raises(Exception, match="transformer_schedule needs 'batch'"):
        MultiLabelTransformer(AUS, toy_stats(), backbone="aubench_smoke_cnn", stage=4, d=32, input_size=32,
                              transformer_schedule={"warmup_epochs": 5})


def test_the_moving_mean_leaves_a_constant_sequence_unchanged_and_is_on_in_the_abaw3_recipe():
    import numpy as np

    from aubench.config import compose
    from aubench.metrics import moving_average
    from aubench.registry import Registry

    probs = np.full((30, 3), 0.3)
    groups, order = np.repeat(["a", "b"], 15), np.tile(np.arange(15), 2)
    assert np.allclose(moving_average(probs, groups, order, 20), probs)
    cfg = compose("mlt", ["preset=paper"], registry=Registry())
    assert cfg.postprocess.name == "moving_average" and cfg.postprocess.window == 20 and cfg.augment.mixup == 0.2
    assert cfg.model.transformer_schedule.batch == cfg.batch_size and cfg.model.input_size == 299


@pytest.mark.parametrize("method", ["mtts-h2p", "mtts-fp"])
def test_guided_cells_run_with_the_inputs_their_guidance_reads_and_draw_their_attention(method, tmp_path, monkeypatch):
    from conftest import make_registry

    from aubench.cells import plan_cells
    from aubench.engine import run_cell
    from aubench_guided.plots import draw_attention

    monkeypatch.setenv("AUBENCH_HOME", str(tmp_path / "home"))
    reg = make_registry()
    (cell,) = plan_cells(reg, method, "tiny-3fold", folds=["1"], runs_dir=tmp_path / "runs",
                         overrides=["epochs=1", "batch_size=16"])
    rec = run_cell(cell, reg, progress=False)
    term = "h2p" if method == "mtts-h2p" else None
    assert (term is None or f"guided/{term}" in rec.history[0]) and rec.model_extras["decoder"] == "mtts"
    png = draw_attention(cell.run_dir, tmp_path / "att.png", max_aus=3)
    assert png.stat().st_size > 5000


def test_paper_encoders_give_the_grids_of_table_3_1_and_of_the_abaw3_model():
    from aubench_guided.model import FeatureTrunk

    assert FeatureTrunk("resnet50", False, 3).grid(224) == (14, 14)  # Table 3.1's 14 x 14 (stage 2: 28, 4: 7)
    assert FeatureTrunk("inception_v3", False, 4).grid(299) == (8, 8)  # ABAW3: 8 x 8 = 64 tokens


def test_the_mono_prior_path_of_table_3_3_one_token_pattel_on_a_quarter_of_the_heads():
    batch = toy_batch(size=32)
    for decoder in ("mttc", "mtts"):  # Table 3.3 runs MTTS with T = 1; MTTC has one token too
        out = guided(decoder=decoder, landmark_prior="mono")(batch)
        mono = mono_heatmap(batch["landmarks"], (32, 32), (4, 4))
        assert torch.allclose(out["task_priors"], mono[:, None].expand_as(out["task_priors"]))
        value, terms = GuidedLoss(fraction=0.25)(out, batch, toy_stats())
        direct = torch.stack([pattel(a, out["task_priors"], 3) for a in out["attention"]]).mean()  # ⌊0.25·12⌋ = 3
        assert terms["pattel"] == pytest.approx(float(direct.detach())) and value.requires_grad
    _, terms = GuidedLoss(fraction=0.0)(out, batch, toy_stats())
    assert "pattel" not in terms  # f = 0: no head constrained
