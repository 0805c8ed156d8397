"""The model and loss contracts, checked once, on a cell's first training batch.

A model that returns ``[B, K, 1]`` or a single output column, or a loss that returns a bare tensor,
would otherwise fail deep inside torch — or, worse, after a whole training run in evaluation. The
first batch is checked before any optimiser step; a violation names the component, the plugin that
registered it, what was expected and what came back.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aubench.errors import ContractError

if TYPE_CHECKING:
    from aubench.cells import Cell
    from aubench.registry import Registry

__all__ = ["FirstBatchCheck"]


class FirstBatchCheck:
    """Checks of a cell's model outputs and loss results on its first batch."""

    def __init__(self, cell: Cell, registry: Registry, n_aus: int):
        name = str(cell.config.model.name)
        self.model = f"model {name!r} (plugin {registry.owner('model', name)!r})"
        self.owners = {n: registry.owner("loss", n) for n in registry.names("loss")}
        self.n_aus = n_aus

    def outputs(self, outputs: Any, batch_size: int) -> None:
        import torch

        if not isinstance(outputs, Mapping):
            raise ContractError(f"{self.model}: forward(batch) must return a dict with 'logits' (or 'probs'), "
                                f"got {type(outputs).__name__}")
        key = "logits" if "logits" in outputs else "probs" if "probs" in outputs else None
        if key is None:
            raise ContractError(f"{self.model}: forward(batch) returned keys {sorted(outputs)}; it must return "
                                "'logits' [B, K] (or 'probs' in [0, 1])")
        value, want = outputs[key], (batch_size, self.n_aus)
        if not torch.is_tensor(value) or not value.is_floating_point():
            raise ContractError(f"{self.model}: {key} must be a floating-point tensor, got "
                                f"{getattr(value, 'dtype', type(value).__name__)}")
        if tuple(value.shape) != want:
            raise ContractError(f"{self.model}: {key} has shape {list(value.shape)}, expected {list(want)} "
                                f"(batch size, the protocol's {self.n_aus} AUs in the order of au_set)")
        if not torch.isfinite(value).all():
            raise ContractError(f"{self.model}: {key} holds NaN or infinity on the first batch, before any training "
                                "step: check the model's initialisation and input normalisation")

    def loss(self, name: str, result: Any) -> None:
        import torch

        what = f"loss {name!r} (plugin {self.owners.get(name, '?')!r})"
        if not (isinstance(result, tuple) and len(result) == 2):
            raise ContractError(f"{what}: must return (scalar tensor, dict of float terms), got "
                                f"{type(result).__name__}")
        value, terms = result
        if not torch.is_tensor(value) or value.ndim != 0 or not value.is_floating_point():
            raise ContractError(f"{what}: its first value must be a floating-point scalar tensor, got "
                                f"{getattr(value, 'shape', type(value).__name__)}")
        if not isinstance(terms, Mapping):
            raise ContractError(f"{what}: its second value must be a dict of float terms, got {type(terms).__name__}")
        bad = [k for k, v in terms.items() if not isinstance(v, (int, float)) and not (torch.is_tensor(v) and v.ndim == 0)]
        if bad:
            raise ContractError(f"{what}: terms {bad} are not floats (log detached numbers: float(x.detach()))")
        if not torch.isfinite(value):
            raise ContractError(f"{what}: returned {float(value)} on the first batch, before any optimiser step: "
                                "the loss itself is at fault, not the learning rate")
