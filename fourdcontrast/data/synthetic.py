"""Small synthetic scenes and objects for tests, benchmarks and the generation fallback.

These are stand-ins for real scans (ScanNet) and shapes (ModelNet): a box-shaped room (floor, walls,
optionally a ceiling) with a table, sampled on its surfaces at a regular spacing, and a box-shaped
object in canonical pose (upright, xy-centred, lowest point at z = 0). The procedural rooms of
``fourdcontrast.sources`` replace them where available.
"""

from __future__ import annotations

import numpy as np

from fourdcontrast.geometry import RngLike, as_rng
from fourdcontrast.records import Scene, ShapeObject

DEFAULT_ROOM_SIZE = (6.0, 5.0, 2.6)
"""Room width, depth and height in metres."""
DEFAULT_SPACING = 0.02
"""Surface sample spacing in metres (the paper composes scenes at 2 cm, Sec. 4)."""
DEFAULT_OBJECT_POINTS = 1000
"""Points sampled on an object (paper, Sec. 4: 1000)."""


def sample_box_surface(
    lo: np.ndarray, hi: np.ndarray, spacing: float, rng: RngLike = None, faces: str = "xXyYzZ"
) -> np.ndarray:
    """Random points on faces of the axis-aligned box ``[lo, hi]`` with about one point per spacing².

    Args:
        lo: (3,) minimum corner, metres.
        hi: (3,) maximum corner, metres.
        spacing: mean distance between samples, metres.
        rng: generator or seed.
        faces: which faces to sample: ``x``/``X`` the min/max x face, likewise y and z.

    Returns:
        (K, 3) float32 points.
    """
    rng = as_rng(rng)
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    parts = []
    for face in faces:
        axis = "xyz".index(face.lower())
        others = [a for a in range(3) if a != axis]
        area = float(np.prod(hi[others] - lo[others]))
        count = max(int(round(area / spacing**2)), 1)
        pts = lo + rng.random((count, 3)) * (hi - lo)
        pts[:, axis] = hi[axis] if face.isupper() else lo[axis]
        parts.append(pts)
    return np.concatenate(parts).astype(np.float32)


def synthetic_room(
    rng: RngLike = None,
    size: tuple[float, float, float] = DEFAULT_ROOM_SIZE,
    spacing: float = DEFAULT_SPACING,
    ceiling: bool = True,
    table: bool = True,
    noise: float = 0.005,
    name: str = "synthetic_room",
) -> Scene:
    """A box room: floor at z = 0, four walls, optionally a ceiling and a table (0.75 m top, 4 legs).

    Args:
        rng: generator or seed.
        size: (width, depth, height) in metres.
        spacing: surface sample spacing in metres.
        ceiling: add the ceiling plane at z = height.
        table: add a 1.2 × 0.8 m table near one corner.
        noise: standard deviation of Gaussian noise added to every point, metres.
        name: scene name.

    Returns:
        The :class:`~fourdcontrast.records.Scene`.
    """
    rng = as_rng(rng)
    w, d, h = size
    parts = [sample_box_surface([0, 0, 0], [w, d, h], spacing, rng, "xXyYz" + ("Z" if ceiling else ""))]
    if table:
        x0, y0 = 0.6, 0.6
        parts.append(sample_box_surface([x0, y0, 0.72], [x0 + 1.2, y0 + 0.8, 0.75], spacing, rng, "zZxXyY"))
        for lx, ly in [(x0, y0), (x0 + 1.15, y0), (x0, y0 + 0.75), (x0 + 1.15, y0 + 0.75)]:
            parts.append(sample_box_surface([lx, ly, 0], [lx + 0.05, ly + 0.05, 0.72], spacing, rng, "xXyY"))
    points = np.concatenate(parts)
    points = points + rng.normal(scale=noise, size=points.shape).astype(np.float32)
    return Scene(points=points.astype(np.float32), name=name)


def synthetic_box_object(
    rng: RngLike = None,
    size: tuple[float, float, float] = (0.5, 0.5, 0.9),
    count: int = DEFAULT_OBJECT_POINTS,
    category: str = "chair",
    name: str = "box_chair",
) -> ShapeObject:
    """A box-shaped object of ``count`` surface points in canonical pose (xy-centred, bottom at z = 0).

    Args:
        rng: generator or seed.
        size: (width, depth, height) in metres.
        count: number of points.
        category: category name.
        name: object name.
    """
    rng = as_rng(rng)
    half = np.array([size[0] / 2, size[1] / 2, 0.0])
    lo, hi = -half, half + [0, 0, size[2]]
    pts = sample_box_surface(lo, hi, 0.01, rng)
    pts = pts[rng.choice(len(pts), size=count, replace=len(pts) < count)]
    return ShapeObject(points=pts, category=category, name=name)
