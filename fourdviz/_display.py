"""Display helpers shared by the back ends: subsampling for display, layout offsets."""

from __future__ import annotations

import numpy as np

from fourdcontrast.geometry import RngLike, as_rng


def subsample_indices(n: int, max_points: int | None, rng: RngLike = 0) -> np.ndarray:
    """Sorted (k,) int64 indices of at most ``max_points`` of ``n`` items, drawn without replacement
    (all of them when ``max_points`` is None or ``n <= max_points``)."""
    if max_points is None or n <= max_points:
        return np.arange(n, dtype=np.int64)
    return np.sort(as_rng(rng).choice(n, size=int(max_points), replace=False)).astype(np.int64)


def side_by_side_offsets(sequence, gap: float = 0.25, use_view: bool = False) -> np.ndarray:
    """(T, 3) translations that place the frames of a sequence next to each other along x.

    Args:
        sequence: a :class:`fourdcontrast.Sequence`.
        gap: space between neighbouring frames as a fraction of the widest frame's x extent.
        use_view: lay out the augmented 3D views (``Frame.view_points``) instead of the 4D points.
    """
    pts = [f.view_points() if use_view else f.points for f in sequence.frames]
    lo = np.array([p.min(axis=0) if len(p) else np.zeros(3) for p in pts])
    hi = np.array([p.max(axis=0) if len(p) else np.zeros(3) for p in pts])
    width = float((hi[:, 0] - lo[:, 0]).max()) if len(pts) else 0.0
    step = width * (1.0 + gap)
    offsets = np.zeros((len(pts), 3))
    offsets[:, 0] = np.arange(len(pts)) * step - (lo[:, 0] - lo[0, 0])
    return offsets


