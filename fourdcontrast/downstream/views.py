"""Single-view partial scans of held-out rooms: the out-of-domain detection set of the paper's Table 5.

The paper fine-tunes detection on SUN RGB-D — single RGB-D frames, not reconstructed rooms — to test
whether pre-training on whole reconstructions transfers to partial views. We have no SUN RGB-D here, so
this module makes its stand-in from the embedded labelled rooms: what a depth camera at a plausible pose
would see of a room, with the *amodal* boxes of the objects in view (SUN RGB-D's boxes enclose the whole
object, not its visible part; VoteNet predicts them).

**The camera** (:class:`Camera`): a pinhole of :data:`VIEW_FOV_DEG` field of view (Kinect v1, SUN RGB-D's
most common sensor: 57° × 43°), depth range :data:`VIEW_DEPTH_RANGE`, standing on free floor
(:func:`free_floor`) at a hand-held height (:data:`VIEW_HEIGHT`), aimed at a thing of the room (as people
photograph furniture) with a random jitter, looking down by :data:`VIEW_PITCH_DEG`. Of
:data:`VIEW_CANDIDATES` poses drawn, the one that sees the most objects is kept.

**What it sees** (:func:`visible_mask`): a z-buffer. Points in the frustum are projected to a
:data:`VIEW_IMAGE` depth image; each point is drawn as a square splat as wide as :data:`VIEW_SPLAT` metres
at its depth (the surface between the scan's ~2 cm samples, so that a near surface hides what is behind it
rather than letting it show through the gaps between samples); a point is visible when its depth is within
:data:`VIEW_DEPTH_TOLERANCE` of the image's depth at its pixel. (open3d's hidden-point removal, Katz et al.
2007, is the alternative the issue names; a z-buffer is what a depth camera is, and needs no extra package.)

**What is labelled** (:func:`single_view`): every visible point keeps its semantic label; a thing instance
is an *object of the view* when at least :data:`VIEW_MIN_POINTS` of its points are visible — its hidden
points are kept in :attr:`View.hidden_points` so that its box is the whole object's. Instances with fewer
visible points keep their labels but lose their instance id (no box: SUN RGB-D's annotators box what they
can recognise).

A view is a :class:`View` (a :class:`~fourdcontrast.records.Scene` of the visible points), so every
downstream task takes it as it takes a room; detection's training targets and its evaluation's ground truth
use the hidden points when ``data.complete_instances`` (default), the visible points only otherwise.

**Where this is lighter than SUN RGB-D**: the rooms are procedural and noise-free apart from the scan-like
imperfections of :mod:`~fourdcontrast.sources.rooms`; no colour; no sensor noise or depth quantisation; the
points are the room's surface samples, not a depth image's back-projection (their density does not fall
with distance); boxes are axis-aligned (the rooms are), where SUN RGB-D's have headings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from fourdcontrast.geometry import RngLike, as_rng
from fourdcontrast.records import Scene

logger = logging.getLogger(__name__)

__all__ = [
    "VIEW_CANDIDATES",
    "VIEW_DEPTH_RANGE",
    "VIEW_DEPTH_TOLERANCE",
    "VIEW_FOV_DEG",
    "VIEW_HEIGHT",
    "VIEW_IMAGE",
    "VIEW_MIN_POINTS",
    "VIEW_PITCH_DEG",
    "VIEW_SPLAT",
    "Camera",
    "View",
    "camera_coordinates",
    "free_floor",
    "single_view",
    "visible_mask",
]

VIEW_FOV_DEG: tuple[float, float] = (57.0, 43.0)
"""Horizontal and vertical field of view in degrees (Kinect v1; SUN RGB-D's most frequent sensor)."""
VIEW_DEPTH_RANGE: tuple[float, float] = (0.5, 4.5)
"""Nearest and farthest depth seen, metres (Kinect v1's working range, our reading)."""
VIEW_HEIGHT: tuple[float, float] = (1.0, 1.6)
"""Range of the camera's height above the floor, metres (hand-held or on a tripod; our choice)."""
VIEW_PITCH_DEG: tuple[float, float] = (5.0, 35.0)
"""Range of the camera's downward pitch in degrees when no object is aimed at (our choice); aimed at an
object, the pitch that centres it, clipped to this range."""
VIEW_AIM_JITTER_DEG: float = 15.0
"""Largest random yaw and pitch offset from the aimed-at object, degrees (our choice)."""
VIEW_IMAGE: tuple[int, int] = (160, 120)
"""Width and height in pixels of the z-buffer (our choice: 0.36° a pixel)."""
VIEW_SPLAT: float = 0.04
"""Least side in metres of the square a surface point covers in the z-buffer (our choice: more than the
rooms' 2–3 cm sample spacing, :data:`~fourdcontrast.sources.rooms.POINT_SPACING` thinned by the density
field, so that a surface has no gaps to see through); at most 17 pixels."""
VIEW_DEPTH_TOLERANCE: tuple[float, float] = (0.05, 0.03)
"""A point is visible when its depth ≤ the z-buffer's + ``a + b · depth`` (metres; our choice): the splats of
a surface seen at a grazing angle (the floor) cover their neighbours, which lie a little deeper."""
VIEW_MIN_POINTS: int = 50
"""Least visible points (at the rooms' 2 cm sampling) of a thing instance that makes it an object of the
view (our choice: about 0.03 m² of visible surface)."""
VIEW_CANDIDATES: int = 8
"""Camera poses drawn per view; the one that sees the most objects is kept (ties: the first)."""
VIEW_CLEARANCE: float = 0.3
"""Least horizontal distance, metres, from the camera to any point between :data:`FLOOR_BAND` (furniture,
walls): the photographer stands on free floor."""
FLOOR_BAND: tuple[float, float] = (0.1, 2.0)
"""Heights (metres) of the points that block the photographer's standing space."""
HEIGHT_MAP_CELL: float = 0.1
"""Cell of the occupancy grid of :func:`free_floor`, metres (the paper's 10 cm height map)."""


@dataclass
class Camera:
    """A pinhole depth camera.

    Attributes:
        position: (3,) metres.
        yaw: heading of the optical axis about z, radians (0: looking along +x).
        pitch: downward tilt of the optical axis, radians.
        fov_deg: horizontal and vertical field of view, degrees.
        depth_range: nearest and farthest depth seen, metres.
    """

    position: np.ndarray
    yaw: float
    pitch: float
    fov_deg: tuple[float, float] = VIEW_FOV_DEG
    depth_range: tuple[float, float] = VIEW_DEPTH_RANGE

    def axes(self) -> np.ndarray:
        """(3, 3) rows: the camera's right, down and forward unit vectors in room coordinates."""
        cy, sy, cp, sp = np.cos(self.yaw), np.sin(self.yaw), np.cos(self.pitch), np.sin(self.pitch)
        forward = np.array([cp * cy, cp * sy, -sp])
        right = np.array([sy, -cy, 0.0])
        return np.stack([right, np.cross(forward, right), forward])


@dataclass
class View(Scene):
    """A single-view partial scan: a :class:`~fourdcontrast.records.Scene` of the visible points, plus the
    hidden points of its objects (for their amodal boxes) and the camera.

    Attributes:
        hidden_points: (H, 3) float32 metres — the points of the view's objects (thing instances) that the
            camera does not see.
        hidden_labels: (H,) int64 their semantic labels.
        hidden_instances: (H,) int64 their instance ids (each among the visible points' ids).
        camera: the pose it was seen from (None when unknown, e.g. read from a cache).
    """

    hidden_points: np.ndarray | None = None
    hidden_labels: np.ndarray | None = None
    hidden_instances: np.ndarray | None = None
    camera: Camera | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hidden_points is None:
            self.hidden_points = np.zeros((0, 3), dtype=np.float32)
            self.hidden_labels = np.zeros(0, dtype=np.int64)
            self.hidden_instances = np.zeros(0, dtype=np.int64)
        self.hidden_points = np.asarray(self.hidden_points, dtype=np.float32).reshape(-1, 3)
        for attr in ("hidden_labels", "hidden_instances"):
            value = getattr(self, attr)
            if value is None or len(value) != len(self.hidden_points):
                raise ValueError(f"View {self.name}: {attr} must have one entry per hidden point "
                                 f"({len(self.hidden_points)})")
            setattr(self, attr, np.asarray(value, dtype=np.int64))


def camera_coordinates(points: np.ndarray, camera: Camera) -> np.ndarray:
    """(N, 3) the points in the camera's frame: right, down, forward (depth), metres."""
    return ((np.asarray(points, dtype=np.float64) - camera.position) @ camera.axes().T)


def visible_mask(points: np.ndarray, camera: Camera, image: tuple[int, int] = VIEW_IMAGE,
                 splat: float = VIEW_SPLAT,
                 tolerance: tuple[float, float] = VIEW_DEPTH_TOLERANCE) -> np.ndarray:
    """(N,) bool: which of ``points`` (N, 3) metres the camera sees (module docstring: frustum, depth
    range, z-buffer of square splats ``splat`` metres wide, depth ``tolerance``)."""
    c = camera_coordinates(points, camera)
    w, h = image
    tan_h, tan_v = (np.tan(np.radians(f) / 2) for f in camera.fov_deg)
    depth = c[:, 2]
    near, far = camera.depth_range
    with np.errstate(divide="ignore", invalid="ignore"):
        u, v = c[:, 0] / depth / tan_h, c[:, 1] / depth / tan_v  # in [-1, 1] inside the frustum
    inside = (depth >= near) & (depth <= far) & (np.abs(u) < 1) & (np.abs(v) < 1)
    idx = np.flatnonzero(inside)
    px = np.minimum(((u[idx] + 1) / 2 * w).astype(np.int64), w - 1)
    py = np.minimum(((v[idx] + 1) / 2 * h).astype(np.int64), h - 1)
    z = depth[idx]
    # half-width r of a point's splat in pixels: (2r + 1) pixels cover at least ``splat`` metres at its depth
    # (a pixel is 2·tan_h / w wide at depth 1)
    pixels = splat / (z * 2 * tan_h / w)
    radius = np.clip(np.ceil((pixels - 1) / 2), 0, 8).astype(np.int64)
    buffer = np.full(w * h, np.inf)
    for r in np.unique(radius):
        sel = radius == r
        for dx in range(-r, r + 1):
            for dy in range(-r, r + 1):
                x, y = px[sel] + dx, py[sel] + dy
                ok = (x >= 0) & (x < w) & (y >= 0) & (y < h)
                np.minimum.at(buffer, y[ok] * w + x[ok], z[sel][ok])
    out = np.zeros(len(points), dtype=bool)
    out[idx] = z <= buffer[py * w + px] + tolerance[0] + tolerance[1] * z
    return out


def free_floor(scene: Scene, clearance: float = VIEW_CLEARANCE, cell: float = HEIGHT_MAP_CELL
               ) -> np.ndarray:
    """(K, 2) xy centres (metres) of the cells of a :data:`HEIGHT_MAP_CELL` grid over the room where a
    person can stand: no point between :data:`FLOOR_BAND` heights within ``clearance`` metres, and at least
    ``clearance`` inside the room's xy bounds."""
    pts = scene.points
    lo, hi = pts[:, :2].min(0), pts[:, :2].max(0)
    shape = np.maximum(np.ceil((hi - lo) / cell).astype(np.int64), 1)
    blocking = pts[(pts[:, 2] > FLOOR_BAND[0]) & (pts[:, 2] < FLOOR_BAND[1])]
    cells = np.minimum(((blocking[:, :2] - lo) / cell).astype(np.int64), shape - 1)
    occupied = np.zeros(shape, dtype=bool)
    occupied[cells[:, 0], cells[:, 1]] = True
    k = int(np.ceil(clearance / cell))
    yy, xx = np.mgrid[-k:k + 1, -k:k + 1]
    blocked = ndimage.binary_dilation(occupied, structure=(xx ** 2 + yy ** 2) <= k * k)
    blocked[:k], blocked[-k:], blocked[:, :k], blocked[:, -k:] = True, True, True, True
    ij = np.argwhere(~blocked)
    return lo + (ij + 0.5) * cell


def _thing_centres(scene: Scene, stuff: tuple[int, ...]) -> np.ndarray:
    from fourdcontrast.downstream.metrics import instance_classes

    classes = instance_classes(scene.labels, scene.instances)
    return np.array([scene.points[scene.instances == i].mean(0) for i, c in sorted(classes.items())
                     if c not in stuff]).reshape(-1, 3)


def _draw_camera(floor: np.ndarray, targets: np.ndarray, floor_z: float, rng: np.random.Generator) -> Camera:
    position = np.array([*floor[rng.integers(len(floor))], floor_z + rng.uniform(*VIEW_HEIGHT)])
    jitter = np.radians(VIEW_AIM_JITTER_DEG)
    pitch_range = np.radians(VIEW_PITCH_DEG)
    if len(targets):
        d = targets[rng.integers(len(targets))] - position
        yaw = np.arctan2(d[1], d[0]) + rng.uniform(-jitter, jitter)
        pitch = np.arctan2(-d[2], np.hypot(d[0], d[1])) + rng.uniform(-jitter, jitter)
        pitch = float(np.clip(pitch, *pitch_range))
    else:
        yaw, pitch = rng.uniform(-np.pi, np.pi), rng.uniform(*pitch_range)
    return Camera(position, float(yaw), float(pitch))


def single_view(scene: Scene, rng: RngLike = None, candidates: int = VIEW_CANDIDATES,
                min_points: int = VIEW_MIN_POINTS) -> View:
    """What a depth camera at a plausible pose sees of a labelled room (module docstring).

    Args:
        scene: a room with labels and instances (metres, z up, floor near z = 0).
        rng: the random draws of the poses.
        candidates: poses drawn; the one seeing the most objects is kept (ties: the first).
        min_points: least visible points of a thing instance that makes it an object of the view.

    Returns:
        a :class:`View` named ``<room>_view`` (its visible points in the room's order).

    Raises:
        ValueError: the scene lacks labels or instances, or has no free floor to stand on.
    """
    from fourdcontrast.downstream.metrics import stuff_ids

    if scene.labels is None or scene.instances is None or scene.class_names is None:
        raise ValueError(f"scene {scene.name}: a single view needs labels, instances and class names")
    rng = as_rng(rng)
    floor = free_floor(scene)
    if not len(floor):
        raise ValueError(f"scene {scene.name}: no free floor {VIEW_CLEARANCE} m from furniture and walls")
    stuff = stuff_ids(scene.class_names)
    targets = _thing_centres(scene, stuff)
    floor_z = float(np.percentile(scene.points[:, 2], 1))
    best = None
    for _ in range(candidates):
        camera = _draw_camera(floor, targets, floor_z, rng)
        seen = visible_mask(scene.points, camera)
        objects = _objects_in_view(scene, seen, stuff, min_points)
        if best is None or len(objects) > len(best[2]):
            best = (camera, seen, objects)
    camera, seen, objects = best
    instances = np.where(np.isin(scene.instances, objects), scene.instances, -1)
    hidden = ~seen & np.isin(scene.instances, objects)
    return View(scene.points[seen], labels=scene.labels[seen], instances=instances[seen],
                name=f"{scene.name}_view", class_names=scene.class_names,
                colors=None if scene.colors is None else scene.colors[seen],
                hidden_points=scene.points[hidden], hidden_labels=scene.labels[hidden],
                hidden_instances=scene.instances[hidden], camera=camera)


def _objects_in_view(scene: Scene, seen: np.ndarray, stuff: tuple[int, ...], min_points: int) -> np.ndarray:
    from fourdcontrast.downstream.metrics import instance_classes

    classes = instance_classes(scene.labels, scene.instances)
    ids, counts = np.unique(scene.instances[seen], return_counts=True)
    return np.array([i for i, n in zip(ids, counts, strict=True)
                     if n >= min_points and i in classes and classes[int(i)] not in stuff], dtype=np.int64)
