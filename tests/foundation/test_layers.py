"""The house, as a contract over the import graph (every import, the ones inside functions too).

Layers, top to bottom; a module may import its own layer and the ones below, never one above:
    cli > pipeline > devices > results > data > bundle > models > config, errors
converters and device_scripts are libraries beneath all of them: converters import only each other
and the device scripts; device scripts import nothing of edgekit. Nothing below cli prints (click,
rich) and results/devices never import TensorFlow. No two modules import each other, directly or
around a loop.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"edgekit": ROOT / "edgekit", "edgekit.converters": ROOT / "converters",
            "edgekit.device_scripts": ROOT / "device_scripts"}  # fmt: skip
LAYERS = ["base", "models", "bundle", "data", "results", "devices", "pipeline", "cli"]  # bottom first
LIBRARIES = {"converters": 0, "device_scripts": -1}  # below every layer
PRINTING = ("click", "rich")
TENSORFLOW = ("tensorflow", "keras", "tf_keras")


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg, base in PACKAGES.items():
        for p in base.rglob("*.py"):
            parts = [x for x in p.relative_to(base).with_suffix("").parts if x != "__init__"]
            mods[".".join([pkg, *parts])] = p
    return mods


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import statement in the file, resolved to absolute names."""
    out = []
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - (0 if is_pkg else 1) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from edgekit.devices import jobs` depends on the module edgekit.devices.jobs (not on the
            # package's __init__); `from edgekit.devices.jobs import profile` on edgekit.devices.jobs
            subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in MODULES]
            out += [(s, node.lineno) for s in subs] if len(subs) == len(node.names) else [(mod, node.lineno)]
    return out


def _edgekit_module(mod: str) -> str | None:
    """The project module an import refers to (a package's name counts as its __init__)."""
    while mod:
        if mod in MODULES:
            return mod
        mod = mod.rpartition(".")[0]
    return None


def layer(mod: str) -> int:
    parts = mod.split(".")
    if len(parts) == 1 or parts[1] in ("config", "errors"):
        return LAYERS.index("base")
    if parts[1] in LIBRARIES:
        return LIBRARIES[parts[1]]
    return LAYERS.index("cli" if parts[1] == "__main__" else parts[1])


def _graph() -> dict[str, set[str]]:
    g: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        g[name] = {m for imp, _ in _imports(name, path) if (m := _edgekit_module(imp)) and m != name}
    return g


def test_every_module_has_a_layer():
    for name in MODULES:
        assert layer(name) is not None, name


def test_imports_point_down():
    bad = []
    for name, path in MODULES.items():
        for imp, line in _imports(name, path):
            target = _edgekit_module(imp)
            if target is None or target == "edgekit":  # `from edgekit import __version__`
                continue
            if layer(target) > layer(name):
                bad.append(f"{path.relative_to(ROOT)}:{line} ({LAYERS[max(layer(name), 0)]}) imports {target}")
    assert not bad, "imports that point up:\n" + "\n".join(bad)


def test_libraries_import_nothing_above_them():
    bad = []
    for name, path in MODULES.items():
        kind = (name.split(".") + [""])[1]
        if kind not in LIBRARIES:
            continue
        for imp, line in _imports(name, path):
            top = imp.split(".")[0]
            if kind == "device_scripts" and (top in ("edgekit", "click", *TENSORFLOW[1:]) and
                                             not imp.startswith("edgekit.device_scripts")):  # fmt: skip
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {imp}")
            if kind == "converters" and top == "edgekit" and not imp.startswith(
                ("edgekit.converters", "edgekit.device_scripts", "edgekit.errors")
            ):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {imp}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    ("where", "banned"),
    [
        (("edgekit.pipeline", "edgekit.devices", "edgekit.results", "edgekit.data", "edgekit.bundle",
          "edgekit.models", "edgekit.config", "edgekit.errors"), PRINTING + ("edgekit.cli",)),
        (("edgekit.results", "edgekit.devices"), TENSORFLOW),
    ],
    ids=["nothing-below-cli-prints", "results-and-devices-without-tensorflow"],
)  # fmt: skip
def test_banned_imports(where, banned):
    bad = []
    for name, path in MODULES.items():
        if not name.startswith(where):
            continue
        for imp, line in _imports(name, path):
            if imp.split(".")[0] in banned or imp.startswith(tuple(b for b in banned if "." in b)):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {imp}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    """Tarjan's strongly connected components over all imports (function-level ones included)."""
    g = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_contract_sees_a_violation(tmp_path):
    """The checks above would catch an upward import (they are not vacuous)."""
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from edgekit.cli.output import console\n")
    assert ("edgekit.cli.output", 2) in _imports("edgekit.results.m", src)
    assert layer("edgekit.cli.output") > layer("edgekit.results.store")
    assert layer("edgekit.device_scripts.edgelib") < layer("edgekit.models.registry")
