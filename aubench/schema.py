"""The recipe schema: every key a recipe may set, checked when the recipe is composed.

A misspelt key (``epoch: 2``, ``augment.hlfip``) or a wrong type (``epochs=abc``) would otherwise
train something else than asked without a word. The harness's own sections are listed here; the
keys of ``model`` and of each ``loss`` entry are the parameters of the factory the plugin registered,
and the keys of ``optim`` the arguments of the optimiser it names. A violation raises
:class:`aubench.ConfigError` naming the recipe file, the key, close matches and the valid keys.
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aubench.build import CELL_CONTEXT, OPTIMIZERS, SCHEDULERS
from aubench.errors import ConfigError, PluginError, did_you_mean
from aubench.specs import resolve_factory

if TYPE_CHECKING:
    from aubench.registry import Registry

__all__ = ["HARNESS_KEYS", "SECTIONS", "validate_recipe", "schema_markdown"]

NUMBER = (int, float)
#: top-level keys and their types (a tuple of types, a set of allowed values, or "section")
HARNESS_KEYS: dict[str, Any] = {
    "model": "section", "loss": "section", "optim": "section", "sched": "section", "augment": "section",
    "input": "section", "selection": "section", "postprocess": "section", "init": "section", "engine": "section",
    "clip": "section",
    "epochs": (int,), "batch_size": (int,), "seed": (int,), "protocol": (str, type(None)),
    "fold": (str, int, type(None)), "preset": (str,), "runs_dir": (str,), "overwrite": (bool,),
    "method_name": (str,), "overrides": (list,), "description": (str,),
}
#: the harness's sections: key -> type (tuple of types) or allowed values (set)
SECTIONS: dict[str, dict[str, Any]] = {
    "engine": {"device": (str,), "amp": (bool,), "channels_last": {True, False, "auto"}, "compile": (bool,),
               "num_workers": (int,),
               "eval_batch_size": (int,), "cache_features": {True, False, "auto"}, "threads": (int, type(None)),
               "feature_store": {"memory", "disk"}},
    "clip": {"length": (int,), "stride": (int,)},
    "init": {"checkpoint": (str, type(None)), "strict": (bool,), "from": (dict, type(None)), "rename": (dict, type(None))},
    "selection": {"rule": {"final", "val"}, "val_subjects": (int,)},
    "postprocess": {"name": {"none", "moving_average"}, "window": (int,)},
    "input": {"size": (int, type(None)), "mean": (list,), "std": (list,)},
    "augment": {"hflip": NUMBER, "rotate": NUMBER, "scale": (list,), "shift": NUMBER, "brightness": NUMBER,
                "contrast": NUMBER, "brightness_scale": NUMBER, "saturation": NUMBER, "hue": NUMBER,
                "crop": (int, type(None)), "transform": (str, type(None)), "mixup": NUMBER},
    "sched": {"name": set(SCHEDULERS), "step_size": (int,), "gamma": NUMBER, "t_max": (int, type(None)),
              "interval": {"epoch", "step"}, "warmup_steps": (int,), "warmup_epochs": NUMBER},
}
POSITIVE = ("epochs", "batch_size")


def _fail(source: str, key: str, valid: Any) -> ConfigError:
    valid = sorted(map(str, valid))
    return ConfigError(f"{source}: unknown key {key!r}.{did_you_mean(key.rpartition('.')[2], valid)} "
                       f"Valid keys there: {', '.join(valid)}.")


def _check_value(source: str, key: str, value: Any, rule: Any) -> None:
    if isinstance(rule, set):
        if value not in rule:
            raise ConfigError(f"{source}: {key}={value!r}; use one of {sorted(map(str, rule))}")
    elif not isinstance(value, rule) or (bool not in rule and isinstance(value, bool)):
        names = " or ".join("null" if t is type(None) else t.__name__ for t in rule)
        raise ConfigError(f"{source}: {key}={value!r} must be {names}")


def _parameters(factory: Any, skip: tuple[str, ...], what: str, needs: tuple[str, ...] = ()) -> set[str] | None:
    """The keyword parameters of a factory (None when it takes ``**kwargs``: anything goes); a factory
    that cannot be imported, or lacks a parameter the harness passes (``needs``), is refused naming ``what``."""
    try:
        params = inspect.signature(resolve_factory(factory)).parameters.values()
    except PluginError as exc:
        raise PluginError(f"{what}: {exc}") from None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    missing = [n for n in needs if n not in {p.name for p in params}]
    if missing:
        raise PluginError(f"{what}: its factory {factory!r} takes no {missing}; a model factory is called as "
                          "factory(au_set=..., stats=..., **recipe parameters) (see aubench.ModelSpec)")
    return {p.name for p in params if p.name not in skip and p.kind is not p.VAR_POSITIONAL}


def _check_component(source: str, section: str, node: Mapping[str, Any], kind: str, registry: Registry,
                     extra: tuple[str, ...] = ()) -> None:
    if "name" not in node:
        raise ConfigError(f"{source}: {section} needs a name (see `aubench list {kind}s`)")
    spec = registry.get(kind, str(node["name"]))
    skip = ("self", "au_set", "stats", *CELL_CONTEXT) if kind == "model" else ("self",)
    valid = _parameters(spec.factory, skip, f"{kind} {spec.name!r} of plugin {registry.owner(kind, spec.name)!r}",
                        ("au_set", "stats") if kind == "model" else ())
    if valid is None:
        return
    for key in node:
        if key not in valid | {"name", *extra}:
            raise _fail(f"{source} ({kind} {spec.name!r} of plugin {registry.owner(kind, spec.name)!r})",
                        f"{section}.{key}", valid | {"name", *extra})


def _check_optim(source: str, node: Mapping[str, Any]) -> None:
    import torch

    name = str(node.get("name", "adamw")).lower()
    _check_value(source, "optim.name", name, set(OPTIMIZERS))
    cls = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}[name]
    params = {p: v.default for p, v in inspect.signature(cls).parameters.items() if p != "params"}
    for key, value in node.items():
        if key not in {*params, "name"}:
            raise _fail(f"{source} (optimiser {name})", f"optim.{key}", {*params, "name"})
        default = params.get(key)
        if isinstance(default, (int, float)) and not isinstance(default, bool) and (
                isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(f"{source}: optim.{key}={value!r} must be a number")


def validate_recipe(cfg: Mapping[str, Any], registry: Registry, source: str) -> None:
    """Check a composed recipe (a plain dict) against the schema; raise :class:`ConfigError` at the first problem."""
    for key, value in cfg.items():
        if key not in HARNESS_KEYS:
            raise _fail(source, key, HARNESS_KEYS)
        rule = HARNESS_KEYS[key]
        if rule != "section":
            _check_value(source, key, value, rule)
            if key in POSITIVE and value < 1:
                raise ConfigError(f"{source}: {key}={value} must be at least 1")
    for section, rules in SECTIONS.items():
        node = cfg.get(section)
        if node is None:
            continue
        if not isinstance(node, Mapping):
            raise ConfigError(f"{source}: {section} must be a mapping of keys, not {node!r}")
        for key, value in node.items():
            if key not in rules:
                raise _fail(source, f"{section}.{key}", rules)
            _check_value(source, f"{section}.{key}", value, rules[key])
    _check_component(source, "model", cfg["model"], "model", registry)
    losses = cfg["loss"] if isinstance(cfg["loss"], list) else [cfg["loss"]]
    for i, item in enumerate(losses):
        _check_component(source, f"loss[{i}]" if isinstance(cfg["loss"], list) else "loss", item, "loss", registry,
                         extra=("weight",))
    _check_optim(source, cfg["optim"])


def schema_markdown() -> str:
    """The harness's recipe keys as a Markdown table (CONTRIBUTING's copy is generated from this)."""
    def show(rule: Any) -> str:
        if isinstance(rule, set):
            return "one of " + ", ".join(f"`{v}`" for v in sorted(map(str, rule)))
        return " or ".join("null" if t is type(None) else t.__name__ for t in rule)

    rows = ["| key | type |", "|---|---|"]
    rows += [f"| `{k}` | {'section' if r == 'section' else show(r)} |" for k, r in HARNESS_KEYS.items()]
    rows += [f"| `{s}.{k}` | {show(r)} |" for s, rules in SECTIONS.items() for k, r in rules.items()]
    rows += ["| `model.*` | the model factory's parameters |", "| `loss.*` | the loss factory's parameters, "
             "and `weight` |", f"| `optim.*` | `name` (one of {', '.join(OPTIMIZERS)}) and that optimiser's "
             "arguments |"]
    return "\n".join(rows)
