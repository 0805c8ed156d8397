"""The frozen landmark-attention feature extractor of FAN-Trans (paper §3.1).

F_a = concat(LF, H1 ⊙ M, H2 ⊙ M): the stem ("low-level") features LF of a FAN, the features H1, H2
of its first two hourglass stacks, each multiplied by the heatmaps of the second stack summed into
one plane M. For a 256 × 256 input that is 768 × 64 × 64. The FAN is ``face_alignment.models.FAN``
from the face-alignment package, used as is; this module only re-walks its forward pass to keep
the intermediate maps (the pattern of the first author's AU-Net code).

Two ways to get two stacks:

``fan4-cut2`` (default)
    the public 2D-FAN-4 weights (1adrianb), run up to the end of stack 2. H1 is taken after stack 1's
    ``bl0`` projection (what feeds stack 2) and H2 is stack 2's post-ReLU feature (before ``bl1``,
    which only feeds stack 3). Its features are those of a 4-stack network cut in the middle:
    stack 2 was trained to feed stacks 3-4, not to be last, and its hourglasses pool with averages.
``fan2``
    a genuine 2-stack FAN, e.g. the ibug ``2dfan2.pth`` weights FAN-Trans' author used in AU-Net (the
    supplementary's "~12.15M frozen parameters (from FAN)"), trained as a 2-stack network. ibug's
    implementation pools with max where face-alignment's pools with averages, so this variant runs the
    same modules with max pooling (stem and hourglasses); bring weights saved for
    ``face_alignment.models.FAN(2)``'s layout.

Weights come from ``weights=<file>`` or, for ``fan4-cut2``, the torch-hub cache
(``~/.cache/torch/hub/checkpoints/2DFAN4*``); nothing is downloaded. Without weights the model
refuses to build unless ``allow_random=true`` (tests and explicitly random smoke runs only).

``kind=timm`` replaces FAN by the stride-4 feature map of a frozen timm CNN (Table 2's
"BL-FAN+R18" ablation uses ResNet-18); the map keeps the 64 × 64 resolution of F_a at 256 × 256.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from aubench import ConfigError

__all__ = ["FANFeatures", "TimmFeatures", "build_backbone", "find_fan_weights"]


def find_fan_weights(variant: str, weights: str | None) -> Path | None:
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ConfigError(f"FAN weights {path} not found")
        return path
    if variant != "fan4-cut2":
        return None
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    found = sorted(cache.glob("2DFAN4*.pth*"))
    return found[0] if found else None


def _load_fan_state(path: Path) -> dict[str, torch.Tensor]:
    obj = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(obj, dict):
        state = obj.get("state_dict", obj)
    elif hasattr(obj, "state_dict"):  # a TorchScript or pickled module
        state = obj.state_dict()
    else:
        raise ConfigError(f"{path} holds neither a state_dict nor a module")
    return {k.removeprefix("module."): v for k, v in state.items()}


class FANFeatures(nn.Module):
    """Frozen FAN returning F_a [B, 768, H/4, W/4]; always in eval mode, never receives gradients."""

    def __init__(self, variant: str = "fan4-cut2", weights: str | None = None, allow_random: bool = False,
                 use_lf: bool = True, use_heatmap: bool = True):
        super().__init__()
        from face_alignment.models import FAN

        if variant not in ("fan4-cut2", "fan2"):
            raise ConfigError(f"backbone.variant={variant!r}; use 'fan4-cut2' or 'fan2'")
        self.variant, self.use_lf, self.use_heatmap = variant, use_lf, use_heatmap
        self.fan = FAN(4 if variant == "fan4-cut2" else 2)
        path = find_fan_weights(variant, weights)
        if path is not None:
            missing, _ = self.fan.load_state_dict(_load_fan_state(path), strict=False)
            if missing:
                raise ConfigError(f"{path} does not fit FAN({self.fan.num_modules}): missing {missing[:4]}...")
            self.weights = str(path)
        elif allow_random:
            self.weights = "random"
        else:
            raise ConfigError(
                "FAN-Trans needs pretrained FAN weights and none were found. For the public 2D-FAN-4 weights run "
                "`python -c \"import face_alignment as fa; fa.FaceAlignment(fa.LandmarksType.TWO_D, device='cpu')\"` "
                "on a machine with network and copy ~/.cache/torch/hub/checkpoints (2DFAN4-*.pth.tar) here, or pass "
                "model.backbone.weights=/path/to/weights. Only smoke runs may use model.backbone.allow_random=true."
            )
        self.fan.requires_grad_(False)
        self.fan.eval()
        self.out_channels = 256 * (int(use_lf) + 2)

    def train(self, mode: bool = True) -> FANFeatures:  # frozen: batch-norm statistics never update
        super().train(False)
        return self

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.fan
        pool = F.max_pool2d if self.variant == "fan2" else F.avg_pool2d
        x = F.relu(f.bn1(f.conv1(x)))
        x = pool(f.conv2(x), 2, stride=2)
        x = f.conv3(x)
        stem = f.conv4(x)
        previous, feats, heat = stem, [], None
        for i in range(2):
            hg = f._modules[f"m{i}"]
            ll = f._modules[f"top_m_{i}"](_hourglass(hg, hg.depth, previous, pool))
            ll = F.relu(f._modules[f"bn_end{i}"](f._modules[f"conv_last{i}"](ll)))
            heat = f._modules[f"l{i}"](ll)
            if i == 0:
                projected = f._modules["bl0"](ll)
                feats.append(projected)
                previous = previous + projected + f._modules["al0"](heat)
            else:
                feats.append(ll)
        mask = heat.sum(1, keepdim=True) if self.use_heatmap else 1.0
        parts = ([stem] if self.use_lf else []) + [h * mask for h in feats]
        return torch.cat(parts, 1)


def _hourglass(hg: nn.Module, level: int, x: torch.Tensor, pool: Any) -> torch.Tensor:
    """face-alignment's ``HourGlass._forward`` with the pooling as a parameter (avg for its FAN, max for
    ibug's 2-stack FAN)."""
    up = hg._modules[f"b1_{level}"](x)
    low = hg._modules[f"b2_{level}"](pool(x, 2, stride=2))
    low = _hourglass(hg, level - 1, low, pool) if level > 1 else hg._modules[f"b2_plus_{level}"](low)
    low = hg._modules[f"b3_{level}"](low)
    return up + F.interpolate(low, scale_factor=2, mode="nearest")


#: ITU-R BT.601 luma weights of R, G, B (``TimmFeatures(gray=True)``)
LUMA = (0.299, 0.587, 0.114)


class TimmFeatures(nn.Module):
    """A frozen timm CNN's stride-4 feature map, standing in for F_a (Table 2 ablation).

    Random weights (``allow_random``) are drawn from ``init_seed``, not from the cell's seed: a frozen
    extractor is a fixed set of weights, as pretrained ones are, and the cell's seed varies only what is
    trained. Drawn from the cell's seed, each seed got other features and the smoke recipe's
    synth-bp4d -> synth-disfa F1 ranged 17.4-37.3 over seeds 0-4 (README, "FAN-Trans").

    ``gray`` feeds the CNN the image's luma (ITU-R BT.601 weights) in all three channels: a landmark
    network's features are about shape, while a random CNN's also follow colour and saturation, which
    is what SynthAU's "lab" style changes (README, "FAN-Trans": across datasets the smoke recipe's
    median cell rose 30.0 -> 37.5 F1, but synth-disfa-3fold's seed spread widened, so smoke keeps RGB)."""

    def __init__(self, name: str = "resnet18", pretrained: bool | str = False, allow_random: bool = False,
                 init_seed: int = 0, gray: bool = False):
        super().__init__()
        import timm

        self.gray = bool(gray)

        if not pretrained and not allow_random:
            raise ConfigError(f"backbone {name!r} without pretrained weights: set model.backbone.pretrained=true "
                              "(ImageNet weights from the local cache) or allow_random=true for smoke runs")
        kwargs = {"pretrained_cfg_overlay": {"file": pretrained}} if isinstance(pretrained, str) else {}
        with torch.random.fork_rng(devices=[]):  # the cell's random stream continues as if nothing was drawn
            reductions = timm.create_model(name, pretrained=False, features_only=True).feature_info.reduction()
            if 4 not in reductions:
                raise ConfigError(f"{name} has no stride-4 feature map (reductions {reductions})")
            # only the stages up to the stride-4 map: the deeper ones would run (ResNet-18 at 64 px: 5x the
            # time) for a map that is thrown away. The same draw of weights as the whole network's.
            torch.manual_seed(int(init_seed))
            self.net = timm.create_model(name, pretrained=bool(pretrained), features_only=True,
                                         out_indices=(reductions.index(4),), **kwargs)
        self.out_channels = self.net.feature_info.channels()[0]
        self.net.requires_grad_(False)
        self.net.eval()
        self.weights = "random" if not pretrained else str(pretrained)

    def train(self, mode: bool = True) -> TimmFeatures:
        super().train(False)
        return self

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gray:
            luma = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
            x = (x * luma).sum(1, keepdim=True).expand_as(x).contiguous(memory_format=fmt)
        return self.net(x)[0]


class SynthFANFeatures(FANFeatures):
    """F_a from a small FAN pre-trained on the cell's training subjects' SynthAU landmarks
    (:mod:`aubench_fantrans.synthfan`); without training data (evaluating a saved cell, conformance
    checks) the network is built untrained and its weights come from the checkpoint."""

    def __init__(self, train_data: Any = None, train_subjects: list[str] | None = None, input_size: int = 64,
                 use_lf: bool = True, use_heatmap: bool = True, **recipe: Any):
        nn.Module.__init__(self)
        from aubench_fantrans.synthfan import DEFAULTS, SmallFAN, pretrained_synthfan

        self.variant, self.use_lf, self.use_heatmap = "synthfan", use_lf, use_heatmap
        if train_data is None:
            full = {**DEFAULTS, **recipe}
            self.fan, self.pretraining = SmallFAN(int(full["width"]), 2, int(full["depth"])), None
            self.weights = "synthfan (weights from the checkpoint)"
        else:
            self.fan, self.pretraining = pretrained_synthfan(train_data, list(train_subjects), input_size, recipe)
            self.weights = f"synthfan {self.pretraining['key']}"
        self.fan.requires_grad_(False)
        self.fan.eval()
        self.out_channels = self.fan.width * (int(use_lf) + 2)


_KEYS = {"fan": ("variant", "weights", "allow_random", "use_lf", "use_heatmap"),
         "timm": ("name", "pretrained", "allow_random", "init_seed", "gray"),
         "synthfan": ("width", "depth", "epochs", "lr", "batch_size", "frame_stride", "seed", "use_lf", "use_heatmap")}


def build_backbone(kind: str = "fan", context: dict[str, Any] | None = None, **cfg: Any) -> nn.Module:
    """Build the frozen extractor; keys of the other kinds (left over from a recipe merge) are ignored.
    ``context`` (the cell's training data, subjects and input size) is what ``synthfan`` trains on."""
    if kind not in _KEYS:
        raise ConfigError(f"model.backbone.kind={kind!r}; use {', '.join(_KEYS)}")
    unknown = set(cfg) - {k for keys in _KEYS.values() for k in keys}
    if unknown:
        raise ConfigError(f"unknown model.backbone keys {sorted(unknown)}; {kind} takes {list(_KEYS[kind])}")
    args = {k: v for k, v in cfg.items() if k in _KEYS[kind]}
    if kind == "synthfan":
        return SynthFANFeatures(**(context or {}), **args)
    return FANFeatures(**args) if kind == "fan" else TimmFeatures(**args)
