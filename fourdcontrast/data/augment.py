"""Scene augmentation of 4D sequences (paper, Sec. 3.3, "Scene Augmentation").

Per sequence: cubic chunks are removed from the background scene; per frame: a random subset of the
points is kept (different points in each frame); a sequence is kept only when enough points — and
so enough correspondences — survive; finally every frame's *3D view* gets its own random rotation,
translation and scale (recorded in ``Frame.view_transform``), never the 4D sequence itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from fourdcontrast.data import kernels  # optional numba kernels
from fourdcontrast.data.compose import compose_frame, object_points_at
from fourdcontrast.geometry import RngLike, as_rng, random_rotation, rotation_z, similarity
from fourdcontrast.records import SOURCE_OBJECT, SOURCE_SCENE, Frame, Scene, Sequence, ShapeObject, Trajectory

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_COUNT = (5, 15)
"""Number of chunks removed, inclusive range (paper: [5, 15])."""
DEFAULT_CHUNK_SIZE = (0.15, 0.45)
"""Chunk edge as a proportion of the scene extent (paper: [0.15, 0.45])."""
DEFAULT_RESAMPLE_FRACTION = (0.80, 0.95)
"""Range of the fraction of points kept by each frame's random resampling (not in the paper)."""
DEFAULT_MIN_SCENE_FRACTION = 0.30
"""Min fraction of the scan's points present in every frame (paper: ≥ 30 %)."""
DEFAULT_MIN_OBJECT_FRACTION = 0.30
"""Min fraction of the object's points present in every frame (paper: ≥ 30 %)."""
DEFAULT_MIN_KEPT_FRACTION = 0.50
"""Min fraction of its points each frame keeps through augmentation (paper: ≥ 50 %)."""
DEFAULT_MAX_TRIES = 20
"""Augmentation attempts before a sequence is given up (our bound)."""
VIEW_ROTATIONS = ("z", "so3")
"""3D-view rotations: ``"z"`` (uniform yaw, scans stay upright) or ``"so3"`` (uniform on SO(3))."""
DEFAULT_VIEW_ROTATION = "z"
"""3D-view rotation, one of :data:`VIEW_ROTATIONS`."""
DEFAULT_VIEW_SCALE = (0.8, 1.2)
"""Range of the uniform scale of each 3D view (not in the paper; our choice)."""
DEFAULT_VIEW_TRANSLATION = 0.5
"""Max absolute translation per axis of each 3D view, metres (not in the paper; our choice)."""


class AugmentationError(ValueError):
    """No augmentation of a sequence passed the validity rules within the allowed tries."""


@dataclass(frozen=True)
class AugmentOptions:
    """Parameters of the scene augmentation (Sec. 3.3), every default named in this module.

    Attributes:
        chunk_count: inclusive range of the number of cubic chunks removed from the scene (paper: [5, 15]).
        chunk_size: range of a chunk's edge as a proportion of the scene's extent (paper: [0.15, 0.45]).
        resample_fraction: range of the fraction of its points each frame keeps (see :func:`resample`).
        min_scene_fraction: fraction of the scan's points present in every frame (paper: ≥ 0.30).
        min_object_fraction: fraction of the object's points present in every frame (paper: ≥ 0.30).
        min_kept_fraction: fraction of its points every frame keeps (paper: ≥ 0.50).
        max_tries: augmentation attempts before :class:`AugmentationError`.
        view_rotation: ``"z"`` (uniform yaw) or ``"so3"`` (uniform rotation) of each frame's 3D view.
        view_scale: range of the uniform scale of each 3D view.
        view_translation: maximum absolute translation per axis of each 3D view, metres.

    Raises:
        ValueError: on a range with low > high or values outside their domain.
    """

    chunk_count: tuple[int, int] = DEFAULT_CHUNK_COUNT
    chunk_size: tuple[float, float] = DEFAULT_CHUNK_SIZE
    resample_fraction: tuple[float, float] = DEFAULT_RESAMPLE_FRACTION
    min_scene_fraction: float = DEFAULT_MIN_SCENE_FRACTION
    min_object_fraction: float = DEFAULT_MIN_OBJECT_FRACTION
    min_kept_fraction: float = DEFAULT_MIN_KEPT_FRACTION
    max_tries: int = DEFAULT_MAX_TRIES
    view_rotation: str = DEFAULT_VIEW_ROTATION
    view_scale: tuple[float, float] = DEFAULT_VIEW_SCALE
    view_translation: float = DEFAULT_VIEW_TRANSLATION

    def __post_init__(self) -> None:
        _check_range("chunk_count", self.chunk_count, 0, None)
        _check_range("chunk_size", self.chunk_size, 0, None)
        _check_range("resample_fraction", self.resample_fraction, 0, 1)
        _check_range("view_scale", self.view_scale, 0, None)
        for name in ("min_scene_fraction", "min_object_fraction", "min_kept_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if int(self.max_tries) != self.max_tries or self.max_tries < 1:
            raise ValueError(f"max_tries must be a positive int, got {self.max_tries!r}")
        if self.view_rotation not in VIEW_ROTATIONS:
            raise ValueError(f"view_rotation must be one of {VIEW_ROTATIONS}, got {self.view_rotation!r}")
        if not self.view_translation >= 0:
            raise ValueError(f"view_translation must be >= 0 metres, got {self.view_translation!r}")


def _check_range(name: str, value, low: float, high: float | None) -> None:
    """``value`` must be a pair ``(a, b)`` with ``low <= a <= b`` (and ``b <= high``)."""
    if len(value) != 2 or not low <= value[0] <= value[1] or (high is not None and value[1] > high):
        bound = f"{low} <= a <= b" + (f" <= {high}" if high is not None else "")
        raise ValueError(f"{name} must be a pair (a, b) with {bound}, got {value!r}")


@dataclass
class Validity:
    """How much of a sequence survived augmentation (the discard rule of Sec. 3.3).

    Attributes:
        scene_fraction: fraction of the scan's points present in every frame (consistently
            represented).
        object_fraction: fraction of the object's points present in every frame.
        kept_fraction: (T,) fraction of each frame's points kept through augmentation.
        min_scene_fraction, min_object_fraction, min_kept_fraction: the thresholds applied.
    """

    scene_fraction: float
    object_fraction: float
    kept_fraction: np.ndarray
    min_scene_fraction: float = DEFAULT_MIN_SCENE_FRACTION
    min_object_fraction: float = DEFAULT_MIN_OBJECT_FRACTION
    min_kept_fraction: float = DEFAULT_MIN_KEPT_FRACTION

    @property
    def ok(self) -> bool:
        """True when every rule holds."""
        return bool(
            self.scene_fraction >= self.min_scene_fraction
            and self.object_fraction >= self.min_object_fraction
            and (self.kept_fraction >= self.min_kept_fraction).all()
        )


def resample_mask(n: int, fraction: float, rng: RngLike = None) -> np.ndarray:
    """(n,) bool: each point kept independently with probability ``fraction`` (resolution 1/65536)."""
    rng = as_rng(rng)
    threshold = int(round(float(fraction) * 65536))
    return (
        rng.integers(0, 65536, size=n, dtype=np.uint16) < threshold if threshold < 65536 else np.ones(n, bool)
    )


def resample(frame: Frame, rng: RngLike = None, fraction_range=DEFAULT_RESAMPLE_FRACTION) -> Frame:
    """A new frame keeping a random subset of ``frame``'s points: the fraction kept is drawn uniformly
    in ``fraction_range``, then each point is kept with that probability."""
    rng = as_rng(rng)
    fraction = rng.uniform(*fraction_range)
    return subset_frame(frame, resample_mask(len(frame), fraction, rng))


def subset_frame(frame: Frame, keep: np.ndarray) -> Frame:
    """A new frame with the points where ``keep`` (n,) bool is true; poses are copied."""
    return Frame(
        points=frame.points[keep],
        source=frame.source[keep],
        index=frame.index[keep],
        object_pose=frame.object_pose.copy(),
        view_transform=frame.view_transform.copy(),
    )


def crop_sequence(sequence: Sequence, size: float) -> Sequence:
    """``sequence`` cut to a vertical square prism of side ``size`` metres (all heights): the same box in
    scene coordinates for every frame, so correspondences stay exact (a point is either in every frame's
    crop or in none).

    The box is centred (x, y) on the centroid of the moving object's points over all frames, so the motion
    is in the crop (a path longer than the crop leaves the object partly outside at its ends: 4 frames of
    30-90 cm steps span up to 2.7 m); a sequence without object points is centred on its first frame's
    bounding box. A **deviation from the paper** (it trains on whole rooms), behind the switch
    ``data.crop_size`` (default ``None``: no crop): smaller sequences let one step hold more of them, so
    batch norm sees more rooms (issue 18's batch-variety switch).

    Args:
        sequence: the sequence (composed or augmented; frames in scene coordinates).
        size: side of the square in metres (> 0).

    Returns:
        A new :class:`Sequence` whose frames keep the points inside the box (views and poses unchanged).

    Raises:
        ValueError: when ``size`` is not positive.
    """
    if not size > 0:
        raise ValueError(f"crop size must be > 0 metres, got {size}")
    moving = [f.points[f.source == SOURCE_OBJECT] for f in sequence.frames]
    if sum(len(m) for m in moving):
        centre = np.concatenate(moving).astype(np.float64).mean(axis=0)[:2]
    else:
        lo, hi = bounds(sequence.frames[0].points)
        centre = (lo[:2] + hi[:2]) / 2
    half = size / 2
    frames = [subset_frame(f, (np.abs(f.points[:, :2] - centre.astype(np.float32)) <= half).all(axis=1))
              for f in sequence.frames]
    return _replace_frames(sequence, frames)


def bounds(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(3,) float64 minimum and maximum corners of (N, 3) points (column-wise: much faster than
    ``points.min(axis=0)`` on row-major data; one numba sweep when available)."""
    if kernels.AVAILABLE and len(points) and points.dtype == np.float32:
        fast = kernels.bounds(points)
        if fast is not None:
            return fast
    lo = np.array([points[:, a].min() for a in range(3)], dtype=np.float64)
    hi = np.array([points[:, a].max() for a in range(3)], dtype=np.float64)
    return lo, hi


CHUNK_GRID = 0.01
"""Chunk corners lie on a grid of this pitch (metres) anchored at the scene's minimum corner, which
makes :func:`chunk_mask` an exact O(N) table lookup."""


def sample_chunks(
    points: np.ndarray,
    rng: RngLike = None,
    count_range: tuple[int, int] = DEFAULT_CHUNK_COUNT,
    size_range: tuple[float, float] = DEFAULT_CHUNK_SIZE,
) -> np.ndarray:
    """Random chunks to remove from a scene: (K, 2, 3) float64 min and max corners, metres.

    ``K`` is uniform in ``count_range`` (inclusive). Each chunk is a cube in the scene's normalised
    coordinates: its edge along each axis is ``s × extent`` of that axis with one ``s`` uniform in
    ``size_range`` (so in a long room the chunk is a cuboid), and its centre is uniform in the scene's
    bounding box. Corners are snapped to the ``CHUNK_GRID`` (1 cm) grid anchored at the scene's minimum
    corner, edges kept inside ``size_range × extent``.

    Args:
        points: (N, 3) scene points, metres.
        rng: generator or seed.
        count_range: inclusive (min, max) number of chunks (paper: 5, 15).
        size_range: (min, max) proportion of the scene extent (paper: 0.15, 0.45).
    """
    rng = as_rng(rng)
    lo, hi = bounds(points)
    extent = hi - lo
    k = int(rng.integers(count_range[0], count_range[1] + 1))
    s = rng.uniform(size_range[0], size_range[1], k)
    centre = rng.random((k, 3)) * extent
    q = CHUNK_GRID
    cells = np.round(s[:, None] * extent / q)
    cells = np.clip(
        cells, np.ceil(size_range[0] * extent / q - 1e-9), np.floor(size_range[1] * extent / q + 1e-9)
    )
    start = np.round(centre / q - cells / 2)
    return lo + np.stack([start, start + cells], axis=1) * q


def chunk_mask(points: np.ndarray, chunks: np.ndarray) -> np.ndarray:
    """(N,) bool: points inside any chunk ``[min, max)`` of (K, 2, 3) ``chunks``.

    Points are binned per axis on the ``CHUNK_GRID`` anchored at the points' minimum corner (where
    :func:`sample_chunks` puts the chunk corners); a table per axis gives the bitmask of the chunks
    covering each bin, and a point is inside a chunk when its three bitmasks share a bit. O(N).
    Chunks off that grid are handled exactly by a direct comparison.
    """
    points = np.asarray(points, dtype=np.float32)
    chunks = np.asarray(chunks, dtype=np.float64).reshape(-1, 2, 3)
    k = len(chunks)
    if k == 0 or len(points) == 0:
        return np.zeros(len(points), bool)
    lo, hi = bounds(points)
    grid = (chunks - lo) / CHUNK_GRID
    cells = np.round(grid)
    if k > 64 or not np.allclose(grid, cells, atol=1e-6, rtol=0):
        inside = np.zeros(len(points), bool)
        for c in chunks:
            inside |= ((points >= c[0]) & (points < c[1])).all(axis=1)
        return inside
    dtype = np.uint32 if k <= 32 else np.uint64
    bits = (np.ones(1, dtype) << np.arange(k, dtype=dtype)).astype(dtype)
    cells = cells.astype(np.int64)
    low = lo.astype(np.float32)  # lo holds float32 values: exact
    inv = np.float32(1.0 / CHUNK_GRID)
    # the largest bin of the points: float32 subtraction, product and floor are monotonic
    last = np.floor((hi.astype(np.float32) - low) * inv).astype(np.int64)
    tables, firsts = [], np.empty(3, np.int64)
    for axis in range(3):
        first = int(min(cells[:, 0, axis].min(), 0))
        table = np.zeros(int(max(cells[:, 1, axis].max(), last[axis] + 1)) - first + 1, dtype)
        for c in range(k):
            table[cells[c, 0, axis] - first : cells[c, 1, axis] - first] |= bits[c]
        tables.append(table)
        firsts[axis] = first
    if kernels.AVAILABLE:  # one sweep instead of three bin computations and lookups
        return kernels.chunk_mask(points, low, inv, tuple(tables), firsts)
    common = None
    for axis in range(3):
        b = np.floor((points[:, axis] - low[axis]) * inv).astype(np.int64)
        axis_bits = tables[axis][b - firsts[axis]]
        common = axis_bits if common is None else common & axis_bits
    return common != 0


def remove_chunks(frame: Frame, scene_removed: np.ndarray) -> Frame:
    """A new frame without its scene points whose index is flagged in ``scene_removed`` (N_scene,) bool
    (see :func:`chunk_mask`); object points are never removed."""
    is_scene = frame.source == SOURCE_SCENE
    keep = np.ones(len(frame), bool)
    keep[is_scene] = ~scene_removed[frame.index[is_scene]]
    return subset_frame(frame, keep)


def presence(frame: Frame, n_scene: int, n_object: int) -> tuple[np.ndarray, np.ndarray]:
    """Bool masks (n_scene,), (n_object,) of the source points present in ``frame``."""
    is_scene = frame.source == SOURCE_SCENE
    scene = np.zeros(n_scene, bool)
    scene[frame.index[is_scene]] = True
    obj = np.zeros(n_object, bool)
    obj[frame.index[~is_scene]] = True
    return scene, obj


def validity(
    original: Sequence,
    augmented: Sequence,
    min_scene_fraction: float = DEFAULT_MIN_SCENE_FRACTION,
    min_object_fraction: float = DEFAULT_MIN_OBJECT_FRACTION,
    min_kept_fraction: float = DEFAULT_MIN_KEPT_FRACTION,
) -> Validity:
    """Check the discard rule of Sec. 3.3 for ``augmented`` against the ``original`` sequence.

    Reading of the paper: "≥ 30 % of the points in the original scan and ≥ 30 % of the points of the
    synthetic object should be consistently represented in each frame" — the scan points (and object
    points) present in **every** frame are counted against all the scan's (object's) points; "each
    frame must maintain at least 50 % of its points" — frame ``t`` of ``augmented`` has at least half
    the points of frame ``t`` of ``original``.
    """
    if len(original) != len(augmented):
        raise ValueError(f"sequences differ in length: {len(original)} vs {len(augmented)}")
    n, m = len(augmented.scene), len(augmented.obj)
    scene_all, obj_all = np.ones(n, bool), np.ones(m, bool)
    for frame in augmented.frames:
        s, o = presence(frame, n, m)
        scene_all &= s
        obj_all &= o
    kept = np.array([len(a) / max(len(o), 1) for a, o in zip(augmented.frames, original.frames, strict=True)])
    return Validity(
        scene_fraction=float(scene_all.sum()) / max(n, 1),
        object_fraction=float(obj_all.sum()) / max(m, 1),
        kept_fraction=kept,
        min_scene_fraction=min_scene_fraction,
        min_object_fraction=min_object_fraction,
        min_kept_fraction=min_kept_fraction,
    )


def random_view_transform(
    rng: RngLike = None,
    rotation: str = DEFAULT_VIEW_ROTATION,
    scale_range: tuple[float, float] = DEFAULT_VIEW_SCALE,
    max_translation: float = DEFAULT_VIEW_TRANSLATION,
) -> np.ndarray:
    """(4, 4) random similarity for a 3D view: rotation (``"z"`` or ``"so3"``), uniform scale in
    ``scale_range``, translation uniform in ``±max_translation`` metres per axis."""
    rng = as_rng(rng)
    if rotation == "z":
        r = rotation_z(rng.uniform(-np.pi, np.pi))
    elif rotation == "so3":
        r = random_rotation(rng)
    else:
        raise ValueError(f"rotation must be one of {VIEW_ROTATIONS}, got {rotation!r}")
    scale = rng.uniform(*scale_range)
    return similarity(r, rng.uniform(-max_translation, max_translation, 3), scale)


def augment_views(
    sequence: Sequence,
    rng: RngLike = None,
    rotation: str = DEFAULT_VIEW_ROTATION,
    scale_range: tuple[float, float] = DEFAULT_VIEW_SCALE,
    max_translation: float = DEFAULT_VIEW_TRANSLATION,
) -> Sequence:
    """A new sequence whose frames carry independent random 3D-view transforms (Sec. 3.3: "rotation,
    translation, and scaling to each individually considered 3D frame"). The 4D points
    (``Frame.points``) are unchanged; the view is ``Frame.view_points()``."""
    rng = as_rng(rng)
    frames = [
        Frame(
            points=f.points,
            source=f.source,
            index=f.index,
            object_pose=f.object_pose.copy(),
            view_transform=random_view_transform(rng, rotation, scale_range, max_translation),
        )
        for f in sequence.frames
    ]
    return _replace_frames(sequence, frames)


def _replace_frames(sequence: Sequence, frames: list[Frame], chunks: np.ndarray | None = None) -> Sequence:
    return Sequence(
        frames=frames,
        scene=sequence.scene,
        obj=sequence.obj,
        trajectory=sequence.trajectory,
        seed=sequence.seed,
        chunks=sequence.chunks if chunks is None else chunks,
    )


def augment_sequence(
    sequence: Sequence,
    rng: RngLike = None,
    options: AugmentOptions | None = None,
    stats: dict | None = None,
) -> Sequence:
    """Augment a composed sequence (Sec. 3.3): remove chunks of the background scene (the same chunks
    in every frame: they change the scan), resample every frame independently, check
    :func:`validity`, re-draw up to ``max_tries`` times, then give every frame a random 3D view.

    Args:
        sequence: the composed sequence (e.g. from :func:`~fourdcontrast.data.compose.compose_sequence`).
        rng: generator or seed.
        options: the augmentation's parameters (default: ``AugmentOptions()``, the paper's values).
        stats: optional dict; ``"tries"`` and ``"discarded"`` counts are added to it.

    Returns:
        A new :class:`Sequence` with the kept points, ``chunks`` set (K, 2, 3) and random views.

    Raises:
        AugmentationError: when no attempt passes the validity rules.
    """
    rng = as_rng(rng)
    opt = options if options is not None else AugmentOptions()
    scene_points = sequence.scene.points
    last = None
    for attempt in range(opt.max_tries):
        chunks = sample_chunks(scene_points, rng, opt.chunk_count, opt.chunk_size)
        removed = chunk_mask(scene_points, chunks)
        frames = []
        for frame in sequence.frames:
            keep = resample_mask(len(frame), rng.uniform(*opt.resample_fraction), rng)
            is_scene = frame.source == SOURCE_SCENE
            keep[is_scene] &= ~removed[frame.index[is_scene]]
            frames.append(subset_frame(frame, keep))
        candidate = _replace_frames(sequence, frames, chunks)
        last = validity(sequence, candidate, opt.min_scene_fraction, opt.min_object_fraction,
                        opt.min_kept_fraction)
        _count(stats, last.ok)
        if last.ok:
            return augment_views(candidate, rng, opt.view_rotation, opt.view_scale, opt.view_translation)
        logger.debug("augmentation attempt %d discarded: %s", attempt, last)
    raise _failure(sequence.scene, sequence.obj, opt.max_tries, last)


def _count(stats: dict | None, ok: bool) -> None:
    if stats is not None:
        stats["tries"] = stats.get("tries", 0) + 1
        stats["discarded"] = stats.get("discarded", 0) + (not ok)


def _failure(scene: Scene, obj: ShapeObject, max_tries: int, last: Validity | None) -> AugmentationError:
    detail = (
        ""
        if last is None
        else f" (last: scene {last.scene_fraction:.2f} / {last.min_scene_fraction}, "
        f"object {last.object_fraction:.2f} / {last.min_object_fraction}, worst frame kept "
        f"{last.kept_fraction.min():.2f} / {last.min_kept_fraction})"
    )
    return AugmentationError(
        f"no augmentation of the sequence of scene {scene.name!r} and object {obj.name!r} kept enough "
        f"points in {max_tries} tries{detail}"
    )


def _compose_kept(scene: Scene, obj: ShapeObject, pose: np.ndarray, keep: np.ndarray) -> Frame:
    """``compose_frame`` of the scene and object points flagged in (n + m,) bool ``keep``."""
    n = len(scene)
    if not kernels.AVAILABLE or scene.points.dtype != np.float32 or not scene.points.flags.c_contiguous:
        return compose_frame(scene, obj, pose, np.flatnonzero(keep[:n]), np.flatnonzero(keep[n:]))
    points, source, index, s = kernels.compose_kept(scene.points, keep, SOURCE_SCENE, SOURCE_OBJECT)
    points[s:] = object_points_at(obj, pose, index[s:])
    return Frame(points=points, source=source, index=index, object_pose=np.array(pose, dtype=np.float64),
                 view_transform=np.eye(4))


def augment_composed(
    scene: Scene,
    obj: ShapeObject,
    trajectory: Trajectory,
    rng: RngLike = None,
    options: AugmentOptions | None = None,
    stats: dict | None = None,
    seed: int | None = None,
) -> Sequence:
    """``augment_sequence(compose_sequence(scene, obj, trajectory), rng, options)`` without building the
    full composed frames first: the same random draws, the same result, a fraction of the memory
    traffic. Arguments as in :func:`augment_sequence`; ``seed`` is recorded on the sequence."""
    rng = as_rng(rng)
    opt = options if options is not None else AugmentOptions()
    n, m = len(scene), len(obj)
    poses = trajectory.poses()
    last = None
    for attempt in range(opt.max_tries):
        chunks = sample_chunks(scene.points, rng, opt.chunk_count, opt.chunk_size)
        removed = chunk_mask(scene.points, chunks)
        keeps = []
        for _ in poses:
            keep = resample_mask(n + m, rng.uniform(*opt.resample_fraction), rng)
            keep[:n] &= ~removed
            keeps.append(keep)
        scene_all = np.logical_and.reduce([k[:n] for k in keeps])
        obj_all = np.logical_and.reduce([k[n:] for k in keeps])
        last = Validity(
            scene_fraction=float(np.count_nonzero(scene_all)) / max(n, 1),
            object_fraction=float(np.count_nonzero(obj_all)) / max(m, 1),
            kept_fraction=np.array([np.count_nonzero(k) / max(n + m, 1) for k in keeps]),
            min_scene_fraction=opt.min_scene_fraction,
            min_object_fraction=opt.min_object_fraction,
            min_kept_fraction=opt.min_kept_fraction,
        )
        _count(stats, last.ok)
        if last.ok:
            frames = [_compose_kept(scene, obj, pose, k) for pose, k in zip(poses, keeps, strict=True)]
            seq = Sequence(
                frames=frames, scene=scene, obj=obj, trajectory=trajectory, seed=seed, chunks=chunks
            )
            return augment_views(seq, rng, opt.view_rotation, opt.view_scale, opt.view_translation)
        logger.debug("augmentation attempt %d discarded: %s", attempt, last)
    raise _failure(scene, obj, opt.max_tries, last)
