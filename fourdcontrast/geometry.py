"""Geometry helpers: random generators, rotations, similarity transforms, surface sampling.

Transforms are (4, 4) float64 homogeneous matrices acting on column vectors: ``p' = R·s·p + t``.
"""

from __future__ import annotations

import numpy as np

RngLike = np.random.Generator | int | None


def as_rng(rng: RngLike) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a Generator (returned as is), a seed, or None (fresh entropy)."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def rotation_z(yaw: float) -> np.ndarray:
    """(3, 3) rotation by ``yaw`` radians about the z axis (counter-clockwise seen from above)."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rotation_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """(3, 3) rotation by ``angle`` radians about the (3,) ``axis`` (Rodrigues' formula)."""
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)


def random_rotation(rng: RngLike = None) -> np.ndarray:
    """(3, 3) rotation drawn uniformly from SO(3)."""
    q = as_rng(rng).normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def similarity(rotation: np.ndarray | None = None, translation=None, scale: float = 1.0) -> np.ndarray:
    """(4, 4) transform ``p ↦ scale · rotation · p + translation``."""
    t = np.eye(4)
    t[:3, :3] = (np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)) * scale
    if translation is not None:
        t[:3, 3] = translation
    return t


def apply_transform(points: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Apply a (4, 4) transform to (N, 3) points; returns new float32 points (computed in float64)."""
    p = np.asarray(points, dtype=np.float64)
    return (p @ transform[:3, :3].T + transform[:3, 3]).astype(np.float32)


def triangle_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,) areas of the triangles ``faces`` (F, 3) of ``vertices`` (V, 3)."""
    v = np.asarray(vertices, dtype=np.float64)[np.asarray(faces)]
    return 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1)


def sample_surface(
    vertices: np.ndarray, faces: np.ndarray, count: int, rng: RngLike = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample points uniformly on a triangle mesh surface (area-weighted).

    Args:
        vertices: (V, 3) vertex positions.
        faces: (F, 3) int vertex indices of the triangles.
        count: number of points to draw.
        rng: generator or seed.

    Returns:
        points (count, 3) float32, normals (count, 3) float32 unit face normals, face (count,) int64.

    Raises:
        ValueError: when the mesh has no triangle of positive area.
    """
    rng = as_rng(rng)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    areas = triangle_areas(vertices, faces) if len(faces) else np.zeros(0)
    total = float(areas.sum())
    if not np.isfinite(total) or total <= 0.0:
        raise ValueError("mesh has no triangle of positive area to sample")
    face = rng.choice(len(faces), size=count, p=areas / total)
    tri = np.asarray(vertices, dtype=np.float64)[faces[face]]
    u, v = rng.random(count), rng.random(count)
    flip = u + v > 1.0
    u[flip], v[flip] = 1.0 - u[flip], 1.0 - v[flip]
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    points = tri[:, 0] + u[:, None] * e1 + v[:, None] * e2
    normals = np.cross(e1, e2)
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    return points.astype(np.float32), normals.astype(np.float32), face
