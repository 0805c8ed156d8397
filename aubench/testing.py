"""A conformance suite for plugins: registering a component enrols it here.

Use it from a plugin's own tests::

    from aubench.testing import check_method, check_model, check_loss
    check_model("little-cnn")            # default parameters
    check_method("example-little-cnn")   # the smoke preset: model + loss(es) together
"""
from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from aubench.registry import Registry

__all__ = ["AUS", "toy_batch", "toy_stats", "check_model", "check_loss", "check_method"]

AUS = (1, 2, 4, 6, 12)


def toy_batch(n: int = 4, aus: tuple[int, ...] = AUS, size: int = 64, seed: int = 0) -> dict[str, Any]:
    """A batch as the engine builds it: normalised images, labels with some masked, landmarks, parsing."""
    import torch

    g = torch.Generator().manual_seed(seed)
    labels = (torch.rand(n, len(aus), generator=g) < 0.4).float()
    mask = torch.rand(n, len(aus), generator=g) > 0.2
    return {"image": torch.randn(n, 3, size, size, generator=g), "labels": labels, "mask": mask,
            "landmarks": torch.rand(n, 68, 2, generator=g) * size,
            "parsing": torch.randint(0, 8, (n, size, size), generator=g, dtype=torch.uint8),
            "row": torch.arange(n), "pos": torch.arange(n)}


def toy_stats(aus: tuple[int, ...] = AUS) -> Any:
    """Training statistics for ``aus`` with positive frequencies from 0.1 to 0.5 (for toy batches)."""
    from aubench.stats import TrainStats

    freq = np.linspace(0.1, 0.5, len(aus))
    return TrainStats(tuple(aus), freq * 100, np.full(len(aus), 100.0), 100)


def _registry(registry: Registry | None) -> Registry:
    from aubench.registry import get_registry

    return registry or get_registry()


def check_model(name: str, registry: Registry | None = None, size: int = 64, **params: Any) -> Any:
    """Build model ``name``; check output shape/order, backward, and a save/load round trip."""
    import torch

    from aubench.specs import resolve_factory

    spec = _registry(registry).get("model", name)
    factory = resolve_factory(spec.factory)
    torch.manual_seed(0)
    model = factory(au_set=AUS, stats=toy_stats(AUS), **params)
    batch = toy_batch(size=size)
    model.train()
    out = model(batch)
    assert isinstance(out, dict) and ("logits" in out or "probs" in out), f"{name}: forward must return a dict with logits"
    key = "logits" if "logits" in out else "probs"
    assert tuple(out[key].shape) == (4, len(AUS)), f"{name}: {key} shape {tuple(out[key].shape)} != (4, {len(AUS)})"
    if "logits" in out:
        out["logits"].float().sum().backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert grads and any(g is not None and g.abs().sum() > 0 for g in grads), f"{name}: no gradient reached it"
    model.eval()
    with torch.no_grad():
        ref = model(batch)[key]
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        buf.seek(0)
        torch.manual_seed(1)
        clone = factory(au_set=AUS, stats=toy_stats(AUS), **params)
        clone.load_state_dict(torch.load(buf, weights_only=True))
        clone.eval()
        torch.testing.assert_close(clone(batch)[key], ref, msg=f"{name}: save/load round trip changed outputs")
        # AU order: outputs for a sub-batch equal the matching rows of the full batch
        sub = {k: v[:2] for k, v in batch.items()}
        torch.testing.assert_close(model(sub)[key], ref[:2], rtol=1e-4, atol=1e-4)
    return model


def check_loss(name: str, registry: Registry | None = None, outputs: dict[str, Any] | None = None, **params: Any) -> float:
    """Call loss ``name`` on a toy batch: finite scalar with gradients, and masked labels change nothing."""
    import torch

    from aubench.specs import resolve_factory

    loss = resolve_factory(_registry(registry).get("loss", name).factory)(**params)
    batch = toy_batch()
    logits = torch.randn(4, len(AUS), requires_grad=True)
    outs = outputs or {"logits": logits}
    value, terms = loss(outs, batch, toy_stats(AUS))
    assert value.ndim == 0 and torch.isfinite(value), f"{name}: loss must be a finite scalar"
    assert isinstance(terms, dict)
    value.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0, f"{name}: no gradient w.r.t. logits"
    flipped = dict(batch, labels=torch.where(batch["mask"], batch["labels"], 1 - batch["labels"]))
    again, _ = loss({"logits": logits.detach()}, flipped, toy_stats(AUS))
    torch.testing.assert_close(again, value.detach(), msg=f"{name}: masked labels changed the loss")
    return float(value.detach())


def check_method(name: str, registry: Registry | None = None, preset: str = "smoke") -> None:
    """Compose the method's ``preset`` recipe, build its model and losses, run one training step."""
    import torch
    from omegaconf import OmegaConf

    from aubench.build import build_losses, build_model
    from aubench.config import compose

    reg = _registry(registry)
    cfg = compose(name, [f"preset={preset}"], registry=reg)
    model = build_model(cfg, reg, AUS, toy_stats(AUS))
    size = (OmegaConf.select(cfg, "input.size") or 64)
    batch = toy_batch(size=size)
    model.train()
    outputs = model(batch)
    total = sum(w * fn(outputs, batch, toy_stats(AUS))[0] for _, w, fn in build_losses(cfg, reg))
    assert torch.isfinite(total), f"{name}: non-finite loss on a toy batch"
    total.backward()
