"""Procedural labelled rooms: the embedded stand-in for ScanNet scans (and the segmentation benchmark).

A room is an axis-aligned box ``[0, W] × [0, D]`` (metres, z up) with a slightly tilted, uneven floor
near z = 0, walls ``RoomConfig.wall_height`` high with at least one door opening (and optional
windows), furnished with the shipped CC-0 furniture (:mod:`fourdcontrast.sources.furniture`): pieces
against the walls (backs to the wall) and in the middle, placed on the floor without collisions,
monitors on desks and cabinets, chairs at desks and tables. A disc of free floor and the space in front
of each door are kept clear so that the moving object has room (paper, Sec. 3.3).

Scan-like imperfections: about ``spacing`` (2 cm) between surface points, uneven density (a smooth
random keep-probability field), Gaussian noise, missing regions (balls of points removed), no floor
under the bases of furniture, and no ceiling unless ``ceiling=True``. Every point has a semantic label
(:data:`~fourdcontrast.sources.classes.CLASS_NAMES`) and an instance id (floor, each wall, each piece).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

import numpy as np
from tqdm.auto import tqdm

from fourdcontrast.geometry import RngLike, as_rng
from fourdcontrast.records import Scene, ShapeObject
from fourdcontrast.sources.classes import CLASS_NAMES, class_id, class_of_category
from fourdcontrast.sources.furniture import furniture_catalog, load_furniture

POINT_SPACING = 0.02
"""Target distance between neighbouring surface points, metres (the paper's 2 cm scene resolution)."""
WALL_HEIGHT = 2.5
"""Wall height in metres (typical ScanNet rooms: 2.4–2.7 m)."""
DOOR_SIZE = (0.9, 2.05)
"""Door opening width and height, metres."""
WINDOW_SIZE = (1.2, 1.2, 0.9)
"""Window opening width, height and sill height, metres."""
FLOOR_TILT_DEG = 0.3
"""Largest floor tilt in degrees (the scan's gravity estimate is never perfect)."""
FLOOR_UNEVENNESS = 0.006
"""Amplitude of the smooth floor bumps, metres."""
NOISE_SIGMA = 0.004
"""Standard deviation of the Gaussian position noise, metres (commodity RGB-D reconstructions)."""
DENSITY_RANGE = (0.45, 1.0)
"""Range of the smooth keep-probability field that makes the density uneven."""
HOLES = (2, 6)
"""Range (inclusive) of the number of missing regions per room."""
HOLE_RADIUS = (0.15, 0.5)
"""Range of the radius of a missing region, metres."""
FREE_RADIUS = 0.8
"""Radius of the floor disc kept free of furniture for the moving object, metres."""
WALL_GAP = 0.03
"""Gap between a piece standing against a wall and the wall, metres."""
CLEARANCE = 0.08
"""Least gap between two pieces of furniture, metres."""
GRID = 0.05
"""Cell size of the occupancy grid used for collision tests, metres."""
BASE_HEIGHT = 0.2
"""Floor is removed under the parts of a piece below this height (metres): bases, legs, plinths; the
floor under a table top stays visible, as in a scan."""
UNDER_TOP = 0.6
"""Below this height (metres) a desk's or table's parts are legs and drawers a chair must not enter."""
TUCK = 0.08
"""How far a chair at a desk or table reaches under its top, metres."""
PLACEMENT_TRIES = 40
"""Random positions tried per piece before it is left out."""


_FREE, _RESERVED = -1, -2


@dataclass(frozen=True)
class Piece:
    """One line of a furnishing plan: ``count`` pieces of ``category`` placed ``where``.

    ``where`` is ``wall`` (back against a wall), ``middle`` (anywhere, any yaw), ``on`` (on top of a
    placed ``desk``, ``table``, ``dresser`` or ``cabinet`` below 1.2 m) or ``at`` (a chair in front of
    a placed desk or around a placed table, facing it).
    """

    category: str
    count: tuple[int, int]
    where: str = "wall"


ROOM_TYPES: dict[str, tuple[tuple[tuple[float, float], tuple[float, float]], tuple[Piece, ...]]] = {
    "bedroom": (((3.4, 4.6), (3.8, 5.2)), (
        Piece("bed", (1, 1)), Piece("nightstand", (1, 2)), Piece("dresser", (0, 1)),
        Piece("cabinet", (0, 1)), Piece("desk", (0, 1)), Piece("chair", (0, 1), "at"),
        Piece("monitor", (0, 1), "on"), Piece("other", (0, 2)))),
    "office": (((3.6, 6.0), (3.6, 6.0)), (
        Piece("desk", (1, 3)), Piece("chair", (1, 3), "at"), Piece("monitor", (1, 3), "on"),
        Piece("cabinet", (0, 2)), Piece("dresser", (0, 1)), Piece("other", (0, 2)),
        Piece("chair", (0, 1), "middle"))),
    "living": (((4.0, 6.0), (4.0, 6.4)), (
        Piece("sofa", (1, 2)), Piece("table", (1, 1), "middle"), Piece("chair", (1, 4), "at"),
        Piece("cabinet", (0, 1)), Piece("dresser", (0, 1)), Piece("monitor", (0, 1), "on"),
        Piece("chair", (0, 2), "middle"), Piece("other", (1, 3)))),
    "dining": (((3.8, 5.6), (4.0, 6.0)), (
        Piece("table", (1, 1), "middle"), Piece("chair", (2, 6), "at"), Piece("cabinet", (0, 2)),
        Piece("other", (0, 2)), Piece("sofa", (0, 1)))),
    "bathroom": (((2.6, 3.4), (3.0, 3.8)), (
        Piece("toilet", (1, 1)), Piece("cabinet", (0, 1)), Piece("other", (0, 1)),
        Piece("chair", (0, 1)))),
}
"""Room types: ((width range, depth range) in metres, furnishing plan)."""


@dataclass(frozen=True)
class RoomConfig:
    """Everything :func:`make_room` draws from, with the defaults named above (override any field).

    Attributes:
        room_type: a key of :data:`ROOM_TYPES`, or None to draw one.
        size: (width, depth) in metres, or None to draw from the room type's ranges.
        spacing: surface point spacing, metres.
        wall_height: metres.
        doors: range (inclusive) of door openings (at least one).
        windows: range (inclusive) of window openings.
        ceiling: add a ceiling at ``wall_height`` (labelled ``other``; real scans mostly lack it).
        tilt_deg: largest floor tilt, degrees.
        unevenness: floor bump amplitude, metres.
        noise: Gaussian noise sigma, metres.
        density_range: range of the keep-probability field; (1, 1) for uniform density.
        holes: range (inclusive) of missing regions; (0, 0) for none.
        hole_radius: range of their radius, metres.
        free_radius: radius of the floor disc kept free for the moving object, metres (0: none).
    """

    room_type: str | None = None
    size: tuple[float, float] | None = None
    spacing: float = POINT_SPACING
    wall_height: float = WALL_HEIGHT
    doors: tuple[int, int] = (1, 2)
    windows: tuple[int, int] = (0, 2)
    ceiling: bool = False
    tilt_deg: float = FLOOR_TILT_DEG
    unevenness: float = FLOOR_UNEVENNESS
    noise: float = NOISE_SIGMA
    density_range: tuple[float, float] = DENSITY_RANGE
    holes: tuple[int, int] = HOLES
    hole_radius: tuple[float, float] = HOLE_RADIUS
    free_radius: float = FREE_RADIUS


@dataclass
class _Part:
    points: np.ndarray
    label: int
    instance: int
    color: np.ndarray


@dataclass
class _Model:
    """A piece of furniture with what placement needs, computed once per room."""

    obj: ShapeObject
    area: float
    extent: np.ndarray
    footprint: np.ndarray
    low_footprint: np.ndarray
    base_footprint: np.ndarray


@dataclass
class _Placed:
    obj: ShapeObject
    area: float
    extent: np.ndarray
    position: np.ndarray  # (3,) the object origin in the room
    yaw: float
    cells: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    low_cells: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # flat indices
    base_cells: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))


_CLASS_COLORS = {
    "wall": (0.82, 0.80, 0.76), "floor": (0.55, 0.42, 0.30), "chair": (0.50, 0.30, 0.20),
    "table": (0.62, 0.47, 0.32), "desk": (0.70, 0.68, 0.64), "bed": (0.75, 0.72, 0.80),
    "sofa": (0.35, 0.40, 0.55), "toilet": (0.92, 0.92, 0.92), "cabinet": (0.58, 0.50, 0.40),
    "nightstand": (0.55, 0.42, 0.30), "monitor": (0.12, 0.12, 0.14), "other": (0.45, 0.55, 0.40),
}


def _linear(x: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``x @ matrix`` for (N, k) ``x`` and a small (k, m) matrix, by broadcasting: a BLAS call for so
    thin a product is slow, and very slow when the cores are shared."""
    x = np.asarray(x)
    out = x[:, 0:1] * matrix[0]
    for i in range(1, matrix.shape[0]):
        out = out + x[:, i:i + 1] * matrix[i]
    return out


def _yaw_points(points: np.ndarray, yaw: float) -> np.ndarray:
    """(N, 2) xy of (N, ≥2) ``points`` turned by ``yaw`` radians about z."""
    c, s = math.cos(yaw), math.sin(yaw)
    return _linear(np.asarray(points, dtype=np.float64)[:, :2], np.array([[c, s], [-s, c]]))


class _Floor:
    """The floor height field: a tilted plane plus smooth bumps."""

    def __init__(self, rng: np.random.Generator, config: RoomConfig):
        tilt = math.radians(config.tilt_deg) * rng.random()
        direction = rng.uniform(0, 2 * math.pi)
        self.gradient = math.tan(tilt) * np.array([math.cos(direction), math.sin(direction)])
        self.freq = rng.uniform(0.5, 2.0, size=(3, 2)) * rng.choice([-1, 1], size=(3, 2))
        self.phase = rng.uniform(0, 2 * math.pi, size=3)
        self.amp = config.unevenness

    def __call__(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, dtype=np.float64)
        bumps = np.sin(_linear(xy, self.freq.T) + self.phase).mean(axis=-1)
        return _linear(xy, self.gradient[:, None])[:, 0] + self.amp * bumps


def _jittered_grid(rng: np.random.Generator, u_len: float, v_len: float, spacing: float) -> np.ndarray:
    """(K, 2) points in [0, u_len] × [0, v_len] about ``spacing`` apart (jittered grid)."""
    nu, nv = max(int(round(u_len / spacing)), 1), max(int(round(v_len / spacing)), 1)
    u, v = np.meshgrid((np.arange(nu) + 0.5) * (u_len / nu), (np.arange(nv) + 0.5) * (v_len / nv),
                       indexing="ij")
    uv = np.stack([u.ravel(), v.ravel()], axis=1)
    return uv + rng.uniform(-0.35, 0.35, size=uv.shape) * np.array([u_len / nu, v_len / nv])


def _smooth_field(rng: np.random.Generator, points: np.ndarray, terms: int = 4) -> np.ndarray:
    """(N,) values in [0, 1] varying smoothly over metres (a sum of random plane waves)."""
    freq = (rng.normal(size=(terms, 3)) * 2.0).astype(np.float32)
    phase = rng.uniform(0, 2 * math.pi, size=terms).astype(np.float32)
    f = np.cos(_linear(points.astype(np.float32), freq.T) + phase).sum(axis=1)
    f /= np.float32(math.sqrt(terms / 2.0))
    return 1.0 / (1.0 + np.exp(-1.5 * f))


class _Layout:
    """Occupancy grid of the room floor for collision tests."""

    def __init__(self, width: float, depth: float):
        self.shape = (int(math.ceil(width / GRID)), int(math.ceil(depth / GRID)))
        self.occupied = np.full(self.shape, _FREE, dtype=np.int32)  # piece index, _FREE or _RESERVED
        self.width, self.depth = width, depth

    def cells(self, xy: np.ndarray, margin: float = 0.0) -> np.ndarray | None:
        """Cells covered by the footprint points ``xy`` dilated by ``margin`` (clipped to the room;
        may repeat); None when an undilated point lies outside the room."""
        c = np.floor(xy / GRID).astype(np.int64)
        r = int(math.ceil(margin / GRID))
        if not r:
            return None if (c < 0).any() or (c >= self.shape).any() else c
        offsets = np.stack(np.meshgrid(np.arange(-r, r + 1), np.arange(-r, r + 1), indexing="ij"),
                           axis=-1).reshape(-1, 2)
        offsets = offsets[(offsets**2).sum(axis=1) <= r * r]
        c = (c[:, None, :] + offsets[None]).reshape(-1, 2)
        return c[(c >= 0).all(axis=1) & (c < self.shape).all(axis=1)]

    def free(self, cells: np.ndarray, ignore: int | None = None) -> bool:
        """Whether no cell is taken (cells of piece ``ignore`` count as free)."""
        taken = self.occupied[cells[:, 0], cells[:, 1]]
        return bool(((taken == _FREE) | (taken == (_FREE if ignore is None else ignore))).all())

    def mark(self, cells: np.ndarray, owner: int) -> None:
        self.occupied[cells[:, 0], cells[:, 1]] = owner

    def reserve_free_disc(self, rng: np.random.Generator, radius: float) -> np.ndarray | None:
        """Reserve a disc of ``radius`` at a random place where it touches nothing (walls included);
        where none fits, the place with the most room. Returns its centre (None if the room is full)."""
        from scipy.ndimage import distance_transform_edt

        free = np.pad(self.occupied == _FREE, 1)  # the padding is the walls
        if not free.any():
            return None
        room = distance_transform_edt(free)[1:-1, 1:-1] * GRID
        ok = np.argwhere(room >= radius + GRID)
        cell = ok[int(rng.integers(len(ok)))] if len(ok) else np.unravel_index(np.argmax(room), room.shape)
        centre = (np.asarray(cell) + 0.5) * GRID
        self.reserve_disc(centre, min(radius, float(room[tuple(cell)])))
        return centre

    def reserve_disc(self, centre: np.ndarray, radius: float) -> None:
        ii, jj = np.meshgrid(np.arange(self.shape[0]), np.arange(self.shape[1]), indexing="ij")
        centres = (np.stack([ii, jj], axis=-1) + 0.5) * GRID
        self.occupied[np.linalg.norm(centres - centre, axis=-1) <= radius] = _RESERVED

    def reserve_box(self, lo: np.ndarray, hi: np.ndarray) -> None:
        a = np.clip(np.floor(np.asarray(lo) / GRID).astype(int), 0, self.shape)
        b = np.clip(np.ceil(np.asarray(hi) / GRID).astype(int), 0, self.shape)
        self.occupied[a[0]:b[0], a[1]:b[1]] = _RESERVED


def _footprint(points: np.ndarray) -> np.ndarray:
    """(K, 2) local xy points covering the footprint of (N, 3) ``points`` at half the grid size."""
    half = GRID / 2
    if len(points) == 0:
        return np.zeros((0, 2))
    cells = np.floor(points[:, :2] / half).astype(np.int64)
    lo = cells.min(axis=0)
    mask = np.zeros(cells.max(axis=0) - lo + 1, dtype=bool)
    mask[cells[:, 0] - lo[0], cells[:, 1] - lo[1]] = True
    return (np.argwhere(mask) + lo + 0.5) * half


def _model(obj: ShapeObject, area: float) -> _Model:
    low = obj.points[obj.points[:, 2] < UNDER_TOP]
    base = obj.points[obj.points[:, 2] < BASE_HEIGHT]
    return _Model(obj, area, obj.points.max(axis=0) - obj.points.min(axis=0), _footprint(obj.points),
                  _footprint(low), _footprint(base))


def _wall_pose(rng, wall: int, width: float, depth: float, ext: np.ndarray, along: float | None):
    """Position (xy) and yaw that put a piece's back (+y) against ``wall`` (0 south y=0, 1 east x=W,
    2 north y=D, 3 west x=0); ``ext`` is its (3,) extent."""
    half_w, half_d = ext[0] / 2, ext[1] / 2
    length = width if wall in (0, 2) else depth
    lo, hi = half_w + 0.02, length - half_w - 0.02
    if hi < lo:
        return None
    t = rng.uniform(lo, hi) if along is None else float(np.clip(along, lo, hi))
    off = half_d + WALL_GAP
    if wall == 0:
        return np.array([t, off]), math.pi
    if wall == 1:
        return np.array([width - off, t]), -math.pi / 2
    if wall == 2:
        return np.array([t, depth - off]), 0.0
    return np.array([off, t]), math.pi / 2


def _furnish(rng, plan, pools, areas, layout: _Layout, floor: _Floor, width: float,
             depth: float, placed: list[_Placed] | None = None) -> list[_Placed]:
    placed = [] if placed is None else list(placed)
    for piece in plan:
        pool = pools.get(piece.category)
        if not pool:
            continue
        count = int(rng.integers(piece.count[0], piece.count[1] + 1))
        for _ in range(count):
            k = int(rng.integers(len(pool)))
            if isinstance(pool[k], ShapeObject):
                pool[k] = _model(pool[k], areas.get(pool[k].name, 0.0))
            model = pool[k]
            for _try in range(PLACEMENT_TRIES):
                pose = _propose(rng, piece, model, placed, width, depth)
                if pose is None:
                    continue
                xy, yaw, z, host = pose
                world = _yaw_points(model.footprint, yaw) + xy
                if piece.where == "on":
                    # Stands on a piece: only the room bounds matter.
                    if (world < 0).any() or (world[:, 0] > width).any() or (world[:, 1] > depth).any():
                        continue
                    position = np.array([xy[0], xy[1], z])
                    placed.append(_Placed(model.obj, model.area, model.extent, position, yaw))
                    break
                cells = layout.cells(world)
                if cells is None or not layout.free(cells, ignore=host):
                    continue
                flat = cells[:, 0] * layout.shape[1] + cells[:, 1]
                if host is not None and np.isin(flat, placed[host].low_cells).any():
                    continue  # a chair may reach under a top, not into legs or drawers
                grown = layout.cells(world, CLEARANCE)
                layout.mark(grown, len(placed))
                zf = float(floor(xy[None])[0])
                low = layout.cells(_yaw_points(model.low_footprint, yaw) + xy, margin=0.01)
                base = layout.cells(_yaw_points(model.base_footprint, yaw) + xy, margin=0.01)
                placed.append(_Placed(model.obj, model.area, model.extent, np.array([xy[0], xy[1], zf]), yaw,
                                      cells, low[:, 0] * layout.shape[1] + low[:, 1], base))
                break
    return placed


def _propose(rng, piece: Piece, model: _Model, placed: list[_Placed], width: float, depth: float):
    """A candidate (xy, yaw, z-or-None) for ``piece``, or None."""
    if piece.where == "wall":
        pose = _wall_pose(rng, int(rng.integers(4)), width, depth, model.extent, None)
        return None if pose is None else (pose[0], pose[1], None, None)
    if piece.where == "middle":
        r = float(np.linalg.norm(model.extent[:2]) / 2)
        if width < 2 * r or depth < 2 * r:
            return None
        xy = rng.uniform([r, r], [width - r, depth - r])
        yaw = float(rng.uniform(-math.pi, math.pi))
        return xy, yaw, None, None
    if piece.where == "on":
        supports = [p for p in placed if p.obj.category in ("desk", "table", "dresser", "cabinet")
                    and p.extent[2] < 1.2 and not any(
                        q.obj.category == piece.category
                        and np.linalg.norm(q.position[:2] - p.position[:2]) < 0.4
                        for q in placed)]
        if not supports:
            return None
        s = supports[int(rng.integers(len(supports)))]
        # On the support's main up-facing surface below 1.2 m, towards its back.
        pts, normals = s.obj.points, s.obj.normals
        up = (pts[:, 2] > 0.3) & (pts[:, 2] < 1.2)
        if normals is not None:
            up &= normals[:, 2] > 0.9
        if not up.any():
            return None
        heights = np.round(pts[up, 2] / 0.01).astype(np.int64)
        top = np.bincount(heights - heights.min()).argmax() + heights.min()
        surface = pts[up][heights == top]
        back = surface[surface[:, 1] >= np.quantile(surface[:, 1], 0.5)]
        local = back[int(rng.integers(len(back))), :2] * 0.8
        z = s.position[2] + top * 0.01
        return _yaw_points(local[None], s.yaw)[0] + s.position[:2], s.yaw, z, None
    if piece.where == "at":
        hosts = [i for i, p in enumerate(placed) if p.obj.category in ("desk", "table")]
        if not hosts:
            return None
        host = hosts[int(rng.integers(len(hosts)))]
        h = placed[host]
        ext, cext = h.extent, model.extent
        # Desk: in front (local -y). Table: any side.
        side = 0 if h.obj.category == "desk" else int(rng.integers(4))
        normal = np.array([(0.0, -1.0), (1.0, 0.0), (0.0, 1.0), (-1.0, 0.0)][side])
        half = ext[1] / 2 if side in (0, 2) else ext[0] / 2
        tangent_len = ext[0] if side in (0, 2) else ext[1]
        along = rng.uniform(-0.35, 0.35) * tangent_len
        # Tucked in: the seat's front edge is TUCK under the top's edge (only the host may overlap).
        local = normal * (half + cext[1] / 2 - TUCK) + np.array([-normal[1], normal[0]]) * along
        xy = _yaw_points(local[None], h.yaw)[0] + h.position[:2]
        # The chair's front (-y) faces the host: its local +y points along ``normal``.
        yaw = h.yaw + math.atan2(-normal[0], normal[1]) + float(rng.normal(0, 0.15))
        return xy, yaw, None, host
    raise ValueError(f"unknown placement {piece.where!r}")


def _openings(rng, config: RoomConfig, width: float, depth: float):
    """Door and window openings: list of (wall, start, end, bottom, top)."""
    lengths = [width, depth, width, depth]
    openings = []
    n_doors = int(rng.integers(max(config.doors[0], 1), max(config.doors[1], 1) + 1))
    n_windows = int(rng.integers(config.windows[0], config.windows[1] + 1))
    for kind in ["door"] * n_doors + ["window"] * n_windows:
        w, h, bottom = (DOOR_SIZE[0], DOOR_SIZE[1], 0.0) if kind == "door" else WINDOW_SIZE
        for _ in range(20):
            wall = int(rng.integers(4))
            if lengths[wall] < w + 0.4:
                continue
            start = rng.uniform(0.2, lengths[wall] - w - 0.2)
            if all(o[0] != wall or start > o[2] + 0.3 or start + w < o[1] - 0.3 for o in openings):
                openings.append((wall, start, start + w, bottom, min(bottom + h, config.wall_height - 0.05),
                                 kind))
                break
    return openings


def _wall_frame(wall: int, width: float, depth: float, u: np.ndarray) -> np.ndarray:
    """xy of points at distance ``u`` along ``wall`` (counter-clockwise from the south-west corner)."""
    if wall == 0:
        return np.stack([u, np.zeros_like(u)], axis=1)
    if wall == 1:
        return np.stack([np.full_like(u, width), u], axis=1)
    if wall == 2:
        return np.stack([width - u, np.full_like(u, depth)], axis=1)
    return np.stack([np.zeros_like(u), depth - u], axis=1)


def _class_color(rng, name: str, n: int, instance_shift: np.ndarray) -> np.ndarray:
    base = np.array(_CLASS_COLORS[name])
    c = base + instance_shift + rng.normal(0, 0.03, size=(n, 3))
    return np.clip(c, 0, 1).astype(np.float32)


def make_room(rng: RngLike = None, config: RoomConfig | None = None,
              furniture: list[ShapeObject] | None = None, name: str | None = None, **overrides) -> Scene:
    """A procedural labelled room (see the module docstring).

    Args:
        rng: generator or seed; the same seed gives the same room.
        config: a :class:`RoomConfig` (default: the module defaults).
        furniture: the pieces to furnish with (default: :func:`load_furniture`, all shipped models);
            pass a preloaded list to save the ~70 ms of loading when making many rooms.
        name: scene name (default ``room_<type>``).
        **overrides: :class:`RoomConfig` fields, e.g. ``ceiling=True`` or ``size=(4, 5)``.

    Returns:
        a :class:`Scene` in metres, z up, floor near z = 0, with ``colors``, ``labels`` (indices into
        ``class_names`` = :data:`CLASS_NAMES`) and ``instances`` (0 floor, 1–4 walls, then ceiling if
        any, then one id per piece of furniture).
    """
    rng = as_rng(rng)
    config = replace(config or RoomConfig(), **overrides)
    room_type = config.room_type or str(rng.choice(sorted(ROOM_TYPES)))
    if room_type not in ROOM_TYPES:
        raise ValueError(f"unknown room type {room_type!r}; one of {', '.join(sorted(ROOM_TYPES))}")
    (w_range, d_range), plan = ROOM_TYPES[room_type]
    width, depth = config.size if config.size is not None else (rng.uniform(*w_range), rng.uniform(*d_range))
    if width <= 0.5 or depth <= 0.5:
        raise ValueError(f"room size {width} × {depth} m is too small")
    furniture = load_furniture() if furniture is None else furniture
    areas = {e["id"]: e["area_m2"] for e in furniture_catalog()}
    areas = {obj.name: areas.get(obj.name, len(obj) * config.spacing**2) for obj in furniture}
    pools: dict[str, list] = {}  # category → models (prepared on first use)
    for obj in furniture:
        pools.setdefault(obj.category, []).append(obj)

    floor = _Floor(rng, config)
    layout = _Layout(width, depth)
    openings = _openings(rng, config, width, depth)
    for wall, start, end, _bottom, _top, kind in openings:
        if kind != "door":
            continue
        a, b = _wall_frame(wall, width, depth, np.array([start, end]))
        inward = {0: (0, 1), 1: (-1, 0), 2: (0, -1), 3: (1, 0)}[wall]
        c = _wall_frame(wall, width, depth, np.array([start, end])) + 1.0 * np.array(inward)
        box = np.concatenate([a[None], b[None], c])
        layout.reserve_box(box.min(axis=0) - 0.1, box.max(axis=0) + 0.1)
    # The first line of the plan is the room's anchor (bed, desk, sofa, table, toilet); the free disc
    # is kept where it still fits after the anchor is placed, then the rest is furnished around it.
    placed = _furnish(rng, plan[:1], pools, areas, layout, floor, width, depth)
    if config.free_radius > 0:
        layout.reserve_free_disc(rng, config.free_radius)
    placed = _furnish(rng, plan[1:], pools, areas, layout, floor, width, depth, placed)

    parts: list[_Part] = []
    # Floor, without the points hidden under furniture.
    xy = _jittered_grid(rng, width, depth, config.spacing)
    under = np.zeros((*layout.shape,), dtype=bool)
    for p in placed:
        under[p.base_cells[:, 0], p.base_cells[:, 1]] = True
    cell = np.minimum(np.floor(xy / GRID).astype(np.int64), np.array(layout.shape) - 1)
    xy = xy[~under[cell[:, 0], cell[:, 1]]]
    parts.append(_Part(np.column_stack([xy, floor(xy)]), class_id("floor"), 0,
                       _class_color(rng, "floor", len(xy), rng.normal(0, 0.05, 3))))
    # Walls with openings.
    lengths = [width, depth, width, depth]
    wall_shift = rng.normal(0, 0.03, 3)
    for wall in range(4):
        uv = _jittered_grid(rng, lengths[wall], config.wall_height, config.spacing)
        keep = np.ones(len(uv), dtype=bool)
        for o_wall, start, end, bottom, top, _kind in openings:
            if o_wall == wall:
                keep &= ~((uv[:, 0] > start) & (uv[:, 0] < end) & (uv[:, 1] > bottom) & (uv[:, 1] < top))
        uv = uv[keep]
        wxy = _wall_frame(wall, width, depth, uv[:, 0])
        pts = np.column_stack([wxy, floor(wxy) + uv[:, 1]])
        parts.append(_Part(pts, class_id("wall"), 1 + wall, _class_color(rng, "wall", len(pts), wall_shift)))
    next_instance = 5
    if config.ceiling:
        cxy = _jittered_grid(rng, width, depth, config.spacing)
        pts = np.column_stack([cxy, floor(cxy) + config.wall_height])
        parts.append(_Part(pts, class_id("other"), next_instance,
                           _class_color(rng, "wall", len(pts), wall_shift)))
        next_instance += 1
    for p in placed:
        n = int(min(len(p.obj), max(round(p.area / config.spacing**2), 1)))
        pick = rng.choice(len(p.obj), size=n, replace=False)
        local = p.obj.points[pick].astype(np.float64)
        pts = np.column_stack([_yaw_points(local, p.yaw) + p.position[:2], local[:, 2] + p.position[2]])
        label = class_of_category(p.obj.category)
        parts.append(_Part(pts, label, next_instance,
                           _class_color(rng, CLASS_NAMES[label], n, rng.normal(0, 0.12, 3))))
        next_instance += 1

    points = np.concatenate([q.points for q in parts])
    labels = np.concatenate([np.full(len(q.points), q.label, dtype=np.int64) for q in parts])
    instances = np.concatenate([np.full(len(q.points), q.instance, dtype=np.int64) for q in parts])
    colors = np.concatenate([q.color for q in parts])
    # Imperfections: uneven density, missing regions, noise.
    lo_d, hi_d = config.density_range
    keep = rng.random(len(points)) < lo_d + (hi_d - lo_d) * _smooth_field(rng, points)
    n_holes = int(rng.integers(config.holes[0], config.holes[1] + 1))
    if n_holes:
        centres = points[rng.choice(len(points), size=n_holes, replace=False)]
        radii = rng.uniform(*config.hole_radius, size=n_holes)
        for c, r in zip(centres, radii, strict=True):
            keep &= ((points - c) ** 2).sum(axis=1) > r * r
    points = points[keep] + rng.normal(0, config.noise, size=(int(keep.sum()), 3))
    return Scene(points.astype(np.float32), colors[keep], labels[keep], instances[keep],
                 name=name or f"room_{room_type}", class_names=CLASS_NAMES)


def default_rooms(n: int, seed: int = 0, furniture: list[ShapeObject] | None = None,
                  transform=None, **overrides) -> list[Scene]:
    """``n`` rooms of mixed types, deterministic per ``seed`` (room i depends only on seed and i).

    ``transform`` (a ``Scene -> Scene`` function, e.g. a compaction) is applied to each room as it is made,
    so only one full room is in memory at a time. ``**overrides`` are :class:`RoomConfig` fields applied to
    every room.
    """
    furniture = load_furniture() if furniture is None else furniture
    seeds = np.random.SeedSequence(seed).spawn(n)
    transform = transform or (lambda room: room)
    return [transform(make_room(np.random.default_rng(s), furniture=furniture, name=f"room_{seed}_{i:04d}",
                                **overrides))
            for i, s in enumerate(tqdm(seeds, desc="rooms", leave=False, disable=n < 8))]


def default_scene(seed: int = 0, **overrides) -> Scene:
    """One procedural labelled room, deterministic per ``seed`` (the embedded default scan)."""
    return make_room(np.random.default_rng(seed), name=f"room_{seed}", **overrides)


ROOM_CONFIG_FIELDS = tuple(f.name for f in fields(RoomConfig))
"""Names accepted as ``**overrides`` by :func:`make_room`."""
