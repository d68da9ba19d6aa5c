"""The polyscope viewer renders headless (EGL) to PNG, and the window runs under Xvfb."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("polyscope")

from fourdviz import polyscope_view  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _headless_or_skip(sequence, **kw):
    try:
        return polyscope_view.screenshot(sequence, **kw)
    except RuntimeError as exc:
        if "could not start" in str(exc):
            pytest.skip(f"no EGL for headless polyscope here (make system-deps): {exc}")
        raise


def test_screenshot_is_not_blank_and_written(sequence, tmp_path):
    path = tmp_path / "shot.png"
    img = _headless_or_skip(sequence, path=path, size=(640, 360))
    assert img.shape == (360, 640, 4) and img.dtype == np.uint8
    rgb = img[..., :3].astype(int)
    assert (rgb.sum(-1) < 3 * 240).mean() > 0.01  # points and lines drawn on the white background
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["shot.png"]


def test_screenshot_similarity_changes_colours(sequence, features):
    plain = _headless_or_skip(sequence, layout="overlay", size=(480, 320))
    heat = _headless_or_skip(sequence, features=features, query=(0, 5), layout="overlay", size=(480, 320))
    assert plain.shape == heat.shape
    assert np.abs(plain.astype(int) - heat.astype(int)).sum(-1).astype(bool).mean() > 0.005


def test_screenshot_rejects_bad_layout(sequence):
    with pytest.raises(ValueError, match="layout"):
        _headless_or_skip(sequence, layout="grid")


@pytest.mark.slow
def test_show_runs_in_a_window_under_xvfb(tmp_path):
    if shutil.which("xvfb-run") is None:
        pytest.skip("xvfb-run is not installed (Debian package xvfb, see `make system-deps`)")
    code = (
        "import sys; sys.path.insert(0, 'tests/fourdviz')\n"
        "from vizdata import make_sequence, make_features\n"
        "import fourdviz\n"
        "seq = make_sequence(); feats = make_features(seq)\n"
        "state = fourdviz.show(seq, feats, query=(1, 3), frames=3)\n"
        "print('STATE', state.frames_drawn, state.query)\n"
    )
    out = subprocess.run(
        ["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24", sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("STATE"))
    drawn = int(line.split()[1])
    assert drawn >= 1 and "(1, 3)" in line


class _FakeImgui:
    """Stands in for polyscope.imgui: widgets return (changed=False, value) unless told otherwise."""

    def __init__(self, slider=None):
        self.slider = slider
        self.texts = []

    def TextUnformatted(self, text):
        self.texts.append(text)

    def SliderInt(self, label, value, lo, hi):
        return (self.slider is not None, value if self.slider is None else self.slider)

    def Checkbox(self, label, value):
        return False, value

    def InputInt(self, label, value):
        return False, value

    def Button(self, label):
        return False


class _FakeSelection:
    def __init__(self, name, local_index):
        self.is_hit, self.structure_name, self.local_index = True, name, local_index


class _FakeCloud:
    def __init__(self):
        self.enabled, self.scalars = True, {}

    def set_enabled(self, on):
        self.enabled = on

    def add_scalar_quantity(self, name, values, **kw):
        self.scalars[name] = np.asarray(values)

    def add_color_quantity(self, name, values, **kw):
        pass


class _FakePolyscope:
    def __init__(self, names, selection=None, slider=None):
        self.imgui = _FakeImgui(slider)
        self.clouds = {n: _FakeCloud() for n in names}
        self.selection = selection

    def have_selection(self):
        return self.selection is not None

    def get_selection(self):
        return self.selection

    def reset_selection(self):
        self.selection = None

    def get_point_cloud(self, name):
        return self.clouds[name]

    def has_curve_network(self, name):
        return False


def _state_for(sequence):
    state = polyscope_view.ViewerState()
    for t, f in enumerate(sequence.frames):
        state._names[f"frame {t} scene"] = (t, np.flatnonzero(f.source == 0))
        state._names[f"frame {t} object"] = (t, np.flatnonzero(f.source != 0))
    return state


def test_panel_pick_sets_query_and_colours_by_similarity(sequence, features):
    state = _state_for(sequence)
    t, idx = state._names["frame 1 object"]
    ps = _FakePolyscope(state._names, selection=_FakeSelection("frame 1 object", 3))
    polyscope_view._callback(ps, sequence, features, state)
    assert state.query == (1, int(idx[3])) and state.picked[:2] == (1, int(idx[3]))
    sims = ps.clouds["frame 1 object"].scalars["similarity"]
    assert sims[3] == pytest.approx(1.0, abs=1e-5) and ps.selection is None
    assert any("picked: frame 1" in text for text in ps.imgui.texts)


def test_panel_frame_slider_shows_one_frame(sequence):
    state = _state_for(sequence)
    ps = _FakePolyscope(state._names, slider=2)
    polyscope_view._callback(ps, sequence, None, state)
    assert state.frame == 2
    assert all(c.enabled == name.startswith("frame 2") for name, c in ps.clouds.items())
