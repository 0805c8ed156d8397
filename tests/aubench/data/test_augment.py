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
