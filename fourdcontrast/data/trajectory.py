"""Trajectory generation (paper, Sec. 3.3, "Trajectory Generation").

The scene is voxelized at 10 cm, occupied voxels are accumulated along the height into a 2D map, the
floor and the free-floor ("valid") cells are found, the cells where the object's bounding circle stays
inside the valid region become candidate positions, and a trajectory walks between candidates with
random steps of 30–90 cm that turn by less than 150°.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
from scipy import ndimage

from fourdcontrast.geometry import RngLike, as_rng
from fourdcontrast.records import HeightMap, Scene, ShapeObject, Trajectory

logger = logging.getLogger(__name__)

DEFAULT_CELL_SIZE = 0.10
"""Voxel / map cell edge in metres (paper: 10 cm)."""
DEFAULT_FLOOR_TOLERANCE = 0.20
"""Max height above the floor of a valid cell's accumulated voxels, metres (paper: 20 cm)."""
DEFAULT_MAX_ACCUMULATION = 1
"""Max number of occupied voxels in a valid column below the clearance (paper: accumulation ≤ 1)."""
DEFAULT_CLEARANCE = 1.60
"""Height above the floor up to which voxels are accumulated, metres (our reading, see
:func:`compute_height_map`): above the furniture-sized objects of the paper (ModelNet chairs, tables,
dressers, ...) and below usual ceilings (≥ 2.2 m), lamps and wall cabinets."""
DEFAULT_MAX_FLOOR_OFFSET = 0.50
"""The floor lies at most this far above the 1st percentile of the scene's heights, metres (our
bound: it stops a ceiling or a large table top from being taken for the floor)."""
DEFAULT_MAX_HOLE_AREA = 0.25
"""Empty patches (no scanned point) up to this area in m², enclosed by scanned cells, are holes in the
floor scan and count as valid (our choice; real scans have such holes)."""
DEFAULT_STEP_RANGE = (0.30, 0.90)
"""Step length range in metres (paper: [30, 90] cm)."""
DEFAULT_MAX_TURN_DEG = 150.0
"""Max change of direction between consecutive steps, degrees (paper: < 150°)."""
DEFAULT_LENGTH = 4
"""Trajectory / sequence length t (paper, Sec. 4: 4)."""
DEFAULT_MAX_YAW_STEP_DEG = 45.0
"""Max change of the object's yaw per time step, degrees (not in the paper; our choice)."""
DEFAULT_PROPOSALS = 64
"""Step proposals drawn at once when looking for the next trajectory point."""
DEFAULT_MAX_ATTEMPTS = 20
"""Rounds of proposals (and restarts from a new start) before giving up."""
YAW_MODES = ("random", "heading")


def _check_scene(scene: Scene) -> np.ndarray:
    points = np.asarray(scene.points)
    if len(points) == 0:
        raise ValueError(f"scene {scene.name!r} has no points")
    if not np.isfinite(points).all():
        raise ValueError(f"scene {scene.name!r} has NaN or infinite point coordinates")
    return points


def _floor_height(column_min: np.ndarray, z: np.ndarray, cell_size: float, max_offset: float) -> float:
    """Robust floor height from the lowest point of every occupied column.

    The floor is the dominant low horizontal level: a histogram of the column minima (bins of a
    quarter cell) is smoothed over ±1 bin, its highest peak among the levels holding at least a third
    of the peak count and lying lowest is taken, and the median height of all points within a quarter
    cell of it is returned (column minima alone are biased low by the scan noise). Column minima on
    tilted floors (±2–3 cm over the room) stay within that window, and a ceiling only contributes
    where nothing lies below it; only minima within ``max_offset`` of the 1st percentile of all
    heights are considered, so a scan without a floor does not promote its ceiling to one.
    """
    bin_size = cell_size / 4
    column_min = column_min[column_min <= np.percentile(z, 1.0) + max_offset]
    lo = float(column_min.min())
    bins = np.floor((column_min - lo) / bin_size).astype(np.int64)
    counts = np.bincount(bins).astype(np.float64)
    smooth = np.convolve(counts, np.ones(3), mode="same")
    strong = np.flatnonzero(smooth >= smooth.max() / 3)
    # lowest strong level, then its local peak
    first = strong[0]
    window = smooth[first : first + 5]
    peak = first + int(np.argmax(window))
    level = lo + (peak + 0.5) * bin_size
    near = column_min[np.abs(column_min - level) <= cell_size / 2]
    level = float(np.median(near))
    return float(np.median(z[np.abs(z - level) <= cell_size / 4]))


def compute_height_map(
    scene: Scene,
    cell_size: float = DEFAULT_CELL_SIZE,
    floor_tolerance: float = DEFAULT_FLOOR_TOLERANCE,
    clearance: float = DEFAULT_CLEARANCE,
    max_accumulation: int = DEFAULT_MAX_ACCUMULATION,
    max_hole_area: float = DEFAULT_MAX_HOLE_AREA,
) -> HeightMap:
    """The 2D map of scene geometry: accumulation, max height, floor and valid cells (Sec. 3.3).

    How "accumulation ≤ 1" is read: the scene is voxelized at ``cell_size`` with the voxel layers aligned
    to the floor (layer 0 is ``floor ± cell_size/2``), and in every xy column we count the occupied voxels
    **below the clearance** ``floor_height + clearance``. A free floor column then holds exactly one
    voxel (the floor itself, or a thin floor spread over one layer), whatever lies above the clearance
    — a ceiling, lamps, high shelves — so a closed room does not make every cell invalid. A table top
    at 0.75 m adds a second voxel (accumulation 2) and makes the cells under it invalid, as do walls
    and clutter. A cell is valid when its accumulation is ≤ ``max_accumulation``, the top of its
    accumulated voxels lies within ``floor_tolerance`` of the floor height and its lowest point is on
    the floor; holes in the scan (connected empty cells of at most ``max_hole_area`` not touching the
    map border; "empty" = nothing below the clearance) count as valid, while the empty outside of the
    room does not.

    The floor height is a robust estimate: the dominant low level of the column minima (see
    ``_floor_height``), tolerant to a slightly tilted or uneven floor.

    Args:
        scene: the scan; points in metres, z up.
        cell_size: voxel / cell edge in metres (paper: 0.10).
        floor_tolerance: max height of the accumulated voxels above the floor for a valid cell,
            metres (paper: 0.20).
        clearance: height above the floor up to which voxels are accumulated, metres.
        max_accumulation: max accumulated voxels in a valid column (paper: 1).
        max_hole_area: largest enclosed empty patch treated as a hole in the floor scan, m².

    Returns:
        A :class:`~fourdcontrast.records.HeightMap` with ``candidates=None``. ``accumulation`` counts the
        voxels below the clearance, ``max_height`` is the top of the highest of them (NaN where none).

    Raises:
        ValueError: when the scene has no points, NaN coordinates, or no valid floor cell.
    """
    points = _check_scene(scene)
    if cell_size <= 0 or floor_tolerance <= 0 or clearance <= 0:
        raise ValueError("cell_size, floor_tolerance and clearance must be positive")
    xy = points[:, :2].astype(np.float64)
    z = points[:, 2].astype(np.float64)
    origin = xy.min(axis=0) - cell_size  # one empty border cell all round
    cells = np.floor((xy - origin) / cell_size).astype(np.int64)
    shape = tuple(int(v) for v in cells.max(axis=0) + 2)
    flat = cells[:, 0] * shape[1] + cells[:, 1]
    n_cells = shape[0] * shape[1]

    column_min = np.full(n_cells, np.inf)
    np.minimum.at(column_min, flat, z)
    occupied = np.isfinite(column_min)
    floor_height = _floor_height(column_min[occupied], z, cell_size, DEFAULT_MAX_FLOOR_OFFSET)

    layer = np.floor((z - floor_height) / cell_size + 0.5).astype(np.int64)
    below = (z - floor_height) < clearance
    layer_b, flat_b = layer[below], flat[below]
    low = int(layer_b.min()) if len(layer_b) else 0
    span = int(layer_b.max()) - low + 1 if len(layer_b) else 1
    voxel_keys = np.unique(flat_b * span + (layer_b - low))
    voxel_cell, voxel_layer = voxel_keys // span, voxel_keys % span + low
    accumulation = np.bincount(voxel_cell, minlength=n_cells).astype(np.int32)
    top_layer = np.full(n_cells, -np.inf)
    np.maximum.at(top_layer, voxel_cell, voxel_layer.astype(np.float64))
    max_height = np.where(accumulation > 0, floor_height + (top_layer + 0.5) * cell_size, np.nan).astype(
        np.float32
    )

    on_floor = occupied & (np.abs(column_min - floor_height) <= cell_size / 2)
    with np.errstate(invalid="ignore"):
        low_top = max_height <= floor_height + floor_tolerance + 1e-6
    valid = on_floor & (accumulation >= 1) & (accumulation <= max_accumulation) & low_top
    valid = valid.reshape(shape)
    valid = valid | _small_holes((accumulation == 0).reshape(shape), max_hole_area / cell_size**2)
    if not valid.any():
        raise ValueError(
            f"scene {scene.name!r} has no usable floor: no {cell_size} m cell holds a single occupied "
            f"voxel within {floor_tolerance} m of the estimated floor height {floor_height:.3f} m"
        )
    return HeightMap(
        origin=origin,
        cell_size=float(cell_size),
        accumulation=accumulation.reshape(shape),
        max_height=max_height.reshape(shape),
        floor_height=floor_height,
        floor=on_floor.reshape(shape),
        valid=valid,
        candidates=None,
    )


def _small_holes(empty: np.ndarray, max_cells: float) -> np.ndarray:
    """Bool map of the connected empty regions with at most ``max_cells`` cells not touching the border."""
    labels, count = ndimage.label(empty)
    if count == 0:
        return np.zeros_like(empty)
    sizes = np.bincount(labels.ravel())
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    keep = sizes <= max_cells
    keep[0] = False
    keep[border] = False
    return keep[labels]


def footprint(radius: float, cell_size: float) -> np.ndarray:
    """(K, K) bool cells (relative to a centre cell) that a disk of ``radius`` metres about the centre
    cell's centre overlaps."""
    r = int(np.ceil(radius / cell_size + 0.5))
    d = np.arange(-r, r + 1, dtype=np.float64)
    gap = np.maximum(np.abs(d) - 0.5, 0.0) * cell_size
    return (gap[:, None] ** 2 + gap[None, :] ** 2) < radius**2 + 1e-12


def candidate_positions(height_map: HeightMap, radius: float) -> HeightMap:
    """Copy of ``height_map`` with ``candidates``: the cells whose centre can hold an object whose
    bounding circle has ``radius`` metres, i.e. every cell the disk overlaps is valid (Sec. 3.3).

    Raises:
        ValueError: when no cell qualifies (the object is larger than the free floor).
    """
    if not np.isfinite(radius) or radius < 0:
        raise ValueError(f"object radius must be finite and non-negative, got {radius}")
    struct = footprint(radius, height_map.cell_size)
    candidates = ndimage.binary_erosion(height_map.valid, structure=struct, border_value=0)
    if not candidates.any():
        raise ValueError(
            f"no candidate position: an object of bounding radius {radius:.2f} m does not fit inside the "
            f"free floor ({int(height_map.valid.sum())} valid {height_map.cell_size} m cells)"
        )
    return replace(height_map, candidates=candidates)


def nearest_candidate_lookup(height_map: HeightMap) -> np.ndarray:
    """(X, Y, 2) int64: for every cell, the nearest candidate cell (Euclidean on the grid)."""
    if height_map.candidates is None:
        raise ValueError("height_map.candidates is None: call candidate_positions first")
    _, idx = ndimage.distance_transform_edt(~height_map.candidates, return_indices=True)
    return np.moveaxis(idx, 0, -1).astype(np.int64)


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


def turn_angles(positions: np.ndarray) -> np.ndarray:
    """(T-2,) absolute change of direction in radians between consecutive xy steps of (T, 2+) positions."""
    d = np.diff(np.asarray(positions, dtype=np.float64)[:, :2], axis=0)
    heading = np.arctan2(d[:, 1], d[:, 0])
    return np.abs(_wrap(np.diff(heading)))


def sample_trajectory(
    scene: Scene,
    obj: ShapeObject,
    length: int = DEFAULT_LENGTH,
    rng: RngLike = None,
    step_range: tuple[float, float] = DEFAULT_STEP_RANGE,
    max_turn_deg: float = DEFAULT_MAX_TURN_DEG,
    cell_size: float = DEFAULT_CELL_SIZE,
    floor_tolerance: float = DEFAULT_FLOOR_TOLERANCE,
    height_map: HeightMap | None = None,
    yaw_mode: str = "random",
    max_yaw_step_deg: float = DEFAULT_MAX_YAW_STEP_DEG,
    clearance: float = DEFAULT_CLEARANCE,
    lookup: np.ndarray | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> Trajectory:
    """Sample an object trajectory of ``length`` positions on the free floor (Sec. 3.3).

    A random candidate cell is the start. Each step draws a length uniformly in ``step_range`` and a
    direction (uniform for the first step, otherwise the previous direction plus a turn uniform in
    ``±max_turn_deg``), and moves to the nearest candidate cell centre of the target. Because that
    snapping moves the point by up to half a cell diagonal or more, the step is accepted only when the
    **snapped** step still satisfies the constraints exactly: length in ``step_range`` and a turn
    strictly below ``max_turn_deg``; otherwise new proposals are drawn (``DEFAULT_PROPOSALS`` at a time),
    and after ``max_attempts`` rounds the walk restarts from a new start.

    Every position is a candidate cell centre at the floor height (the object stands on the floor).

    Object yaw along the path (``yaw_mode``): ``"random"`` — a uniform initial yaw, then a uniform
    increment in ``±max_yaw_step_deg`` per step; ``"heading"`` — the object faces the direction of
    motion (the first position faces the first step) plus a uniform noise in ``±max_yaw_step_deg``.

    Args:
        scene: the scan.
        obj: the object in canonical pose; its xy bounding-circle radius decides the candidates.
        length: number of positions t (paper: 4).
        rng: generator or seed.
        step_range: (min, max) step length in metres (paper: 0.30, 0.90).
        max_turn_deg: max direction change between steps, degrees (paper: 150).
        cell_size, floor_tolerance, clearance: see :func:`compute_height_map`.
        height_map: a precomputed map of ``scene`` (with or without candidates for this object's
            radius) to skip recomputing it.
        yaw_mode: ``"random"`` or ``"heading"``.
        max_yaw_step_deg: see ``yaw_mode``, degrees.
        lookup: precomputed :func:`nearest_candidate_lookup` of the map with candidates.
        max_attempts: proposal rounds per step, and restarts, before giving up.

    Returns:
        The :class:`~fourdcontrast.records.Trajectory` (positions (T, 3), yaws (T,), the map with
        candidates, the object radius).

    Raises:
        ValueError: scene without usable floor, object larger than the free floor, NaN input, bad
            parameters, or no trajectory found after ``max_attempts`` restarts.
    """
    rng = as_rng(rng)
    if length < 1:
        raise ValueError(f"length must be ≥ 1, got {length}")
    lo, hi = float(step_range[0]), float(step_range[1])
    if not 0 <= lo <= hi:
        raise ValueError(f"step_range must satisfy 0 ≤ min ≤ max, got {step_range}")
    if yaw_mode not in YAW_MODES:
        raise ValueError(f"yaw_mode must be one of {YAW_MODES}, got {yaw_mode!r}")
    if not np.isfinite(np.asarray(obj.points)).all():
        raise ValueError(f"object {obj.name!r} has NaN or infinite point coordinates")
    radius = obj.radius
    if height_map is None:
        height_map = compute_height_map(scene, cell_size, floor_tolerance, clearance)
    if height_map.candidates is None:
        height_map = candidate_positions(height_map, radius)
        lookup = None
    if lookup is None:
        lookup = nearest_candidate_lookup(height_map)
    max_turn = np.deg2rad(max_turn_deg)
    cand = np.argwhere(height_map.candidates)
    shape = np.array(height_map.shape)

    cells = None
    for _ in range(max_attempts):
        cells = _walk(height_map, cand, lookup, shape, length, lo, hi, max_turn, rng)
        if cells is not None:
            break
    if cells is None:
        raise ValueError(
            f"could not sample a trajectory of {length} steps in scene {scene.name!r} after "
            f"{max_attempts} restarts (free floor too small or fragmented for steps of {lo}-{hi} m)"
        )
    xy = height_map.cell_centers(cells)
    positions = np.column_stack([xy, np.full(length, height_map.floor_height)])
    yaws = _yaws(positions, yaw_mode, np.deg2rad(max_yaw_step_deg), rng)
    return Trajectory(positions=positions, yaws=yaws, height_map=height_map, object_radius=radius)


def _walk(height_map, cand, lookup, shape, length, lo, hi, max_turn, rng) -> np.ndarray | None:
    cells = [cand[rng.integers(len(cand))]]
    heading = None
    for _ in range(length - 1):
        cur = cells[-1]
        cur_xy = height_map.cell_centers(cur[None])[0]
        found = None
        for _ in range(DEFAULT_MAX_ATTEMPTS):
            dist = rng.uniform(lo, hi, DEFAULT_PROPOSALS)
            if heading is None:
                angle = rng.uniform(-np.pi, np.pi, DEFAULT_PROPOSALS)
            else:
                angle = heading + rng.uniform(-max_turn, max_turn, DEFAULT_PROPOSALS)
            target = cur_xy + dist[:, None] * np.column_stack([np.cos(angle), np.sin(angle)])
            tcell = np.clip(height_map.cells_of(target), 0, shape - 1)
            snapped = lookup[tcell[:, 0], tcell[:, 1]]
            step = height_map.cell_centers(snapped) - cur_xy
            length_ok = np.linalg.norm(step, axis=1)
            ok = (length_ok >= lo) & (length_ok <= hi) & (length_ok > 0)
            new_heading = np.arctan2(step[:, 1], step[:, 0])
            if heading is not None:
                ok &= np.abs(_wrap(new_heading - heading)) < max_turn
            good = np.flatnonzero(ok)
            if len(good):
                found = good[0]
                break
        if found is None:
            return None
        cells.append(snapped[found])
        heading = new_heading[found]
    return np.array(cells)


def _yaws(positions: np.ndarray, mode: str, max_step: float, rng: np.random.Generator) -> np.ndarray:
    n = len(positions)
    noise = rng.uniform(-max_step, max_step, n)
    if mode == "random":
        return _wrap(rng.uniform(-np.pi, np.pi) + np.concatenate([[0.0], np.cumsum(noise[1:])]))
    d = np.diff(positions[:, :2], axis=0)
    heading = np.arctan2(d[:, 1], d[:, 0]) if n > 1 else np.zeros(0)
    heading = np.concatenate([heading, heading[-1:]]) if n > 1 else np.array([rng.uniform(-np.pi, np.pi)])
    return _wrap(heading + noise)
