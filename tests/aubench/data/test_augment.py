import numpy as np
import torch
from omegaconf import OmegaConf

from aubench.data.augment import IBUG_FLIP, augment_batch


def _dot_batch(points):
    """Images with one bright pixel per landmark (landmark i at points[i])."""
    img = torch.zeros(1, 3, 64, 64)
    for x, y in points:
        img[0, :, int(y), int(x)] = 1.0
    lm = torch.tensor(points, dtype=torch.float32)[None] + 0.5  # pixel centres
    return {"image": img, "landmarks": lm, "parsing": (img[:, 0] > 0).to(torch.uint8)}


def test_landmarks_follow_the_image_under_rotation_scale_shift_and_flip():
    rng = np.random.default_rng(0)
    pts = [(int(x), int(y)) for x, y in rng.integers(20, 44, (68, 2))]
    cfg = OmegaConf.create({"hflip": 1.0, "rotate": 12, "scale": [0.9, 1.1], "shift": 3})
    out = augment_batch(_dot_batch(pts), cfg, torch.Generator().manual_seed(3))
    img = out["image"][0, 0]
    for i in (0, 8, 30, 36, 48):
        x, y = out["landmarks"][0, i]
        patch = img[int(y) - 1:int(y) + 2, int(x) - 1:int(x) + 2]
        assert patch.max() > 0.1, f"landmark {i} moved away from its pixel"
    # after a flip, point 0 (subject's right jaw) is the mirror of the old point 16
    assert IBUG_FLIP[0] == 16 and IBUG_FLIP[36] == 45


def test_no_augmentation_is_identity_and_randomness_is_seeded():
    batch = {"image": torch.rand(4, 3, 16, 16)}
    same = augment_batch(dict(batch), OmegaConf.create({}), torch.Generator().manual_seed(0))
    assert torch.equal(same["image"], batch["image"])
    cfg = OmegaConf.create({"rotate": 10, "brightness": 0.2})
    a = augment_batch(dict(batch), cfg, torch.Generator().manual_seed(1))["image"]
    b = augment_batch(dict(batch), cfg, torch.Generator().manual_seed(1))["image"]
    c = augment_batch(dict(batch), cfg, torch.Generator().manual_seed(2))["image"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_random_crop_in_training_centre_crop_at_test_and_landmarks_and_parsing_follow():
    from aubench.data.augment import crop_batch

    rng = np.random.default_rng(1)
    pts = [(int(x), int(y)) for x, y in rng.integers(24, 40, (68, 2))]
    for gen in (torch.Generator().manual_seed(5), None):
        out = crop_batch(_dot_batch(pts), 48, gen)
        assert out["image"].shape == (1, 3, 48, 48) and out["parsing"].shape == (1, 48, 48)
        for i in (0, 30, 60):
            x, y = out["landmarks"][0, i]
            assert out["image"][0, 0, int(y), int(x)] == 1.0 and out["parsing"][0, int(y), int(x)] == 1
    centre = crop_batch(_dot_batch(pts), 48, None)
    assert torch.equal(centre["landmarks"], _dot_batch(pts)["landmarks"] - 8)  # (64 - 48) / 2


def test_colour_jitter_keeps_grey_grey_and_a_third_of_the_hue_circle_turns_red_into_green():
    from aubench.data.augment import _rotate_hue

    grey = {"image": torch.full((2, 3, 8, 8), 0.4)}
    out = augment_batch(grey, OmegaConf.create({"saturation": 0.9, "hue": 0.5}), torch.Generator().manual_seed(0))
    assert torch.allclose(out["image"], torch.full((2, 3, 8, 8), 0.4), atol=1e-6)
    red = torch.zeros(1, 3, 2, 2)
    red[:, 0] = 1.0
    green = _rotate_hue(red, torch.tensor([2 * np.pi / 3]))
    assert torch.allclose(green[0, :, 0, 0], torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)
    img = torch.rand(4, 3, 8, 8) * 0.5 + 0.1  # no clipping at factors up to 1.5
    scaled = augment_batch({"image": img.clone()}, OmegaConf.create({"brightness_scale": 0.5}),
                           torch.Generator().manual_seed(1))["image"]
    ratio = (scaled / img.clamp_min(1e-6)).flatten(1)
    assert torch.allclose(ratio.min(1).values, ratio.max(1).values, atol=1e-4)  # one factor per image
    assert not torch.allclose(ratio[0], ratio[1])


def plugin_transform(batch, gen, cfg):
    batch["image"] = 1 - batch["image"]
    batch["seen_by_plugin"] = torch.ones(1)
    return batch


def test_a_plugin_batch_transform_runs_after_the_core_augmentation_in_training_only():
    from aubench.data.device import to_device

    cfg = OmegaConf.create({"augment": {"hflip": 0.0, "transform": "test_augment:plugin_transform"},
                            "input": {"mean": [0, 0, 0], "std": [1, 1, 1]}})
    batch = {"image": torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "labels": torch.zeros(2, 1)}
    train = to_device(dict(batch), "cpu", False, cfg, torch.Generator().manual_seed(0))
    test = to_device(dict(batch), "cpu", False, cfg, None)
    assert "seen_by_plugin" in train and torch.all(train["image"] == 1)
    assert "seen_by_plugin" not in test and torch.all(test["image"] == 0)


def test_mixup_blends_images_and_labels_with_one_lambda_and_keeps_only_frames_labelled_in_both():
    import pytest

    from aubench.data.augment import mixup
    from aubench.errors import ConfigError

    g = torch.Generator().manual_seed(0)
    image = torch.rand(6, 3, 8, 8)
    labels = (torch.rand(6, 4) > 0.5).float()
    mask = torch.rand(6, 4) > 0.3
    out = mixup({"image": image.clone(), "labels": labels.clone(), "mask": mask.clone()}, 0.4, g)
    # recover λ and the partner of every frame from the images, then check the labels and masks
    g = torch.Generator().manual_seed(0)
    torch.randint(2 ** 31 - 1, (1,), generator=g)
    perm = torch.randperm(6, generator=g)
    lam = float(((out["image"] - image[perm]) / (image - image[perm])).flatten().nanmedian())
    assert 0 <= lam <= 1
    assert torch.allclose(out["image"], lam * image + (1 - lam) * image[perm], atol=1e-5)
    assert torch.allclose(out["labels"], lam * labels + (1 - lam) * labels[perm], atol=1e-5)
    assert torch.equal(out["mask"], mask & mask[perm])
    with pytest.raises(ConfigError, match="cannot be blended"):
        mixup({"image": image, "labels": labels, "mask": mask, "landmarks": torch.zeros(6, 68, 2)}, 0.4, g)
