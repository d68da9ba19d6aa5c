"""The committed notebooks match their percent-format sources and carry rendered outputs."""

from pathlib import Path

import nbformat
import pytest
from script_loader import load_script  # tests/script_loader.py

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "notebooks" / "src").glob("*.py"))


def _builder():
    return load_script("scripts/build_notebooks.py")


def test_percent_parser_splits_markdown_and_code():
    nb = _builder().parse_percent("# %% [markdown]\n# # Title\n# text\n\n# %%\nx = 1\n\n# %%\nprint(x)\n")
    assert [c.cell_type for c in nb.cells] == ["markdown", "code", "code"]
    assert nb.cells[0].source == "# Title\ntext"
    assert nb.cells[2].source == "print(x)"


@pytest.mark.parametrize("source", SOURCES, ids=[s.stem for s in SOURCES])
def test_notebook_in_sync_with_source_and_rendered(source):
    built = ROOT / "notebooks" / (source.stem + ".ipynb")
    assert built.exists(), f"{built.name} missing: run scripts/build_notebooks.py"
    nb = nbformat.read(built, as_version=4)
    expected = _builder().parse_percent(source.read_text())
    assert [(c.cell_type, c.source) for c in nb.cells] == [(c.cell_type, c.source) for c in expected.cells], (
        f"{built.name} differs from {source.name}: rebuild it with scripts/build_notebooks.py"
    )
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    images = sum("image/png" in o.get("data", {}) for o in outputs)
    assert images >= 3, f"{built.name} keeps only {images} rendered figures"
