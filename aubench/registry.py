"""Plugin loading and the registry of everything plugins provide.

Environment variables:

``AUBENCH_DISABLE_PLUGIN_AUTOLOAD=1``
    load no entry-point plugins at all (only plugins registered in code).
``AUBENCH_PLUGINS=name1,name2``
    load only these entry points (by entry-point name, e.g. ``baseline``).
``AUBENCH_TRACE_PLUGINS=1``
    print every hook call and its result to stderr.
"""
from __future__ import annotations

import functools
import os
import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pluggy

from aubench import hookspecs
from aubench.errors import DuplicateNameError, PluginError, UnknownNameError, did_you_mean
from aubench.specs import CheckpointSpec, DatasetSpec, LossSpec, MethodSpec, ModelSpec, ProtocolSpec, ReferenceTable

__all__ = ["Registry", "PluginInfo", "get_registry", "reset_registry", "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "aubench"

_KINDS: dict[str, tuple[str, type]] = {
    "dataset": ("aubench_register_datasets", DatasetSpec),
    "model": ("aubench_register_models", ModelSpec),
    "loss": ("aubench_register_losses", LossSpec),
    "method": ("aubench_register_methods", MethodSpec),
    "protocol": ("aubench_register_protocols", ProtocolSpec),
    "checkpoint": ("aubench_register_checkpoints", CheckpointSpec),
}


@dataclass
class PluginInfo:
    """What ``aubench list`` shows about one plugin."""

    name: str
    version: str
    module: str
    hooks: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # e.g. a hook-named function without @hookimpl


@functools.cache
def _source_hash(folder: Path) -> str:
    """A hash of a package's code and configs (``*.py``, ``*.yaml``, ``*.json`` below ``folder``).

    Computed once per process: a running process keeps executing the code it imported, so a later
    edit on disk must not change what its results claim."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.suffix in (".py", ".yaml", ".json") and p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:10]


def _key(kind: str, spec: DatasetSpec | ModelSpec | LossSpec | MethodSpec | ProtocolSpec) -> str:
    """The name a spec is registered under: ``name@version`` for protocols, ``name`` otherwise."""
    return spec.id if kind == "protocol" else spec.name


def _unmarked_hooks(plugin: Any) -> list[str]:
    """Functions of a plugin named like hooks that pluggy will never call (no ``@hookimpl``)."""
    specs = [n for n in dir(hookspecs) if n.startswith("aubench_")]
    out = []
    for attr in sorted(a for a in dir(plugin) if a.startswith("aubench_")):
        if callable(getattr(plugin, attr)) and not hasattr(getattr(plugin, attr), f"{hookspecs.PROJECT}_impl"):
            hint = "" if attr in specs else did_you_mean(attr, specs)
            out.append(f"{attr} is never called: it is not decorated with @hookimpl (from aubench import hookimpl)"
                       + hint)
    return out


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


class Registry:
    """All specs of all loaded plugins, by kind and name, with the plugin that owns each."""

    def __init__(self, extra_plugins: Iterable[tuple[str, Any]] = (), autoload: bool | None = None):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.load_errors: dict[str, str] = {}
        self._entry_points: set[str] = set()
        self._versions: dict[str, str] = {}
        self.tracing = _env_flag("AUBENCH_TRACE_PLUGINS")
        if self.tracing:
            self.pm.add_hookcall_monitoring(
                lambda name, impls, kwargs: sys.stderr.write(
                    f"[aubench trace] {name}({', '.join(kwargs)}) -> {[i.plugin_name for i in impls]}\n"),
                lambda outcome, name, impls, kwargs: None,
            )
        if autoload is None:
            autoload = not _env_flag("AUBENCH_DISABLE_PLUGIN_AUTOLOAD")
        if autoload:
            self._load_entry_points()
        for name, plugin in extra_plugins:
            self.register(plugin, name)
        while True:
            self.specs: dict[str, dict[str, Any]] = {kind: {} for kind in _KINDS}
            self.owners: dict[str, dict[str, str]] = {kind: {} for kind in _KINDS}
            self.references: list[tuple[str, ReferenceTable]] = []
            self.search_paths: list[Path] = [Path(__file__).parent / "conf"]
            try:
                self._collect()
                break
            except PluginError as exc:  # an installed plugin that registers something invalid is set aside
                if exc.plugin not in self._entry_points:
                    raise
                self._set_aside(exc.plugin, f"{exc} The other plugins are loaded; fix it, or skip it with "
                                            "AUBENCH_PLUGINS=<names to keep>.")

    # ------------------------------------------------------------------ loading
    def _load_entry_points(self) -> None:
        selected = os.environ.get("AUBENCH_PLUGINS")
        wanted = {s.strip() for s in selected.split(",") if s.strip()} if selected else None
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if wanted is not None and ep.name not in wanted:
                continue
            if self.pm.has_plugin(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not take the others down
                dist = ep.dist.name if ep.dist else "?"
                msg = (
                    f"plugin {ep.name!r} ({ep.value}, from distribution {dist!r}) failed to import: "
                    f"{type(exc).__name__}: {exc}. The other plugins are loaded; fix or uninstall "
                    f"{dist!r}, or skip it with AUBENCH_PLUGINS=<names to keep>."
                )
                self.load_errors[ep.name] = msg
                warnings.warn(msg, stacklevel=2)
                continue
            try:
                self.register(plugin, ep.name, version=ep.dist.version if ep.dist else "?")
            except PluginError as exc:
                self.load_errors[ep.name] = f"{exc} The other plugins are loaded."
                warnings.warn(self.load_errors[ep.name], stacklevel=2)
                continue
            self._entry_points.add(ep.name)

    def _set_aside(self, name: str, message: str) -> None:
        """Unregister a broken entry-point plugin, keeping why for ``aubench list`` and ``doctor``."""
        self.pm.unregister(name=name)
        self._entry_points.discard(name)
        self.load_errors[name] = message
        warnings.warn(message, stacklevel=3)

    def register(self, plugin: Any, name: str, version: str | None = None) -> None:
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(name=name)
            unknown = [h for h in dir(plugin) if h.startswith("aubench_") and not hasattr(hookspecs, h)]
            raise PluginError(
                f"plugin {name!r} has an invalid hook implementation: {exc}. "
                + "".join(f"{h}:{did_you_mean(h, [n for n in dir(hookspecs) if n.startswith('aubench_')])} "
                          for h in unknown)
                + "Compare its names and arguments with aubench.hookspecs.", plugin=name) from exc
        self._versions[name] = version or getattr(plugin, "__version__", "local")

    # ------------------------------------------------------------------ collection
    def _call_each(self, hook_name: str) -> list[tuple[str, Any]]:
        """Call every implementation of a registration hook separately, keeping the owner."""
        out: list[tuple[str, Any]] = []
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():  # registration order
            owner = impl.plugin_name
            try:
                result = impl.function()
            except Exception as exc:
                raise PluginError(f"plugin {owner!r} raised in {hook_name}: {type(exc).__name__}: {exc}",
                                  plugin=owner) from exc
            if self.tracing:
                count = len(result) if isinstance(result, (list, tuple)) else result
                sys.stderr.write(f"[aubench trace] {hook_name}() by {owner!r} -> {count}\n")
            if result is None:
                continue
            if not isinstance(result, (list, tuple)):
                raise PluginError(f"plugin {owner!r}: {hook_name} must return a list, got {type(result).__name__}",
                                  plugin=owner)
            out.extend((owner, item) for item in result)
        return out

    def _collect(self) -> None:
        for kind, (hook_name, spec_type) in _KINDS.items():
            for owner, spec in self._call_each(hook_name):
                if not isinstance(spec, spec_type):
                    raise PluginError(
                        f"plugin {owner!r}: {hook_name} returned {type(spec).__name__}, expected {spec_type.__name__}",
                        plugin=owner)
                key = _key(kind, spec)
                if key in self.specs[kind]:
                    raise DuplicateNameError(
                        f"{kind} {key!r} is registered by both plugin {self.owners[kind][key]!r} and plugin "
                        f"{owner!r}. Rename one of them, or load only one with AUBENCH_PLUGINS.", plugin=owner)
                self.specs[kind][key] = spec
                self.owners[kind][key] = owner
        for owner, path in self._call_each("aubench_config_search_paths"):
            path = Path(path)
            if not path.is_dir():
                raise PluginError(f"plugin {owner!r}: config search path {str(path)!r} is not a directory",
                                  plugin=owner)
            self.search_paths.append(path)
        for owner, table in self._call_each("aubench_register_references"):
            if not isinstance(table, ReferenceTable):
                raise PluginError(f"plugin {owner!r}: aubench_register_references returned {type(table).__name__}",
                                  plugin=owner)
            self.references.append((owner, table))
        self._validate()

    def _validate(self) -> None:
        from aubench.leaderboard import METRICS

        for kind, owner, spec in [("protocol", self.owners["protocol"][k], p) for k, p in self.specs["protocol"].items()] + [
                ("reference table", owner, t) for owner, t in self.references]:
            if spec.metric not in METRICS:
                raise PluginError(f"plugin {owner!r}: {kind} {getattr(spec, 'id', None) or spec.source!r} has metric "
                                  f"{spec.metric!r}; use one of {sorted(METRICS)}", plugin=owner)
        for key, ds in self.specs["dataset"].items():
            if (ds.synthetic or ds.derived) and ds.fingerprint is None:
                raise PluginError(
                    f"plugin {self.owners['dataset'][key]!r}: synthetic dataset {key!r} declares no fingerprint; "
                    "give DatasetSpec(fingerprint='pkg.module:function') returning a hash of the generator's "
                    "parameters and source, so cached data are regenerated when the generator changes.",
                    plugin=self.owners["dataset"][key])
        for key, proto in self.specs["protocol"].items():
            for ds in {proto.train_dataset, proto.test_dataset}:
                if ds not in self.specs["dataset"]:
                    owner = self.owners["protocol"][key]
                    raise PluginError(
                        f"plugin {owner!r}: protocol {key!r} uses dataset {ds!r}, which no plugin registers."
                        + did_you_mean(ds, self.specs["dataset"]), plugin=owner)
        for key, ckpt in self.specs["checkpoint"].items():
            if ckpt.protocol.split("@")[0] not in {p.split("@")[0] for p in self.specs["protocol"]}:
                raise PluginError(f"plugin {self.owners['checkpoint'][key]!r}: checkpoint {key!r} names protocol "
                                  f"{ckpt.protocol!r}, which no plugin registers."
                                  + did_you_mean(ckpt.protocol, self.specs["protocol"]),
                                  plugin=self.owners["checkpoint"][key])
        for name, method in self.specs["method"].items():
            if self.method_config_path(method) is None:
                raise PluginError(
                    f"plugin {self.owners['method'][name]!r}: method {name!r} has no config "
                    f"'method/{method.config_name}.yaml' in any config search path "
                    f"({', '.join(str(p) for p in self.search_paths)}). Return its conf directory "
                    "from aubench_config_search_paths.", plugin=self.owners["method"][name])

    # ------------------------------------------------------------------ lookup
    def method_config_path(self, method: MethodSpec) -> Path | None:
        for root in self.search_paths:
            candidate = root / "method" / f"{method.config_name}.yaml"
            if candidate.is_file():
                return candidate
        return None

    def get(self, kind: str, name: str) -> Any:
        table = self.specs[kind]
        if kind == "protocol" and name not in table:
            matches = [k for k in table if k.split("@")[0] == name]
            if len(matches) == 1:
                return table[matches[0]]
        try:
            return table[name]
        except KeyError:
            raise UnknownNameError(kind, name, table) from None

    def names(self, kind: str) -> list[str]:
        return sorted(self.specs[kind])

    def owner(self, kind: str, name: str) -> str:
        return self.owners[kind][_key(kind, self.get(kind, name))]

    def plugin_version(self, name: str) -> str:
        """The version of plugin ``name`` (its distribution's, or its ``__version__``)."""
        return self._versions.get(name, "?")

    def _owners_of(self, config: Any) -> set[str]:
        from omegaconf import OmegaConf

        losses = config.loss if OmegaConf.is_list(config.loss) else [config.loss]
        return {self.owner("model", config.model.name)} | {self.owner("loss", item.name) for item in losses}

    def versions_for(self, config: Any) -> dict[str, str]:
        """Provenance of a recipe's code: aubench's and each plugin's (model and losses) version with a hash
        of its source files, ``"0.1.0 src 1a2b3c4d5e"``; the git commit of aubench's checkout is in records'
        environment."""
        import sys

        from aubench import __version__

        plugins = {o: getattr(self.pm.get_plugin(o), "__name__", "") for o in self._owners_of(config)}
        out = {"aubench": f"{__version__} src {_source_hash(Path(__file__).parent)}"}
        for owner, module in sorted(plugins.items()):
            path = getattr(sys.modules.get(module), "__file__", None)
            out[owner] = self.plugin_version(owner) + (f" src {_source_hash(Path(path).parent)}" if path else "")
        return out

    def commits_for(self, config: Any) -> dict[str, str]:
        """The git commit of each plugin (model and losses) whose source is a git checkout."""
        import sys

        from aubench.results import git_commit

        out = {}
        for owner in sorted(self._owners_of(config)):
            path = getattr(sys.modules.get(getattr(self.pm.get_plugin(owner), "__name__", "")), "__file__", None)
            commit = git_commit(Path(path).parent) if path else None
            if commit:
                out[owner] = commit
        return out

    def plugins(self) -> list[PluginInfo]:
        infos = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:
                continue
            hooks = sorted(
                h.name for h in self.pm.get_hookcallers(plugin) or [] if h.name.startswith("aubench_")
            )
            infos.append(PluginInfo(name, self._versions.get(name, "?"), getattr(plugin, "__name__", repr(plugin)), hooks,
                                    _unmarked_hooks(plugin)))
        return sorted(infos, key=lambda p: p.name)

    @property
    def hook(self) -> Any:
        return self.pm.hook


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry()
    return _REGISTRY


def reset_registry(registry: Registry | None = None) -> None:
    """Replace (or drop) the process-wide registry; used by tests and after installing plugins."""
    global _REGISTRY
    _REGISTRY = registry
