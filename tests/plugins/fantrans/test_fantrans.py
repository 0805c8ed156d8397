"""FAN-Trans: feature shapes, frozen backbone, top-k, ensemble weights, attention drop, export."""
import pytest
import torch
from timm.models.vision_transformer import Block

from aubench.errors import ConfigError
from aubench.testing import AUS, toy_batch, toy_stats
from aubench_fantrans.backbone import FANFeatures
from aubench_fantrans.losses import OKDLoss, bernoulli_kl
from aubench_fantrans.model import FANTrans, MaskedAttention, complexity, topk_evidence

SMOKE_BACKBONE = {"kind": "timm", "name": "test_resnet", "pretrained": False, "allow_random": True}


@pytest.fixture(scope="module")
def fan():
    torch.manual_seed(0)
    return FANFeatures(allow_random=True)


def small(**kw):
    torch.manual_seed(0)
    cfg = dict(backbone=SMOKE_BACKBONE, input_size=64, conv_dim=64, depth=2)
    cfg.update(kw)
    return FANTrans(AUS, toy_stats(AUS), **cfg)


def test_fan_feature_is_768_x_64_x_64_at_256(fan):
    x = torch.rand(1, 3, 256, 256)
    assert fan(x).shape == (1, 768, 64, 64)
    no_lf = FANFeatures(allow_random=True, use_lf=False)
    assert no_lf(x).shape == (1, 512, 64, 64) and no_lf.out_channels == 512


def test_heatmap_product_is_part_of_the_feature(fan):
    x = torch.rand(1, 3, 256, 256)
    plain = FANFeatures(allow_random=True, use_heatmap=False)
    plain.load_state_dict(fan.state_dict())
    with_hm, without = fan(x), plain(x)
    assert torch.allclose(with_hm[:, :256], without[:, :256])  # LF untouched
    assert not torch.allclose(with_hm[:, 256:], without[:, 256:])


def test_backbone_is_frozen_in_eval_mode_and_gets_no_gradient():
    model = small()
    model.train()
    assert not model.backbone.training and model.conv.training
    out = model(toy_batch(size=64))
    loss, _ = OKDLoss()(out, toy_batch(size=64), toy_stats(AUS))
    loss.backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(not p.requires_grad for p in model.backbone.parameters())
    assert model.conv.reduce.weight.grad is not None


def test_a_random_frozen_extractor_is_the_same_for_every_cell_seed_and_leaves_the_seeds_stream_alone():
    from aubench_fantrans.backbone import TimmFeatures

    def build(seed, **kw):
        torch.manual_seed(seed)
        net = TimmFeatures("test_resnet", allow_random=True, **kw)
        return net, torch.rand(3)  # what the cell draws next (its trainable head's initialisation)

    (a, _), (b, after_b) = build(0), build(1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    torch.manual_seed(1)
    assert torch.equal(after_b, torch.rand(3))  # the head still draws from the cell's seed
    other, _ = build(0, init_seed=5)
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), other.state_dict().values()))


def test_a_gray_extractor_reads_the_luma_only(registry):
    """Desaturating an image (its luma kept) changes a random CNN's features, not those of its gray
    variant, which equal the features of the luma image in all three channels, in either memory format."""
    from aubench.config import compose
    from aubench_fantrans.backbone import LUMA, TimmFeatures

    x = torch.rand(2, 3, 32, 32) * 2 - 1
    luma = (x * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
    pale = luma + 0.3 * (x - luma)  # saturation x 0.3, the same luma
    rgb, gray = TimmFeatures("test_resnet", allow_random=True), TimmFeatures("test_resnet", allow_random=True, gray=True)
    assert not torch.allclose(rgb(x), rgb(pale), atol=1e-3)
    assert torch.allclose(gray(x), gray(pale), atol=1e-5)
    assert torch.allclose(gray(x), rgb(luma.expand(-1, 3, -1, -1)), atol=1e-5)
    assert torch.allclose(gray(x.contiguous(memory_format=torch.channels_last)), gray(x), atol=1e-5)
    assert compose("fantrans", ["preset=smoke", "model.backbone.gray=true"], registry=registry).model.backbone.gray


def test_missing_weights_refuse_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="needs pretrained FAN weights.*allow_random=true"):
        FANFeatures()


def test_topk_sums_the_k_largest_evidences_per_au_column():
    p_hat = torch.tensor([[[1.0, 5.0, 0.0],
                           [3.0, -1.0, 2.0],
                           [2.0, 4.0, 7.0]]])  # rows: AU features, columns: AUs
    assert topk_evidence(p_hat, 2).tolist() == [[5.0, 9.0, 9.0]]
    assert topk_evidence(p_hat, 1).tolist() == [[3.0, 5.0, 7.0]]


def test_ensemble_weights_sum_to_one_per_au():
    model = small()
    model.train()
    out = model(toy_batch(size=64))
    w = out["ensemble_weights"]
    assert w.shape == (4, 2, len(AUS)) and torch.allclose(w.sum(1), torch.ones(4, len(AUS)))
    p_o, p_m = out["branch_logits"]["0.o2o"], out["branch_logits"]["1.o2m"]
    assert torch.allclose(out["ensemble_logits"], w[:, 0] * p_o + w[:, 1] * p_m)


def test_attention_drop_with_an_all_ones_mask_equals_timms_block():
    torch.manual_seed(0)
    ref = Block(64, 1, mlp_ratio=4.0, qkv_bias=True)
    ours = Block(64, 1, mlp_ratio=4.0, qkv_bias=True, attn_layer=MaskedAttention)
    ours.attn.configure(5, "learned")
    missing, unexpected = ours.load_state_dict(ref.state_dict(), strict=False)
    assert missing == ["attn.mask_logits"] and not unexpected
    x = torch.randn(3, 5, 64)
    assert torch.allclose(ours(x), ref(x), atol=1e-6)


def test_learned_mask_is_binary_forward_and_trainable_backward():
    attn = MaskedAttention(16, num_heads=1)
    attn.configure(4, "learned")
    with torch.no_grad():
        attn.mask_logits.copy_(torch.tensor([2.0, -2.0, 2.0, 0.3]))
    assert attn.column_mask().tolist() == [1.0, 0.0, 1.0, 1.0]
    attn(torch.randn(2, 4, 16)).sum().backward()
    assert attn.mask_logits.grad is not None and attn.mask_logits.grad.abs().sum() > 0


@pytest.mark.parametrize("mode,dim", [("row", -1), ("column", -2)])
def test_row_and_column_drop_keep_the_upper_half(mode, dim):
    attn = MaskedAttention(8, num_heads=1)
    attn.configure(4, mode)
    seen = {}
    attn.attn_drop.register_forward_hook(lambda m, i, o: seen.setdefault("a", o))
    attn(torch.randn(1, 4, 8))
    kept = (seen["a"][0, 0] > 0).sum(dim)
    assert (kept >= 2).all() and (kept <= 3).all()


def test_inference_export_drops_auxiliaries_and_keeps_p_m():
    model = small()
    model.train()
    batch = toy_batch(size=64)
    OKDLoss()(model(batch), batch, toy_stats(AUS))[0].backward()  # any trained-looking state
    model.eval()
    exported = model.export_inference()
    with torch.no_grad():
        assert torch.allclose(exported(batch)["logits"], model(batch)["logits"], atol=1e-6)
        assert torch.allclose(model(batch)["logits"], model(batch)["branch_logits"]["1.o2m"])
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_infer = sum(p.numel() for p in exported.parameters() if p.requires_grad)
    assert n_infer < n_train
    assert getattr(exported, "ensemble", None) is None and exported.paths == ["0.o2m"]


def test_table1_variants_build_with_their_pathways():
    assert small(transformer=False).paths == ["baseline"]
    assert small(branches=[["o2o", "o2m"]]).paths == ["0.o2o", "0.o2m"]
    assert small(branches=[["o2o"], ["o2o"]]).deploy == "1.o2o"
    with pytest.raises(ConfigError, match="classifiers must be among"):
        small(branches=[["mlp"]])


def test_okd_loss_terms_and_zero_kl_for_identical_students():
    t = torch.tensor([[0.3, -1.2]])
    assert torch.allclose(bernoulli_kl(t, t), torch.zeros_like(t), atol=1e-7)
    assert (bernoulli_kl(t, t + 1) > 0).all()
    model = small()
    model.train()
    batch = toy_batch(size=64)
    loss, terms = OKDLoss(lambda_kd=0.2)(model(batch), batch, toy_stats(AUS))
    assert set(terms) == {"cls_0.o2o", "cls_1.o2m", "cls_ensemble", "kd"}
    expected = terms["cls_0.o2o"] + terms["cls_1.o2m"] + terms["cls_ensemble"] + 0.2 * terms["kd"]
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_complexity_counts_frozen_learnable_and_inference_parameters():
    torch.manual_seed(0)
    model = FANTrans(tuple(range(1, 13)), None, backbone={"kind": "fan", "allow_random": True})
    c = complexity(model)
    assert c["frozen_params_used"] == 12_106_504  # stem + two stacks of FAN-4 = FAN(2)
    assert 13.5 < c["backbone_gmacs"] < 14.5  # supplementary: 13.97 G
    assert c["inference_head_params"] < c["learnable_params"]


def test_size_report_prints_every_figure_beside_the_supplementary(capsys):
    from aubench.cli import main

    assert main(["fantrans-size"]) == 0
    out = capsys.readouterr().out
    assert "frozen_params_used" in out and "12.107 M" in out and "~4.5 M" in out and "GMAC" in out


def test_the_fan_variant_sets_the_pooling_and_avg_equals_face_alignments_own_forward():
    import torch.nn.functional as F

    from aubench_fantrans.backbone import FANFeatures, _hourglass

    torch.manual_seed(0)
    avg = FANFeatures("fan4-cut2", allow_random=True)
    x = torch.rand(1, 256, 16, 16)
    hg = avg.fan.m0
    assert torch.allclose(_hourglass(hg, hg.depth, x, F.avg_pool2d), hg(x), atol=1e-5)  # the same computation
    assert not torch.allclose(_hourglass(hg, hg.depth, x, F.max_pool2d), hg(x))
    fan2 = FANFeatures("fan2", allow_random=True)
    img = torch.rand(1, 3, 64, 64)
    assert fan2(img).shape == avg(img).shape == (1, 768, 16, 16)


def test_on_disfa_every_fantrans_recipe_starts_from_its_own_bp4d_cell_of_the_same_fold():
    from aubench.cells import plan_cells
    from aubench.registry import Registry

    reg = Registry()
    for method in ("fantrans", "fantrans-r"):
        cells = plan_cells(reg, method, "disfa-3fold")
        assert cells[0].preset == "paper-disfa"
        assert [(c.depends_on.method, c.depends_on.protocol.id, c.depends_on.fold.name, c.depends_on.preset)
                for c in cells] == [(method, "bp4d-3fold@jaanet-v1", f, "paper") for f in ("1", "2", "3")]


def test_the_synthau_fan_trains_only_on_the_cells_training_subjects_and_is_cached(tmp_path, monkeypatch):
    from conftest import make_registry

    from aubench.cells import plan_cells
    from aubench.engine import run_cell
    from aubench_fantrans.synthfan import heatmaps

    monkeypatch.setenv("AUBENCH_HOME", str(tmp_path / "home"))
    reg = make_registry()
    fast = ["preset=smoke-synthfan", "epochs=1", "batch_size=16", "model.backbone.epochs=1", "model.backbone.width=16"]
    cell = plan_cells(reg, "fantrans", "tiny-3fold", folds=["1"], overrides=fast, runs_dir=tmp_path / "r")[0]
    rec = run_cell(cell, reg, progress=False)
    pre = rec.model_extras["backbone_pretraining"]
    trained_on = set(pre["train_subjects"]) | set(pre["nme_subjects"])
    assert trained_on == set(rec.train_subjects) and not trained_on & set(cell.fold.test_subjects)
    assert pre["nme_percent"] > 0 and rec.model_extras["backbone_weights"] == f"synthfan {pre['key']}"
    cached = list((tmp_path / "home" / "pretrained" / "synthfan").glob("*/model.safetensors"))
    assert len(cached) == 1
    again = plan_cells(reg, "fantrans", "tiny-3fold", folds=["1"], overrides=fast, runs_dir=tmp_path / "s")[0]
    rerun = run_cell(again, reg, progress=False)  # the FAN comes from the cache now
    assert rerun.model_extras["backbone_pretraining"]["key"] == pre["key"] and rerun.per_au == rec.per_au
    from aubench.data.prepared import ensure_prepared
    from aubench_fantrans.synthfan import pretrained_synthfan

    data = ensure_prepared(reg.get("dataset", "tiny-bp4d"), progress=False)
    _, meta = pretrained_synthfan(data, ["F001", "F002", "F003"], 64, {"epochs": 0, "width": 16})
    assert meta["key"] != pre["key"]  # other training subjects: another network
    assert len(list((tmp_path / "home" / "pretrained" / "synthfan").glob("*/model.safetensors"))) == 2
    hm = heatmaps(torch.tensor([[[10.0, 22.0]] * 68]), 16, 0.25)
    assert hm.shape == (1, 68, 16, 16) and hm[0, 0].argmax() == 5 * 16 + 2  # (x 10 / 4 = 2.5, y 22 / 4 = 5.5): row 5, col 2
