"""Composing a cell's recipe: aubench's defaults + method recipe + preset + per-dataset values + overrides.

Resolution order (later wins): ``conf/aubench.yaml`` (engine, init, selection, postprocess defaults),
the method's recipe with its ``defaults`` (base recipes, merged in order; a child's list replaces a
base's mapping, ``_delete_: [key, ...]`` removes base keys), ``presets.<preset>`` of that recipe,
the preset's ``datasets.<training dataset>`` values, then the user's overrides (``optim.lr=1e-4``),
parsed with Hydra's override grammar (``+key=v`` adds, ``~key`` deletes). A misspelt key fails with
"did you mean" suggestions from the recipe's keys; a value left ``???`` must be given.

``preset=auto`` (the default) picks, for the protocol's training dataset: the preset the recipe's
``dataset_presets`` names for it (e.g. ``{disfa: paper-disfa}``), else ``smoke`` on synthetic data
and ``paper`` on real data.
"""
from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aubench.errors import ConfigError, UnknownNameError, did_you_mean

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from aubench.registry import Registry

__all__ = ["compose", "load_recipe", "config_hash", "PRESETS", "RESULT_NEUTRAL"]

PRESETS = ("paper", "smoke")
# keys of the primary config that select *which* cell runs rather than *how* it trains
CELL_KEYS = ("protocol", "fold", "seed", "runs_dir", "overwrite", "preset")
#: options that cannot change a result: they neither fork a recipe variant (run folder, leaderboard row)
#: nor enter the recipe hash. Every other key does, engine options included (device, amp, compile,
#: channels_last, cache_features: float16 features, eval_batch_size: batched floating-point order).
RESULT_NEUTRAL = ("engine.threads", "engine.num_workers", "engine.feature_store")


def _flat_keys(cfg: Any, prefix: str = "") -> list[str]:
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=False)  # values left ??? are keys too
    keys = []
    for k, v in cfg.items():
        full = f"{prefix}{k}"
        keys.append(full)
        if isinstance(v, dict):
            keys.extend(_flat_keys(v, full + "."))
    return keys


def _merge(base: Any, child: Any) -> Any:
    """Merge plain containers, ``child`` winning: mappings merge key by key; anything else (a list, or a
    mapping replacing a list and vice versa) replaces. A child's ``_delete_: [dotted.key, ...]`` removes
    keys of the base first."""
    if not (isinstance(base, dict) and isinstance(child, dict)):
        return copy.deepcopy(child)
    out = copy.deepcopy(base)
    for key in child.get("_delete_", []) or []:
        parent, _, leaf = str(key).rpartition(".")
        node = out
        for part in parent.split(".") if parent else []:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or leaf not in node:
            raise ConfigError(f"_delete_ names {key!r}, which the base recipe does not have"
                              + did_you_mean(str(key), _flat_keys(out)))
        del node[leaf]
    for key, value in child.items():
        if key != "_delete_":
            out[key] = _merge(out[key], value) if key in out else copy.deepcopy(value)
    return out


def _recipe_file(registry: Registry, ref: str, group: str, source: Path) -> Path:
    rel = ref[1:] if ref.startswith("/") else f"{group}/{ref}" if group else ref
    for root in registry.search_paths:
        if (root / f"{rel}.yaml").is_file():
            return root / f"{rel}.yaml"
    raise ConfigError(f"{source}: its defaults name {ref!r}, but no config search path holds {rel}.yaml "
                      f"({', '.join(str(r) for r in registry.search_paths)})")


_PARSED: dict[tuple[str, int, int], dict[str, Any]] = {}  # recipe files parsed once per process (a plan reads each often)


def load_recipe(path: Path, registry: Registry, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A recipe file with its ``defaults`` (``/group/name`` or ``name`` in the file's own group, and
    ``_self_``, implicitly last) merged in order, as plain containers (interpolations unresolved)."""
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if path in _seen:
        raise ConfigError(f"recipe defaults form a circle: {' -> '.join(map(str, (*_seen, path)))}")
    try:
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)  # an edited file is read again
        if key not in _PARSED:
            _PARSED[key] = OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}
        raw = copy.deepcopy(_PARSED[key])
    except (OmegaConfBaseException, OSError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"recipe {path} is not valid YAML or cannot be read: {str(exc).strip()}") from None
    defaults = raw.pop("defaults", None) or []
    if "_self_" not in defaults:
        defaults = [*defaults, "_self_"]
    group = path.parent.name if path.parent.name in ("method", "recipe") else ""
    out: dict[str, Any] = {}
    for entry in defaults:
        if entry == "_self_":
            out = _merge(out, raw)
            continue
        if isinstance(entry, dict) and len(entry) == 1:
            entry = "/" + "/".join(map(str, next(iter(entry.items()))))
        if not isinstance(entry, str) or entry.startswith("override "):
            raise ConfigError(f"recipe {path}: defaults entry {entry!r}; use '/group/name', 'name' or '_self_'")
        out = _merge(out, load_recipe(_recipe_file(registry, entry, group, path), registry, (*_seen, path)))
    return out


def compose(method: str, overrides: Sequence[str] = (), *, registry: Registry, dataset: str | None = None,
            protocol: str | None = None) -> DictConfig:
    """Return the resolved recipe (``DictConfig``) for ``method`` with ``overrides`` applied.

    ``dataset`` is the training dataset ``preset=auto`` resolves for (none: a synthetic one), and with
    ``protocol`` (``name@version``) picks the preset's ``datasets`` and ``protocols`` values.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf import OmegaConf, open_dict

    spec = registry.get("method", method)
    overrides = list(overrides)
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        raise ConfigError(f"Cannot parse overrides {overrides}: {exc}") from exc
    for ov in parsed:
        if ov.key_or_group == "method":
            raise ConfigError("Choose the method with the positional argument, not `method=` in overrides.")
    where = registry.method_config_path(spec)
    if "@package _global_" not in where.read_text(encoding="utf-8").split("\n", 1)[0]:
        raise ConfigError(f"recipe {where} does not start with `# @package _global_`, so Hydra nests its keys "
                          "under `method` where aubench does not read them; add that line at the top of the file")
    primary = load_recipe(registry.search_paths[0] / "aubench.yaml", registry)
    base = OmegaConf.create(_merge(primary, load_recipe(where, registry)))  # the recipe's keys win
    preset = base.preset
    for ov in parsed:
        if ov.is_sweep_override():
            raise ConfigError(f"{ov.input_line!r} is a sweep; run sweeps with `aubench sweep` (Hydra multirun).")
        if ov.key_or_group == "preset":
            preset = ov.value()
    with open_dict(base):
        presets_node = base.pop("presets", None)
        by_dataset = base.pop("dataset_presets", None) or {}
        explain = OmegaConf.to_container(base.pop("requires", None) or OmegaConf.create({}))  # key -> what to give
    if preset == "auto":
        synthetic = registry.get("dataset", dataset).synthetic if dataset else True
        preset = (by_dataset.get(dataset) if dataset else None) or ("smoke" if synthetic else "paper")
    if presets_node is None:
        raise ConfigError(f"recipe {where} has no `presets` (give at least `presets: {{paper: {{}}, smoke: ...}}`)")
    if preset not in presets_node:
        raise UnknownNameError(f"preset of {method}", str(preset), list(presets_node))
    chosen = OmegaConf.to_container(presets_node[preset]) or {}
    overlays = chosen.pop("datasets", None) or {}  # per-dataset values of this preset, by training dataset
    by_protocol = chosen.pop("protocols", None) or {}  # then per protocol, by name@version or name
    known = {*registry.specs["protocol"], *(key.split("@")[0] for key in registry.specs["protocol"])}
    for key in by_protocol:  # a misspelt protocol would silently never apply
        if key not in known:
            raise ConfigError(f"recipe {where} (preset {preset}): `protocols` names {key!r}, which is no registered "
                              f"protocol.{did_you_mean(str(key), known)} `aubench list protocols` lists them.")
    merged = _merge(_merge(OmegaConf.to_container(base), chosen), overlays.get(dataset) or {})
    if protocol is not None:
        merged = _merge(merged, by_protocol.get(protocol) or by_protocol.get(protocol.split("@")[0]) or {})
    merged = OmegaConf.create(merged)
    for ov in parsed:  # the user's values win over the preset
        key = ov.key_or_group
        exists = key in _flat_keys(merged)
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
    missing = sorted(OmegaConf.missing_keys(merged))
    if missing:
        raise ConfigError(f"recipe {where} (preset {preset}) requires {missing} (marked ???): set them in a preset "
                          f"or on the command line, e.g. `{missing[0]}=...`"
                          + "".join(f". {key}: {explain[key]}" for key in missing if key in explain))
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
