"""open3d interop: our records to and from ``open3d.geometry.PointCloud`` / ``LineSet``.

Arrays cross as float64 (open3d's storage) and come back as float32 like our records.
"""

from __future__ import annotations

import numpy as np

from fourdviz import colors as C
from fourdviz._optional import require
from fourdviz.correspondences import match_frames


def _o3d():
    return require("open3d", "open3d interop")


def to_point_cloud(points: np.ndarray, colors: np.ndarray | None = None, normals: np.ndarray | None = None):
    """(N, 3) points (metres), optional (N, 3) RGB in [0, 1] and normals → ``open3d.geometry.PointCloud``."""
    o3d = _o3d()
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"to_point_cloud: points must have shape (N, 3), got {pts.shape}")
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
    for name, values in (("colors", colors), ("normals", normals)):
        if values is not None:
            values = np.asarray(values, dtype=np.float64)
            if values.shape != pts.shape:
                raise ValueError(f"to_point_cloud: {name} have shape {values.shape}, points {pts.shape}")
            setattr(pcd, name, o3d.utility.Vector3dVector(values))
    return pcd


def from_point_cloud(pcd) -> tuple[np.ndarray, np.ndarray | None]:
    """``open3d.geometry.PointCloud`` → ((N, 3) float32 points, (N, 3) float32 colours or None)."""
    points = np.asarray(pcd.points, dtype=np.float32)
    colors = np.asarray(pcd.colors, dtype=np.float32) if pcd.has_colors() else None
    return points, colors


def scene_to_point_cloud(scene):
    """A :class:`fourdcontrast.Scene` → PointCloud (its colours, or grey)."""
    colors = scene.colors if scene.colors is not None else np.tile(C.SCENE_COLOR, (len(scene), 1))
    return to_point_cloud(scene.points, colors)


def scene_from_point_cloud(pcd, name: str = "scene"):
    """PointCloud → :class:`fourdcontrast.Scene` (points and colours; no labels)."""
    from fourdcontrast.records import Scene

    points, colors = from_point_cloud(pcd)
    return Scene(points=points, colors=colors, name=name)


def frame_to_point_cloud(sequence, frame: int, view: bool = False, color_mode: str = "source"):
    """One frame of a sequence → PointCloud coloured like every other back end.

    Args:
        sequence: a :class:`fourdcontrast.Sequence`.
        frame: frame index.
        view: use the augmented 3D view (``Frame.view_points``) instead of the 4D points.
        color_mode: see :func:`fourdviz.colors.point_colors`.
    """
    f = sequence.frames[frame]
    return to_point_cloud(f.view_points() if view else f.points, C.point_colors(sequence, frame, color_mode))


def to_line_set(start: np.ndarray, end: np.ndarray, color=None):
    """Segments ``start[k] → end[k]`` ((K, 3) each) → ``open3d.geometry.LineSet`` (one colour or (K, 3))."""
    o3d = _o3d()
    a = np.asarray(start, dtype=np.float64)
    b = np.asarray(end, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"to_line_set: start {a.shape} and end {b.shape} must both be (K, 3)")
    k = len(a)
    lines = np.stack([np.arange(k), np.arange(k) + k], axis=1)
    ls = o3d.geometry.LineSet(
        o3d.utility.Vector3dVector(np.concatenate([a, b])), o3d.utility.Vector2iVector(lines)
    )
    if color is not None:
        col = np.asarray(color, dtype=np.float64)
        col = np.tile(col, (k, 1)) if col.ndim == 1 else col
        ls.colors = o3d.utility.Vector3dVector(col)
    return ls


def from_line_set(line_set) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """LineSet → ((V, 3) float32 points, (K, 2) int64 lines, (K, 3) float32 colours or None)."""
    points = np.asarray(line_set.points, dtype=np.float32)
    lines = np.asarray(line_set.lines, dtype=np.int64)
    colors = np.asarray(line_set.colors, dtype=np.float32) if line_set.has_colors() else None
    return points, lines, colors


def correspondences_to_line_set(sequence, i: int, j: int, offset=(0.0, 0.0, 0.0)):
    """The provenance matches of frames ``i`` and ``j`` as a LineSet in the pair's colour.

    Args:
        sequence: a :class:`fourdcontrast.Sequence`.
        i, j: frame indices.
        offset: (3,) translation added to frame ``j``'s end points (to draw frames apart), metres.
    """
    a, b = match_frames(sequence, i, j)
    start = sequence.frames[i].points[a]
    end = sequence.frames[j].points[b] + np.asarray(offset, dtype=np.float32)
    return to_line_set(start, end, C.pair_color(i, j, len(sequence.frames)))
