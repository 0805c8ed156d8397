"""The thesis' hybrid AU transformers (Tallec thesis §3.4-3.5) and the ABAW3 multi-label transformer.

:class:`GuidedTransformer`
    §3.4.1 hybrid encoder: a timm CNN cut after ``stage`` (ResNet-50 at 224 px: stage 2 -> 28 x 28,
    3 -> 14 x 14, 4 -> 7 x 7 patches, Table 3.1), a 1 x 1 convolution to d, LayerNorm over channels
    (eq. 3.22), the 2-D sinusoidal position encoding (eq. 3.15, 3.17-3.18) and ``n_sa`` self-attention
    layers (eq. 3.16) of the general attention module (eq. 3.8-3.11). A ViT (``backbone: vit_*``, Table
    3.1's first row) gives its patch tokens instead. §3.4.2 decoders: ``mttc`` (one task token, a dense
    layer with T outputs, eq. 3.23-3.25) or ``mtts`` (one token per AU, a dense unit each, eq. 3.26-3.28),
    ``n_ca`` cross-attention layers. Guidance (§3.5): ``landmark_prior`` mono / multi returns the task
    priors PAtteL reads (eq. 3.31-3.32), ``h2p`` the head priors of eq. 3.33; ``parsing_lambda`` adds the
    soft face-parsing prior to every cross-attention layer (eq. 3.35-3.37).
:class:`MultiLabelTransformer`
    The ABAW3 model (Tallec et al. 2022, eq. 5-12): an InceptionV3 without pooling (8 x 8 at 299 px), a
    1 x 1 ("1-D") convolution to d = 128, learned position tokens (eq. 6), one post-norm self-attention
    layer with 8 heads (eq. 7-8), L label tokens through N_l = 2 layers of token self-attention,
    token -> image cross-attention and MLP (eq. 9-11), dropout 0.1, and one shared dense unit (eq. 12).

Both heads start at the training prior (thesis eq. 2.38), as every aubench head: MTTS/MTTC's dense
biases, and for the ABAW3 model a per-AU bias beside eq. 12's shared unit (a shared bias cannot start
twelve AUs at twelve frequencies).

**Face-parsing classes.** The thesis grouped an 18-class parser's non-expressive classes (background,
glasses, ears, neck, cloth, hair, hat…) into one, keeping skin, left/right brow, left/right eye, nose,
mouth interior, upper and lower lip: F = 10, the first 10 of 12 heads one class each. aubench's prepared
maps have 8 classes (:data:`aubench.data.prepared.PARSING_CLASSES`) with no left/right or upper/lower
split; the default grouping merges background and hair (the non-expressive ones) and keeps skin, brows,
eyes, nose, lips, mouth: F = 7, the first 7 heads constrained, 5 free. ``parsing_groups`` lists the
groups by class name; F follows it, and the dataset's own class list when the model is built for
training.

**Learning rates (§3.4.3).** ``param_groups`` puts the CNN, the 1 x 1 convolution and its LayerNorm at
the recipe's ``optim.lr`` (λ_c = 5e-5) and every transformer parameter at
λ_t = λ_t⁰ · B · q / (S · √d), q = h·w for the self-attention layers and q = T (task tokens) for the
cross-attention layers, task tokens, parsing tokens and dense heads (``lr_rule``; ``null``: one rate).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from aubench import ConfigError, create_backbone
from aubench_guided.attention import GeneralAttention, PostNormLayer, sinusoidal_2d
from aubench_guided.priors import LOCATIONS, centres, heatmaps, mono_heatmap, patch_frequencies, prior_index

__all__ = ["GuidedTransformer", "MultiLabelTransformer", "FeatureTrunk", "DEFAULT_PARSING_GROUPS", "model_inputs"]

DEFAULT_PARSING_GROUPS = (("background", "hair"), ("skin",), ("brows",), ("eyes",), ("nose",), ("lips",), ("mouth",))
LANDMARK_PRIORS = (None, "mono", "multi", "h2p")


def model_inputs(params: dict[str, Any]) -> tuple[str, ...]:
    """The batch inputs a configuration reads (``ModelSpec.inputs_for``): landmarks for a landmark prior,
    parsing maps for the face-parsing prior."""
    return (("landmarks",) if params.get("landmark_prior") else ()) + (
        ("parsing",) if params.get("parsing_lambda") is not None else ())


class FeatureTrunk(nn.Module):
    """Image -> feature map [B, C, h, w]: a timm CNN cut after ``stage`` (``features_only``), aubench's
    SmokeCNN cut after its ``stage``-th stage, or a timm ViT's patch tokens as a map."""

    def __init__(self, name: str, pretrained: bool | str = False, stage: int = 3, **kwargs: Any):
        super().__init__()
        from aubench import SmokeCNN

        self.vit = name.startswith("vit_")
        if self.vit:
            self.net = create_backbone(name, pretrained, **kwargs)
            self.channels = int(self.net.num_features)
        else:
            net = create_backbone(name, pretrained, **kwargs) if name == "aubench_smoke_cnn" else None
            if isinstance(net, SmokeCNN):
                convs = [i for i, m in enumerate(net.features) if isinstance(m, nn.Conv2d) and m.in_channels != m.out_channels]
                if not 1 <= stage <= len(convs):
                    raise ConfigError(f"model.stage={stage}: aubench_smoke_cnn has stages 1..{len(convs)}")
                end = convs[stage] if stage < len(convs) else len(net.features)
                self.net = net.features[:end]
                self.channels = int([m for m in self.net if isinstance(m, nn.BatchNorm2d)][-1].num_features)
            else:
                self.net = create_backbone(name, pretrained, features_only=True, out_indices=(stage,), **kwargs)
                self.channels = int(self.net.feature_info.channels()[-1])
        self.is_smoke = not self.vit and isinstance(self.net, nn.Sequential)

    def grid(self, size: int) -> tuple[int, int]:
        """The feature map's (h, w) for a ``size`` x ``size`` image."""
        was = self.training
        self.eval()
        with torch.no_grad():
            h, w = self(torch.zeros(1, 3, size, size)).shape[-2:]
        self.train(was)
        return int(h), int(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.vit:
            tokens = self.net.forward_features(x)[:, self.net.num_prefix_tokens:]
            side = int(round(tokens.shape[1] ** 0.5))
            return tokens.transpose(1, 2).reshape(x.shape[0], -1, side, side)
        out = self.net(x)
        return out if self.is_smoke else out[-1]


class _PriorHead(nn.Module):
    """The per-AU bias started at the training prior (thesis eq. 2.38)."""

    def init_bias(self, bias: torch.Tensor, stats: Any, enabled: bool) -> None:
        if enabled and stats is not None:
            with torch.no_grad():
                bias.copy_(torch.as_tensor(stats.bias_init(), dtype=torch.float32).reshape(bias.shape))


class GuidedTransformer(_PriorHead):
    """See the module docstring. ``forward`` returns ``logits`` [B, T], ``attention`` (one [B, N_H, T or 1,
    h·w] tensor of pre-softmax cross-attention per CA layer), ``grid`` and, with a landmark prior,
    ``task_priors`` [B, T, h·w] (mono / multi) or ``head_priors`` [B, N_H, h·w] with ``head_mask`` [N_H]."""

    def __init__(self, au_set: tuple[int, ...], stats: Any = None, backbone: str = "resnet50",
                 pretrained: bool | str = False, stage: int = 3, backbone_kwargs: dict[str, Any] | None = None,
                 d: int = 768, heads: int = 12, n_sa: int = 1,
                 n_ca: int = 2, decoder: str = "mtts", mlp_ratio: int = 4, dropout: float = 0.0,
                 landmark_prior: str | None = None, sigma: float = 1.0, h2p_heads: int = 10,
                 parsing_lambda: float | None = None, parsing_groups: Sequence[Sequence[str]] = DEFAULT_PARSING_GROUPS,
                 lr_rule: dict[str, float] | None = None, bias_init: bool = True, input_size: int = 224,
                 train_data: Any = None):
        super().__init__()
        if decoder not in ("mtts", "mttc"):
            raise ConfigError(f"model.decoder={decoder!r}; use 'mtts' (one token per AU) or 'mttc' (one task token)")
        if landmark_prior not in LANDMARK_PRIORS:
            raise ConfigError(f"model.landmark_prior={landmark_prior!r}; use one of {list(LANDMARK_PRIORS)}")
        if landmark_prior == "multi" and decoder == "mttc":
            raise ConfigError("model.landmark_prior=multi gives each AU its own prior and needs one token per AU: "
                              "use model.decoder=mtts (or landmark_prior=mono / h2p)")
        if not 0 <= h2p_heads <= min(heads, len(LOCATIONS)):
            raise ConfigError(f"model.h2p_heads={h2p_heads}: at most min(heads, {len(LOCATIONS)}) heads get a prior")
        self.au_set, self.decoder, self.heads, self.d = tuple(au_set), decoder, heads, d
        self.landmark_prior, self.sigma, self.h2p_heads = landmark_prior, float(sigma), int(h2p_heads)
        self.trunk = FeatureTrunk(backbone, pretrained, stage, **(backbone_kwargs or {}))
        self.proj = nn.Conv2d(self.trunk.channels, d, kernel_size=1)  # eq. 3.22
        self.norm = nn.LayerNorm(d)
        self.sa = nn.ModuleList(GeneralAttention(d, heads, dropout, mlp_ratio) for _ in range(n_sa))
        self.ca = nn.ModuleList(GeneralAttention(d, heads, dropout, mlp_ratio) for _ in range(n_ca))
        n_tokens = len(au_set) if decoder == "mtts" else 1
        self.tokens = nn.Parameter(torch.randn(n_tokens, d))
        if decoder == "mtts":  # eq. 3.28: one dense unit per token
            self.weight = nn.Parameter(torch.randn(len(au_set), d) / math.sqrt(d))
            self.bias = nn.Parameter(torch.zeros(len(au_set)))
        else:  # eq. 3.25: one dense layer with T units
            self.dense = nn.Linear(d, len(au_set))
        self.init_bias(self.bias if decoder == "mtts" else self.dense.bias, stats, bias_init)
        self.task_location = prior_index(self.au_set)
        self.parsing_lambda = None if parsing_lambda is None else float(parsing_lambda)
        if self.parsing_lambda is not None:
            self.parsing_groups = self._class_groups(parsing_groups, train_data)
            if len(self.parsing_groups) > heads:
                raise ConfigError(f"{len(self.parsing_groups)} face-parsing classes for {heads} heads: each "
                                  "constrained head takes one class (eq. 3.36); group classes or add heads")
            self.class_tokens = nn.Parameter(torch.randn(len(self.parsing_groups), d))  # θ_S of eq. 3.35
        self.lr_rule = dict(lr_rule) if lr_rule else None
        if self.lr_rule:
            if "batch" not in self.lr_rule:
                raise ConfigError("model.lr_rule needs 'batch' (the recipe's batch size B of §3.4.3)")
            h, w = self.trunk.grid(input_size)
            self.lr_rule["patches"] = h * w
        self.pe_cache: dict[tuple[int, int, str], torch.Tensor] = {}

    @staticmethod
    def _class_groups(groups: Sequence[Sequence[str]], train_data: Any) -> list[list[int]]:
        from aubench import PARSING_CLASSES

        classes = list((getattr(train_data, "meta", None) or {}).get("parsing_classes") or PARSING_CLASSES)
        named = [name for group in groups for name in group]
        unknown = sorted(set(named) - set(classes))
        if unknown:
            raise ConfigError(f"model.parsing_groups names {unknown}, which are not classes of the parsing maps "
                              f"{classes}")
        missing = [c for c in classes if c not in named]
        if missing:
            raise ConfigError(f"model.parsing_groups leaves out the parsing classes {missing}; put each class of "
                              f"{classes} in one group (the thesis groups non-expressive classes together)")
        return [[classes.index(name) for name in group] for group in groups]

    def param_groups(self, optim: dict[str, Any]) -> list[dict[str, Any]]:
        """§3.4.3: the convolutional part at ``optim.lr``, the transformer at λ_t = λ_t⁰·B·q/(S·√d)."""
        conv = [*self.trunk.parameters(), *self.proj.parameters(), *self.norm.parameters()]
        if not self.lr_rule:
            return [{"params": [p for p in self.parameters() if p.requires_grad]}]
        seen = {id(p) for p in conv}
        sa = list(self.sa.parameters())
        seen |= {id(p) for p in sa}
        ca = [p for p in self.parameters() if id(p) not in seen]
        groups = [{"params": [p for p in conv if p.requires_grad]},
                  {"params": sa, "lr": self.rule_lr(int(self.lr_rule["patches"]))},
                  {"params": ca, "lr": self.rule_lr(self.tokens.shape[0])}]
        return [g for g in groups if g["params"]]

    def rule_lr(self, queries: int) -> float:
        rule = self.lr_rule or {}
        return float(rule.get("base", 1e-2)) * float(rule["batch"]) * queries / (
            float(rule.get("scale", 2.5e5)) * math.sqrt(self.d))

    def record_extras(self) -> dict[str, Any]:
        return {"decoder": self.decoder, "landmark_prior": self.landmark_prior, "parsing_lambda": self.parsing_lambda,
                "transformer_lr": None if not self.lr_rule else {
                    "self_attention": self.rule_lr(int(self.lr_rule["patches"])),
                    "cross_attention": self.rule_lr(self.tokens.shape[0])}}

    def position(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        key = (h, w, str(device))
        if key not in self.pe_cache:
            self.pe_cache[key] = sinusoidal_2d(h, w, self.d).reshape(h * w, self.d).to(device)
        return self.pe_cache[key]

    def encode(self, image: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """eq. 3.22, 3.15-3.16: the patch tokens P_{N_SA} [B, h·w, d] and the grid (h, w)."""
        fmap = self.proj(self.trunk(image))
        h, w = fmap.shape[-2:]
        tokens = self.norm(fmap.flatten(2).transpose(1, 2)) + self.position(h, w, fmap.device)
        for layer in self.sa:
            tokens = layer(tokens)[0]
        return tokens, (int(h), int(w))

    def parsing_prior(self, parsing: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """eq. 3.35-3.36: S_ijᵀ θ_{S_h} for every head and patch, [B, N_H, 1, h·w] (0 for free heads)."""
        freq = patch_frequencies(parsing, self.parsing_groups, grid)  # [B, h·w, F]
        s = (freq / freq.norm(dim=-1, keepdim=True).clamp_min(1e-12)) @ self.class_tokens  # [B, h·w, d]
        head_tokens = torch.zeros(self.heads, self.d, device=s.device, dtype=s.dtype)
        head_tokens = head_tokens.index_copy(0, torch.arange(len(self.parsing_groups), device=s.device),
                                             self.class_tokens.to(s.dtype))  # M θ_S, M = first F heads
        return (s @ head_tokens.T).transpose(1, 2)[:, :, None]

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        image = batch["image"]
        patches, grid = self.encode(image)
        prior = self.parsing_prior(batch["parsing"], grid) if self.parsing_lambda is not None else None
        tokens = self.tokens[None].expand(image.shape[0], -1, -1)
        attention = []
        for layer in self.ca:
            tokens, logits = layer(tokens, patches, prior, self.parsing_lambda or 0.0)
            attention.append(logits)
        if self.decoder == "mtts":
            logits = (tokens * self.weight).sum(-1) + self.bias
        else:
            logits = self.dense(tokens[:, 0])
        out: dict[str, Any] = {"logits": logits, "attention": attention, "grid": grid}
        if self.landmark_prior:
            out.update(self.landmark_priors(batch["landmarks"], tuple(image.shape[-2:]), grid))
        return out

    def landmark_priors(self, landmarks: torch.Tensor, size: tuple[int, int], grid: tuple[int, int]) -> dict[str, Any]:
        with torch.no_grad():
            if self.landmark_prior == "mono":
                mono = mono_heatmap(landmarks, size, grid, self.sigma)  # [B, N]
                return {"task_priors": mono[:, None].expand(-1, self.tokens.shape[0], -1)}
            located = heatmaps(centres(landmarks), size, grid, self.sigma)  # [B, 10, N]
            if self.landmark_prior == "multi":
                idx = torch.as_tensor(self.task_location, device=located.device)
                per_task = located[:, idx.clamp_min(0)]
                if min(self.task_location) >= 0:
                    return {"task_priors": per_task}
                mono = mono_heatmap(landmarks, size, grid, self.sigma)  # AUs without a Table 3.2 entry
                return {"task_priors": torch.where((idx >= 0)[None, :, None], per_task, mono[:, None])}
            head = torch.zeros(located.shape[0], self.heads, located.shape[-1], device=located.device)
            head[:, :self.h2p_heads] = located[:, :self.h2p_heads]  # M: head h <- location h (§3.5.2)
            mask = torch.zeros(self.heads, dtype=torch.bool, device=located.device)
            mask[:self.h2p_heads] = True
            return {"head_priors": head, "head_mask": mask}


class MultiLabelTransformer(_PriorHead):
    """The ABAW3 multi-label transformer (see the module docstring). ``forward`` returns ``logits`` and
    ``attention`` (the token -> image cross-attention logits of each label layer)."""

    def __init__(self, au_set: tuple[int, ...], stats: Any = None, backbone: str = "inception_v3",
                 pretrained: bool | str = False, stage: int = 4, backbone_kwargs: dict[str, Any] | None = None,
                 d: int = 128, heads: int = 8, n_x: int = 1,
                 n_l: int = 2, dropout: float = 0.1, mlp_ratio: int = 4, bias_init: bool = True,
                 input_size: int = 299, transformer_schedule: dict[str, float] | None = None):
        super().__init__()
        self.schedule = dict(transformer_schedule) if transformer_schedule else None
        if self.schedule and "batch" not in self.schedule:
            raise ConfigError("model.transformer_schedule needs 'batch' (the recipe's batch size B of the "
                              "authors' schedule: batch: ${batch_size})")
        self.trunk = FeatureTrunk(backbone, pretrained, stage, **(backbone_kwargs or {}))
        self.proj = nn.Conv2d(self.trunk.channels, d, kernel_size=1)  # "1-D convolution with 128 channels"
        h, w = self.trunk.grid(input_size)
        self.positions = nn.Parameter(torch.randn(h * w, d) * 0.02)  # W_{n_x} of eq. 6
        self.image_layers = nn.ModuleList(PostNormLayer(d, heads, dropout, True, False, mlp_ratio) for _ in range(n_x))
        self.label_layers = nn.ModuleList(PostNormLayer(d, heads, dropout, True, True, mlp_ratio) for _ in range(n_l))
        self.labels = nn.Parameter(torch.randn(len(au_set), d) / math.sqrt(d))  # T^(0) = I_L W_t
        self.readout = nn.Linear(d, 1)  # W_p of eq. 12, shared by the label tokens
        self.bias = nn.Parameter(torch.zeros(len(au_set)))
        self.init_bias(self.bias, stats, bias_init)
        self.d = d

    def configure_optimizers(self, optim: dict, sched: dict, steps_per_epoch: int, epochs: int) -> list[dict]:
        """ABAW3 §4.2 and the authors' code: the InceptionV3 on the recipe's AdamW with exponential decay
        (5e-4, 0.99 per epoch); the image transformer (1 x 1 convolution, positions, self-attention) and the
        label decoder each on their own AdamW with the authors' ``seq_transformer`` schedule,
        lr(t) = (B·q / 25000) · d^-½ · min(t^-½, t · (w · steps_per_epoch)^-1.5), q = n_x patches for the
        image part and q = L labels for the decoder, w = 5 warm-up epochs, stepped per batch (t counted
        from 1: the first step is not wasted at lr 0). ``transformer_schedule: null`` puts everything on
        the recipe's optimiser."""
        from aubench import build_optimizer, build_scheduler

        if not self.schedule:
            opt = build_optimizer([p for p in self.parameters() if p.requires_grad], optim)
            return [{"optimizer": opt, "scheduler": build_scheduler(opt, sched, steps_per_epoch), "start_epoch": 0}]
        enc = build_optimizer([p for p in self.trunk.parameters() if p.requires_grad], optim)
        out = [{"optimizer": enc, "scheduler": build_scheduler(enc, sched, steps_per_epoch), "start_epoch": 0}]
        image = [*self.proj.parameters(), self.positions, *self.image_layers.parameters()]
        labels = [self.labels, *self.label_layers.parameters(), *self.readout.parameters(), self.bias]
        batch, warm = float(self.schedule["batch"]), float(self.schedule.get("warmup_epochs", 5)) * steps_per_epoch
        scale = float(self.schedule.get("scale", 25000))
        for params, q in ((image, self.positions.shape[0]), (labels, self.labels.shape[0])):
            opt = torch.optim.AdamW(params, lr=1.0, weight_decay=float(optim.get("weight_decay", 0.0)))

            def rate(t: int, q: int = q) -> float:
                t += 1
                return batch * q / scale * self.d ** -0.5 * min(t ** -0.5, t * warm ** -1.5)

            scheduler = torch.optim.lr_scheduler.LambdaLR(opt, rate)
            scheduler.interval = "step"
            out.append({"optimizer": opt, "scheduler": scheduler, "start_epoch": 0})
        return out

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        fmap = self.proj(self.trunk(batch["image"]))
        x = fmap.flatten(2).transpose(1, 2)  # eq. 5: [B, n_x, d]
        if self.positions.shape[0] != x.shape[1]:
            raise ConfigError(f"the ABAW3 model has {self.positions.shape[0]} patch positions (model.input_size) and "
                              f"sees {x.shape[1]} patches: set model.input_size to input.size")
        x = x + self.positions  # eq. 6
        for layer in self.image_layers:
            x = layer(x)[0]
        t = self.labels[None].expand(x.shape[0], -1, -1)
        attention = []
        for layer in self.label_layers:
            t, logits = layer(t, x)
            attention.append(logits)
        return {"logits": self.readout(t)[..., 0] + self.bias, "attention": attention}
