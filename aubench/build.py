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

__all__ = ["CELL_CONTEXT", "OPTIMIZERS", "SCHEDULERS", "build_model", "build_losses", "build_optimizer", "build_optimizers",
           "build_scheduler"]

#: Optimiser names a recipe's ``optim.name`` may use.
OPTIMIZERS = ("adamw", "adam", "sgd")
#: Scheduler names a recipe's ``sched.name`` may use (all stepped once per epoch).
SCHEDULERS = ("none", "step", "exponential", "cosine")


def _params(node: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return dict(OmegaConf.to_container(node, resolve=True)) if OmegaConf.is_config(node) else dict(node)


#: what a model factory may ask for in ``ModelSpec.context``
CELL_CONTEXT = ("seed", "fold", "run_dir")


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
    try:
        return classes[name](params, **optim)
    except TypeError as exc:
        raise ConfigError(f"optim.name={name}: {exc}; see `aubench show <method>` for the recipe's optim") from exc


def build_scheduler(opt: torch.optim.Optimizer, sched: Mapping[str, Any] | None) -> Any:
    """A per-epoch learning-rate schedule named in a recipe (:data:`SCHEDULERS`), or ``None``.

    A cosine schedule's horizon ``t_max`` defaults to ``epochs`` when the caller passes it in
    ``sched`` (the engine does): ``epochs`` is the one source of truth for the training length.
    """
    import torch

    sched = dict(sched or {"name": "none"})
    name = sched.pop("name", "none")
    if name == "none":
        return None
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=int(sched["step_size"]), gamma=float(sched["gamma"]))
    if name == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(opt, gamma=float(sched["gamma"]))
    if name == "cosine":
        horizon = sched.get("t_max") if sched.get("t_max") is not None else sched.get("epochs")
        if horizon is None:
            raise ConfigError("sched.name=cosine needs sched.t_max or the recipe's epochs")
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=int(horizon))
    raise UnknownNameError("scheduler", name, SCHEDULERS)


def build_optimizers(model: torch.nn.Module, cfg: DictConfig, steps_per_epoch: int,
                     epochs: int) -> list[dict[str, Any]]:
    """The cell's optimisers: the model's own ``configure_optimizers``, else one over its parameters.

    Each entry is ``{"optimizer", "scheduler" (or None), "start_epoch" (0-based)}``; an optimiser is
    not stepped before its ``start_epoch``. ``sched`` is passed with ``epochs`` filled in.
    """
    optim = _params(cfg.optim)
    sched = {**_params(cfg.sched), "epochs": epochs} if cfg.get("sched") else {"name": "none"}
    if hasattr(model, "configure_optimizers"):
        return list(model.configure_optimizers(optim, sched, steps_per_epoch, epochs))
    groups = model.param_groups(optim) if hasattr(model, "param_groups") else [
        p for p in model.parameters() if p.requires_grad]
    opt = build_optimizer(groups, optim)
    return [{"optimizer": opt, "scheduler": build_scheduler(opt, sched), "start_epoch": 0}]
