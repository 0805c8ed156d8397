"""The default run's speed paths: the smoke CNN, frames resized once per cell, channels_last on the
CPU, and `--jobs` defaulting to one worker per core."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from aubench import ConfigError, create_backbone
from aubench.data.augment import normalise
from aubench.data.device import to_device
from aubench.data.loader import _RESIZED, FrameBatches, resized_frames


def test_smoke_cnn_is_a_timm_model_with_pooled_features_and_a_feature_map():
    import timm

    net = create_backbone("aubench_smoke_cnn")
    x = torch.randn(2, 3, 32, 32)
    assert net(x).shape == (2, net.num_features) == (2, 128)
    assert net.forward_features(x).shape == (2, 128, 2, 2)  # four stride-2 stages
    assert timm.create_model("aubench_smoke_cnn", num_classes=5)(x).shape == (2, 5)
    with pytest.raises(ConfigError, match="no pretrained weights"):
        timm.create_model("aubench_smoke_cnn", pretrained=True)


class _Frames:
    """What FrameBatches reads of a prepared dataset: frames, landmarks, no parsing."""

    def __init__(self, n: int = 6, size: int = 64):
        rng = np.random.default_rng(0)
        self.frames = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        self.landmarks = rng.uniform(0, size, (n, 68, 2)).astype(np.float32)
        self.parsing = None
        self.features = None
        self.root, self.meta = f"/nowhere/{id(self)}", {"fingerprint": f"fp-{id(self)}"}


def test_frames_resized_once_match_the_per_batch_resize_and_carry_the_stored_width():
    data = _Frames()
    rows = np.arange(6)
    y, m = np.zeros((6, 2), np.float32), np.ones((6, 2), bool)
    small = FrameBatches(data, rows, y, m, inputs=("landmarks",), size=32)
    full = FrameBatches(data, rows, y, m, inputs=("landmarks",))
    b_small, b_full = small[[0, 3, 5]], full[[0, 3, 5]]
    assert b_small["image"].shape == (3, 3, 32, 32) and int(b_small["stored_size"]) == 64
    assert "stored_size" not in b_full
    per_batch = normalise(b_full["image"].float(), (0, 0, 0), (1, 1, 1), 32)
    assert (b_small["image"].float() - per_batch).abs().max() <= 0.5 + 1e-4  # only the rounding to uint8 differs
    assert torch.allclose(b_small["landmarks"], b_full["landmarks"].float() / 2)
    assert resized_frames(data, 32) is resized_frames(data, 32)  # kept for the process's later cells
    assert any(k[1] == 32 for k in _RESIZED)


def test_pixel_shift_keeps_its_stored_resolution_meaning_after_the_early_resize(monkeypatch):
    """A 2-pixel shift at 64 px is a 1-pixel shift of a frame resized to 32 px."""
    import aubench.data.augment as augment_mod

    seen = []
    monkeypatch.setattr(augment_mod, "augment_batch", lambda batch, aug, gen: (seen.append(aug["shift"]), batch)[1])
    img = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    cfg = OmegaConf.create({"augment": {"shift": 2}, "input": {"size": 32, "mean": [0, 0, 0], "std": [1, 1, 1]}})
    out = to_device({"image": img, "labels": torch.zeros(1, 1), "stored_size": torch.tensor(64)}, "cpu", False, cfg,
                    torch.Generator())
    to_device({"image": img, "labels": torch.zeros(1, 1)}, "cpu", False, cfg, torch.Generator())  # stored at 32 px
    assert seen == [pytest.approx(1.0), 2] and "stored_size" not in out


@pytest.mark.parametrize("value, on_cpu", [("auto", False), (True, True), (False, False)])
def test_channels_last_auto_means_cuda_only_and_true_means_the_cpu_too(value, on_cpu):
    from aubench.engine import Runtime

    cfg = OmegaConf.create({"engine": {"device": "cpu", "amp": True, "channels_last": value, "threads": None}})
    rt = Runtime.for_cell(SimpleNamespace(config=cfg, seed=0))
    assert rt.channels_last is on_cpu and rt.amp is False


def test_jobs_default_to_one_per_core_unless_aubench_jobs_says_otherwise(monkeypatch):
    from aubench.cli import build_parser

    monkeypatch.delenv("AUBENCH_JOBS", raising=False)
    parser, _ = build_parser()
    assert parser.parse_args(["run", "vmnc-bce"]).jobs == 0  # resolved to the core count when the run starts
    monkeypatch.setenv("AUBENCH_JOBS", "3")
    parser, _ = build_parser()
    assert parser.parse_args(["run", "vmnc-bce"]).jobs == 3


def test_jobs_zero_becomes_one_worker_per_core_on_the_cpu_and_per_two_cores_and_8_gib_on_a_gpu(monkeypatch, registry,
                                                                                               runs):
    import types

    import aubench.cells
    from aubench.cli import main

    seen, asked = [], []
    monkeypatch.setattr(aubench.cells, "run_cells", lambda cells, reg, **kw: seen.append(kw["jobs"]) or [])
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    gib = {0: 141, 1: 24}
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda i: asked.append(i) or types.SimpleNamespace(total_memory=gib[i] * 2**30))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for cuda, extra, expected in ((False, [], 16), (True, [], 8), (True, ["engine.device=cuda:1"], 3),
                                  (True, ["engine.device=cpu"], 16), (False, ["engine.device=cuda"], 16),
                                  (True, ["engine.device=cuda:7"], 1)):
        monkeypatch.setattr(torch.cuda, "is_available", lambda c=cuda: c)
        main(["run", "vmnc-bce", "--protocol", "tiny-3fold", "--jobs", "0", "--runs-dir", str(runs), "--no-progress",
              *extra])
        assert seen[-1] == expected, (cuda, extra)
    assert asked == [0, 1]


@pytest.mark.parametrize("optim", [{"name": "adamw", "lr": 3e-3, "weight_decay": 1e-4}, {"name": "adam", "lr": 1e-3},
                                   {"name": "sgd", "lr": 1e-2, "momentum": 0.9, "weight_decay": 1e-4}])
def test_optimisers_take_the_multi_tensor_path_with_bitwise_the_weights_of_the_per_tensor_one(optim):
    from aubench.build import build_optimizer

    def train(extra: dict) -> tuple[torch.Tensor, bool]:
        torch.manual_seed(0)
        net = torch.nn.Sequential(create_backbone("aubench_smoke_cnn", widths=(4, 8)), torch.nn.Linear(8, 3))
        opt = build_optimizer(net.parameters(), {**optim, **extra})
        gen = torch.Generator().manual_seed(1)
        for _ in range(8):
            x, y = torch.randn(8, 3, 16, 16, generator=gen), (torch.rand(8, 3, generator=gen) > 0.5).float()
            opt.zero_grad()
            torch.nn.functional.binary_cross_entropy_with_logits(net(x), y).backward()
            opt.step()
        return torch.cat([p.detach().flatten() for p in net.parameters()]), opt.defaults["foreach"]

    fast, foreach = train({})
    slow, _ = train({"foreach": False})
    assert foreach is True
    assert torch.equal(fast, slow)


def test_cached_feature_maps_are_handed_over_in_the_runtime_memory_format():
    """A channels_last cell gets its cached 4-D features channels_last (as its images), with the same values;
    vectors and a contiguous runtime are left as stored."""
    import numpy as np

    from aubench.features import FeatureCache

    maps = np.arange(4 * 3 * 2 * 2, dtype=np.float16).reshape(4, 3, 2, 2)
    cache = FeatureCache({"map": maps, "vec": np.ones((4, 5), np.float16)}, single=False, rows=np.array([3, 1, 0, 2]))
    pos = torch.tensor([0, 2])
    last = cache.take(pos, "cpu", channels_last=True)
    plain = cache.take(pos, "cpu")
    assert last["map"].is_contiguous(memory_format=torch.channels_last) and not last["map"].is_contiguous()
    assert plain["map"].is_contiguous() and torch.equal(last["map"], plain["map"])
    assert torch.equal(plain["map"], torch.from_numpy(maps[[3, 0]])) and last["vec"].shape == (2, 5)
