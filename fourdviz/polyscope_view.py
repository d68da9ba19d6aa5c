"""Desktop back end (polyscope): :func:`show` opens a viewer, :func:`screenshot` renders the same
scene headless to PNG (Mesa's software EGL, no display or GPU needed).

The scene: one point cloud per frame (colours: scan colours for the scene, the frame's colour for the
object; a ``similarity`` scalar quantity when features are given), one curve network of correspondence
lines per consecutive frame pair (coloured by pair), and the object's trajectory as a curve network.
The ImGui panel has a frame slider, toggles, and a query-point picker: click a point (or type its frame
and index) to colour every frame by cosine similarity to it.

polyscope is a process-wide singleton with one OpenGL context, and that context must only be touched
from one thread (JupyterLab runs widget callbacks on other threads). So every polyscope call of this
module goes through a single worker thread, :func:`_call`; that worker is this module's only state.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
from dataclasses import dataclass, field

import numpy as np

from fourdcontrast.io.atomic import atomic_path
from fourdviz import colors as C
from fourdviz._display import side_by_side_offsets, subsample_indices
from fourdviz._optional import require
from fourdviz.correspondences import MAX_DISPLAY_LINES, display_pairs
from fourdviz.features import check_features, query_similarity

POINT_RADIUS = 0.0025
"""Point radius relative to the scene's bounding box (polyscope's ``relative`` units)."""
LINE_RADIUS = 0.0006
"""Correspondence-line radius, relative."""
SCREENSHOT_SIZE = (1280, 720)
"""Default width, height of headless screenshots, pixels."""
HEADLESS_BACKEND = "openGL3_egl"
"""polyscope backend for headless rendering (Mesa software EGL)."""

_worker_lock = threading.Lock()
_worker: dict = {}  # {"executor": ThreadPoolExecutor, "backend": str | None}


def _call(fn, *args, **kwargs):
    """Run ``fn`` on the single polyscope worker thread and return its result (exceptions propagate)."""
    with _worker_lock:
        if "executor" not in _worker:
            _worker["executor"] = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="polyscope")
            _worker["backend"] = None
        executor = _worker["executor"]
    return executor.submit(fn, *args, **kwargs).result()


def _ensure_init(headless: bool):
    """(worker thread) Import and initialise polyscope once; returns the module."""
    ps = require("polyscope", "the polyscope viewer")
    wanted = HEADLESS_BACKEND if headless else "auto"
    current = _worker.get("backend")
    if current is None:
        ps.set_verbosity(0)
        ps.set_use_prefs_file(False)
        ps.set_program_name("fourdviz")
        if headless:
            ps.set_allow_headless_backends(True)
        try:
            ps.init(wanted)
        except Exception as exc:  # noqa: BLE001 - polyscope raises RuntimeError from C++
            hint = (
                "install libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1 libx11-6 (make system-deps)"
                if headless
                else "no display: run under `xvfb-run -a`, or use fourdviz.screenshot(...) for a PNG"
            )
            raise RuntimeError(f"polyscope could not start its {wanted!r} backend ({exc}); {hint}") from exc
        _worker["backend"] = wanted
        ps.set_up_dir("z_up")
        ps.set_front_dir("neg_y_front")
        ps.set_ground_plane_mode("none")
    elif current != wanted and not (current == HEADLESS_BACKEND and headless):
        if current == HEADLESS_BACKEND:
            raise RuntimeError(
                "polyscope was started headless in this process (by fourdviz.screenshot); it cannot open a "
                "window afterwards — call fourdviz.show(...) in a fresh process"
            )
    return ps


@dataclass
class ViewerState:
    """What the viewer shows; :func:`show` returns it after the window closes.

    Attributes:
        frame: the frame shown alone, or -1 for all frames.
        show_scene: draw the scene points (off: only the object points).
        show_correspondences: draw the correspondence curve networks.
        query: ``(frame, index)`` of the similarity query point, or None.
        frames_drawn: how many times the ImGui callback ran.
        picked: the last picked point as ``(frame, index, source, source_index)``.
    """

    frame: int = -1
    show_scene: bool = True
    show_correspondences: bool = True
    query: tuple[int, int] | None = None
    frames_drawn: int = 0
    picked: tuple[int, int, int, int] | None = None
    _names: dict = field(default_factory=dict, repr=False)


def _register(ps, sequence, features, state: ViewerState, layout: str, max_points, max_lines: int, rng):
    """(worker thread) Register every structure of the sequence; returns {frame: displayed indices}."""
    ps.remove_all_structures()
    T = len(sequence.frames)
    if layout == "side":
        offsets = side_by_side_offsets(sequence)
    elif layout == "overlay":
        offsets = np.zeros((T, 3))
    else:
        raise ValueError(f"unknown layout {layout!r} (use 'overlay' or 'side')")
    shown = {}
    for t, frame in enumerate(sequence.frames):
        keep = subsample_indices(len(frame), max_points, rng)
        shown[t] = keep
        for part, mask in (("scene", frame.source[keep] == 0), ("object", frame.source[keep] != 0)):
            name = f"frame {t} {part}"
            idx = keep[mask]
            cloud = ps.register_point_cloud(name, frame.points[idx] + offsets[t], radius=POINT_RADIUS)
            cloud.add_color_quantity("colour", C.point_colors(sequence, t)[idx], enabled=True)
            state._names[name] = (t, idx)
    for i in range(T - 1):
        a, b, _ = display_pairs(sequence, i, i + 1, max_lines, rng)
        nodes = np.concatenate(
            [sequence.frames[i].points[a] + offsets[i], sequence.frames[i + 1].points[b] + offsets[i + 1]]
        )
        edges = np.stack([np.arange(len(a)), np.arange(len(a)) + len(a)], axis=1)
        net = ps.register_curve_network(f"matches {i}-{i + 1}", nodes, edges, radius=LINE_RADIUS)
        net.set_color(C.pair_color(i, i + 1, T))
    poses = np.array([f.object_pose for f in sequence.frames])
    if T > 1:
        path = poses[:, :3, 3] + offsets
        net = ps.register_curve_network("trajectory", path, "line", radius=LINE_RADIUS * 3)
        net.set_color((0.1, 0.1, 0.1))
    _apply_state(ps, sequence, features, state)
    return shown


def _apply_state(ps, sequence, features, state: ViewerState) -> None:
    """(worker thread) Enable/disable structures and (re)colour by similarity per ``state``."""
    sims = query_similarity(features, *state.query) if (features is not None and state.query) else None
    for name, (t, idx) in state._names.items():
        cloud = ps.get_point_cloud(name)
        visible = state.frame in (-1, t) and (state.show_scene or name.endswith("object"))
        cloud.set_enabled(visible)
        if sims is not None:
            cloud.add_scalar_quantity(
                "similarity", sims[t][idx], vminmax=(-1.0, 1.0), cmap="viridis", enabled=True
            )
        elif features is not None:
            cloud.add_color_quantity("colour", C.point_colors(sequence, t)[idx], enabled=True)
    for i in range(len(sequence.frames) - 1):
        name = f"matches {i}-{i + 1}"
        if ps.has_curve_network(name):
            ps.get_curve_network(name).set_enabled(
                state.show_correspondences and state.frame in (-1, i, i + 1)
            )


def _oblique_camera(ps, sequence, layout: str, size: tuple[int, int]) -> None:
    """(worker thread) Look at the whole layout from the front (-y), ~60° above the horizon."""
    offsets = side_by_side_offsets(sequence) if layout == "side" else np.zeros((len(sequence.frames), 3))
    pts = np.concatenate(
        [f.points[:: max(1, len(f) // 2000)] + o for f, o in zip(sequence.frames, offsets, strict=True)]
    )
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    centre = (lo + hi) / 2
    aspect = size[0] / max(size[1], 1)
    # distance so the layout's width fits polyscope's default 45° vertical field of view
    span = max((hi[0] - lo[0]) / aspect, hi[1] - lo[1], hi[2] - lo[2])
    dist = 0.75 * span / np.tan(np.radians(22.5))
    direction = np.array([0.0, -0.6, 1.0]) / np.linalg.norm([0.0, -0.6, 1.0])
    ps.look_at(tuple(centre + dist * direction), tuple(centre))


def _callback(ps, sequence, features, state: ViewerState):
    """(worker thread) The ImGui panel: frame slider, toggles, query picking."""
    psim = ps.imgui
    T = len(sequence.frames)
    state.frames_drawn += 1
    changed = False
    psim.TextUnformatted(f"{sequence.scene.name} + {sequence.obj.category}: {T} frames")
    c, state.frame = psim.SliderInt("frame (-1 = all)", state.frame, -1, T - 1)
    changed |= c
    c, state.show_scene = psim.Checkbox("scene points", state.show_scene)
    changed |= c
    c, state.show_correspondences = psim.Checkbox("correspondences", state.show_correspondences)
    changed |= c
    if ps.have_selection():
        sel = ps.get_selection()
        if sel.is_hit and sel.structure_name in state._names:
            t, idx = state._names[sel.structure_name]
            k = int(idx[sel.local_index])
            f = sequence.frames[t]
            state.picked = (t, k, int(f.source[k]), int(f.index[k]))
            if features is not None and state.query != (t, k):
                state.query = (t, k)
                changed = True
        ps.reset_selection()
    if state.picked:
        t, k, s, i = state.picked
        psim.TextUnformatted(f"picked: frame {t}, point {k} ({'object' if s else 'scene'} #{i})")
    if features is not None:
        psim.TextUnformatted("click a point: colour all frames by feature similarity")
        q = state.query or (0, 0)
        c1, qt = psim.InputInt("query frame", q[0])
        c2, qk = psim.InputInt("query point", q[1])
        if (c1 or c2) and 0 <= qt < T and 0 <= qk < len(sequence.frames[qt]):
            state.query = (qt, qk)
            changed = True
        if state.query and psim.Button("clear similarity"):
            state.query = None
            changed = True
    if changed:
        _apply_state(ps, sequence, features, state)


def show(
    sequence,
    features=None,
    layout: str = "overlay",
    query: tuple[int, int] | None = None,
    max_points: int | None = None,
    max_lines: int = MAX_DISPLAY_LINES,
    frames: int | None = None,
    rng=0,
) -> ViewerState:
    """Open the polyscope viewer on a sequence (blocks until the window is closed).

    Args:
        sequence: a :class:`fourdcontrast.Sequence`.
        features: optional per-frame (n_t, C) features; enables the similarity heatmap on click.
        layout: ``"overlay"`` (frames in place, the 4D view) or ``"side"`` (frames next to each other).
        query: optional initial query point ``(frame, index)``.
        max_points: points per frame (random subsample; None = all — polyscope handles millions).
        max_lines: correspondence lines per consecutive frame pair.
        frames: render this many frames and return instead of waiting for the window to close
            (for scripts and tests).
        rng: generator or seed of the display subsamples.

    Returns:
        The final :class:`ViewerState` (frame, toggles, query, last pick).
    """
    feats = check_features(sequence, features) if features is not None else None
    state = ViewerState(query=query)

    def run():
        ps = _ensure_init(headless=False)
        _register(ps, sequence, feats, state, layout, max_points, max_lines, rng)
        ps.set_user_callback(lambda: _callback(ps, sequence, feats, state))
        try:
            if frames is None:
                ps.show()
            else:
                ps.show(forFrames=int(frames))
        finally:
            ps.clear_user_callback()
        return state

    return _call(run)


def screenshot(
    sequence,
    features=None,
    path: str | os.PathLike | None = None,
    layout: str = "side",
    query: tuple[int, int] | None = None,
    max_points: int | None = None,
    max_lines: int = MAX_DISPLAY_LINES,
    size: tuple[int, int] = SCREENSHOT_SIZE,
    show_correspondences: bool = True,
    rng=0,
) -> np.ndarray:
    """Render the viewer's scene headless (EGL) and return it as an (H, W, 4) uint8 RGBA image.

    Args:
        sequence, features, layout, query, max_points, max_lines, rng: as in :func:`show`
            (``layout`` defaults to ``"side"`` so every frame is visible in one picture).
        path: optional PNG file to write (atomically).
        size: (width, height) in pixels.
        show_correspondences: draw the correspondence lines.

    Returns:
        The RGBA image.
    """
    feats = check_features(sequence, features) if features is not None else None
    state = ViewerState(query=query, show_correspondences=show_correspondences)

    def run():
        ps = _ensure_init(headless=True)
        ps.set_window_size(*size)
        _register(ps, sequence, feats, state, layout, max_points, max_lines, rng)
        _oblique_camera(ps, sequence, layout, size)
        image = ps.screenshot_to_buffer(transparent_bg=False)
        if path is not None:
            with atomic_path(path) as tmp:
                ps.screenshot(str(tmp), transparent_bg=False)
        ps.remove_all_structures()
        return np.asarray(image)

    return _call(run)
