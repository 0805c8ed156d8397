"""Composing a cell's recipe with Hydra: method config + preset + user overrides.

Resolution order (later wins): the method's base recipe, then ``presets.<preset>`` of that recipe,
then the user's overrides (``optim.lr=1e-4``), parsed with Hydra's override grammar (``+key=v`` adds,
``~key`` deletes). A misspelt key fails with "did you mean" suggestions from the recipe's keys.

``preset=auto`` (the default) picks, for the protocol's training dataset: the preset the recipe's
``dataset_presets`` names for it (e.g. ``{disfa: paper-disfa}``), else ``smoke`` on synthetic data
and ``paper`` on real data.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aubench.errors import ConfigError, UnknownNameError, did_you_mean

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from aubench.registry import Registry

__all__ = ["compose", "config_hash", "PRESETS", "RESULT_NEUTRAL", "searchpath_override"]

PRESETS = ("paper", "smoke")
# keys of the primary config that select *which* cell runs rather than *how* it trains
_MISSING = object()
CELL_KEYS = ("protocol", "fold", "seed", "runs_dir", "overwrite", "preset")
#: options that cannot change a result: they neither fork a recipe variant (run folder, leaderboard row)
#: nor enter the recipe hash. Every other key does, engine options included (device, amp, compile,
#: channels_last, cache_features: float16 features, eval_batch_size: batched floating-point order).
RESULT_NEUTRAL = ("engine.threads", "engine.num_workers")


def searchpath_override(registry: Registry) -> str:
    paths = ",".join(f"file://{p}" for p in registry.search_paths[1:])
    return f"hydra.searchpath=[{paths}]"


def _flat_keys(cfg: Any, prefix: str = "") -> list[str]:
    from omegaconf import DictConfig

    keys = []
    for k, v in cfg.items():
        full = f"{prefix}{k}"
        keys.append(full)
        if isinstance(v, DictConfig):
            keys.extend(_flat_keys(v, full + "."))
    return keys


def compose(method: str, overrides: Sequence[str] = (), *, registry: Registry, dataset: str | None = None) -> DictConfig:
    """Return the resolved recipe (``DictConfig``) for ``method`` with ``overrides`` applied.

    ``dataset`` is the training dataset ``preset=auto`` resolves for (none: a synthetic one).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException

    spec = registry.get("method", method)
    overrides = list(overrides)
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        raise ConfigError(f"Cannot parse overrides {overrides}: {exc}") from exc
    for ov in parsed:
        if ov.key_or_group == "method":
            raise ConfigError("Choose the method with the positional argument, not `method=` in overrides.")
    base_overrides = [f"method={spec.config_name}", searchpath_override(registry)]
    conf_dir = str(registry.search_paths[0])
    gh = GlobalHydra.instance()
    outer = gh.hydra if gh.is_initialized() else None  # inside a Hydra job (`aubench sweep`)
    gh.clear()
    try:
        with initialize_config_dir(config_dir=conf_dir, version_base="1.3", job_name="aubench"):
            base = hydra_compose(config_name="aubench", overrides=base_overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"Cannot compose method {method!r}: {exc}") from exc
    finally:
        if outer is not None:
            GlobalHydra.instance().initialize(outer)

    preset = base.preset
    for ov in parsed:
        if ov.is_sweep_override():
            raise ConfigError(f"{ov.input_line!r} is a sweep; run sweeps with `aubench sweep` (Hydra multirun).")
        if ov.key_or_group == "preset":
            preset = ov.value()
    with open_dict(base):
        presets_node = base.pop("presets", None)
        by_dataset = base.pop("dataset_presets", None) or {}
    if preset == "auto":
        synthetic = registry.get("dataset", dataset).synthetic if dataset else True
        preset = by_dataset.get(dataset) or ("smoke" if synthetic else "paper")
    where = registry.method_config_path(spec)
    if "@package _global_" not in where.read_text(encoding="utf-8").split("\n", 1)[0]:
        raise ConfigError(f"recipe {where} does not start with `# @package _global_`, so Hydra nests its keys "
                          "under `method` where aubench does not read them; add that line at the top of the file")
    if presets_node is None:
        raise ConfigError(f"recipe {where} has no `presets` (give at least `presets: {{paper: {{}}, smoke: ...}}`)")
    if preset not in presets_node:
        raise UnknownNameError(f"preset of {method}", str(preset), list(presets_node))
    OmegaConf.set_struct(base, False)  # a preset may add keys the base recipe does not have
    merged = OmegaConf.merge(base, presets_node[preset])
    for ov in parsed:  # the user's values win over the preset
        key = ov.key_or_group
        exists = OmegaConf.select(merged, key, default=_MISSING) is not _MISSING
        if ov.is_delete():
            if not exists:
                raise ConfigError(f"Cannot delete {key!r}: no such key.{did_you_mean(key, _flat_keys(merged))}")
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(merged, parent) if parent else merged
            node.pop(leaf)
            continue
        if not exists and not ov.is_add():
            raise ConfigError(
                f"Override {ov.input_line!r} names no existing key.{did_you_mean(key, _flat_keys(merged))} "
                f"`aubench show {method}` lists the recipe; prefix a new key with '+' to add it."
            )
        OmegaConf.update(merged, key, ov.value(), merge=False, force_add=True)
    OmegaConf.set_struct(merged, True)
    with open_dict(merged):
        merged.preset = preset
        merged.method_name = spec.name
        merged.overrides = [o for o in overrides if o.split("=")[0].lstrip("+~") not in (*CELL_KEYS, *RESULT_NEUTRAL)]
    OmegaConf.resolve(merged)
    from aubench.schema import validate_recipe

    source = f"recipe {where} (preset {preset}{', overrides ' + ' '.join(overrides) if overrides else ''})"
    validate_recipe(OmegaConf.to_container(merged, resolve=True), registry, source)
    OmegaConf.set_readonly(merged, True)
    return merged


def config_hash(cfg: DictConfig) -> str:
    """Hash of everything that changes training (not which fold/seed/folder), for resume checks."""
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(cfg, resolve=True)
    for key in (*CELL_KEYS, "overrides"):
        data.pop(key, None)
    for key in RESULT_NEUTRAL:
        section, _, leaf = key.partition(".")
        data.get(section, {}).pop(leaf, None)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:10]
