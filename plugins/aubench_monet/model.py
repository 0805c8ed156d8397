"""Multi-task AU models of thesis chapter 2: a shared encoder f_w(x) and a VMNC, VMNS, MRNN or MONET head.

Encoders are timm models (``model.backbone``; the thesis uses ImageNet InceptionV3 on BP4D and an
Inception-ResNet-v1 / VGGFace2 encoder on DISFA), or an MLP for vector inputs (the toy dataset).
Output biases start at the training prior (eq. 2.38). MONET's order logits get their own Adam
optimiser that starts after ``warmup`` epochs (Fig. 2.4), while the rest uses AdamW with exponential
decay (§2.5.3).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from aubench import ConfigError, create_backbone
from aubench_monet.heads import MONETHead, MRNNHead, VMNCHead, VMNSHead

__all__ = ["MultiTaskNet", "mlp_encoder"]


def mlp_encoder(in_dim: int, hidden: int = 64, layers: int = 4) -> nn.Sequential:
    mods: list[nn.Module] = []
    d = in_dim
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), nn.ReLU()]
        d = hidden
    return nn.Sequential(*mods)


class MultiTaskNet(nn.Module):
    """Encoder + multi-task head. ``forward(batch)`` uses ``batch["image"]`` (or ``batch["x"]`` for vectors)."""

    def __init__(self, au_set: tuple[int, ...], stats: Any = None, head: str = "monet", backbone: str = "resnet18",
                 pretrained: bool | str = False, input_dim: int | None = None, encoder_layers: int = 4,
                 hidden: int = 64, n_orders: int = 120, keep: int | None = None, warmup: int = 5,
                 infer_orders: int = 20, infer_samples: int = 1, selection: str = "soft", order_seed: int | None = None,
                 orders: list[list[int]] | None = None, order_lr: float = 5e-3, bias_init: bool = True,
                 vmns_layers: int = 2, teacher_dropout: float = 0.0,
                 task_input: bool = True, mrnn_order: str = "fixed", seed: int | None = None,
                 shared_readout: bool = False, feedback: str = "sample",
                 aux_head: bool = False):
        super().__init__()
        if order_seed is None:  # the M orders (and MRNN's one) are drawn with the cell's seed
            order_seed = seed or 0
        n = len(au_set)
        self.au_set, self.warmup, self.order_lr = tuple(au_set), int(warmup), float(order_lr)
        self.vector_input = bool(input_dim)  # reads batch["x"] (vector datasets) instead of batch["image"]
        self.stochastic_inference = head in ("mrnn", "monet")  # Monte-Carlo roll-outs (Alg. 1-2), seeded
        self.encoder = mlp_encoder(input_dim, hidden, encoder_layers) if input_dim else create_backbone(backbone, pretrained)
        feat = hidden if input_dim else self.encoder.num_features
        if head == "vmnc":
            self.head = VMNCHead(feat, n)
        elif head == "vmns":
            self.head = VMNSHead(feat, n, hidden, vmns_layers)
        elif head == "mrnn":
            self.head = MRNNHead(feat, n, hidden, samples=infer_orders * infer_samples, seed=order_seed,
                                 task_input=task_input, order=mrnn_order, teacher_dropout=teacher_dropout,
                                 shared_readout=shared_readout)
        elif head == "monet":
            self.head = MONETHead(feat, n, hidden, n_orders=n_orders, keep=keep, infer_orders=infer_orders,
                                  infer_samples=infer_samples, selection=selection, order_seed=order_seed,
                                  orders=orders, task_input=task_input, teacher_dropout=teacher_dropout)
        else:
            raise ConfigError(f"model.head={head!r}; use vmnc, vmns, mrnn or monet")
        self.head_kind = head
        # A linear read-out of the encoder's features, trained beside the head (loss.aux_weight) and never
        # used to predict: the thesis always starts from a pretrained encoder (§2.5.3); trained from
        # scratch through a recurrent head alone, the encoder learns nothing at the smoke budget
        # (README, "MONET's smoke collapse").
        self.aux = nn.Linear(feat, n) if aux_head else None
        if feedback not in ("sample", "mean", "hidden"):
            raise ConfigError(f"model.feedback={feedback!r}; use sample (Alg. 1-2), mean or hidden")
        if hasattr(self.head, "feedback"):
            self.head.feedback = feedback
        if bias_init and stats is not None:  # eq. (2.38)
            prior = torch.as_tensor(stats.bias_init(), dtype=torch.float32)
            with torch.no_grad():
                if self.aux is not None:
                    self.aux.bias.copy_(prior)
                if hasattr(self.head, "out_biases"):
                    for b, v in zip(self.head.out_biases, prior):
                        b.fill_(float(v))
                elif getattr(self.head, "shared_readout", False):  # one read-out for every task: the mean prior
                    self.head.out.bias.fill_(float(prior.mean()))
                else:
                    self.head.out.bias.copy_(prior)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        h0 = self.encoder(batch["x"] if self.vector_input else batch["image"])
        out = self.head(h0, batch.get("labels") if self.training else None, batch.get("mask"))
        if self.aux is not None and self.training:
            out["aux_logits"] = self.aux(h0)
        return out

    def configure_optimizers(self, optim: dict, sched: dict, steps_per_epoch: int, epochs: int) -> list[dict]:
        """The encoder and heads on the recipe's optimiser; MONET's order logits on their own Adam
        (learning rate ``order_lr``), first stepped after a warm-up of ``n`` epochs (§2.4.3, "Warm-up to
        step away from bad starting points")."""
        from aubench import build_optimizer, build_scheduler

        order = [self.head.order_logits] if isinstance(self.head, MONETHead) else []
        rest = [p for p in self.parameters() if p.requires_grad and all(p is not q for q in order)]
        main = build_optimizer(rest, optim)
        out = [{"optimizer": main, "scheduler": build_scheduler(main, sched, steps_per_epoch),
                "start_epoch": 0}]
        if order and self.head.selection == "soft":
            out.append({"optimizer": torch.optim.Adam(order, lr=self.order_lr), "start_epoch": self.warmup})
        return out

    def on_epoch_start(self, epoch: int) -> None:
        head = self.head
        if isinstance(head, MONETHead) and head.selection == "hard" and epoch == self.warmup and head.hard_choice < 0:
            head.choose_hard_order()

    def record_extras(self) -> dict[str, Any]:
        """The learned soft order (Ω, timestep × task) and the heaviest orders, saved with each result."""
        if not isinstance(self.head, MONETHead):
            return {}
        pi = self.head.pi().detach().cpu()
        top = pi.topk(min(5, len(pi)))
        return {"soft_order": self.head.soft_order().detach().cpu().tolist(), "aus": list(self.au_set),
                "top_orders": [{"order": [self.au_set[i] for i in self.head.orders[j].tolist()], "pi": float(v)}
                               for v, j in zip(top.values, top.indices)]}
