"""Import a repository script (``benchmarks/*.py``, ``scripts/*.py``) as a module, for the tests of the
scripts that are not part of the package."""

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_script(relative_path: str) -> ModuleType:
    """The module of ``ROOT / relative_path`` (e.g. ``"benchmarks/figure5.py"``), executed afresh."""
    path = ROOT / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
