"""The layout rules of the package: layers import downwards only, no import cycles, short files.

Layers, bottom up: ``emframe.core`` (the engine) < ``emframe.inference`` (shared
numerics) and ``emframe.distributed`` (executors) < ``emframe.models`` <
``emframe.interfaces`` (CLI, files, plots, data sets) < the public facade modules
at the top of the package (``emframe``, ``emframe.testing``, ``emframe.datasets``, ...).
Every import counts, also one inside a function.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 600


def _source_files():
    """(module name, path) of every module of the installed package, from the source tree."""
    out = {}
    for base, prefix in ((ROOT / "emframe", "emframe"), (ROOT / "models", "emframe.models")):
        for path in base.rglob("*.py"):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([prefix, *parts])] = path
    return out


MODULES = _source_files()


def _is_package(name):
    return MODULES[name].name == "__init__.py"


def _imports(name):
    """The emframe modules ``name`` imports (resolving relative and ``from pkg import mod``)."""
    tree = ast.parse(MODULES[name].read_text())
    package = name if _is_package(name) else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [(a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            targets = [(mod, a.name) for a in node.names]
        else:
            continue
        for mod, attr in targets:
            if not (mod == "emframe" or mod.startswith("emframe.")):
                continue
            if attr is not None and f"{mod}.{attr}" in MODULES:
                found.add(f"{mod}.{attr}")
            elif mod in MODULES:
                found.add(mod)
            else:
                raise AssertionError(f"{name} imports {mod}, which is not a module of emframe")
    return found


GRAPH = {name: _imports(name) for name in MODULES}

FACADES = {"emframe", "emframe.__main__", "emframe.testing", "emframe.datasets",
           "emframe.plotting", "emframe.exceptions"}


def _layer(name):
    if name in FACADES:
        return "facade"
    if name == "emframe._version":
        return "leaf"
    for layer in ("core", "inference", "distributed", "models", "interfaces"):
        if name == f"emframe.{layer}" or name.startswith(f"emframe.{layer}."):
            return layer
    raise AssertionError(f"{name} belongs to no layer; place it in a subpackage")


ALLOWED = {
    "leaf": set(),
    "core": {"leaf", "core"},
    "inference": {"leaf", "core", "inference"},
    "distributed": {"leaf", "core", "distributed"},
    "models": {"leaf", "core", "inference", "models"},
    "interfaces": {"leaf", "core", "inference", "distributed", "models", "interfaces"},
    "facade": {"leaf", "core", "inference", "distributed", "models", "interfaces", "facade"},
}


def test_every_module_is_in_a_layer():
    layers = {_layer(name) for name in MODULES}
    assert {"core", "inference", "models", "interfaces"} <= layers


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down(name):
    mine = _layer(name)
    wrong = sorted(dep for dep in GRAPH[name] if _layer(dep) not in ALLOWED[mine])
    assert not wrong, f"{name} ({mine}) must not import {wrong}"


def test_no_import_cycles():
    # Tarjan's strongly connected components; any component of size > 1 is a cycle
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in GRAPH[v]:
                cycles.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_import_graph_sees_imports_inside_functions():
    # guards the checker: the CLI imports the models lazily, inside a function
    assert any(dep.startswith("emframe.models") for dep in GRAPH["emframe.interfaces.cli.specs"])


@pytest.mark.parametrize("name", sorted(MODULES))
def test_files_are_short(name):
    n = len(MODULES[name].read_text().splitlines())
    assert n <= MAX_LINES, f"{MODULES[name].relative_to(ROOT)} has {n} lines (max {MAX_LINES})"


def test_every_package_is_installed():
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"])
    packages = {name for name in MODULES if _is_package(name)} | {"emframe.interfaces.data"}
    assert packages == listed


def test_the_architecture_page_names_every_subpackage():
    # docs/architecture.md draws the layers; a new subpackage must appear in the drawing
    text = (ROOT / "docs" / "architecture.md").read_text()
    drawing = text.split("## The layers", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    for name in MODULES:
        if _is_package(name) and name.count(".") >= 2:  # emframe.core.x, emframe.models.x
            short = name.rsplit(".", 1)[1]
            if short != "data":  # package data, drawn as interfaces' data/
                assert f"{short}/" in drawing, f"{name} is missing from docs/architecture.md"
    assert len({len(line) for line in drawing.splitlines()}) == 1, "ragged box lines"
