"""Build the committed notebooks from their percent-format sources and execute them.

Sources live in ``notebooks/src/NN_name.py`` (cells separated by ``# %%``, markdown cells by
``# %% [markdown]`` with every line commented). The built ``notebooks/NN_name.ipynb`` keep their
rendered outputs so they can be read without running them. Usage::

    python scripts/build_notebooks.py            # all notebooks, full preset
    python scripts/build_notebooks.py 01 --quick # one notebook, CI preset (FOURDCONTRAST_QUICK=1)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "notebooks" / "src"


def parse_percent(text: str) -> nbformat.NotebookNode:
    """Percent-format script → notebook (no outputs)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    chunks: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("# %%"):
            chunks.append(("markdown" if "[markdown]" in line else "code", []))
        elif chunks:
            chunks[-1][1].append(line)
    for kind, lines in chunks:
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        if kind == "markdown":
            body = "\n".join(ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in lines)
            nb.cells.append(nbformat.v4.new_markdown_cell(body))
        elif lines:
            nb.cells.append(nbformat.v4.new_code_cell("\n".join(lines)))
    return nb


def build(source: Path, quick: bool, timeout: int) -> Path:
    nb = parse_percent(source.read_text())
    saved = {k: os.environ.get(k) for k in ("FOURDCONTRAST_QUICK", "MPLBACKEND", "OMP_WAIT_POLICY")}
    os.environ["FOURDCONTRAST_QUICK"] = "1" if quick else "0"
    os.environ.pop("MPLBACKEND", None)  # the kernel must use the inline backend to keep figures
    # idle OpenMP threads otherwise spin in the kernel (on a loaded 2-core machine a detection step took
    # 5.8 s instead of 0.3 s); the kernel inherits it, as make test sets it for nbval
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    # widget state (plotly FigureWidget data) would make the file huge; figures are kept as PNG
    nb.metadata.pop("widgets", None)
    target = ROOT / "notebooks" / (source.stem + ".ipynb")
    with tempfile.NamedTemporaryFile("w", dir=target.parent, suffix=".tmp", delete=False) as tmp:
        nbformat.write(nb, tmp)
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help="notebook number prefixes to build (default: all)")
    parser.add_argument("--quick", action="store_true", help="execute with the CI preset")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    args = parser.parse_args(argv)
    sources = sorted(p for p in SRC.glob("*.py") if not args.only or p.name.split("_")[0] in args.only)
    for source in sources:
        print(f"building {source.name} ...", flush=True)
        print(f"  wrote {build(source, args.quick, args.timeout).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
