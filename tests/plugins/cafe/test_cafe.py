"""CAFE for AUs: the mask, the pieces, the piece logits, the diverse loss, masked labels, and a cell."""
import pytest
import torch

from aubench.testing import AUS, toy_batch, toy_stats
from aubench_cafe.losses import CAFELoss, diverse_loss
from aubench_cafe.model import CAFE, piece_logits, piece_sizes

SMOKE = {"kind": "timm", "name": "test_resnet", "pretrained": False, "allow_random": True}


def model():
    torch.manual_seed(0)
    return CAFE(AUS, toy_stats(), frozen=dict(SMOKE), mask_net="test_resnet", input_size=64)


def test_the_sigmoid_mask_is_in_0_1_and_shaped_like_the_frozen_features():
    net, batch = model(), toy_batch(size=64)
    fixed = net.extract_frozen(batch)
    mask = net.sigmoid_mask(batch["image"], tuple(fixed.shape[-2:]))
    assert mask.shape == fixed.shape and bool(((mask > 0) & (mask < 1)).all())


def test_pieces_partition_the_channels_and_piece_logits_equal_a_direct_computation():
    sizes = piece_sizes(26, 5)
    assert sizes == [5, 5, 5, 5, 6] and sum(sizes) == 26
    with pytest.raises(Exception, match="at least one channel per AU"):
        piece_sizes(3, 5)
    pooled = torch.randn(3, 26)
    keep = torch.rand(3, 26) > 0.3
    keep[:, [0, 5, 10, 15, 20]] = True
    got = piece_logits(pooled, sizes, keep)
    for b in range(3):
        start = 0
        for k, n in enumerate(sizes):
            values = [float(pooled[b, c]) for c in range(start, start + n) if keep[b, c]]
            assert float(got[b, k]) == pytest.approx(max(values))
            start += n


def test_the_diverse_loss_is_minimal_for_disjoint_channels_and_maximal_for_identical_ones():
    disjoint = torch.full((1, 4, 2, 2), -50.0)
    for c in range(4):
        disjoint[0, c].view(-1)[c] = 50.0  # each channel attends its own position
    identical = torch.zeros(1, 4, 2, 2)
    identical[0, :, 0, 0] = 50.0
    assert float(diverse_loss(disjoint, [2, 2])) == pytest.approx(0.0, abs=1e-6)
    assert float(diverse_loss(identical, [2, 2])) == pytest.approx(0.5, abs=1e-6)  # 1 - 1/n


def test_masked_labels_contribute_nothing_to_any_term():
    net, batch = model(), toy_batch(size=64)
    net.train()
    torch.manual_seed(1)
    out = net(batch)
    loss = CAFELoss()
    value, terms = loss(out, batch, toy_stats())
    flipped = dict(batch, labels=torch.where(batch["mask"], batch["labels"], 1 - batch["labels"]))
    again, _ = loss(out, flipped, toy_stats())
    assert set(terms) == {"cls", "sep", "div"} and torch.allclose(value, again)
    value.backward()
    assert net.to_mask.weight.grad.abs().sum() > 0 and net.piece_offset.grad is not None


def test_a_cafe_cell_runs_on_the_synthau_fan_of_its_training_subjects(tmp_path, monkeypatch):
    from conftest import make_registry

    from aubench.cells import plan_cells
    from aubench.engine import run_cell

    monkeypatch.setenv("AUBENCH_HOME", str(tmp_path / "home"))
    reg = make_registry()
    (cell,) = plan_cells(reg, "cafe", "tiny-cross", runs_dir=tmp_path / "runs",
                         overrides=["preset=smoke-synthfan", "epochs=1", "batch_size=16", "model.frozen.epochs=1",
                                    "model.frozen.width=16"])
    rec = run_cell(cell, reg, progress=False)
    pre = rec.model_extras["frozen_pretraining"]
    assert pre["dataset"] == "tiny-bp4d" and not set(pre["train_subjects"]) & set(cell.fold.test_subjects)
    assert sum(rec.model_extras["pieces"]) == 48 and len(rec.model_extras["pieces"]) == 12


def test_the_smoke_cell_freezes_the_encoder_its_vmnc_bce_cell_trained_on_the_same_subjects(tmp_path, monkeypatch):
    from conftest import make_registry
    from safetensors.torch import load_file

    from aubench.cells import plan_cells, run_cells

    monkeypatch.setenv("AUBENCH_HOME", str(tmp_path / "home"))
    reg = make_registry()
    (cell,) = plan_cells(reg, "cafe", "tiny-cross", runs_dir=tmp_path / "runs",
                         overrides=["epochs=1", "batch_size=16", "+init.from.overrides=['epochs=1','batch_size=16']"])
    dep = cell.depends_on
    assert (dep.method, dep.protocol.id, dep.fold.name, dep.seed) == ("vmnc-bce", cell.protocol.id, "all", 0)
    (outcome,) = run_cells([cell], reg, progress=False)
    assert (dep.run_dir / "record.json").is_file()  # the cell it starts from ran first
    rec = outcome.record
    vmnc, cafe = (load_file(str(c.run_dir / "model.safetensors")) for c in (dep, cell))
    encoder = {k: v for k, v in vmnc.items() if k.startswith("encoder.")}
    assert encoder and all(torch.equal(cafe["frozen.net." + k[len("encoder."):]], v) for k, v in encoder.items())
    assert rec.init_checkpoint["rename"] == {"encoder.": "frozen.net."}
    assert rec.init_checkpoint["from"]["method"] == "vmnc-bce" and "vmnc-bce" in rec.model_extras["frozen_weights"]


def test_an_encoder_frozen_part_never_trains_on_random_or_partly_loaded_weights(tmp_path, monkeypatch):
    from conftest import make_registry

    from aubench import CheckpointError, ConfigError
    from aubench.cells import plan_cells, run_cells
    from aubench.engine import run_cell

    monkeypatch.setenv("AUBENCH_HOME", str(tmp_path / "home"))
    reg = make_registry()
    fast = ["epochs=1", "batch_size=16", "+init.from.overrides=['epochs=1','batch_size=16']"]
    (alone,) = plan_cells(reg, "cafe", "tiny-cross", runs_dir=tmp_path / "a", overrides=[*fast, "init.from=null",
                                                                                          "init.rename=null"])
    with pytest.raises(ConfigError, match="takes its weights from another cell; set init.from .* given: none"):
        run_cell(alone, reg, progress=False)
    (elsewhere,) = plan_cells(reg, "cafe", "tiny-cross", runs_dir=tmp_path / "c",
                              overrides=[*fast, "init.rename={encoder.: mask_net.}"])  # fills the mask network only
    assert run_cells([elsewhere.depends_on], reg, progress=False)[0].status == "done"
    with pytest.raises(ConfigError, match=r"an init.rename onto the frozen part .* given: \['mask_net.'\]"):
        run_cell(elsewhere, reg, progress=False)
    (wrong,) = plan_cells(reg, "cafe", "tiny-cross", runs_dir=tmp_path / "b",
                          overrides=[*fast, "init.rename={head.: frozen.net.}"])
    assert run_cells([wrong.depends_on], reg, progress=False)[0].status == "done"
    with pytest.raises(CheckpointError, match=r"tensors under 'frozen.net.' are missing or of another shape"):
        run_cell(wrong, reg, progress=False)
    assert not (wrong.run_dir / "record.json").exists()


def test_fer_tables_are_registered_for_the_record_and_marked_not_comparable(recwarn):
    from aubench.leaderboard import render
    from aubench.registry import Registry

    reg = Registry()
    fer = [ref for owner, ref in reg.references if owner == "cafe"]
    assert len(fer) == 3 and not any(ref.comparable for ref in fer)
    assert fer[0].rows["CAFE"]["avg"] == 62.72 and fer[0].rows["CAFE"]["Neutral"] == 58.72  # Table 1 as printed
    text = render([], reg.references, protocols=reg.specs["protocol"], methods=reg.names("method"))
    section = text.split("## fer:raf-db-to-ferplus")[1].split("\n## ")[0]
    assert "Not comparable with AU detection" in section and "| Surprise" in section and "| CAFE        | 62.7 " in section
    assert "avg accuracy" in section and "**Check:**" not in section
    assert not [w for w in recwarn if "fer:" in str(w.message)]  # an unregistered protocol is expected here
