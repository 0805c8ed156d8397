"""FAN-Trans (Yang et al., WACV 2023): a hybrid convolution + transformer head on frozen FAN features,
diverse classifiers, and online knowledge distillation between two branches.

Equations and tables refer to the paper (``fan-trans.md``) and its supplementary.

Choices where the paper is ambiguous (each is an option unless stated):

* **Convolution width D_c** (§3.2 vs supplementary §1): the paper says 0.25·D_a (= 192), the
  supplementary says 256. With timm blocks (MLP ratio 4), five transblocks of width 256 alone hold
  3.9 M parameters per branch, so 256 cannot fit the supplementary's ~2.8 M inference / ~4.5 M
  training parameters; 192 comes close (see :func:`complexity`). Default: ``conv_dim=192``.
* **Pooling** (§3.2): four multi-scale residual blocks (FAN's ``ConvBlock``), each followed by a 2×2
  max-pool until the map is 4 × 4 (64 → 4 at 256 px; fewer pools on smaller inputs).
* **Position embedding** is added to the flattened F_c (D_c × H_cW_c) before W_au, as §3.2 says.
* **Attention drop** (eq. 3): one learned mask per transblock over key columns, shared by heads.
  The binary mask gets gradients with a straight-through estimator: forward uses
  ``M = 1[σ(m) > 0.5]``, backward uses the gradient of σ(m); logits start at +2 (all ones, full
  attention). Rows are not renormalised (Ā = M * A, as printed). Variants: ``full`` (F), ``row``
  (R: per row, attention below the row's median is dropped), ``column`` (C: per column, below the
  column's median).
* **Ensemble weights** (eq. 7, Fig. 2): two splits on F_c with different receptive fields (1×1 and
  3×3 convolutions, each globally pooled), concatenated, one FC to 2·N_au, softmax over the two
  branches per AU. P_t combines the branch *logits*.
* **Distillation** (eq. 8): KL between Bernoulli distributions, KL(σ(P_t) ‖ σ(P_*)) for each
  student, averaged over AUs and frames, with the ensemble detached as the teacher (as in ONE /
  OKDDip, the online-KD works the paper follows).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from timm.layers.attention import Attention
from timm.models.vision_transformer import Block
from torch import nn

from aubench import ConfigError

__all__ = ["MaskedAttention", "ConvModule", "FANTrans", "topk_evidence", "ATTENTION_MODES", "complexity"]

ATTENTION_MODES = ("learned", "full", "row", "column")
CLASSIFIERS = ("o2o", "o2m")


class MaskedAttention(Attention):
    """timm ``Attention`` with FAN-Trans' attention drop (eq. 2-3) applied after the softmax."""

    def configure(self, n_tokens: int, mode: str) -> None:
        if mode not in ATTENTION_MODES:
            raise ConfigError(f"attention={mode!r}; use one of {ATTENTION_MODES}")
        self.mode = mode
        self.mask_logits = nn.Parameter(torch.full((n_tokens,), 2.0)) if mode == "learned" else None

    def column_mask(self) -> torch.Tensor | None:
        """The binary mask M (straight-through: hard forward, sigmoid gradient backward)."""
        if self.mask_logits is None:
            return None
        soft = torch.sigmoid(self.mask_logits)
        return (soft > 0.5).to(soft) + soft - soft.detach()

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        B, N, _ = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # eq. (2)
        mode = getattr(self, "mode", "full")
        if mode == "learned":
            attn = attn * self.column_mask().view(1, 1, 1, N)  # eq. (3): Ā_ij = M_j A_ij
        elif mode == "row":
            attn = attn * (attn >= attn.median(dim=-1, keepdim=True).values)
        elif mode == "column":
            attn = attn * (attn >= attn.median(dim=-2, keepdim=True).values)
        attn = self.attn_drop(attn)
        x = (attn @ v).transpose(1, 2).reshape(B, N, self.attn_dim)
        return self.proj_drop(self.proj(self.norm(x)))


class ConvModule(nn.Module):
    """1×1 reduction D_a → D_c, then four FAN multi-scale residual blocks with max-pooling (§3.2, supp. §1)."""

    def __init__(self, in_channels: int, dim: int, in_size: int, out_size: int = 4, blocks: int = 4):
        super().__init__()
        from face_alignment.models.fan import ConvBlock

        pools = max(0, int(round(math.log2(max(in_size, 1) / out_size))))
        if pools > blocks:
            raise ConfigError(f"a {in_size}x{in_size} feature map needs {pools} poolings but the module has {blocks} blocks")
        self.reduce = nn.Conv2d(in_channels, dim, 1)
        layers: list[nn.Module] = []
        for i in range(blocks):
            layers.append(ConvBlock(dim, dim))
            if i < pools:
                layers.append(nn.MaxPool2d(2))
        self.blocks = nn.Sequential(*layers)
        self.out_size = in_size // (2 ** pools)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.reduce(x))


def topk_evidence(p_hat: torch.Tensor, k: int) -> torch.Tensor:
    """Eq. (5)-(6): for each AU (column i of P_m̂ = F2·W_m) sum its k largest evidences over AU features."""
    return p_hat.topk(min(k, p_hat.shape[1]), dim=1).values.sum(1)


class _Branch(nn.Module):
    """Transblocks (or none) followed by the classifiers of one branch."""

    def __init__(self, dim: int, n_au: int, depth: int, attention: str, classifiers: list[str]):
        super().__init__()
        heads = max(1, dim // 64)
        self.blocks = nn.ModuleList()
        for _ in range(depth):
            blk = Block(dim, heads, mlp_ratio=4.0, qkv_bias=True, attn_layer=MaskedAttention)
            blk.attn.configure(n_au, attention)
            self.blocks.append(blk)
        self.norm = nn.LayerNorm(dim) if depth else nn.Identity()
        self.classifiers = list(classifiers)
        self.o2o = nn.Linear(dim, 1) if "o2o" in classifiers else None  # eq. (4), shared by all AU tokens
        self.w_m = nn.Linear(dim, n_au, bias=False) if "o2m" in classifiers else None  # eq. (5)
        self.bias_m = nn.Parameter(torch.zeros(n_au)) if "o2m" in classifiers else None

    def forward(self, tokens: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
        x = tokens
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        out = {}
        if self.o2o is not None:
            out["o2o"] = self.o2o(x).squeeze(-1)
        if self.w_m is not None:
            out["o2m"] = topk_evidence(self.w_m(x), k) + self.bias_m
        return out


class EnsembleWeights(nn.Module):
    """Fig. 2's ensemble-weight generator on F_c: two receptive fields, concat, FC, softmax over branches."""

    def __init__(self, dim: int, n_au: int, hidden: int = 64):
        super().__init__()
        self.split1 = nn.Sequential(nn.Conv2d(dim, hidden, 1), nn.BatchNorm2d(hidden), nn.ReLU())
        self.split3 = nn.Sequential(nn.Conv2d(dim, hidden, 3, padding=1), nn.BatchNorm2d(hidden), nn.ReLU())
        self.fc = nn.Linear(2 * hidden, 2 * n_au)
        self.n_au = n_au

    def forward(self, f_c: torch.Tensor) -> torch.Tensor:
        z = torch.cat([self.split1(f_c).mean((2, 3)), self.split3(f_c).mean((2, 3))], 1)
        return self.fc(z).view(-1, 2, self.n_au).softmax(dim=1)  # [B, 2, N_au], sums to 1 per AU


class FANTrans(nn.Module):
    """The FAN-Trans family (every row of Table 1 is a configuration).

    ``branches`` lists the classifiers of each transformer branch: ``[["o2o"], ["o2m"]]`` is the full
    model C_T1.C_o2o-T2.C_o2m; ``[["o2o", "o2m"]]`` is C_T1.C_o2o-T1.C_o2m (one transformer, two
    classifiers); ``[["o2m"]]`` is C_T.C_o2m; ``transformer=false`` is the Baseline (F_c average-pooled
    into one FC). The pathway named by ``deploy`` ("branch.classifier", default: the last o2m) is
    the one kept at inference and reported as ``logits``.
    """

    def __init__(self, au_set: tuple[int, ...], stats: Any = None, backbone: dict | None = None, input_size: int = 256,
                 conv_dim: int = 192, depth: int = 5, attention: str = "learned",
                 branches: list[list[str]] | None = None, transformer: bool = True, topk: int = 2,
                 deploy: str | None = None, bias_init: bool = True, train_data: Any = None,
                 train_subjects: list[str] | None = None):
        super().__init__()
        from aubench_fantrans.backbone import build_backbone

        self._export_cfg = {"backbone": backbone, "input_size": input_size, "conv_dim": conv_dim, "depth": depth,
                            "attention": attention, "transformer": transformer, "topk": topk}
        self.au_set, self.topk = tuple(au_set), int(topk)
        n_au = len(self.au_set)
        self.backbone = build_backbone(**(backbone or {}), context={"train_data": train_data, "input_size": input_size,
                                                                    "train_subjects": train_subjects})
        feat_size = input_size // 4
        self.conv = ConvModule(self.backbone.out_channels, conv_dim, feat_size)
        n_pos = self.conv.out_size ** 2
        self.transformer = bool(transformer)
        if not self.transformer:
            self.pool_fc = nn.Linear(conv_dim, n_au)
            self.paths = ["baseline"]
        else:
            branches = [list(b) for b in (branches or [["o2o"], ["o2m"]])]
            for b in branches:
                bad = [c for c in b if c not in CLASSIFIERS]
                if bad or not b:
                    raise ConfigError(f"model.branches={branches}: classifiers must be among {CLASSIFIERS}")
            self.pos_embed = nn.Parameter(torch.zeros(1, conv_dim, n_pos))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
            self.w_au = nn.Linear(n_pos, n_au)  # eq. (1)
            self.branches = nn.ModuleList(_Branch(conv_dim, n_au, depth, attention, b) for b in branches)
            self.paths = [f"{i}.{c}" for i, b in enumerate(branches) for c in b]
            self.ensemble = EnsembleWeights(conv_dim, n_au) if len(self.paths) == 2 else None
        if deploy is None:
            deploy = next((p for p in reversed(self.paths) if p.endswith("o2m")), self.paths[-1])
        if deploy not in self.paths:
            raise ConfigError(f"model.deploy={deploy!r}; pathways are {self.paths}")
        self.deploy = deploy
        if bias_init and stats is not None:
            with torch.no_grad():
                prior = torch.as_tensor(stats.bias_init(), dtype=torch.float32)
                if not self.transformer:
                    self.pool_fc.bias.copy_(prior)
                for b in getattr(self, "branches", []):
                    if b.o2o is not None:
                        b.o2o.bias.fill_(float(prior.mean()))
                    if b.bias_m is not None:
                        b.bias_m.copy_(prior)

    def record_extras(self) -> dict[str, Any]:
        """The frozen extractor's weights (and, for the SynthAU FAN, its training subjects and landmark error)."""
        return {"backbone_weights": getattr(self.backbone, "weights", None),
                "backbone_pretraining": getattr(self.backbone, "pretraining", None)}

    def extract_frozen(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.backbone(batch["image"])

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        f_a = batch["features"].float() if "features" in batch else self.extract_frozen(batch)
        f_c = self.conv(f_a)
        if not self.transformer:
            logits = self.pool_fc(f_c.mean((2, 3)))
            return {"logits": logits, "branch_logits": {"baseline": logits}}
        flat = f_c.flatten(2) + self.pos_embed  # [B, D_c, H_c W_c]
        tokens = self.w_au(flat).transpose(1, 2)  # eq. (1), transposed: [B, N_au, D_c]
        branch_logits: dict[str, torch.Tensor] = {}
        for i, branch in enumerate(self.branches):
            for c, v in branch(tokens, self.topk).items():
                branch_logits[f"{i}.{c}"] = v
        out = {"logits": branch_logits[self.deploy], "branch_logits": branch_logits}
        if self.ensemble is not None and self.training:
            w = self.ensemble(f_c)  # [B, 2, N_au]
            p1, p2 = (branch_logits[p] for p in self.paths)
            out["ensemble_logits"] = w[:, 0] * p1 + w[:, 1] * p2  # eq. (7)
            out["ensemble_weights"] = w
        return out

    def inference_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights of the deployed pathway only: the auxiliary branch, its classifier and the ensemble
        generator are dropped (paper §3.3: "only the C_o2m branch is deployed at inference time")."""
        keep_branch = self.deploy.split(".")[0] if self.transformer else None
        out = {}
        for name, tensor in self.state_dict().items():
            if name.startswith("ensemble."):
                continue
            if name.startswith("branches."):
                parts = name.split(".")
                if parts[1] != keep_branch:
                    continue
                clf = self.deploy.split(".")[1]
                if (parts[2] == "o2o" and clf != "o2o") or (parts[2] in ("w_m", "bias_m") and clf != "o2m"):
                    continue
            out[name] = tensor
        return out

    def export_inference(self) -> FANTrans:
        """A model holding only the deployed pathway, with identical predictions."""
        cfg = dict(self._export_cfg)
        cfg["branches"] = [[self.deploy.split(".")[1]]] if self.transformer else None
        cfg["deploy"] = f"0.{self.deploy.split('.')[1]}" if self.transformer else "baseline"
        small = FANTrans(self.au_set, None, bias_init=False, **cfg)
        state = {}
        for name, tensor in self.inference_state_dict().items():
            if name.startswith("branches."):
                parts = name.split(".")
                parts[1] = "0"
                name = ".".join(parts)
            state[name] = tensor
        small.load_state_dict(state)
        return small.eval()


def complexity(model: FANTrans, input_size: int = 256) -> dict[str, float]:
    """Parameters (frozen / learnable in training / at inference) and forward FLOPs of backbone and head,
    counted the way the supplementary (§3) reports them."""
    from torch.utils.flop_counter import FlopCounterMode

    frozen = sum(p.numel() for p in model.backbone.parameters())
    used_frozen = frozen
    if getattr(model.backbone, "variant", "") == "fan4-cut2":  # stacks 3-4 (and bl1/al1) are never run
        fan = model.backbone.fan
        unused = [fan._modules[n] for n in ("m2", "m3", "top_m_2", "top_m_3", "conv_last2", "conv_last3", "bn_end2",
                                            "bn_end3", "l2", "l3", "bl1", "al1", "bl2", "al2")]
        used_frozen -= sum(p.numel() for m in unused for p in m.parameters())
    learnable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    inference = sum(v.numel() for k, v in model.inference_state_dict().items()
                    if not k.startswith("backbone.") and v.is_floating_point() and "running_" not in k)
    model.eval()
    x = torch.zeros(1, 3, input_size, input_size)
    with torch.no_grad(), FlopCounterMode(display=False) as fc_backbone:
        feats = model.backbone(x)
    with torch.no_grad(), FlopCounterMode(display=False) as fc_head:
        model({"features": feats})
    # the supplementary's "13.97G flops" for a 2-stack FAN equals its multiply-accumulate count
    return {"frozen_params_used": used_frozen, "frozen_params_total": frozen, "learnable_params": learnable,
            "inference_head_params": inference, "backbone_gmacs": fc_backbone.get_total_flops() / 2e9,
            "head_gmacs": fc_head.get_total_flops() / 2e9}
