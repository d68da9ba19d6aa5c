"""The records that flow through the pipeline (paper, Sec. 3.3).

Every record is a dataclass of numpy arrays in SI units (metres, radians), z up. Records are never
modified in place by the library: each step returns new records.

Flow::

    Scene, ShapeObject ──► Trajectory (HeightMap) ──► Sequence (Frames with provenance)

Provenance is what makes correspondences exact: every point of every frame records which source it
came from (``SOURCE_SCENE`` or ``SOURCE_OBJECT``) and its index into that source's ``points``. Two points
of two frames correspond iff their (source, index) pairs are equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SOURCE_SCENE = 0
"""Provenance code of a point taken from the static scan."""
SOURCE_OBJECT = 1
"""Provenance code of a point taken from the moving synthetic object."""


def _as_points(name: str, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"{name}.points must have shape (N, 3), got {points.shape}")
    return points


def _check_length(owner: str, name: str, values: np.ndarray | None, n: int) -> None:
    if values is not None and len(values) != n:
        raise ValueError(f"{owner}.{name} has {len(values)} entries for {n} points")


@dataclass
class Scene:
    """A static 3D scan (or a procedural room).

    Attributes:
        points: (N, 3) float32 point positions in metres, z up, floor near z = 0.
        colors: optional (N, 3) float32 RGB in [0, 1].
        labels: optional (N,) int64 semantic class ids (indices into ``class_names``; -1 = unlabelled).
        instances: optional (N,) int64 instance ids (-1 = no instance).
        name: scene identifier (e.g. ``scene0000_00``).
        class_names: names of the semantic classes that ``labels`` index, when labelled.
    """

    points: np.ndarray
    colors: np.ndarray | None = None
    labels: np.ndarray | None = None
    instances: np.ndarray | None = None
    name: str = "scene"
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        self.points = _as_points("Scene", self.points)
        n = len(self.points)
        for attr in ("colors", "labels", "instances"):
            _check_length("Scene", attr, getattr(self, attr), n)

    def __len__(self) -> int:
        return len(self.points)

    @property
    def extent(self) -> np.ndarray:
        """(3,) size of the axis-aligned bounding box in metres."""
        return self.points.max(axis=0) - self.points.min(axis=0)


@dataclass
class ShapeObject:
    """A synthetic object (e.g. a ModelNet / Sweet Home 3D model) sampled on its surface.

    The canonical pose is upright (z up), in metres, with the centre of its xy bounding box at the
    origin and its lowest point at z = 0, so placing it at a floor position ``p`` is ``points + p``.

    Attributes:
        points: (M, 3) float32 surface samples in metres (paper: M = 1000).
        category: class name (``chair``, ``table``, ...).
        name: model identifier.
        normals: optional (M, 3) float32 unit normals.
    """

    points: np.ndarray
    category: str = "object"
    name: str = "object"
    normals: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.points = _as_points("ShapeObject", self.points)
        _check_length("ShapeObject", "normals", self.normals, len(self.points))

    def __len__(self) -> int:
        return len(self.points)

    @property
    def radius(self) -> float:
        """Radius in metres of the bounding circle in the xy-plane about the origin (the footprint
        the trajectory sampler keeps inside the valid region)."""
        return float(np.linalg.norm(self.points[:, :2], axis=1).max()) if len(self.points) else 0.0

    @property
    def height(self) -> float:
        """Height in metres (max z; the lowest point is at z = 0)."""
        return float(self.points[:, 2].max()) if len(self.points) else 0.0


@dataclass
class HeightMap:
    """The 2D map of scene geometry that trajectories are sampled on (paper, Sec. 3.3).

    Cell (i, j) covers x in [origin[0] + i·cell_size, origin[0] + (i+1)·cell_size) and likewise y with j.

    Attributes:
        origin: (2,) float64 xy of the corner of cell (0, 0), metres.
        cell_size: cell edge in metres (paper: 0.10).
        accumulation: (X, Y) int32 number of occupied surface voxels in each column.
        max_height: (X, Y) float32 top of the highest occupied voxel in each column, metres (NaN if empty).
        floor_height: the estimated floor height in metres.
        floor: (X, Y) bool cells classified as floor.
        valid: (X, Y) bool cells where an object may stand.
        candidates: (X, Y) bool cells whose centre is a candidate object position for a given radius
            (None until computed for an object).
    """

    origin: np.ndarray
    cell_size: float
    accumulation: np.ndarray
    max_height: np.ndarray
    floor_height: float
    floor: np.ndarray
    valid: np.ndarray
    candidates: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.accumulation.shape)  # type: ignore[return-value]

    def cell_centers(self, cells: np.ndarray) -> np.ndarray:
        """(K, 2) int cell indices → (K, 2) float64 xy centres in metres."""
        return self.origin + (np.asarray(cells, dtype=np.float64) + 0.5) * self.cell_size

    def cells_of(self, xy: np.ndarray) -> np.ndarray:
        """(K, 2) xy in metres → (K, 2) int64 cell indices (may be out of range)."""
        return np.floor((np.asarray(xy, dtype=np.float64) - self.origin) / self.cell_size).astype(np.int64)


@dataclass
class Trajectory:
    """An object trajectory through a scene (paper, Sec. 3.3, "Trajectory Generation").

    Attributes:
        positions: (T, 3) float64 object origin per time step in scene coordinates, metres; z is the
            floor height, so the object stands on the floor.
        yaws: (T,) float64 rotation of the object about z per time step, radians.
        height_map: the map the trajectory was sampled on (with ``candidates`` for the object).
        object_radius: the bounding-circle radius used for the candidates, metres.
    """

    positions: np.ndarray
    yaws: np.ndarray
    height_map: HeightMap
    object_radius: float = 0.0

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def step_lengths(self) -> np.ndarray:
        """(T-1,) xy distance between consecutive positions, metres."""
        return np.linalg.norm(np.diff(self.positions[:, :2], axis=0), axis=1)

    def poses(self) -> np.ndarray:
        """(T, 4, 4) object-to-scene rigid transforms (rotation by yaw about z, then translation)."""
        c, s = np.cos(self.yaws), np.sin(self.yaws)
        poses = np.zeros((len(self), 4, 4))
        poses[:, 0, 0], poses[:, 0, 1], poses[:, 1, 0], poses[:, 1, 1] = c, -s, s, c
        poses[:, 2, 2] = poses[:, 3, 3] = 1.0
        poses[:, :3, 3] = self.positions
        return poses


@dataclass
class Frame:
    """One time step of a 4D sequence.

    ``points`` are in the sequence (scene) coordinates shared by all frames: the 4D view. The 3D view of
    the frame is ``view_transform`` applied to them (random rotation, translation and uniform scale,
    paper Sec. 3.3 "Scene Augmentation"); use :meth:`view_points`.

    Attributes:
        points: (n, 3) float32 positions in scene coordinates, metres.
        source: (n,) int8 provenance: ``SOURCE_SCENE`` or ``SOURCE_OBJECT``.
        index: (n,) int64 index of the point in its source's ``points``.
        object_pose: (4, 4) float64 object-to-scene transform at this time step.
        view_transform: (4, 4) float64 similarity transform scene → 3D view of this frame
            (identity until augmented).
    """

    points: np.ndarray
    source: np.ndarray
    index: np.ndarray
    object_pose: np.ndarray = field(default_factory=lambda: np.eye(4))
    view_transform: np.ndarray = field(default_factory=lambda: np.eye(4))

    def __post_init__(self) -> None:
        self.points = _as_points("Frame", self.points)
        self.source = np.asarray(self.source, dtype=np.int8)
        self.index = np.asarray(self.index, dtype=np.int64)
        _check_length("Frame", "source", self.source, len(self.points))
        _check_length("Frame", "index", self.index, len(self.points))

    def __len__(self) -> int:
        return len(self.points)

    @property
    def keys(self) -> np.ndarray:
        """(n,) int64 unique provenance key per point: ``index * 2 + source``."""
        return self.index * 2 + self.source.astype(np.int64)

    def view_points(self) -> np.ndarray:
        """(n, 3) float32 points of the 3D view (``view_transform`` applied)."""
        t = self.view_transform
        return (self.points.astype(np.float64) @ t[:3, :3].T + t[:3, 3]).astype(np.float32)


@dataclass
class Sequence:
    """A 4D sequence: an object moving through a static scene (paper, Sec. 3.3).

    Attributes:
        frames: the T frames (paper: T = 4).
        scene: the static scan the scene points come from.
        obj: the object (canonical pose) the object points come from.
        trajectory: the trajectory the object followed.
        seed: the seed that generated the sequence, when known.
        chunks: (K, 2, 3) float64 min and max corners (metres, scene coordinates) of the cubic chunks
            removed from the background scene by augmentation, when augmented.
    """

    frames: list[Frame]
    scene: Scene
    obj: ShapeObject
    trajectory: Trajectory | None = None
    seed: int | None = None
    chunks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.frames)

    def source_points(self, source: np.ndarray, index: np.ndarray) -> np.ndarray:
        """Canonical positions of provenance entries: scene points as scanned, object points in the
        object's canonical pose. (n,) source and index → (n, 3) float32."""
        source = np.asarray(source)
        index = np.asarray(index)
        out = np.empty((len(index), 3), dtype=np.float32)
        is_scene = source == SOURCE_SCENE
        out[is_scene] = self.scene.points[index[is_scene]]
        out[~is_scene] = self.obj.points[index[~is_scene]]
        return out
