"""End to end in a real browser: JupyterLab + headless Chromium.

- the sequence explorer: click a point of the FigureWidget and check that the similarity heatmap
  recoloured the points (in the page and in the kernel);
- the embedding explorer: drag a box around one cluster of the 2D embedding and check that exactly those
  points are highlighted in the 3D view (in the page and in the kernel).

Each bounded to ~90 s; screenshots are saved to ``test-artifacts/browser_*.png``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
DEADLINE_S = 90.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _notebook(result_file: Path) -> dict:
    setup = (
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT / 'tests' / 'fourdviz')!r})\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from vizdata import make_features, make_sequence\n"
        "import fourdviz\n"
        "seq = make_sequence(n_scene=6000, n_object=400, frames=2)\n"
        "ex = fourdviz.SequenceExplorer(seq, make_features(seq), layout='overlay', marker_size=7)\n"
        "ex.frame_slider.value = 0\n"
        "ex.show_matches.value = False\n"
        "ex"
    )
    check = (
        "import json, numpy as np\n"
        "cols = ex.marker_colors()\n"
        "json.dump({'query': ex.query, 'similarity': ex.showing_similarity, "
        "'one': float(max(c.max() for c in cols))},\n"
        f"          open({str(result_file)!r}, 'w'))\n"
    )

    def cell(src):
        return {
            "cell_type": "code",
            "metadata": {},
            "source": src,
            "outputs": [],
            "execution_count": None,
        }

    return {
        "cells": [cell(setup), cell(check)],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


EMBEDDING_POINTS = 300
"""Points of the embedding test: two well separated clusters of 150 (class a left, class b right)."""


def _embedding_notebook(result_file: Path) -> dict:
    setup = (
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "import numpy as np\n"
        "from fourdviz.embedding import EmbeddingExplorer\n"
        "rng = np.random.default_rng(0)\n"
        f"n = {EMBEDDING_POINTS}\n"
        "xy = np.r_[rng.normal([-3, 0], 0.4, (n // 2, 2)), rng.normal([3, 0], 0.4, (n // 2, 2))]\n"
        "points = rng.uniform(0, 4, (n, 3))\n"
        "labels = np.repeat([0, 1], n // 2)\n"
        "ex = EmbeddingExplorer(points, {'features': xy}, {'class': (labels, ('a', 'b'))})\n"
        "ex"
    )
    check = (
        "import json\n"
        "json.dump({'selected': ex.selected.tolist(), 'highlighted': len(ex.highlighted_3d()),\n"
        "           'status': ex.status.value},\n"
        f"          open({str(result_file)!r}, 'w'))\n"
    )
    cell = _notebook(result_file)["cells"][0]
    return {**_notebook(result_file), "cells": [{**cell, "source": setup}, {**cell, "source": check}]}


def _wait(predicate, timeout: float, what: str, interval: float = 0.25):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


KERNEL_READY = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  if (!w || !w.sessionContext || !w.context || !w.context.isReady) return false;
  const k = w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.connectionStatus === 'connected' && k.status === 'idle';
}"""

RUN_CELL = """(i) => {
  const w = window.jupyterapp.shell.currentWidget;
  w.content.activeCellIndex = i;
  window.jupyterapp.commands.execute('notebook:run-cell');  // not awaited on purpose
  return true;
}"""

MARKER_STATE = """() => {
  const gd = document.querySelector('.js-plotly-plot');
  if (!gd || !gd.data) return null;
  return gd.data.filter(t => t.mode === 'markers' && t.name !== 'query point').map(t => {
    const c = t.marker.color;
    const first = Array.isArray(c) || ArrayBuffer.isView(c) ? c[0] : c;
    return (t.marker.cmin === -1 ? 'similarity:' : 'source:') + String(first).slice(0, 6);
  });
}"""


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on 127.0.0.1 with its own config, data and settings folders."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (Debian package chromium, see `make system-deps`)")
    pytest.importorskip("jupyterlab", reason="jupyterlab is not installed (extra: notebooks)")
    pytest.importorskip("playwright", reason="playwright is not installed (extra: dev)")
    home = tmp_path / "home"
    env = dict(os.environ)
    dirs = {
        k: home / v
        for k, v in {
            "JUPYTER_CONFIG_DIR": "config",
            "JUPYTER_DATA_DIR": "data",
            "JUPYTER_RUNTIME_DIR": "runtime",
            "IPYTHONDIR": "ipython",
            "MPLCONFIGDIR": "mpl",
            "JUPYTERLAB_SETTINGS_DIR": "settings",
            "JUPYTERLAB_WORKSPACES_DIR": "workspaces",
        }.items()
    }
    for key, d in dirs.items():
        d.mkdir(parents=True)
        env[key] = str(d)
    env["HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    (dirs["JUPYTER_CONFIG_DIR"] / "labconfig").mkdir()
    (dirs["JUPYTER_CONFIG_DIR"] / "labconfig" / "page_config.json").write_text(
        json.dumps({"buildCheck": False, "buildAvailable": False})
    )
    tracker = dirs["JUPYTERLAB_SETTINGS_DIR"] / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    news = dirs["JUPYTERLAB_SETTINGS_DIR"] / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    work = tmp_path / "work"
    work.mkdir()
    result_file = tmp_path / "result.json"
    (work / "explorer.ipynb").write_text(json.dumps(_notebook(result_file)))
    (work / "embedding.ipynb").write_text(json.dumps(_embedding_notebook(result_file)))
    port = _free_port()
    log = open(tmp_path / "lab.log", "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--allow-root",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            "--IdentityProvider.token=",
            "--ServerApp.password=",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.extension_manager=readonly",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            f"--ServerApp.root_dir={work}",
        ],
        cwd=work,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def up():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2) as r:
                return r.status == 200
        except OSError:
            return proc.poll() is not None  # stop waiting if it died

    try:
        _wait(up, 45, "JupyterLab to start")
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited: {(tmp_path / 'lab.log').read_text()[-2000:]}")
        yield f"http://127.0.0.1:{port}", result_file
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()


LISTEN_HOVER = """() => {
  const gd = document.querySelector('.js-plotly-plot');
  window.__hovered = null;
  gd.on('plotly_hover', d => { window.__hovered = d.points[0].pointNumber; });
  gd.on('plotly_unhover', () => { window.__hovered = null; });
}"""


def _hover_hit(page, box) -> tuple[float, float] | None:
    """Move the mouse over the plot until plotly reports a hovered marker (within a few px of one).

    plotly's 3D hover is computed in the WebGL render loop, so each position waits ~0.3 s."""
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.6
    for dx, dy in [
        (0, 0),
        (9, 4),
        (-9, -4),
        (4, -9),
        (-4, 9),
        (18, 8),
        (-18, -8),
        (30, 0),
        (-30, 0),
        (0, 40),
    ]:
        page.mouse.move(cx + dx, cy + dy, steps=3)
        page.wait_for_timeout(300)
        if page.evaluate("() => window.__hovered !== null"):
            return cx + dx, cy + dy
    return None


def test_click_in_jupyterlab_recolours_by_similarity(lab):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    url, result_file = lab
    start = time.monotonic()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1200})
            page.set_default_timeout(30_000)
            page.goto(f"{url}/lab/tree/explorer.ipynb?reset")
            page.wait_for_function(KERNEL_READY, timeout=45_000, polling=250)
            page.evaluate(RUN_CELL, 0)
            page.wait_for_function(
                "() => { const g = document.querySelector('.js-plotly-plot');"
                " return g && g._fullLayout && g._fullLayout.scene; }",
                timeout=45_000,
            )
            page.wait_for_function(KERNEL_READY, timeout=30_000, polling=250)
            page.wait_for_timeout(1500)  # first WebGL frames
            before = page.evaluate(MARKER_STATE)
            assert before and all(b.startswith("source:") for b in before), before
            plot = page.locator(".js-plotly-plot").first
            plot.scroll_into_view_if_needed()
            box = plot.bounding_box()
            page.evaluate(LISTEN_HOVER)
            recoloured = False
            for _attempt in range(3):  # a click only fires with a marker under the pointer: retry
                hit = _hover_hit(page, box)
                assert hit is not None, "no plotly marker found under the mouse"
                page.mouse.down()
                page.wait_for_timeout(900)  # plotly 3D needs the button held during a render frame
                page.mouse.up()
                try:
                    page.wait_for_function(
                        f"() => ({MARKER_STATE})().every(s => s.startsWith('similarity:'))", timeout=10_000
                    )
                    recoloured = True
                    break
                except PlaywrightTimeout:
                    box = {**box, "y": box["y"] + 25}
            assert recoloured, "clicking a point did not recolour the markers"
            after = page.evaluate(MARKER_STATE)
            page.wait_for_timeout(500)
            page.screenshot(path=str(ARTIFACTS / "browser_explorer.png"))
            page.evaluate(RUN_CELL, 1)
            _wait(result_file.exists, 20, "the kernel-side check")
        finally:
            browser.close()
    result = json.loads(result_file.read_text())
    assert result["query"] is not None
    assert result["similarity"], result
    assert result["one"] == pytest.approx(1.0, abs=1e-4)  # the clicked point is most similar to itself
    assert all(a.startswith("similarity:") for a in after) and before != after
    assert time.monotonic() - start < DEADLINE_S + 30


def _launch(p):
    return p.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--no-first-run"],
    )


PLOTS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(g => ({
  is3d: !!(g._fullLayout && g._fullLayout.scene),
  ready: !!(g._fullLayout && g.data && g.data.length),
}))"""

BOX_PIXELS = """() => {
  // page pixels of a box over the left half of the 2D embedding plot (x < 0: the left cluster), inside
  // the axes (a drag that starts outside them selects nothing)
  const g = Array.from(document.querySelectorAll('.js-plotly-plot')).find(g => !g._fullLayout.scene);
  const r = g.getBoundingClientRect(), L = g._fullLayout, s = L._size;
  const [xa, xb] = L.xaxis.range, [ya, yb] = L.yaxis.range;
  const px = x => r.left + s.l + L.xaxis.l2p(x), py = y => r.top + s.t + L.yaxis.l2p(y);
  return [px(xa + 0.02 * (xb - xa)), py(yb - 0.03 * (yb - ya)), px(0), py(ya + 0.03 * (yb - ya))];
}"""

HIGHLIGHTED_3D = """() => {
  const g = Array.from(document.querySelectorAll('.js-plotly-plot')).find(g => g._fullLayout.scene);
  const t = g.data.find(t => t.name === 'selection');
  return t && t.x ? t.x.length : 0;
}"""


def test_box_in_the_embedding_highlights_the_points_in_3d(lab):
    """Drag a box around the left cluster of the embedding (select mode): the kernel's selection is that
    cluster, and the page's 3D view draws exactly those points as highlighted."""
    from playwright.sync_api import sync_playwright

    url, result_file = lab
    start = time.monotonic()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.set_default_timeout(30_000)
            page.goto(f"{url}/lab/tree/embedding.ipynb?reset")
            page.wait_for_function(KERNEL_READY, timeout=45_000, polling=250)
            page.evaluate(RUN_CELL, 0)
            page.wait_for_function(
                f"() => {{ const p = ({PLOTS})(); return p.length === 2 && p.every(q => q.ready); }}",
                timeout=45_000,
            )
            page.wait_for_function(KERNEL_READY, timeout=30_000, polling=250)
            page.wait_for_timeout(1000)
            assert page.evaluate(HIGHLIGHTED_3D) == 0
            embedding = page.locator(".js-plotly-plot").first
            embedding.scroll_into_view_if_needed()
            x0, y0, x1, y1 = page.evaluate(BOX_PIXELS)
            page.mouse.move(x0, y0)
            page.mouse.down()
            page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=5)
            page.mouse.move(x1, y1, steps=10)
            page.mouse.up()
            # the selection goes to the kernel, which sends the highlight back to the 3D view
            page.wait_for_function(f"() => ({HIGHLIGHTED_3D})() > 0", timeout=20_000)
            highlighted = page.evaluate(HIGHLIGHTED_3D)
            page.wait_for_timeout(500)
            page.screenshot(path=str(ARTIFACTS / "browser_embedding.png"))
            page.evaluate(RUN_CELL, 1)
            _wait(result_file.exists, 20, "the kernel-side check")
        finally:
            browser.close()
    result = json.loads(result_file.read_text())
    half = EMBEDDING_POINTS // 2
    assert result["selected"] == list(range(half)), result["selected"][:10]  # exactly the left cluster
    assert result["highlighted"] == half and highlighted == half
    assert f"{half} points selected" in result["status"] and "a 100%" in result["status"]
    assert time.monotonic() - start < DEADLINE_S + 30
