"""The package's structure: its modules import each other without cycles, and only down the floors.

Imports are read from the source with :mod:`ast` (nothing is imported), including the imports inside
functions: a lazy import is still a dependency. Floors, lowest first (a module may import its own
subpackage and any lower floor, never a higher one or a sibling on its own floor):

0. ``errors`` — the package's exceptions
1. ``records``, ``tensor_checks``, ``geometry``, ``config_fields`` — plain helpers
2. ``io`` — files
3. ``sparse`` (the engine), ``losses``, ``metrics``, ``sources`` (scenes and objects)
4. ``data`` (4D sequences), ``models`` (backbones, the 4DContrast model, the backbone benchmark)
5. ``train`` — pre-training
6. ``downstream`` — fine-tuning, probing and their benchmark
7. ``demo``, ``benchmark``, ``cli`` and the package's ``__init__`` (the public names)
8. ``__main__`` (``python -m fourdcontrast``: the CLI)
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fourdcontrast"

FLOORS: dict[str, int] = {
    "errors": 0,
    "records": 1, "tensor_checks": 1, "geometry": 1, "config_fields": 1, "machine": 1,
    "io": 2,
    "sparse": 3, "losses": 3, "metrics": 3, "sources": 3,
    "data": 4, "models": 4,
    "train": 5,
    "downstream": 6,
    "demo": 7, "benchmark": 7, "cli": 7, "": 7,
    "__main__": 8,
}
"""Top-level part of a module name (``fourdcontrast.<part>...``; ``""`` is the package itself) → floor."""


def module_files(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name → source file, for every ``.py`` file of the package."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module → the package's modules it imports (``from pkg import name`` counts ``pkg.name`` when that is
    a module, ``pkg`` otherwise; relative imports resolved)."""
    modules = module_files(package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                graph[name].update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                submodules = {f"{target}.{a.name}" for a in node.names} & modules.keys()
                graph[name].update(submodules or ({target} & modules.keys()))
    return graph


def part(module: str) -> str:
    """``fourdcontrast.sparse.nn`` → ``sparse``; ``fourdcontrast`` → ``""``."""
    return module.split(".")[1] if "." in module else ""


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """``"a -> b"`` for every import of another top-level part on the same or a higher floor."""
    return [f"{a} -> {b}" for a, targets in sorted(graph.items()) for b in sorted(targets)
            if part(a) != part(b) and FLOORS[part(b)] >= FLOORS[part(a)]]


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (its modules, the first repeated at the end), or None."""
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        return list(exc.args[1])
    return None


def test_every_part_of_the_package_has_a_floor():
    missing = {part(m) for m in module_files()} - FLOORS.keys()
    assert not missing, f"new top-level modules {sorted(missing)}: give them a floor in FLOORS"


def test_the_package_imports_only_down_the_floors():
    assert upward_imports(import_graph()) == []


def test_the_sparse_engine_imports_nothing_of_the_package_outside_it():
    graph = import_graph()
    outside = {f"{a} -> {b}" for a, targets in graph.items() if part(a) == "sparse"
               for b in targets if part(b) != "sparse"}
    assert outside == set()


def test_no_module_imports_itself_through_others():
    assert cycle(import_graph()) is None


@pytest.mark.parametrize("source, expected", [
    ({"a.py": "from pkg import b\n", "b.py": "def f():\n    from pkg.a import x\n"}, "cycle"),
    ({"a.py": "from . import b\n", "b.py": "from .a import x\n"}, "cycle"),
    ({"a.py": "from pkg import b\n", "b.py": "import os\n"}, None),
])
def test_the_cycle_finder_sees_lazy_and_relative_imports(tmp_path, source, expected):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, text in source.items():
        (package / name).write_text(text)
    found = cycle(import_graph(package))
    assert (found is not None) == (expected == "cycle"), found
