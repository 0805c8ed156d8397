"""A face-alignment network pre-trained on SynthAU's landmarks, so FAN-Trans's frozen features mean
something on the synthetic benchmark (FAN-Trans's premise: features of a face-alignment network).

:class:`SmallFAN` is face-alignment's FAN built from the package's own ``ConvBlock`` and ``HourGlass``
modules at a reduced width (the public FAN is 256 wide at 256 px; SynthAU frames are 64 px), so
:class:`aubench_fantrans.backbone.FANFeatures` walks it exactly like the public network. It is trained
to regress 68 Gaussian landmark heatmaps (σ = 1 heatmap pixel, one per stack, MSE), as FAN is, on the
**training subjects of the cell only** (never its test subjects): one network per training-subject set,
cached under ``$AUBENCH_HOME/pretrained/synthfan/<key>/`` like a dataset (the key hashes the dataset's
fingerprint, the subjects, the training recipe and this module's source, so a change retrains it).
Its landmark error (NME: mean point error over the outer-eye-corner distance, on two held-out training
subjects) is kept with it and reported in the cell's record.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SmallFAN", "heatmaps", "pretrain", "pretrained_synthfan", "landmark_nme"]

#: the training recipe's defaults (recipe keys of model.backbone with kind=synthfan)
DEFAULTS = {"width": 32, "depth": 3, "epochs": 12, "lr": 3e-3, "batch_size": 32, "frame_stride": 2, "seed": 0}


class SmallFAN(nn.Module):
    """face-alignment's FAN (same modules and attribute names) at ``width`` channels instead of 256."""

    def __init__(self, width: int = 32, stacks: int = 2, depth: int = 3):
        super().__init__()
        from face_alignment.models.fan import ConvBlock, HourGlass

        self.num_modules, self.width = stacks, width
        self.conv1 = nn.Conv2d(3, width // 4, kernel_size=7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(width // 4)
        self.conv2 = ConvBlock(width // 4, width // 2)
        self.conv3 = ConvBlock(width // 2, width // 2)
        self.conv4 = ConvBlock(width // 2, width)
        for i in range(stacks):
            self.add_module(f"m{i}", HourGlass(1, depth, width))
            self.add_module(f"top_m_{i}", ConvBlock(width, width))
            self.add_module(f"conv_last{i}", nn.Conv2d(width, width, kernel_size=1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(width))
            self.add_module(f"l{i}", nn.Conv2d(width, 68, kernel_size=1))
            if i < stacks - 1:
                self.add_module(f"bl{i}", nn.Conv2d(width, width, kernel_size=1))
                self.add_module(f"al{i}", nn.Conv2d(68, width, kernel_size=1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """face-alignment's ``FAN.forward``: one heatmap stack per hourglass."""
        from face_alignment.models.fan import FAN

        return FAN.forward(self, x)


def heatmaps(landmarks: torch.Tensor, size: int, scale: float, sigma: float = 1.0) -> torch.Tensor:
    """Gaussian heatmaps [B, 68, size, size] centred on ``landmarks * scale`` (pixel centres)."""
    grid = torch.arange(size, dtype=torch.float32) + 0.5
    pts = landmarks.float() * scale
    dx = (grid.view(1, 1, 1, -1) - pts[..., 0, None, None]) ** 2
    dy = (grid.view(1, 1, -1, 1) - pts[..., 1, None, None]) ** 2
    return torch.exp(-(dx + dy) / (2 * sigma ** 2))


def landmark_nme(pred: torch.Tensor, true: torch.Tensor) -> float:
    """Mean point-to-point error over the outer-eye-corner distance (iBUG points 36 and 45), in percent."""
    iod = (true[:, 36] - true[:, 45]).norm(dim=-1).clamp_min(1e-6)
    return float(((pred - true).norm(dim=-1).mean(1) / iod).mean() * 100)


def _decode(heat: torch.Tensor, scale: float) -> torch.Tensor:
    """Landmarks (input pixels) from heatmaps: the arg-max pixel's centre."""
    b, k, h, w = heat.shape
    idx = heat.flatten(2).argmax(-1)
    return torch.stack([(idx % w).float() + 0.5, (idx // w).float() + 0.5], -1) / scale


def _batches(data: Any, rows: np.ndarray, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(np.ascontiguousarray(data.frames[rows])).permute(0, 3, 1, 2).float() / 255.0
    if images.shape[-1] != size:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    lm = torch.from_numpy(np.ascontiguousarray(data.landmarks[rows])).float() * (size / data.frames.shape[1])
    return (images - 0.5) / 0.5, lm


def pretrain(data: Any, subjects: list[str], size: int, cfg: dict[str, Any], progress: bool = False
             ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Train a :class:`SmallFAN` on ``subjects`` of a prepared dataset with landmarks; hold out two of them
    (chosen by the seed) for the landmark error. Returns the weights and what to record."""
    if data.landmarks is None:
        from aubench import DatasetError

        raise DatasetError(f"{data.name} has no landmarks; the SynthAU FAN needs a dataset prepared with them")
    cfg = {**DEFAULTS, **cfg}
    rng = np.random.default_rng(int(cfg["seed"]))
    held = sorted(rng.choice(sorted(subjects), min(2, len(subjects) - 1), replace=False).tolist())
    fit_rows = data.rows_for([s for s in subjects if s not in held])[:: int(cfg["frame_stride"])]
    torch.manual_seed(int(cfg["seed"]))
    net = SmallFAN(int(cfg["width"]), 2, int(cfg["depth"]))
    opt = torch.optim.Adam(net.parameters(), lr=float(cfg["lr"]))
    hm_size = size // 4
    net.train()
    for _ in range(int(cfg["epochs"])):
        order = rng.permutation(fit_rows)
        for i in range(0, len(order), int(cfg["batch_size"])):
            x, lm = _batches(data, np.sort(order[i:i + int(cfg["batch_size"])]), size)
            target = heatmaps(lm, hm_size, hm_size / size)
            loss = sum(F.mse_loss(out, target) for out in net(x)) * 100
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        x, lm = _batches(data, data.rows_for(held), size)
        nme = landmark_nme(_decode(net(x)[-1], hm_size / size), lm)
    meta = {"recipe": cfg, "input_size": size, "dataset": data.name, "fingerprint": data.fingerprint,
            "train_subjects": sorted(s for s in subjects if s not in held), "nme_subjects": held,
            "nme_percent": round(nme, 2), "frames": int(len(fit_rows))}
    return net.state_dict(), meta


def pretrained_synthfan(data: Any, subjects: list[str], size: int, cfg: dict[str, Any]) -> tuple[SmallFAN, dict]:
    """The cached SynthAU FAN for these training subjects (trained first when missing, under a lock)."""
    from safetensors.torch import load_file, save_file

    from aubench import aubench_home, wait_lock

    full = {**DEFAULTS, **cfg}
    source = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:10]
    key = hashlib.sha256(json.dumps({"fp": data.fingerprint, "subjects": sorted(subjects), "cfg": full,
                                     "size": size, "src": source}, sort_keys=True).encode()).hexdigest()[:16]
    root = aubench_home() / "pretrained" / "synthfan" / key
    with wait_lock(root.with_name(key + ".lock")):
        if not (root / "meta.json").is_file():
            with torch.random.fork_rng():  # the cell's own random stream must not depend on the cache
                state, meta = pretrain(data, subjects, size, full)
            root.mkdir(parents=True, exist_ok=True)
            save_file({k: v.contiguous() for k, v in state.items()}, str(root / "model.safetensors"))
            (root / "meta.json").write_text(json.dumps({**meta, "key": key}, indent=2))
    net = SmallFAN(int(full["width"]), 2, int(full["depth"]))
    net.load_state_dict(load_file(str(root / "model.safetensors")))
    return net, json.loads((root / "meta.json").read_text())
