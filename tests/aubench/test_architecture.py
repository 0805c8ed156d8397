"""The shape of the code base, pinned: the core knows no plugin, plugins use only the public API,
no module imports in a circle, no module grows past what one sitting can read."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from aubench.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "aubench"
PLUGINS = sorted(p for p in (ROOT / "plugins").iterdir() if (p / "plugin.py").is_file())


def _modules(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every module an import statement names (``from a import b`` gives ``a``), with its line."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.module, node.lineno))
    return out


def _code_strings(path: Path) -> list[tuple[str, int]]:
    """String constants of a module that are not docstrings."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [(n.value, n.lineno) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: p.name)
def test_bundled_plugins_import_only_the_public_api(plugin):
    bad = [f"{path.relative_to(ROOT)}:{line}: {name}" for path in _modules(plugin) for name, line in _imports(path)
           if name.startswith("aubench.")]
    assert not bad, "plugins import `from aubench import ...` only (add what they need to aubench/__init__.py):\n" + \
        "\n".join(bad)


def test_the_core_imports_no_plugin():
    bad = [f"{path.relative_to(ROOT)}:{line}: {name}" for path in _modules(CORE) for name, line in _imports(path)
           if name.split(".")[0].startswith("aubench_")]
    assert not bad, "\n".join(bad)


def test_the_core_names_no_plugin_component_flag_or_preset():
    reg = Registry()
    bundled = {p.name.removeprefix("aubench_") for p in PLUGINS}
    names = {key for kind, owners in reg.owners.items() for key, owner in owners.items() if owner in bundled}
    names |= {n.split("@")[0] for n in names} | {f"aubench_{b}" for b in bundled}
    for path in (ROOT / "plugins").rglob("*.yaml"):  # the plugins' own presets (the core knows paper and smoke)
        recipe = OmegaConf.load(path)
        names |= set(recipe.get("presets") or {}) | set((recipe.get("dataset_presets") or {}).values())
    names -= {"paper", "smoke"}
    flags = {"--frames-dir", "--from-list", "--image-root", "--crop", "--detector-weights", "--landmarks", "--table"}
    found = [f"{path.relative_to(ROOT)}:{line}: {text!r}" for path in _modules(CORE) for text, line in _code_strings(path)
             if text in names or any(f in text for f in flags)]
    assert not found, "the core must not know bundled plugins' names:\n" + "\n".join(found)


def test_no_import_circle_between_core_modules():
    # module-level imports only: an import inside a function is lazy and cannot form an import-time circle
    paths = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p for p in _modules(CORE)}
    top = {}
    for name, path in paths.items():
        mods = set()
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                mods.add(node.module)
            elif isinstance(node, ast.Import):
                mods |= {a.name for a in node.names}
        top[name] = {m for m in mods if m in paths and m not in (name, "aubench")}

    def visit(node, stack):
        if node in stack:
            return stack[stack.index(node):] + [node]
        for nxt in top.get(node, ()):
            cycle = visit(nxt, stack + [node])
            if cycle:
                return cycle
        return None

    for module in top:
        cycle = visit(module, [])
        assert cycle is None, " -> ".join(cycle)


def test_no_core_module_is_longer_than_400_lines_and_run_cell_is_short():
    long = {str(p.relative_to(ROOT)): n for p in _modules(CORE) if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long
    tree = ast.parse((CORE / "engine.py").read_text())
    run_cell = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "run_cell")
    assert run_cell.end_lineno - run_cell.lineno + 1 <= 60


def test_every_hook_has_a_test_that_implements_it():
    from aubench import hookspecs

    hooks = [name for name in dir(hookspecs) if name.startswith("aubench_")]
    tests = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").rglob("*.py"))
    untested = [h for h in hooks if f"def {h}(" not in tests]
    assert not untested, f"hooks without a test that implements them: {untested}"

