"""fourdviz imports without its optional back ends and names the extra to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fourdviz._optional import MissingBackendError, install_hint, require

ROOT = Path(__file__).resolve().parents[2]


def test_require_names_the_extra():
    with pytest.raises(MissingBackendError, match=r"fourdcontrast\[open3d\]|pip install"):
        require("definitely_not_a_module_xyz", "a test feature")
    assert "fourdcontrast[viz]" in install_hint("polyscope")
    assert "open3d-cpu" in install_hint("open3d")


def test_import_without_backends_and_clear_error():
    code = (
        "import sys\n"
        "sys.path.insert(0, 'tests/fourdviz')\n"
        "for m in ('polyscope', 'open3d', 'plotly', 'ipywidgets', 'matplotlib', 'sklearn'):\n"
        "    sys.modules[m] = None\n"
        "import fourdviz\n"
        "from vizdata import make_sequence\n"
        "seq = make_sequence(n_scene=50, n_object=20, frames=2)\n"
        "assert fourdviz.check_correspondences(seq, 0, 1).num_broken == 0\n"
        "calls = [lambda: fourdviz.screenshot(seq), lambda: fourdviz.SequenceExplorer(seq),\n"
        "         lambda: fourdviz.plot_sequence(seq), lambda: fourdviz.frame_to_point_cloud(seq, 0)]\n"
        "for call in calls:\n"
        "    try:\n"
        "        call()\n"
        "    except fourdviz.MissingBackendError as e:\n"
        "        print('ERR', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("ERR")]
    assert len(lines) == 4, out.stdout
    assert "polyscope" in lines[0] and "fourdcontrast[viz]" in lines[0]
    assert "ipywidgets" in lines[1] and "fourdcontrast[viz]" in lines[1]
    assert "matplotlib" in lines[2] and "fourdcontrast[viz]" in lines[2]
    assert "open3d" in lines[3] and "fourdcontrast[open3d]" in lines[3]
