"""A conformance suite for plugins: registering a component enrols it here.

Use it from a plugin's own tests, with one import::

    import pytest
    from aubench.testing import conformance_cases

    @pytest.mark.parametrize("case", conformance_cases("my-plugin"), ids=str)
    def test_conformance(case):
        case.run()

or call the checks one by one: :func:`check_model`, :func:`check_loss`, :func:`check_method`,
:func:`check_dataset`, :func:`check_protocol`. A failing check raises :class:`ConformanceError`
naming the component, its plugin, the check and what to do.
"""
from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aubench.conformance import ConformanceError, _Checker, _registry, check_dataset, check_protocol

if TYPE_CHECKING:
    from aubench.registry import Registry

__all__ = ["AUS", "ConformanceError", "Case", "toy_batch", "toy_stats", "check_model", "check_loss", "check_method",
           "check_dataset", "check_protocol", "conformance_cases", "check_plugin"]

AUS = (1, 2, 4, 6, 12)
KINDS = ("model", "loss", "method", "dataset", "protocol")


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


def _smoke_recipe(reg: Registry, kind: str, name: str) -> tuple[dict[str, Any], int]:
    """The parameters a method's smoke recipe gives this model (or loss), and its input size."""
    from omegaconf import OmegaConf

    from aubench.config import compose

    for method in reg.names("method"):
        cfg = compose(method, ["preset=smoke"], registry=reg)
        items = cfg.loss if kind == "loss" and OmegaConf.is_list(cfg.loss) else [cfg[kind]]
        for item in items:
            if item.name == name:
                params = {k: v for k, v in OmegaConf.to_container(item, resolve=True).items()
                          if k not in ("name", "weight")}
                return params, int(OmegaConf.select(cfg, "input.size") or 64)
    return {}, 64


def _model_output(out: Any, c: _Checker, n: int) -> tuple[str, Any]:
    import torch

    c.require(isinstance(out, dict) and ("logits" in out or "probs" in out), "outputs",
              f"forward returned {type(out).__name__}" + (f" with keys {sorted(out)}" if isinstance(out, dict) else ""),
              "return a dict with 'logits' (or 'probs') of shape [batch, len(au_set)]")
    key = "logits" if "logits" in out else "probs"
    value = out[key]
    c.require(isinstance(value, torch.Tensor) and tuple(value.shape) == (n, len(AUS)), "output shape",
              f"{key} has shape {tuple(getattr(value, 'shape', ()))}, expected ({n}, {len(AUS)})",
              "return one column per AU of au_set, in that order (squeeze extra dimensions)")
    c.require(value.is_floating_point() and bool(torch.isfinite(value).all()), "finite float output",
              f"{key} is {value.dtype} with {int((~torch.isfinite(value.float())).sum())} non-finite values",
              "return finite floating-point scores")
    if key == "probs":
        c.require(bool(((value >= 0) & (value <= 1)).all()), "probabilities in [0, 1]", "probs outside [0, 1]",
                  "return logits, or probabilities in [0, 1]")
    return key, value


def check_model(name: str, registry: Registry | None = None, size: int | None = None, **params: Any) -> Any:
    """Build model ``name`` (with ``params``, default: a smoke recipe's) and check its contract: a dict
    with ``logits``/``probs`` ``[B, K]`` finite floats, gradients through that output, rows independent
    of the batch, a save/load round trip that keeps outputs, and an AU set of any order and size."""
    import io

    import torch

    from aubench.specs import resolve_factory

    reg = _registry(registry)
    c = _Checker("model", name, reg)
    spec = reg.get("model", name)
    if not params:
        params, recipe_size = _smoke_recipe(reg, "model", name)
        size = size or recipe_size
    size = size or 64
    context = {"seed": 0, "fold": "1", "run_dir": Path(tempfile.gettempdir())}
    given = {k: context.get(k) for k in spec.context}  # no training data: untrained frozen parts
    factory = c.call("import", lambda: resolve_factory(spec.factory), "fix the factory string of its ModelSpec")

    def build(aus: tuple[int, ...] = AUS, seed: int = 0) -> Any:
        torch.manual_seed(seed)
        return c.call("build", lambda: factory(au_set=aus, stats=toy_stats(aus), **given, **params),
                      "the factory is called as factory(au_set=..., stats=..., **recipe parameters)")

    model = build()
    if getattr(model, "vector_input", False):
        return model  # reads batch["x"]: checked through its method's cells
    batch = toy_batch(size=size)
    model.train()
    key, value = _model_output(c.call("forward", lambda: model(batch), "forward(batch) must accept the "
                                      "engine's batch dict (image, labels, mask, landmarks, parsing)"), c, 4)
    value.float().sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    c.require(grads and any(g is not None and g.abs().sum() > 0 for g in grads), f"gradient through {key}",
              "no trainable parameter received a gradient", f"compute {key} from trainable parameters (no detach)")
    model.eval()
    with torch.no_grad():
        key, ref = _model_output(model(batch), c, 4)  # eval mode may return another output (probs)
        sub = {k: v[:2] for k, v in batch.items()}
        c.require(getattr(model, "stochastic_inference", False) or torch.allclose(
                  model.eval()(sub)[key], ref[:2], rtol=1e-4, atol=1e-4), "rows independent of the batch",
                  "a frame's eval-mode output changed with the other frames of its batch",
                  "do not mix frames in eval mode (batch statistics, cross-frame attention)")
        model.eval()  # a stochastic model restarts its seeded inference draws here
        ref = model(batch)[key]
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        buf.seek(0)
        clone = build(seed=1)
        clone.load_state_dict(torch.load(buf, weights_only=True))
        clone.eval()
        c.require(torch.allclose(clone(batch)[key], ref, rtol=1e-5, atol=1e-5), "save/load round trip",
                  "a model rebuilt from its state_dict predicts differently",
                  "keep every learned or random quantity in parameters or buffers")
        other = (12, 6, 4, 2, 1, 17)  # another order and size
        torch.manual_seed(0)
        shape = tuple(factory(au_set=other, stats=toy_stats(other), **given, **params).eval()(batch)[key].shape)
        c.require(shape == (4, len(other)), "any AU set", f"au_set={other} gave {key} of shape {shape}",
                  "size the head by len(au_set); never assume a dataset's AUs")
    _check_gpu_path(c, model, batch)
    return model


def _check_gpu_path(c: _Checker, model: Any, batch: dict[str, Any]) -> None:
    """What the engine does on CUDA, checked on the CPU: channels_last weights and images, forward and
    backward under bf16 autocast (so mixed float32/bfloat16 tensors meet in the model's own code, as
    on a GPU), then an evaluation forward under inference mode; outputs shaped and finite as in float32."""
    import torch

    model.to(memory_format=torch.channels_last)
    b = {k: v.contiguous(memory_format=torch.channels_last) if k == "image" and v.ndim == 4 else v
         for k, v in batch.items()}
    hint = ("make every op accept bfloat16 inputs mixed with float32 ones (e.g. cast before scatter, index_put, "
            "cat or where; create new tensors with the dtype of the tensor they combine with)")
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, value = _model_output(c.call("bf16 autocast forward", lambda: model(b), hint), c, 4)
    c.call("bf16 autocast backward", lambda: value.float().sum().backward(), hint)
    model.eval()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        _model_output(c.call("bf16 autocast evaluation", lambda: model(b), hint), c, 4)  # finite, shaped


def check_loss(name: str, registry: Registry | None = None, outputs: dict[str, Any] | None = None,
               **params: Any) -> float:
    """Call loss ``name`` on a toy batch through the output it reads first (``LossSpec.reads``: ``logits``
    or ``probs``; ``outputs``: values for any other keys it reads): ``(finite scalar, dict of floats)``,
    gradients, masked labels change nothing, a fully masked AU gets no gradient, and confidently wrong
    scores (±30 logits, probabilities of 1e-7) stay finite."""
    import torch

    from aubench.specs import resolve_factory

    reg = _registry(registry)
    c = _Checker("loss", name, reg)
    spec = reg.get("loss", name)
    key = spec.reads[0] if spec.reads else "logits"
    if not params:
        params = _smoke_recipe(reg, "loss", name)[0]
    loss = c.call("build", lambda: resolve_factory(spec.factory)(**params),
                  "the factory is called with the recipe's loss parameters")
    batch, stats = toy_batch(), toy_stats(AUS)
    outputs = dict(outputs or {})

    def scores(raw: Any) -> Any:
        return (torch.sigmoid(raw) if key == "probs" else raw).detach().requires_grad_(True)

    def run(score: Any, b: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        got = c.call("call", lambda: loss({**outputs, key: score}, b, stats),
                     f"loss(outputs, batch, stats) reads outputs[{key!r}] (LossSpec.reads; pass outputs=... for "
                     "the other keys it reads)")
        c.require(isinstance(got, tuple) and len(got) == 2, "returns (value, terms)", f"returned {type(got).__name__}",
                  "return (scalar tensor, dict of floats), e.g. `return value, {'bce': float(value.detach())}`")
        value, terms = got
        c.require(isinstance(value, torch.Tensor) and value.ndim == 0 and value.is_floating_point(), "scalar value",
                  f"value is {type(value).__name__} {tuple(getattr(value, 'shape', ()))}", "reduce to a 0-d float tensor")
        c.require(isinstance(terms, dict) and all(isinstance(v, (float, int)) for v in terms.values()), "float terms",
                  f"terms are {terms!r:.80}", "log detached Python floats: float(term.detach())")
        return value, terms

    score = scores(torch.randn(4, len(AUS), generator=torch.Generator().manual_seed(0)))
    value, _ = run(score, batch)
    c.require(bool(torch.isfinite(value)), "finite value", f"value {float(value.detach())}", "keep the loss finite")
    value.backward()
    c.require(score.grad is not None and score.grad.abs().sum() > 0, "gradient", f"no gradient reached {key}",
              f"compute the loss from outputs[{key!r}] without detaching")
    flipped = dict(batch, labels=torch.where(batch["mask"], batch["labels"], 1 - batch["labels"]))
    again, _ = run(score.detach(), flipped)
    c.require(torch.allclose(again, value.detach()), "masked labels ignored",
              "changing labels where mask is False changed the loss", "weight every term by batch['mask']")
    hole = dict(batch, mask=batch["mask"].clone())
    hole["mask"][:, 0] = False
    score = scores(torch.randn(4, len(AUS), generator=torch.Generator().manual_seed(1)))
    value, _ = run(score, hole)
    value.backward()
    c.require(bool(torch.isfinite(value)) and float(score.grad[:, 0].abs().sum()) == 0, "fully masked AU",
              "an AU with no labelled frame in the batch got a gradient or made the loss non-finite",
              "average per AU over valid entries only, and guard divisions by zero")
    wrong = 1 - batch["labels"]  # confidently wrong everywhere
    saturated = (wrong * (1 - 2e-7) + 1e-7 if key == "probs" else 30.0 * (2 * wrong - 1)).requires_grad_(True)
    value, _ = run(saturated, batch)
    value.backward()
    c.require(bool(torch.isfinite(value)) and bool(torch.isfinite(saturated.grad).all()), "saturated scores",
              f"confidently wrong {key} gave value {float(value.detach())}",
              "use log-sigmoid / BCE-with-logits forms (or clamp probabilities), not log(sigmoid(x))")
    return float(value.detach())


def check_method(name: str, registry: Registry | None = None, preset: str = "smoke", protocol: str | None = None,
                 runs_dir: Path | None = None) -> None:
    """The method's ``preset`` recipe builds and one optimiser step changes its weights; its ``paper`` preset
    composes with valid losses. With ``protocol``, one cell runs (first fold, one epoch), its checkpoint is
    evaluated again to the same F1, and evaluating it on the protocol with its AUs reversed is refused."""
    import torch
    from omegaconf import OmegaConf

    from aubench.build import build_losses, build_model, build_optimizer
    from aubench.config import compose

    reg = _registry(registry)
    c = _Checker("method", name, reg)
    cfg = c.call(f"{preset} recipe", lambda: compose(name, [f"preset={preset}"], registry=reg), "fix the recipe")
    c.call("paper recipe", lambda: build_losses(compose(name, ["preset=paper"], registry=reg), reg),
           "every method has a paper preset with valid losses")
    model = c.call("build", lambda: build_model(cfg, reg, AUS, toy_stats(AUS), {"seed": 0, "fold": "1",
                                                                              "run_dir": Path(tempfile.gettempdir())}),
                   "fix the recipe's model section")
    if not getattr(model, "vector_input", False):
        batch = toy_batch(size=int(OmegaConf.select(cfg, "input.size") or 64))
        model.train()
        before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
        opt = build_optimizer([p for p in model.parameters() if p.requires_grad], OmegaConf.to_container(cfg.optim))
        outputs = model(batch)
        total = sum(w * fn(outputs, batch, toy_stats(AUS))[0] for _, w, fn in build_losses(cfg, reg))
        c.require(bool(torch.isfinite(total)), "finite loss on a toy batch", f"loss {float(total.detach())}",
                  "check the loss and the model's initialisation")
        total.backward()
        opt.step()
        after = [p.detach() for p in model.parameters() if p.requires_grad]
        c.require(any(not torch.equal(a, b) for a, b in zip(before, after)), "one step trains",
                  "no weight changed after an optimiser step", "make the trained parameters require gradients")
    if protocol is not None:
        _check_cell(c, reg, name, preset, protocol, runs_dir)


def _check_cell(c: _Checker, reg: Registry, name: str, preset: str, protocol: str, runs_dir: Path | None) -> None:
    from dataclasses import replace

    from aubench.cells import plan_cells
    from aubench.engine import run_cell
    from aubench.errors import CheckpointError
    from aubench.evaluation import evaluate_checkpoint
    from aubench.hub import HubCheckpoint

    proto = reg.get("protocol", protocol)
    runs = Path(runs_dir or tempfile.mkdtemp(prefix="aubench-conformance-"))
    cell = plan_cells(reg, name, proto.id, folds=[proto.folds[0].name], overrides=[f"preset={preset}", "epochs=1"],
                      runs_dir=runs)[0]
    record = c.call("runs a cell", lambda: run_cell(cell, reg, overwrite=True, progress=False), "see the error")
    again = c.call("checkpoint round trip", lambda: evaluate_checkpoint(
        HubCheckpoint(cell.run_dir, str(cell.run_dir)), reg, proto.id, cell.fold.name, runs / "again",
        overwrite=True, progress=False), "the saved weights must rebuild the model")
    c.require(abs(again.f1_avg - record.f1_avg) < 1e-6, "checkpoint round trip",
              f"F1 {record.f1_avg:.4f} when trained, {again.f1_avg:.4f} from the saved weights",
              "keep every learned or random quantity in parameters or buffers")
    reversed_aus = tuple(reversed(proto.train_aus or proto.eval_aus))
    permuted = replace(proto, name=f"{proto.name}-reversed", eval_aus=tuple(reversed(proto.eval_aus)),
                       train_aus=reversed_aus if proto.train_aus else None)
    reg.specs["protocol"][permuted.id], reg.owners["protocol"][permuted.id] = permuted, c.plugin
    try:
        evaluate_checkpoint(HubCheckpoint(cell.run_dir, str(cell.run_dir)), reg, permuted.id, cell.fold.name,
                            runs / "reversed", overwrite=True, progress=False)
        refused = False
    except CheckpointError:
        refused = True
    finally:
        del reg.specs["protocol"][permuted.id], reg.owners["protocol"][permuted.id]
    c.require(refused, "AU order checked", "its weights were accepted for the same AUs in reversed order",
              "save the weights with aubench's checkpoint metadata (the engine does; do not bypass it)")


@dataclass(frozen=True)
class Case:
    """One conformance check of one component (``str`` gives ``kind:name``, for pytest ids)."""

    kind: str
    name: str
    registry: Registry | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"

    def run(self) -> Any:
        return {"model": check_model, "loss": check_loss, "method": check_method, "dataset": check_dataset,
                "protocol": check_protocol}[self.kind](self.name, self.registry)


def conformance_cases(plugin: str | None = None, registry: Registry | None = None,
                      kinds: Iterable[str] = KINDS) -> list[Case]:
    """A :class:`Case` per component ``plugin`` registered (every plugin's when ``None``)."""
    reg = _registry(registry)
    return [Case(kind, key, registry) for kind in kinds for key in sorted(reg.specs[kind])
            if plugin is None or reg.owners[kind][key] == plugin]


def check_plugin(plugin: str, registry: Registry | None = None, kinds: Iterable[str] = KINDS) -> int:
    """Run every conformance case of ``plugin``; return how many ran (at least one, or the plugin is unknown)."""
    cases = conformance_cases(plugin, registry, kinds)
    if not cases:
        from aubench.errors import UnknownNameError

        raise UnknownNameError("plugin", plugin, [p.name for p in _registry(registry).plugins()])
    for case in cases:
        case.run()
    return len(cases)
