"""Static back end (matplotlib): every view renders to a :class:`matplotlib.figure.Figure` / PNG.

For notebooks, docs and reports. Figures are built with ``matplotlib.figure.Figure`` directly (no pyplot
state), so rendering many figures in a loop leaks nothing; :func:`save_figure` writes PNGs atomically.
Large clouds are subsampled for display and every title says so.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Sequence as SequenceABC
from pathlib import Path

import numpy as np

from fourdcontrast.io.atomic import atomic_write_bytes
from fourdviz import colors as C
from fourdviz._display import side_by_side_offsets, subsample_indices
from fourdviz._optional import require
from fourdviz.correspondences import (
    MAX_DISPLAY_LINES,
    check_correspondences,
    display_pairs,
    expected_points,
    position_errors,
    segments,
    subsample_pairs,
)
from fourdviz.features import MAX_EMBEDDING_POINTS, check_features, embed, query_similarity

MAX_STATIC_POINTS = 6000
"""Points drawn per frame in a static 3D view (matplotlib's 3D scatter slows beyond ~10^4)."""
POINT_SIZE = 2.0
"""Marker area (pt²) of points in 3D scatters."""
FIGURE_DPI = 110
"""Resolution of saved PNGs."""
ELEVATION, AZIMUTH = 35.0, -60.0
"""Default camera of 3D views, degrees."""


@functools.cache
def _notebook_figure_class():
    from matplotlib.figure import Figure

    class NotebookFigure(Figure):
        """A Figure that Jupyter shows as a PNG even before pyplot has chosen the inline backend
        (matplotlib resolves its backend lazily, and until then IPython has no Figure formatter)."""

        def _repr_png_(self) -> bytes:
            buf = io.BytesIO()
            self.savefig(buf, format="png", bbox_inches="tight")
            return buf.getvalue()

    return NotebookFigure


def _figure(width: float, height: float):
    require("matplotlib", "the static (matplotlib) views")
    return _notebook_figure_class()(figsize=(width, height), layout="constrained")


def _axes3d(fig, *args):
    ax = fig.add_subplot(*args, projection="3d")
    ax.view_init(elev=ELEVATION, azim=AZIMUTH)
    return ax


def _equal_3d(ax, points: np.ndarray) -> None:
    """Equal scale on all axes, limits fitted to ``points`` (N, 3)."""
    pts = np.asarray(points, dtype=np.float64)
    pts = pts[np.isfinite(pts).all(axis=1)]
    if not len(pts):
        return
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    size = np.maximum(hi - lo, 1e-3)
    centre = (lo + hi) / 2
    for setter, c, s in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), centre, size, strict=True):
        setter(c - s / 2, c + s / 2)
    ax.set_box_aspect(size)
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_zlabel("z (m)")
    ax.tick_params(labelsize=7)


def _scatter(ax, points, colors, size=POINT_SIZE, **kw):
    pts = np.asarray(points)
    if len(pts):
        ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], c=colors, s=size, linewidths=0, depthshade=False, **kw)


def _lines3d(ax, a, b, color, width=0.6, alpha=0.8, label=None):
    if len(a):
        seg = segments(a, b)
        ax.plot(seg[:, 0], seg[:, 1], seg[:, 2], color=color, lw=width, alpha=alpha, label=label)


def _scatter2d(ax, points, colors, size=POINT_SIZE, **kw):
    pts = np.asarray(points)
    if len(pts):
        ax.scatter(pts[:, 0], pts[:, 1], c=colors, s=size, linewidths=0, **kw)


def _lines2d(ax, a, b, color, width=0.6, alpha=0.8):
    """Segments a[k] → b[k] projected on the xy-plane (top-down)."""
    from matplotlib.collections import LineCollection

    if len(a):
        seg = np.stack([np.asarray(a)[:, :2], np.asarray(b)[:, :2]], axis=1)
        ax.add_collection(LineCollection(seg, colors=[color], linewidths=width, alpha=alpha, zorder=3))


def _top_down(ax, title=None, xlabel="x (m)  [frames laid side by side]"):
    """Style a top-down (xy) axis: equal metres on both axes, autoscaled, labelled, titled."""
    ax.set_aspect("equal", adjustable="datalim")
    ax.autoscale_view()
    ax.set_xlabel(xlabel)
    ax.set_ylabel("y (m)")
    if title:
        ax.set_title(title, fontsize=10)


def _subsample_note(shown: int, total: int) -> str:
    return "" if shown >= total else f" — showing {shown:,} of {total:,} points (subsampled)"


def _frame_display(sequence, t: int, max_points: int | None, rng, use_view: bool = False):
    frame = sequence.frames[t]
    keep = subsample_indices(len(frame), max_points, rng)
    pts = (frame.view_points() if use_view else frame.points)[keep]
    return keep, pts, C.point_colors(sequence, t)[keep]


def _muted(sequence, t: int, keep: np.ndarray, colors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scene colours blended towards grey and object points enlarged, so the moving object stands out.
    Returns (colours, marker sizes)."""
    from fourdcontrast.records import SOURCE_OBJECT

    is_obj = sequence.frames[t].source[keep] == SOURCE_OBJECT
    out = colors.copy()
    out[~is_obj] = 0.35 * out[~is_obj] + 0.65 * np.asarray(C.SCENE_COLOR, np.float32)
    return out, np.where(is_obj, 4 * POINT_SIZE, POINT_SIZE)


def _legend_handles(entries):
    from matplotlib.lines import Line2D

    return [
        Line2D([], [], marker="o", ls="" if kind == "point" else "-", color=col, label=lab, markersize=6)
        for lab, col, kind in entries
    ]


def _trajectory_overlay(ax, sequence, current: int | None = None) -> None:
    """Draw the object's path (polyline of per-frame positions) and its heading at every pose."""
    poses = np.array([f.object_pose for f in sequence.frames], dtype=np.float64)
    pos = poses[:, :3, 3]
    ax.plot(pos[:, 0], pos[:, 1], pos[:, 2], color="k", lw=1.5, marker="o", ms=3, zorder=5)
    heading = poses[:, :3, 0] * max(sequence.obj.radius, 0.1)
    for t in range(len(pos)):
        lw = 2.5 if t == current else 1.2
        ax.quiver(*pos[t], *heading[t], color=C.frame_color(t), lw=lw, arrow_length_ratio=0.3)
        ax.text(*pos[t] + np.array([0, 0, 0.05]), f"t={t}", fontsize=7)


def plot_sequence(
    sequence,
    layout: str = "side",
    max_points: int | None = MAX_STATIC_POINTS,
    show_trajectory: bool = True,
    rng=0,
    use_view: bool = False,
):
    """A 4D sequence: frames side by side or overlaid; scene vs object coloured; the object's path.

    Args:
        sequence: a :class:`fourdcontrast.Sequence`.
        layout: ``"side"`` — one panel per frame; ``"overlay"`` — all frames in one panel (the static
            scene drawn once, the object once per frame in that frame's colour).
        max_points: points drawn per frame (random subsample; None = all).
        show_trajectory: draw the trajectory polyline with an arrow for each per-frame pose.
        rng: generator or seed of the display subsample.
        use_view: draw each frame's augmented 3D view (``Frame.view_points()``: its own random rotation,
            translation and scale) instead of the shared 4D coordinates; only with ``layout="side"``,
            each panel on its own axes and without the trajectory (which lives in scene coordinates).

    Returns:
        The matplotlib Figure.
    """
    from fourdcontrast.records import SOURCE_OBJECT

    if use_view and layout != "side":
        raise ValueError("plot_sequence: use_view=True needs layout='side' (each 3D view has its own frame)")
    show_trajectory = show_trajectory and not use_view
    T = len(sequence.frames)
    total = sum(len(f) for f in sequence.frames)
    if layout == "side":
        fig = _figure(4.2 * T, 4.4)
        shown = 0
        for t in range(T):
            ax = _axes3d(fig, 1, T, t + 1)
            keep, pts, col = _frame_display(sequence, t, max_points, rng, use_view=use_view)
            shown += len(keep)
            col, size = _muted(sequence, t, keep, col)
            _scatter(ax, pts, col, size=size)
            if show_trajectory:
                _trajectory_overlay(ax, sequence, current=t)
            n_obj = int((sequence.frames[t].source == SOURCE_OBJECT).sum())
            kind = "3D view" if use_view else "frame"
            ax.set_title(f"{kind} {t}: {len(sequence.frames[t]):,} pts ({n_obj:,} object)", fontsize=9)
            _equal_3d(ax, pts if use_view else np.concatenate([f.points for f in sequence.frames]))
    elif layout == "overlay":
        fig = _figure(7.5, 6.0)
        ax = _axes3d(fig, 1, 1, 1)
        shown = 0
        for t in range(T):
            keep, pts, col = _frame_display(sequence, t, max_points, rng)
            is_obj = sequence.frames[t].source[keep] == SOURCE_OBJECT
            sel = is_obj if t else np.ones(len(keep), dtype=bool)  # the static scene once
            shown += int(sel.sum())
            col, size = _muted(sequence, t, keep, col)
            _scatter(ax, pts[sel], col[sel], size=size[sel])
        if show_trajectory:
            _trajectory_overlay(ax, sequence)
        _equal_3d(ax, np.concatenate([f.points for f in sequence.frames]))
        total = len(sequence.frames[0]) + sum(
            int((f.source == SOURCE_OBJECT).sum()) for f in sequence.frames[1:]
        )
    else:
        raise ValueError(f"plot_sequence: unknown layout {layout!r} (use 'side' or 'overlay')")
    entries = [("scene (muted)", C.SCENE_COLOR, "point")]
    entries += [(f"object, frame {t}", C.frame_color(t), "point") for t in range(T)]
    if show_trajectory:
        entries.append(("trajectory", (0, 0, 0), "line"))
    fig.legend(
        handles=_legend_handles(entries), loc="outside lower center", ncol=min(len(entries), 6), fontsize=8
    )
    fig.suptitle(
        f"4D sequence '{sequence.scene.name}' + {sequence.obj.category} ({T} frames)"
        + _subsample_note(shown, total),
        fontsize=11,
    )
    return fig


def plot_trajectory_sampling(trajectory, scene=None, title: str | None = None):
    """Why a trajectory went where it went: the height map, floor, valid region, candidates and path.

    Args:
        trajectory: a :class:`fourdcontrast.Trajectory` (its ``height_map`` is drawn; ``candidates``
            when present).
        scene: optional scene, only for the title.
        title: optional title.

    Returns:
        The matplotlib Figure: left the 10 cm height map (max height above the floor per cell), right the
        classification (floor / valid region / candidate positions) with the path and headings.
    """
    hm = trajectory.height_map
    fig = _figure(11.0, 5.2)
    ext = (
        hm.origin[0],
        hm.origin[0] + hm.shape[0] * hm.cell_size,
        hm.origin[1],
        hm.origin[1] + hm.shape[1] * hm.cell_size,
    )
    ax0 = fig.add_subplot(1, 2, 1)
    height = np.ma.masked_invalid(np.asarray(hm.max_height, dtype=np.float64) - hm.floor_height)
    im = ax0.imshow(height.T, origin="lower", extent=ext, cmap="magma", interpolation="nearest")
    fig.colorbar(im, ax=ax0, shrink=0.8, label="max height above floor (m)")
    ax0.set_title(
        f"height map ({hm.cell_size * 100:.0f} cm cells, floor z = {hm.floor_height:.2f} m)", fontsize=10
    )

    ax1 = fig.add_subplot(1, 2, 2, sharex=ax0, sharey=ax0)
    classes = np.zeros(hm.shape, dtype=np.int64)  # 0 empty, 1 occupied, 2 floor, 3 valid, 4 candidate
    classes[np.asarray(hm.accumulation) > 0] = 1
    classes[np.asarray(hm.floor, dtype=bool)] = 2
    classes[np.asarray(hm.valid, dtype=bool)] = 3
    if hm.candidates is not None:
        classes[np.asarray(hm.candidates, dtype=bool)] = 4
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    palette = ["#ffffff", "#8c8c8c", "#cfe3f5", "#7fc97f", "#1b7837"]
    names = ["empty", "occupied (not floor)", "floor", "valid region", "candidate positions"]
    ax1.imshow(
        classes.T,
        origin="lower",
        extent=ext,
        cmap=ListedColormap(palette),
        vmin=-0.5,
        vmax=4.5,
        interpolation="nearest",
    )
    for ax in (ax0, ax1):
        pos = np.asarray(trajectory.positions, dtype=np.float64)
        ax.plot(pos[:, 0], pos[:, 1], "-", color="#d62728", lw=2, zorder=4)
        r = max(trajectory.object_radius, hm.cell_size)
        for t, (p, yaw) in enumerate(zip(pos, trajectory.yaws, strict=True)):
            ax.add_patch(_circle(p[:2], trajectory.object_radius, C.frame_color(t)))
            ax.annotate(
                "",
                xy=p[:2] + r * np.array([np.cos(yaw), np.sin(yaw)]),
                xytext=p[:2],
                arrowprops=dict(arrowstyle="->", color="k", lw=1.2),
                zorder=6,
            )
            ax.text(p[0], p[1], f" t={t}", fontsize=8, zorder=7, color="k")
        ax.set_xlabel("x (m)")
        ax.set_ylabel("y (m)")
        ax.set_aspect("equal")
    handles = [
        Patch(facecolor=c, edgecolor="k", label=n) for c, n in zip(palette[1:], names[1:], strict=True)
    ]
    handles += _legend_handles([("path (positions, headings)", "#d62728", "line")])
    fig.legend(handles=handles, fontsize=8, loc="outside lower center", ncol=len(handles))
    steps = trajectory.step_lengths
    ax1.set_title(
        f"sampling: {len(trajectory)} positions, steps {steps.min():.2f}–{steps.max():.2f} m"
        if len(steps)
        else "sampling",
        fontsize=10,
    )
    name = f" in '{scene.name}'" if scene is not None else ""
    fig.suptitle(title or f"trajectory sampling{name} (object radius {trajectory.object_radius:.2f} m)")
    return fig


def _circle(xy, radius, color):
    from matplotlib.patches import Circle

    return Circle(xy, radius, facecolor=(*color, 0.35), edgecolor=color, lw=1.2, zorder=5)


def _default_pairs(T: int) -> list[tuple[int, int]]:
    return [(t, t + 1) for t in range(T - 1)]


def plot_correspondences(
    sequence,
    pairs: SequenceABC[tuple[int, int]] | None = None,
    max_lines: int = MAX_DISPLAY_LINES,
    max_points: int | None = MAX_STATIC_POINTS,
    use_view: bool = False,
    rng=0,
):
    """Lines between matched points of frame pairs, the frames laid side by side (top-down view).

    Args:
        sequence: a :class:`fourdcontrast.Sequence`.
        pairs: frame pairs to connect (default: consecutive frames).
        max_lines: lines drawn per pair (random subsample of the provenance matches; object matches are
            drawn first, since scene matches of the 4D view are trivially static).
        max_points: points drawn per frame.
        use_view: show the augmented 3D views (``Frame.view_points``) instead of the 4D points.
        rng: generator or seed of the display subsample.
    """

    T = len(sequence.frames)
    pairs = list(pairs) if pairs is not None else _default_pairs(T)
    offsets = side_by_side_offsets(sequence, use_view=use_view)
    fig = _figure(3.6 * T + 1, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    for t in range(T):
        _, pts, col = _frame_display(sequence, t, max_points, rng, use_view)
        _scatter2d(ax, pts + offsets[t], 0.45 * col + 0.55, size=1.5)
        lo = (pts + offsets[t]).min(axis=0)
        ax.text(lo[0], lo[1], f"frame {t}", fontsize=9, va="top", fontweight="bold")
    entries = []
    for i, j in pairs:
        fi, fj = sequence.frames[i], sequence.frames[j]
        sel_i, sel_j, n_matches = display_pairs(sequence, i, j, max_lines, rng)
        pi = (fi.view_points() if use_view else fi.points)[sel_i] + offsets[i]
        pj = (fj.view_points() if use_view else fj.points)[sel_j] + offsets[j]
        color = C.pair_color(i, j, T)
        _lines2d(ax, pi, pj, color)
        entries.append((f"frames {i}↔{j}: {len(sel_i)} of {n_matches:,} matches", color, "line"))
    _top_down(ax)
    ax.legend(
        handles=_legend_handles(entries),
        loc="upper center",
        bbox_to_anchor=(0.5, -0.15),
        ncol=min(len(entries), 3),
        fontsize=8,
    )
    which = "3D views (augmented)" if use_view else "4D view"
    fig.suptitle(f"correspondences from provenance, {which}, seen from above", fontsize=11)
    return fig


def plot_correspondences_3d4d(
    sequence,
    frame: int = 0,
    max_lines: int = MAX_DISPLAY_LINES,
    max_points: int | None = MAX_STATIC_POINTS,
    rng=0,
):
    """3D-4D correspondences: the augmented 3D view of one frame (left) linked to the same points in
    the 4D sequence (right, all frames overlaid), as used by the 3D-4D loss (paper, Sec. 3.2).
    Seen from above; the 3D view's random rotation shows as a rotated, scaled copy.

    Args:
        sequence: a :class:`fourdcontrast.Sequence`.
        frame: which frame's 3D view.
        max_lines: lines drawn (random subsample).
        max_points: points drawn per frame.
        rng: generator or seed of the display subsample.
    """
    from fourdcontrast.records import SOURCE_OBJECT

    T = len(sequence.frames)
    f = sequence.frames[frame]
    view = f.view_points().astype(np.float64)
    four = np.concatenate([fr.points for fr in sequence.frames]).astype(np.float64)
    width4 = four[:, 0].max() - four[:, 0].min()
    shift = np.array(
        [four[:, 0].min() - view[:, 0].max() - 0.3 * width4, four[:, 1].mean() - view[:, 1].mean(), 0]
    )
    view = view + shift
    fig = _figure(10, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    keep = subsample_indices(len(f), max_points, rng)
    _scatter2d(ax, view[keep], 0.45 * C.point_colors(sequence, frame)[keep] + 0.55, size=1.5)
    for t in range(T):
        k, pts, col = _frame_display(sequence, t, max_points, rng)
        sel = (sequence.frames[t].source[k] == SOURCE_OBJECT) | (t == 0)
        _scatter2d(ax, pts[sel], 0.45 * col[sel] + 0.55, size=1.5)
    is_obj = f.source == SOURCE_OBJECT
    sel = subsample_pairs(
        np.arange(len(f)),
        np.arange(len(f)),
        max_lines,
        rng,
        keep=np.isin(np.arange(len(f)), np.flatnonzero(is_obj)[::4]),
    )
    _lines2d(ax, view[sel], f.points[sel], C.frame_color(frame), width=0.5)
    ax.text(view[:, 0].min(), view[:, 1].max(), f"3D view of frame {frame}", fontsize=9, fontweight="bold")
    ax.text(four[:, 0].min(), four[:, 1].max(), "4D sequence (all frames)", fontsize=9, fontweight="bold")
    _top_down(ax)
    scale = float(np.cbrt(abs(np.linalg.det(f.view_transform[:3, :3]))))
    fig.suptitle(
        f"3D–4D correspondences of frame {frame} (view scale {scale:.2f}): {len(sel)} of {len(f):,} lines",
        fontsize=11,
    )
    return fig


def plot_correspondence_check(
    sequence,
    i: int = 0,
    j: int = 1,
    pairs=None,
    tolerance: float | None = None,
    max_lines: int = MAX_DISPLAY_LINES,
    max_points: int | None = MAX_STATIC_POINTS,
    rng=0,
):
    """Checker view: correct matches green, broken ones red, points whose partner is missing orange.

    Matches come from provenance (or ``pairs``, e.g. the pipeline's ``frame_correspondences``) and are
    checked against the known transforms (see :func:`fourdviz.correspondences.check_correspondences`).
    Broken pairs and missing points are always drawn; correct ones are subsampled (object ones first).
    Left: both frames side by side from above with the lines; right: a close-up of the object in frame
    ``i`` with each point's error.
    """
    from fourdcontrast.records import SOURCE_OBJECT
    from fourdviz.correspondences import POSITION_TOLERANCE

    tol = POSITION_TOLERANCE if tolerance is None else tolerance
    check = check_correspondences(sequence, i, j, pairs, tol)
    offsets = side_by_side_offsets(sequence)
    fig = _figure(12, 5.0)
    gs = fig.add_gridspec(1, 3)
    ax = fig.add_subplot(gs[0, :2])
    for t in (i, j):
        _, pts, col = _frame_display(sequence, t, max_points, rng)
        _scatter2d(ax, pts + offsets[t], 0.35 * col + 0.65, size=1.5)
        lo = (pts + offsets[t]).min(axis=0)
        ax.text(lo[0], lo[1], f"frame {t}", fontsize=9, va="top", fontweight="bold")
    fi, fj = sequence.frames[i], sequence.frames[j]
    obj_pair = fi.source[check.idx_i] == SOURCE_OBJECT
    # correct pairs subsampled on their own budget (object pairs first), broken pairs all drawn
    good = np.flatnonzero(~check.broken)
    ok = good[subsample_pairs(check.idx_i[good], check.idx_j[good], max_lines, rng, keep=obj_pair[good])]
    bad = np.flatnonzero(check.broken)
    _lines2d(
        ax,
        fi.points[check.idx_i[ok]] + offsets[i],
        fj.points[check.idx_j[ok]] + offsets[j],
        C.OK_COLOR,
        width=0.5,
        alpha=0.5,
    )
    _lines2d(
        ax,
        fi.points[check.idx_i[bad]] + offsets[i],
        fj.points[check.idx_j[bad]] + offsets[j],
        C.BROKEN_COLOR,
        width=1.3,
        alpha=1.0,
    )
    if check.num_missing:
        m = fi.points[check.missing_i] + offsets[i]
        ax.scatter(m[:, 0], m[:, 1], marker="x", s=25, color=C.MISSING_COLOR, zorder=5, linewidths=1.2)
    _top_down(ax)
    entries = [
        (f"ok ({check.num_ok:,}; {len(ok)} drawn)", C.OK_COLOR, "line"),
        (f"broken ({check.num_broken:,}, all drawn)", C.BROKEN_COLOR, "line"),
        (f"missing partner ({check.num_missing:,})", C.MISSING_COLOR, "point"),
    ]
    ax.legend(
        handles=_legend_handles(entries), loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3, fontsize=9
    )
    # close-up: object points of the frame with the larger error, coloured by position error
    errors = {t: position_errors(sequence, t) for t in (i, j)}
    objs = {t: np.flatnonzero(sequence.frames[t].source == SOURCE_OBJECT) for t in (i, j)}
    worst = {t: float(errors[t][objs[t]].max()) if len(objs[t]) else 0.0 for t in (i, j)}
    t_close = j if worst[j] > worst[i] else i
    f_close, obj, err = sequence.frames[t_close], objs[t_close], errors[t_close]
    ax2 = fig.add_subplot(gs[0, 2])
    if len(obj):
        p = f_close.points[obj]
        sc = ax2.scatter(
            p[:, 0], p[:, 1], c=err[obj] * 100, cmap="Reds", vmin=0, vmax=max(3 * tol * 100, 1e-6), s=8
        )
        fig.colorbar(sc, ax=ax2, shrink=0.8, label="position error (cm)")
        if check.num_missing and t_close == i:
            mp = fi.points[check.missing_i]
            ax2.scatter(mp[:, 0], mp[:, 1], marker="x", s=30, color=C.MISSING_COLOR, linewidths=1.2)
        exp = expected_points(sequence, t_close)[obj]
        ax2.scatter(exp[:, 0], exp[:, 1], s=3, color="0.5", zorder=0, label="expected (pose · canonical)")
        ax2.legend(fontsize=7, loc="upper right")
    ax2.set_aspect("equal", adjustable="datalim")
    ax2.set_title(f"object in frame {t_close}: error vs. expected (tolerance {tol * 100:.1f} cm)", fontsize=9)
    ax2.set_xlabel("x (m)")
    ax2.set_ylabel("y (m)")
    fig.suptitle(f"correspondence check — {check.summary()}", fontsize=11)
    return fig


def plot_similarity(
    sequence, features, query: tuple[int, int] = (0, 0), max_points: int | None = MAX_STATIC_POINTS, rng=0
):
    """Feature-similarity heatmap: every point of every frame coloured by cosine similarity of its
    feature to the feature of the query point ``(frame, index)`` (marked with a black star).

    Args:
        sequence: a :class:`fourdcontrast.Sequence`.
        features: per-frame (n_t, C) arrays.
        query: ``(frame, point index)`` of the query point.
        max_points: points drawn per frame.
        rng: generator or seed of the display subsample.
    """
    feats = check_features(sequence, features)
    sims = query_similarity(feats, *query)
    T = len(sequence.frames)
    fig = _figure(4.0 * T + 1, 4.6)
    all_pts = np.concatenate([f.points for f in sequence.frames])
    shown = 0
    sc = None
    for t in range(T):
        ax = _axes3d(fig, 1, T, t + 1)
        keep = subsample_indices(len(sequence.frames[t]), max_points, rng)
        shown += len(keep)
        pts = sequence.frames[t].points[keep]
        order = np.argsort(sims[t][keep])  # most similar drawn last (on top)
        sc = ax.scatter(
            pts[order, 0],
            pts[order, 1],
            pts[order, 2],
            c=sims[t][keep][order],
            cmap=C.SIMILARITY_CMAP,
            vmin=-1,
            vmax=1,
            s=POINT_SIZE,
            linewidths=0,
            depthshade=False,
        )
        if t == query[0]:
            q = sequence.frames[t].points[query[1]]
            ax.scatter(*q, marker="*", s=180, c=[C.QUERY_COLOR], edgecolors="w", linewidths=0.8, zorder=10)
        ax.set_title(f"frame {t}" + (" (query)" if t == query[0] else ""), fontsize=9)
        _equal_3d(ax, all_pts)
    fig.colorbar(sc, ax=fig.axes, shrink=0.6, label="cosine similarity to the query")
    total = sum(len(f) for f in sequence.frames)
    fig.suptitle(
        f"feature similarity to point {query[1]} of frame {query[0]}" + _subsample_note(shown, total),
        fontsize=11,
    )
    return fig


def plot_embedding(
    features,
    labels=None,
    class_names=None,
    method: str = "auto",
    max_points: int = MAX_EMBEDDING_POINTS,
    rng=0,
):
    """2D embedding (t-SNE, or UMAP when installed) of per-point features coloured by label.

    Args:
        features: (N, C) array, or a list of per-frame (n_t, C) arrays (concatenated).
        labels: (N,) int labels (or a per-frame list); None colours by nothing.
        class_names: optional names indexed by label, for the legend.
        method: see :func:`fourdviz.features.embed`.
        max_points: points embedded (random subsample).
        rng: generator or seed.
    """
    x = np.concatenate(features) if isinstance(features, list | tuple) else np.asarray(features)
    if labels is not None:
        labels = np.concatenate(labels) if isinstance(labels, list | tuple) else np.asarray(labels)
        if len(labels) != len(x):
            raise ValueError(f"plot_embedding: {len(labels)} labels for {len(x)} feature rows")
    xy, chosen, used = embed(x, method=method, max_points=max_points, rng=rng)
    fig = _figure(7.0, 6.0)
    ax = fig.add_subplot(1, 1, 1)
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=4, c="#1f77b4", linewidths=0)
    else:
        lab = labels[chosen].astype(np.int64)
        for value in np.unique(lab):
            m = lab == value
            name = (
                class_names[value]
                if class_names is not None and 0 <= value < len(class_names)
                else str(value)
            )
            ax.scatter(
                xy[m, 0],
                xy[m, 1],
                s=4,
                color=C.label_colors(np.array([value]))[0],
                linewidths=0,
                label=f"{name} ({int(m.sum())})",
            )
        ax.legend(fontsize=8, markerscale=3, loc="best", title="label")
    ax.set_xlabel(f"{used} 1")
    ax.set_ylabel(f"{used} 2")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(f"{used.upper()} of per-point features ({len(chosen):,} of {len(x):,} points)", fontsize=11)
    return fig


def plot_semantic_comparison(points, truth, predictions: dict, class_names=None,
                             max_points: int | None = 30_000, point_size: float = 0.5,
                             title: str | None = None, rng=0):
    """Semantic segmentation of one scene seen from above (the paper's Fig. 5): the ground truth and each
    prediction in the label colours (:func:`~fourdviz.colors.label_colors`), and under each prediction its
    wrong points in red; a legend of the classes in the ground truth or any prediction.

    Args:
        points: (N, 3) metres.
        truth: (N,) labels, negative: unlabelled (never counted wrong).
        predictions: ``{name: (N,) predicted labels}``, e.g. ``{"scratch": ..., "4DContrast": ...}``.
        class_names: names indexed by label (legend; default ``class k``).
        max_points: points drawn (a random subsample, the highest drawn last; None: all).
        point_size: marker area (pt²).
        title: figure title.
        rng: generator or seed of the display subsample.

    Returns:
        The figure (2 rows, one column for the ground truth and one per prediction); each prediction's
        title gives its share of labelled points right.

    Raises:
        ValueError: labels of another length than the points.
    """
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    truth = np.asarray(truth, dtype=np.int64)
    preds = {k: np.asarray(v, dtype=np.int64) for k, v in predictions.items()}
    for name, lab in [("truth", truth), *preds.items()]:
        if len(lab) != len(pts):
            raise ValueError(f"{name}: {len(lab)} labels for {len(pts)} points")
    keep = subsample_indices(len(pts), len(pts) if max_points is None else max_points, rng)
    keep = keep[np.argsort(pts[keep, 2], kind="stable")]
    labelled = truth >= 0
    n = len(preds) + 1
    fig = _figure(3.6 * n, 7.0)
    axes = fig.subplots(2, n, squeeze=False)
    axes[0, 0].scatter(*pts[keep, :2].T, c=C.label_colors(truth[keep]), s=point_size, linewidths=0)
    axes[0, 0].set_title("ground truth", fontsize=9)
    for k, (name, lab) in enumerate(preds.items(), 1):
        right = float((lab == truth)[labelled].mean()) if labelled.any() else float("nan")
        axes[0, k].scatter(*pts[keep, :2].T, c=C.label_colors(lab[keep]), s=point_size, linewidths=0)
        axes[0, k].set_title(f"{name}: {right:.0%} of points right", fontsize=9)
        wrong = (lab != truth) & labelled
        axes[1, k].scatter(*pts[keep, :2].T, s=point_size, linewidths=0,
                           c=np.where(wrong[keep, None], [[0.85, 0.1, 0.1]], [[0.8, 0.8, 0.8]]))
        axes[1, k].set_title(f"{name}: wrong points in red", fontsize=9)
    present = np.unique(np.concatenate([truth[labelled], *(lab[lab >= 0] for lab in preds.values())]))
    from matplotlib.lines import Line2D

    axes[1, 0].legend(handles=[Line2D([], [], marker="s", ls="", color=C.label_colors(np.array([c]))[0],
                                      label=class_names[c] if class_names is not None else f"class {c}")
                               for c in present], loc="center", fontsize=8, title="classes")
    for ax in axes.flat:
        ax.set_aspect("equal")
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def figure_to_rgba(fig) -> np.ndarray:
    """Render a figure to an (H, W, 4) uint8 RGBA array (Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def save_figure(fig, path: str | os.PathLike, dpi: int = FIGURE_DPI) -> Path:
    """Save a figure as PNG (or the format of ``path``'s suffix) atomically; returns the path."""
    buf = io.BytesIO()
    fmt = Path(path).suffix.lstrip(".") or "png"
    fig.savefig(buf, format=fmt, dpi=dpi)
    return atomic_write_bytes(path, buf.getvalue())
