"""fourdviz imports without its optional back ends and names the extra to install."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fourdviz._optional import MissingBackendError, install_hint, require


def test_require_names_the_extra():
    with pytest.raises(MissingBackendError, match=r"fourdcontrast\[open3d\]|pip install"):
        require("definitely_not_a_module_xyz", "a test feature")
    assert "fourdcontrast[viz]" in install_hint("polyscope")
    assert "open3d-cpu" in install_hint("open3d")


def test_import_without_backends_and_clear_error():
    code = (
        "import sys\n"
        "for m in ('polyscope', 'open3d', 'plotly', 'ipywidgets', 'matplotlib', 'sklearn'):\n"
        "    sys.modules[m] = None\n"
        "import fourdviz\n"
        "assert 'polyscope' not in sys.modules or sys.modules['polyscope'] is None\n"
        "try:\n"
        "    fourdviz.screenshot\n"
        "except ImportError as e:\n"
        "    print('ERR', e)\n"
        "try:\n"
        "    fourdviz.SequenceExplorer\n"
        "except ImportError as e:\n"
        "    print('ERR', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("ERR")]
    assert len(lines) == 2
    assert "fourdcontrast[viz]" in lines[0] and "polyscope" in lines[0]
    assert "fourdcontrast[viz]" in lines[1] and "plotly" in lines[1]
