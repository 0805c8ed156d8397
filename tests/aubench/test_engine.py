import json

import numpy as np
import pytest
from conftest import FAST, make_registry
from safetensors import safe_open
from toy_components import FrozenToy, ToyComponents

from aubench import hookimpl
from aubench.cells import plan_cells, run_cells
from aubench.engine import run_cell
from aubench.errors import ConfigError, ResultExistsError
from aubench.metrics import au_metrics, moving_average
from aubench.registry import reset_registry


@pytest.fixture
def reg():
    r = make_registry(("toys", ToyComponents()))
    reset_registry(r)
    yield r
    reset_registry(None)


def one_cell(reg, runs, method="vmnc-bce", protocol="tiny-3fold", fold="1", overrides=(), seed=0):
    return plan_cells(reg, method, protocol, folds=[fold], seeds=[seed], overrides=[*FAST, *overrides],
                      runs_dir=runs)[0]


def test_cell_record_is_complete_and_recomputable_from_predictions(reg, runs):
    cell = one_cell(reg, runs)
    rec = run_cell(cell, reg, progress=False)
    on_disk = json.loads(cell.record_path.read_text())
    assert on_disk["f1_avg"] == pytest.approx(rec.f1_avg)
    for key in ("method", "dataset", "protocol", "protocol_version", "fold", "test_subject_hash", "seed", "preset",
                "per_au", "n_test_frames", "selection", "timings", "environment", "config", "train_stats"):
        assert key in on_disk, key
    assert on_disk["test_subject_hash"] == cell.fold.test_hash
    assert not set(on_disk["train_subjects"]) & set(on_disk["test_subjects"])
    assert on_disk["environment"]["torch"] and on_disk["environment"]["device"] == "cpu"
    import torch

    from aubench.results import git_commit

    assert on_disk["environment"]["cpu"].endswith(f"({torch.backends.cpu.get_cpu_capability()})")
    assert on_disk["environment"]["plugin_commits"] == ({"baseline": git_commit()} if git_commit() else {})
    assert on_disk["versions"]["baseline"].startswith("0.1.0 src ")
    pred = np.load(cell.run_dir / "predictions.npz")
    again = au_metrics(pred["probs"], pred["labels"], pred["mask"], tuple(pred["aus"]))
    assert again["f1_avg"] == pytest.approx(on_disk["f1_avg"])
    assert set(pred["subject"]) == set(cell.fold.test_subjects)
    with safe_open(cell.run_dir / "model.safetensors", "pt") as fh:
        meta = fh.metadata()
    assert meta["test_subject_hash"] == cell.fold.test_hash and meta["au_set"].startswith("1,2,4")
    assert not (cell.run_dir / "checkpoint.pt").exists()


def test_finished_cells_are_skipped_and_only_overwritten_on_request(reg, runs):
    cell = one_cell(reg, runs)
    first = run_cells([cell], reg, progress=False, echo=lambda m: None)[0]
    stamp = cell.record_path.stat().st_mtime_ns
    assert first.status == "done"
    assert run_cells([cell], reg, progress=False, echo=lambda m: None)[0].status == "skipped"
    assert cell.record_path.stat().st_mtime_ns == stamp
    with pytest.raises(ResultExistsError, match="--overwrite"):
        run_cell(cell, reg, progress=False)
    assert run_cells([cell], reg, progress=False, overwrite=True, echo=lambda m: None)[0].status == "done"
    assert cell.record_path.stat().st_mtime_ns != stamp


def interrupted(reg, runs):
    """A cell stopped (Ctrl-C) after its first epoch of two, its checkpoint kept."""
    cell = one_cell(reg, runs, overrides=["epochs=2"])

    class CtrlC:  # the user presses Ctrl-C once the first epoch is finished
        @hookimpl
        def aubench_epoch_end(self, epoch):
            raise KeyboardInterrupt

    reg.register(CtrlC(), "ctrl-c")
    with pytest.raises(KeyboardInterrupt):
        run_cell(cell, reg, progress=False)
    reg.pm.unregister(name="ctrl-c")
    return cell


def test_interrupted_cell_resumes_to_the_same_result(reg, tmp_path):
    straight = one_cell(reg, tmp_path / "a", overrides=["epochs=2"])
    run_cell(straight, reg, progress=False)
    cell = interrupted(reg, tmp_path / "b")
    assert (cell.run_dir / "checkpoint.pt").exists() and not cell.record_path.exists()
    resumed = run_cell(cell, reg, progress=False)
    assert len(resumed.history) == 2 and resumed.timings["resumed_from_epoch"] == 1
    assert resumed.timings["train_seconds_before_resume"] == resumed.history[0]["seconds"] > 0
    a = np.load(straight.run_dir / "predictions.npz")["probs"]
    b = np.load(cell.run_dir / "predictions.npz")["probs"]
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_a_checkpoint_of_other_code_is_not_resumed(reg, runs, monkeypatch):
    from aubench import CheckpointError

    cell = interrupted(reg, runs)
    monkeypatch.setattr(reg, "versions_for", lambda config: {"aubench": "0.1.0 src changed"})
    with pytest.raises(CheckpointError, match=r"checkpoint.pt was written by another recipe, code or data "
                                              r"\(versions: .* then, \{'aubench': '0.1.0 src changed'\} now\); "
                                              r"pass --overwrite"):
        run_cell(cell, reg, progress=False)
    assert run_cell(cell, reg, progress=False, overwrite=True).timings["resumed_from_epoch"] == 0


def test_a_checkpoint_that_no_longer_fits_the_model_says_so(reg, runs):
    import torch

    from aubench import CheckpointError

    cell = interrupted(reg, runs)
    path = cell.run_dir / "checkpoint.pt"
    state = torch.load(path, weights_only=False)
    key = next(iter(state["model"]))
    state["model"][key] = torch.zeros(3, 3, 3)
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="checkpoint.pt no longer fits the model .*pass --overwrite"):
        run_cell(cell, reg, progress=False)


def test_non_finite_loss_fails_that_cell_and_the_sweep_goes_on(reg, runs):
    bad = one_cell(reg, runs, overrides=["loss={name:late_nan_loss}"])
    good = one_cell(reg, runs, fold="2")
    lines = []
    outcomes = run_cells([bad, good], reg, progress=False, echo=lines.append)
    assert [o.status for o in outcomes] == ["failed", "done"]
    failure = json.loads((bad.run_dir / "failed.json").read_text())
    assert "NonFiniteLossError" in failure["error"] and "epoch 1, step 1" in failure["error"]
    assert "bce=0.7" in failure["error"]
    assert not bad.record_path.exists()
    assert lines[0].startswith("FAIL") and lines[1].startswith("done")


@pytest.mark.parametrize("overrides,message", [
    (["model={name:shape_toy}"], r"model 'shape_toy' \(plugin 'toys'\): logits has shape \[16, 12, 1\], expected "
                                 r"\[16, 12\]"),
    (["model={name:shape_toy,extra_dim:false}"], r"logits has shape \[16, 1\], expected \[16, 12\]"),
    (["loss={name:bare_loss}"], r"loss 'bare_loss' \(plugin 'toys'\): must return \(scalar tensor, dict of float "
                                r"terms\), got Tensor"),
    (["loss={name:nan_loss}"], r"loss 'nan_loss' \(plugin 'toys'\): returned nan on the first batch, before any "
                               r"optimiser step: the loss itself is at fault"),
])
def test_a_broken_contract_stops_the_cell_at_its_first_batch_naming_the_plugin(reg, runs, overrides, message):
    from aubench import ContractError

    cell = one_cell(reg, runs, overrides=["epochs=3", *overrides])
    with pytest.raises(ContractError, match=message):
        run_cell(cell, reg, progress=False)
    assert not (cell.run_dir / "checkpoint.pt").exists()  # stopped before the first epoch ended

def test_frozen_features_are_cached_once_without_augmentation(reg, runs):
    FrozenToy.backbone_calls = 0
    cell = one_cell(reg, runs, overrides=["model={name:frozen_toy}", "augment=null", "epochs=3", "batch_size=8"])
    rec = run_cell(cell, reg, progress=False)
    eval_batches = -(-rec.n_train_frames // 256) + -(-rec.n_test_frames // 256)
    assert FrozenToy.backbone_calls == eval_batches  # only the caching passes, no per-step calls
    FrozenToy.backbone_calls = 0
    cell = one_cell(reg, runs, fold="2", overrides=["model={name:frozen_toy}", "epochs=1", "batch_size=8"])
    run_cell(cell, reg, progress=False)
    assert FrozenToy.backbone_calls > eval_batches  # augmentation on: features are recomputed per step


def test_a_feature_cache_larger_than_free_ram_is_refused_before_it_is_allocated(reg, runs, monkeypatch):
    import aubench.features as features

    monkeypatch.setattr(features, "available_memory", lambda: 1000)  # bytes: less than any frame set's features
    cell = one_cell(reg, runs, overrides=["model={name:frozen_toy}", "augment=null", "epochs=1"])
    with pytest.raises(ConfigError, match=r"extract_frozen of \d+ frames, .* need .* GiB of RAM .* "
                                          r"engine.cache_features=false"):
        run_cell(cell, reg, progress=False)
    monkeypatch.undo()
    assert run_cell(cell, reg, progress=False).n_test_frames  # the same cell with the memory it needs


def test_features_on_disk_are_shared_across_cells_hold_several_tensors_and_equal_memory_ones(reg, tmp_path, monkeypatch):
    monkeypatch.setenv("AUBENCH_HOME", str(tmp_path / "home"))
    base = ["model={name:frozen_dict_toy}", "epochs=2", "batch_size=8", "engine.cache_features=true"]
    memory = run_cell(one_cell(reg, tmp_path / "m", overrides=base), reg, progress=False)
    FrozenToy.backbone_calls = 0
    disk = run_cell(one_cell(reg, tmp_path / "d", overrides=[*base, "engine.feature_store=disk"]), reg, progress=False)
    assert FrozenToy.backbone_calls > 0 and disk.per_au == memory.per_au  # the store never changes a number
    stored = [p for p in (tmp_path / "home" / "features").iterdir() if p.is_dir()]
    assert len(stored) == 1  # one store for the dataset: the train and test frames are rows of it
    FrozenToy.backbone_calls = 0
    other_fold = run_cell(one_cell(reg, tmp_path / "o", fold="2", overrides=[*base, "engine.feature_store=disk"]),
                          reg, progress=False)
    assert FrozenToy.backbone_calls == 0  # another fold of the same dataset and seed: read, not computed
    assert other_fold.per_au == run_cell(one_cell(reg, tmp_path / "p", fold="2", overrides=base), reg,
                                         progress=False).per_au
    FrozenToy.backbone_calls = 0
    again = run_cell(one_cell(reg, tmp_path / "e", overrides=[*base, "engine.feature_store=disk", "optim.lr=0.01"]),
                     reg, progress=False)  # another recipe, the same frozen weights and frames: the same features
    assert FrozenToy.backbone_calls == 0 and disk.config_hash == memory.config_hash != again.config_hash
    FrozenToy.backbone_calls = 0
    run_cell(one_cell(reg, tmp_path / "f", seed=1, overrides=[*base, "engine.feature_store=disk"]), reg, progress=False)
    assert FrozenToy.backbone_calls > 0  # another seed draws other frozen weights: computed again


def test_second_optimiser_waits_for_its_start_epoch(reg, tmp_path):
    from safetensors.torch import load_file

    one = one_cell(reg, tmp_path / "a", overrides=["model={name:warmup_toy}", "epochs=1"])
    two = one_cell(reg, tmp_path / "b", overrides=["model={name:warmup_toy}", "epochs=2"])
    run_cell(one, reg, progress=False)
    run_cell(two, reg, progress=False)
    assert (load_file(one.run_dir / "model.safetensors")["order"] == 0).all()
    assert (load_file(two.run_dir / "model.safetensors")["order"] != 0).any()


def test_models_get_landmarks_and_parsing_when_they_declare_them(reg, runs):
    rec = run_cell(one_cell(reg, runs, overrides=["model={name:inputs_toy}"]), reg, progress=False)
    assert rec.n_test_frames > 0


def test_cross_dataset_protocol_trains_source_aus_and_evaluates_shared_ones(reg, runs):
    cell = plan_cells(reg, "vmnc-bce", "tiny-cross", overrides=FAST, runs_dir=runs)[0]
    rec = run_cell(cell, reg, progress=False)
    assert rec.aus == [1, 2, 4, 6, 12] and len(rec.train_aus) == 12
    assert rec.train_dataset == "tiny-bp4d" and rec.dataset == "tiny-disfa"
    assert np.load(cell.run_dir / "predictions.npz")["probs"].shape == (rec.n_test_frames, 5)


def test_validation_selection_holds_out_training_subjects(reg, runs):
    rec = run_cell(one_cell(reg, runs, overrides=["selection.rule=val", "selection.val_subjects=1", "epochs=2"]),
                   reg, progress=False)
    assert len(rec.val_subjects) == 1 and rec.val_subjects[0] not in rec.train_subjects
    assert rec.val_subjects[0] not in rec.test_subjects
    assert "held-out training subjects" in rec.selection and "val_f1" in rec.history[-1]


def test_moving_average_postprocessing_is_applied_and_recorded(reg, tmp_path):
    raw_cell = one_cell(reg, tmp_path / "a")
    raw = run_cell(raw_cell, reg, progress=False)
    cell = one_cell(reg, tmp_path / "b", overrides=["postprocess.name=moving_average", "postprocess.window=3"])
    smooth = run_cell(cell, reg, progress=False)
    assert smooth.postprocess == {"name": "moving_average", "window": 3}
    a = np.load(raw_cell.run_dir / "predictions.npz")
    pb = np.load(cell.run_dir / "predictions.npz")["probs"]
    groups = np.char.add(np.char.add(a["subject"], "/"), a["video"])
    np.testing.assert_allclose(pb, moving_average(a["probs"], groups, a["frame"], 3), atol=1e-6)
    assert not np.allclose(pb, a["probs"], atol=1e-6)
    assert raw.postprocess["name"] == "none"


def test_lifecycle_hooks_reach_observer_plugins(runs):
    events = []

    class Observer:
        @hookimpl
        def aubench_cell_start(self, cell):
            events.append(("start", cell.fold.name))

        @hookimpl
        def aubench_epoch_end(self, epoch, logs):
            events.append(("epoch", epoch, "loss" in logs and "images_per_s" in logs))

        @hookimpl
        def aubench_cell_end(self, record, error):
            events.append(("end", record is not None, error))

    reg = make_registry(("observer", Observer()))
    run_cells([one_cell(reg, runs, overrides=["epochs=2"])], reg, progress=False, echo=lambda m: None)
    assert events == [("start", "1"), ("epoch", 1, True), ("epoch", 2, True), ("end", True, None)]


def test_init_checkpoint_refuses_weights_trained_on_the_test_subjects(reg, tmp_path):
    from aubench.errors import ConfigError

    source = one_cell(reg, tmp_path / "a", fold="1")
    run_cell(source, reg, progress=False)
    ckpt = source.run_dir / "model.safetensors"
    leaky = one_cell(reg, tmp_path / "b", fold="2", overrides=[f"init.checkpoint={ckpt}"])
    with pytest.raises(ConfigError, match="which this cell .* tests on"):
        run_cell(leaky, reg, progress=False)
    # the cross-dataset protocol tests other subjects of another dataset: allowed
    ok = plan_cells(reg, "vmnc-bce", "tiny-cross", overrides=[*FAST, f"init.checkpoint={source.run_dir}"],
                    runs_dir=tmp_path / "c")[0]
    rec = run_cell(ok, reg, progress=False)
    assert rec.init_checkpoint["fold"] == "1" and rec.init_checkpoint["skipped_tensors"] == 0


def test_clips_of_consecutive_frames_train_and_every_test_frame_gets_exactly_one_prediction(reg, runs):
    import pandas as pd
    from toy_components import ClipToy

    from aubench.data.loader import clip_table
    index = pd.DataFrame({"subject": ["a"] * 5 + ["b"] * 2, "video": ["v"] * 7, "frame": [5, 1, 2, 3, 4, 1, 2]})
    assert clip_table(index, 3, 2).tolist() == [[1, 2, 3], [3, 4, 0], [5, 6, 6]]  # sorted by frame; padded
    ClipToy.seen.clear()
    cell = plan_cells(reg, "vmnc-bce", "tiny-cross", overrides=[*FAST, "model={name: clip_toy}", "+clip.length=4",
                                                                 "+clip.stride=3", "augment.hflip=0.5"], runs_dir=runs)[0]
    rec = run_cell(cell, reg, progress=False)
    pred = np.load(cell.run_dir / "predictions.npz")
    assert len(pred["frame"]) == rec.n_test_frames == len(set(zip(pred["subject"], pred["video"], pred["frame"])))
    train = ClipToy.seen[0]
    assert len(train["clip"]) % 4 == 0 and (train["clip"].view(-1, 4) == train["clip"].view(-1, 4)[:, :1]).all()
    frames = train["frame"].view(-1, 4)
    assert ((frames[:, 1:] - frames[:, :-1]) >= 0).all()  # consecutive frames of one video
    import torch

    from aubench.data.augment import augment_batch

    img = torch.rand(1, 3, 8, 8).expand(8, 3, 8, 8).clone()
    out = augment_batch({"image": img.clone(), "clip": torch.arange(2).repeat_interleave(4)},
                        {"hflip": 0.5}, torch.Generator().manual_seed(3))["image"]
    per_frame = [bool(torch.equal(o, i.flip(-1))) for o, i in zip(out, img)]
    assert per_frame[:4] in ([True] * 4, [False] * 4) and per_frame[4:] in ([True] * 4, [False] * 4)


def test_the_disk_feature_key_follows_how_features_are_computed(reg, tmp_path):
    from toy_components import FrozenToy

    from aubench.engine import Runtime
    from aubench.features import feature_key
    from aubench.split import frame_sets, split_cell

    cell = one_cell(reg, tmp_path, overrides=["model={name:frozen_toy}"])
    data = split_cell(cell, reg, progress=False)
    frames = frame_sets(data, (), cell).test
    model = FrozenToy((1, 2))
    cpu = feature_key(model, frames, cell.config, Runtime("cpu", False, False))
    assert cpu == feature_key(model, frames, cell.config, Runtime("cpu", False, False))
    assert cpu != feature_key(model, frames, cell.config, Runtime("cuda", True, True))  # bf16 features differ
    assert cpu != feature_key(model, frames, cell.config, Runtime("cuda", False, False))
    from aubench import registry
    from aubench.features import _code_of
    from aubench_monet.heads import VMNCHead

    with pytest.MonkeyPatch.context() as mp:  # other source of aubench or of the model's package: other key
        mp.setattr(registry, "_source_hash", lambda folder: "edited")
        assert cpu != feature_key(model, frames, cell.config, Runtime("cpu", False, False))
    model.extractor = VMNCHead(2, 2)  # a module from another plugin's package counts too
    assert [c.split()[0] for c in _code_of(model)] == ["aubench", "aubench_monet", "toy_components"]
    assert cpu != feature_key(model, frames, cell.config, Runtime("cpu", False, False))
    del model.extractor
    frames.small = np.zeros((1, 1, 1, 3), np.uint8)  # frames resized once at load: other rounding, other key
    assert cpu != feature_key(model, frames, cell.config, Runtime("cpu", False, False))


def test_the_disk_feature_key_follows_the_frozen_tensors_only():
    """A cell that starts from another cell's weights loads other trained statistics (the head's BatchNorm)
    but the same frozen part: it must reuse the stored features, and a changed frozen tensor must not."""
    import torch
    from torch import nn

    from aubench.features import frozen_state

    def model():
        torch.manual_seed(0)
        m = nn.Module()
        m.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        m.backbone.requires_grad_(False)
        m.head = nn.Sequential(nn.Linear(4, 2), nn.BatchNorm1d(2))
        return m

    def digest(m):
        return [(n, t.clone()) for n, t in frozen_state(m)]

    a, b = model(), model()
    b.head[1].running_mean += 1.0  # trained statistics, as loaded by init.from
    b.head[0].weight.data += 1.0  # a trained weight
    names = [n for n, _ in digest(a)]
    assert names == ["backbone.0.bias", "backbone.0.weight", "backbone.1.bias", "backbone.1.num_batches_tracked",
                     "backbone.1.running_mean", "backbone.1.running_var", "backbone.1.weight"]
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(digest(a), digest(b)))
    b.backbone[1].running_var += 1.0  # the frozen part's statistics do change its features
    assert not all(torch.equal(x, y) for (_, x), (_, y) in zip(digest(a), digest(b)))
