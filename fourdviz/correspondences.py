"""Correspondences between frames, computed from provenance, and a checker that flags bad ones.

Truth is provenance (paper, Sec. 3.2–3.3): point ``a`` of frame ``i`` and point ``b`` of frame ``j``
correspond iff ``(source, index)`` are equal (:attr:`fourdcontrast.Frame.keys`). A matched pair is
*broken* when a point's position disagrees with where the known transforms put it: scene points are
static in the 4D view (their scanned position), object points sit at ``object_pose · canonical``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fourdcontrast.geometry import RngLike, as_rng

POSITION_TOLERANCE = 0.01
"""Metres a point may deviate from its expected position before its matches count as broken (1 cm,
half the paper's 2 cm 3D voxel, Sec. 4)."""
MAX_DISPLAY_LINES = 150
"""Correspondence lines drawn per frame pair by default (subsampled so a view stays readable)."""


def match_frames(sequence, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
    """Matches between frames ``i`` and ``j`` from provenance.

    Args:
        sequence: a :class:`fourdcontrast.Sequence`.
        i, j: frame indices.

    Returns:
        ``(idx_i, idx_j)``: (K,) int64 point indices into frame ``i`` and frame ``j`` with equal keys,
        sorted by ``idx_i`` (the pipeline's :func:`fourdcontrast.data.correspondence.frame_correspondences`).
    """
    from fourdcontrast.data.correspondence import frame_correspondences

    return frame_correspondences(sequence, i, j)


def expected_points(sequence, frame_index: int) -> np.ndarray:
    """(n, 3) float32 where the known transforms put the points of a frame in the 4D (scene) view:
    scanned positions for scene points, ``object_pose`` applied to canonical object points."""
    from fourdcontrast.records import SOURCE_OBJECT

    frame = sequence.frames[frame_index]
    canonical = sequence.source_points(frame.source, frame.index).astype(np.float64)
    is_obj = frame.source == SOURCE_OBJECT
    pose = np.asarray(frame.object_pose, dtype=np.float64)
    canonical[is_obj] = canonical[is_obj] @ pose[:3, :3].T + pose[:3, 3]
    return canonical.astype(np.float32)


def position_errors(sequence, frame_index: int) -> np.ndarray:
    """(n,) float32 distance in metres between each point of a frame and its expected position."""
    frame = sequence.frames[frame_index]
    return np.linalg.norm(frame.points - expected_points(sequence, frame_index), axis=1).astype(np.float32)


@dataclass
class CorrespondenceCheck:
    """The result of :func:`check_correspondences` for one frame pair.

    Attributes:
        i, j: the frame indices.
        idx_i, idx_j: (K,) matched point indices (from provenance, or the pairs given to the checker).
        broken: (K,) bool, True where the pair is wrong: an endpoint is off its expected position by more
            than the tolerance, or (for given pairs) the two points do not share provenance.
        missing_i: indices into frame ``i`` of object points whose partner in frame ``j`` exists by
            provenance but is absent from the given pairs — or, without given pairs, object points of
            frame ``i`` with no partner in frame ``j`` at all (the object is rigid, so each object point
            seen in ``i`` could be seen in ``j`` unless removed by augmentation).
        errors_i, errors_j: (K,) position errors in metres of the endpoints.
    """

    i: int
    j: int
    idx_i: np.ndarray
    idx_j: np.ndarray
    broken: np.ndarray
    missing_i: np.ndarray
    errors_i: np.ndarray
    errors_j: np.ndarray

    @property
    def num_ok(self) -> int:
        return int((~self.broken).sum())

    @property
    def num_broken(self) -> int:
        return int(self.broken.sum())

    @property
    def num_missing(self) -> int:
        return len(self.missing_i)

    def summary(self) -> str:
        """One line for a title: counts of ok / broken / missing matches."""
        return (
            f"frames {self.i}↔{self.j}: {self.num_ok} ok, {self.num_broken} broken, "
            f"{self.num_missing} missing"
        )


def check_correspondences(
    sequence,
    i: int,
    j: int,
    pairs: tuple[np.ndarray, np.ndarray] | None = None,
    tolerance: float = POSITION_TOLERANCE,
) -> CorrespondenceCheck:
    """Check the correspondences between frames ``i`` and ``j`` against provenance and known poses.

    Args:
        sequence: a :class:`fourdcontrast.Sequence` (4D view: frame points in scene coordinates).
        i, j: frame indices.
        pairs: optional ``(idx_i, idx_j)`` to check (e.g. the pipeline's ``frame_correspondences``);
            by default the provenance matches themselves are checked.
        tolerance: metres a point may be off its expected position.

    Returns:
        A :class:`CorrespondenceCheck`.
    """
    from fourdcontrast.records import SOURCE_OBJECT

    fi, fj = sequence.frames[i], sequence.frames[j]
    true_i, true_j = match_frames(sequence, i, j)
    err_i_all, err_j_all = position_errors(sequence, i), position_errors(sequence, j)
    if pairs is None:
        idx_i, idx_j = true_i, true_j
        wrong_key = np.zeros(len(idx_i), dtype=bool)
        obj_i = np.flatnonzero(fi.source == SOURCE_OBJECT)
        missing = np.setdiff1d(obj_i, true_i)
    else:
        idx_i = np.asarray(pairs[0], dtype=np.int64)
        idx_j = np.asarray(pairs[1], dtype=np.int64)
        if idx_i.shape != idx_j.shape:
            raise ValueError(f"check_correspondences: pairs have shapes {idx_i.shape} and {idx_j.shape}")
        for name, idx, n in (("i", idx_i, len(fi)), ("j", idx_j, len(fj))):
            if len(idx) and (idx.min() < 0 or idx.max() >= n):
                raise ValueError(
                    f"check_correspondences: pair index out of range for frame {name} ({n} points)"
                )
        wrong_key = fi.keys[idx_i] != fj.keys[idx_j]
        given = set(zip(idx_i.tolist(), idx_j.tolist(), strict=True))
        lost = [a for a, b in zip(true_i.tolist(), true_j.tolist(), strict=True) if (a, b) not in given]
        lost = np.asarray(lost, dtype=np.int64)
        missing = lost[fi.source[lost] == SOURCE_OBJECT] if len(lost) else lost
    errors_i, errors_j = err_i_all[idx_i], err_j_all[idx_j]
    broken = wrong_key | (errors_i > tolerance) | (errors_j > tolerance)
    return CorrespondenceCheck(i, j, idx_i, idx_j, broken, missing.astype(np.int64), errors_i, errors_j)


def subsample_pairs(
    idx_i: np.ndarray,
    idx_j: np.ndarray,
    max_pairs: int = MAX_DISPLAY_LINES,
    rng: RngLike = 0,
    keep: np.ndarray | None = None,
) -> np.ndarray:
    """Indices into the pair arrays choosing at most ``max_pairs`` pairs for display.

    Pairs flagged in ``keep`` (e.g. broken ones) are always kept first, the rest drawn at random.
    """
    n = len(idx_i)
    if len(idx_j) != n:
        raise ValueError("subsample_pairs: idx_i and idx_j differ in length")
    keep_idx = np.flatnonzero(keep) if keep is not None else np.empty(0, np.int64)
    rest = np.setdiff1d(np.arange(n), keep_idx)
    budget = max(max_pairs - len(keep_idx), 0)
    if len(rest) > budget:
        rest = np.sort(as_rng(rng).choice(rest, size=budget, replace=False))
    return np.concatenate([keep_idx[:max_pairs], rest]).astype(np.int64)


def display_pairs(
    sequence, i: int, j: int, max_lines: int = MAX_DISPLAY_LINES, rng: RngLike = 0
) -> tuple[np.ndarray, np.ndarray, int]:
    """Provenance matches of frames ``i``, ``j`` chosen for display: up to half the budget goes to object
    matches (the interesting ones; scene matches are static in the 4D view), the rest at random.

    Returns:
        ``(idx_i, idx_j, total)``: the chosen (K,) point indices and the number of matches in all.
    """
    from fourdcontrast.records import SOURCE_OBJECT

    a, b = match_frames(sequence, i, j)
    is_obj = np.flatnonzero(sequence.frames[i].source[a] == SOURCE_OBJECT)
    first = np.zeros(len(a), dtype=bool)
    if len(is_obj):
        gen = as_rng(rng)
        first[gen.choice(is_obj, size=min(len(is_obj), max_lines // 2), replace=False)] = True
    sel = subsample_pairs(a, b, max_lines, rng, keep=first)
    return a[sel], b[sel], len(a)


def segments(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(K, 3) start and (K, 3) end points → (3K, 3) polyline with NaN rows separating the segments
    (the form plotly and matplotlib draw as one trace)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    out = np.full((3 * len(a), a.shape[1]), np.nan)
    out[0::3], out[1::3] = a, b
    return out
