"""Building a cell's parts from its recipe: model, losses, optimisers, schedulers.

Public: the engine, :mod:`aubench.testing` and plugins (a model's ``configure_optimizers``) build
through these functions, so a recipe means the same thing wherever it is read.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aubench.errors import ConfigError, UnknownNameError
from aubench.specs import resolve_factory

if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig

    from aubench.registry import Registry
    from aubench.stats import TrainStats

__all__ = ["CELL_CONTEXT", "OPTIMIZERS", "SCHEDULERS", "build_model", "model_inputs", "build_losses", "build_optimizer",
           "build_optimizers", "build_scheduler", "step_optimizers", "end_epoch"]

#: Optimiser names a recipe's ``optim.name`` may use.
OPTIMIZERS = ("adamw", "adam", "sgd")
#: Scheduler names a recipe's ``sched.name`` may use (all stepped once per epoch).
SCHEDULERS = ("none", "step", "exponential", "cosine")


def _params(node: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return dict(OmegaConf.to_container(node, resolve=True)) if OmegaConf.is_config(node) else dict(node)


#: what a model factory may ask for in ``ModelSpec.context``
CELL_CONTEXT = ("seed", "fold", "run_dir", "train_data", "train_subjects")


def model_inputs(cfg: DictConfig, registry: Registry) -> tuple[str, ...]:
    """The batch inputs the recipe's model reads: ``ModelSpec.inputs`` plus what its ``inputs_for`` asks for
    the recipe's model parameters."""
    params = _params(cfg.model)
    spec = registry.get("model", params.pop("name"))
    extra = tuple(resolve_factory(spec.inputs_for)(params)) if spec.inputs_for else ()
    return tuple(dict.fromkeys((*spec.inputs, *extra)))


def build_model(cfg: DictConfig, registry: Registry, au_set: tuple[int, ...], stats: TrainStats,
                context: Mapping[str, Any] | None = None) -> torch.nn.Module:
    """The recipe's model, predicting ``au_set`` in that order (its batch inputs are ``ModelSpec.inputs``).

    ``context`` holds the cell's facts (:data:`CELL_CONTEXT`); the factory gets those its spec lists.
    """
    params = _params(cfg.model)
    name = params.pop("name")
    spec = registry.get("model", name)
    unknown = sorted(set(spec.context) - set(CELL_CONTEXT))
    if unknown:
        raise ConfigError(f"model {name!r} (plugin {registry.owner('model', name)!r}) asks for cell context {unknown}; "
                          f"a model may ask for {list(CELL_CONTEXT)}")
    given = {key: (context or {}).get(key) for key in spec.context}
    try:
        model = resolve_factory(spec.factory)(au_set=au_set, stats=stats, **given, **params)
    except TypeError as exc:
        raise ConfigError(f"model {name!r} (plugin {registry.owner('model', name)!r}) rejected its parameters "
                          f"{params}: {exc}") from exc
    return model


def build_losses(cfg: DictConfig, registry: Registry) -> list[tuple[str, float, Any]]:
    """The recipe's ``loss`` (one entry or a list) as ``(name, weight, loss)`` triples."""
    from omegaconf import OmegaConf

    items = cfg.loss if OmegaConf.is_list(cfg.loss) else [cfg.loss]
    losses = []
    for item in items:
        params = _params(item)
        name = params.pop("name")
        weight = float(params.pop("weight", 1.0))
        spec = registry.get("loss", name)
        try:
            losses.append((name, weight, resolve_factory(spec.factory)(**params)))
        except TypeError as exc:
            raise ConfigError(f"loss {name!r} (plugin {registry.owner('loss', name)!r}) rejected its parameters "
                              f"{params}: {exc}") from exc
    return losses


def build_optimizer(params: Any, optim: Mapping[str, Any]) -> torch.optim.Optimizer:
    """One optimiser named by ``optim["name"]`` (:data:`OPTIMIZERS`) with the rest as its arguments."""
    import torch

    optim = dict(optim)
    name = str(optim.pop("name", "adamw")).lower()
    classes = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}
    if name not in classes:
        raise UnknownNameError("optimiser", name, OPTIMIZERS)
    if "betas" in optim:
        optim["betas"] = tuple(optim["betas"])
    if "foreach" not in optim and "fused" not in optim:
        # torch picks the per-tensor loop on the CPU; the multi-tensor one gives bitwise the same weights
        # there (tests/aubench/test_speed_paths.py) and saves ~0.6 ms per step of a SmokeCNN
        optim["foreach"] = True
    try:
        return classes[name](params, **optim)
    except TypeError as exc:
        raise ConfigError(f"optim.name={name}: {exc}; see `aubench show <method>` for the recipe's optim") from exc


def build_scheduler(opt: torch.optim.Optimizer, sched: Mapping[str, Any] | None, steps_per_epoch: int = 1) -> Any:
    """A learning-rate schedule named in a recipe (:data:`SCHEDULERS`), or ``None``.

    ``sched.interval``: ``epoch`` (default: stepped after each epoch) or ``step`` (after each optimiser
    step). ``warmup_steps`` / ``warmup_epochs``: a linear warm-up from ``lr / warmup`` to ``lr`` first
    (steps need ``interval: step``). A cosine schedule's horizon ``t_max`` (in epochs) defaults to
    ``epochs`` when the caller passes it in ``sched`` (the engine does): ``epochs`` is the one source of
    truth for the training length; with warm-up the cosine covers what remains after it. The returned
    scheduler's ``interval`` attribute says when the engine steps it.
    """
    import math

    import torch

    sched = dict(sched or {"name": "none"})
    name, interval = sched.pop("name", "none"), sched.pop("interval", "epoch")
    warm_steps, warm_epochs = int(sched.pop("warmup_steps", 0) or 0), float(sched.pop("warmup_epochs", 0) or 0)
    if interval not in ("epoch", "step"):
        raise ConfigError(f"sched.interval={interval!r}; use 'epoch' or 'step'")
    if warm_steps and interval != "step":
        raise ConfigError("sched.warmup_steps needs sched.interval=step (or use sched.warmup_epochs)")
    if name not in SCHEDULERS:
        raise UnknownNameError("scheduler", name, SCHEDULERS)
    per = steps_per_epoch if interval == "step" else 1
    warmup = warm_steps + round(warm_epochs * per)
    horizon = sched.get("t_max") if sched.get("t_max") is not None else sched.get("epochs")
    if name == "cosine" and horizon is None:
        raise ConfigError("sched.name=cosine needs sched.t_max or the recipe's epochs")
    if name == "none" and not warmup:
        return None
    if interval == "epoch" and not warmup:  # torch's own schedulers (their state resumes exactly)
        if name == "step":
            out = torch.optim.lr_scheduler.StepLR(opt, step_size=int(sched["step_size"]), gamma=float(sched["gamma"]))
        elif name == "exponential":
            out = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=float(sched["gamma"]))
        else:
            out = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=int(horizon))
    else:
        span = max(1, int(horizon or 1) * per - warmup)

        def factor(t: int) -> float:
            if t < warmup:
                return (t + 1) / warmup
            t -= warmup
            if name == "cosine":
                return 0.5 * (1 + math.cos(math.pi * min(t, span) / span))
            if name == "exponential":
                return float(sched["gamma"]) ** (t / per)
            if name == "step":
                return float(sched["gamma"]) ** ((t // per) // int(sched["step_size"]))
            return 1.0

        out = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    out.interval = interval
    return out


def _active(o: Mapping[str, Any], epoch: int) -> bool:
    """An optimiser entry steps from ``start_epoch`` (0-based, default 0) until before ``end_epoch``."""
    end = o.get("end_epoch")
    return int(o.get("start_epoch", 0)) <= epoch < (int(end) if end is not None else epoch + 1)


def step_optimizers(opts: list[dict[str, Any]], epoch: int) -> None:
    """After ``backward``: step every active optimiser, and the schedulers stepped per step."""
    for o in opts:
        if _active(o, epoch):
            o["optimizer"].step()
            if o.get("scheduler") is not None and getattr(o["scheduler"], "interval", "epoch") == "step":
                o["scheduler"].step()


def end_epoch(opts: list[dict[str, Any]], epoch: int) -> dict[str, float]:
    """Step the per-epoch schedulers of the optimisers active this epoch; return every optimiser's learning
    rate (``lr`` for the first, ``lr/<i>`` for the others) at the end of the epoch, before that step (the
    rate the epoch trained with, for per-epoch schedules)."""
    rates = {("lr" if i == 0 else f"lr/{i}"): float(o["optimizer"].param_groups[0]["lr"]) for i, o in enumerate(opts)}
    for o in opts:
        if o.get("scheduler") is not None and getattr(o["scheduler"], "interval", "epoch") == "epoch" and _active(o, epoch):
            o["scheduler"].step()
    return rates


def build_optimizers(model: torch.nn.Module, cfg: DictConfig, steps_per_epoch: int,
                     epochs: int) -> list[dict[str, Any]]:
    """The cell's optimisers: the model's own ``configure_optimizers``, else one over its parameters.

    Each entry is ``{"optimizer", "scheduler" (or None), "start_epoch" (0-based), "end_epoch" (optional,
    exclusive)}``; an optimiser is stepped only in epochs ``start_epoch <= epoch < end_epoch`` (phases:
    stage switches, freezing). ``sched`` is passed with ``epochs`` filled in.
    """
    optim = _params(cfg.optim)
    sched = {**_params(cfg.sched), "epochs": epochs} if cfg.get("sched") else {"name": "none"}
    if hasattr(model, "configure_optimizers"):
        return list(model.configure_optimizers(optim, sched, steps_per_epoch, epochs))
    groups = model.param_groups(optim) if hasattr(model, "param_groups") else [
        p for p in model.parameters() if p.requires_grad]
    opt = build_optimizer(groups, optim)
    return [{"optimizer": opt, "scheduler": build_scheduler(opt, sched, steps_per_epoch), "start_epoch": 0}]
