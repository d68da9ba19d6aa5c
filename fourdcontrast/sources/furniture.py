"""The shipped CC-0 furniture and the normalisation of object meshes (moving objects, paper Sec. 3.3).

The embedded set is a curated selection of CC-0 models from Debian's ``sweethome3d-furniture``
(``BlendSwap-CC-0.sh3f``), converted by ``scripts/build_furniture_assets.py`` into
``fourdcontrast/assets/furniture/``: per model an area-weighted sample of its surface (about one point
per 1.5 cm × 1.5 cm, 4k–20k points, quantised to uint16 over its bounding box) with unit normals,
in the canonical pose, plus ``index.json`` (names, categories, real sizes, areas, creators, sources).
See ``assets/furniture/PROVENANCE.md``. There is no CC-0 bathtub.

Canonical pose (as :class:`~fourdcontrast.records.ShapeObject`): upright, z up, metres, centre of the
xy bounding box at the origin, lowest point at z = 0, **front facing -y** (a chair's backrest is at +y).

Meshes from elsewhere (ModelNet: no real scale; other files: any unit and up axis) are brought to that
pose with :func:`normalize_mesh`, which scales them uniformly to a plausible real size per category
(:data:`CATEGORY_SIZES`), and sampled with :func:`sample_object` (paper: 1000 points, Sec. 4).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from fourdcontrast.geometry import RngLike, as_rng, sample_surface
from fourdcontrast.io.mesh import Mesh, validate_mesh
from fourdcontrast.records import ShapeObject
from fourdcontrast.sources.classes import OBJECT_CATEGORIES

logger = logging.getLogger(__name__)

FURNITURE_DIR = Path(__file__).resolve().parent.parent / "assets" / "furniture"
"""Folder of the shipped furniture (``index.json`` and one ``.npz`` per model)."""
OBJECT_POINTS = 1000
"""Points sampled on a moving object (paper, Sec. 4: "1000 randomly sampled points")."""

MAX_OBJECT_RADIUS = 1.1
"""Largest xy bounding radius (metres) of a default moving object. The object must fit, with room to
move, on the free floor of a scan; corner sofas, 2.3 m tables and big beds (radius 1.2–1.5 m) rarely
do in 4 × 5 m rooms, so :func:`default_objects` leaves them out (they still furnish the rooms)."""

CATEGORY_SIZES: dict[str, tuple[str, float]] = {
    "chair": ("height", 0.85),
    "desk": ("height", 0.75),
    "dresser": ("height", 0.85),
    "nightstand": ("height", 0.55),
    "sofa": ("length", 2.0),
    "table": ("height", 0.75),
    "bathtub": ("length", 1.65),
    "toilet": ("height", 0.75),
    "bed": ("length", 2.05),
    "monitor": ("length", 0.6),
    "cabinet": ("height", 1.5),
}
"""Plausible real size per category used by :func:`normalize_mesh`: which extent is fixed
(``height`` along z, or ``length`` = the longer horizontal side) and its value in metres. Typical
furniture dimensions (the medians of the Sweet Home 3D catalog where it has the category)."""
DEFAULT_SIZE: tuple[str, float] = ("height", 0.8)
"""Size of categories missing from :data:`CATEGORY_SIZES`."""

_UP_AXES = {
    "z": np.eye(3),
    "-z": np.diag([1.0, -1.0, -1.0]),
    # y up → z up by +90° about x: (x, y, z) ↦ (x, -z, y); a y-up model's front (+z) faces -y.
    "y": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]),
    "-y": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]),
    "x": np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]),
    "-x": np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]),
}
UP_AXES = tuple(_UP_AXES)
"""Accepted ``up_axis`` names."""


def up_rotation(up_axis: str) -> np.ndarray:
    """(3, 3) rotation that turns the ``up_axis`` (``x, y, z, -x, -y, -z``) of a model into +z."""
    try:
        return _UP_AXES[up_axis].copy()
    except KeyError:
        raise ValueError(f"unknown up axis {up_axis!r}; one of {', '.join(UP_AXES)}") from None


def canonical_placement(points: np.ndarray) -> np.ndarray:
    """Translate (N, 3) points so the xy bounding-box centre is at the origin and min z = 0 (new array)."""
    p = np.asarray(points, dtype=np.float64)
    lo, hi = p.min(axis=0), p.max(axis=0)
    return p - np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])


def category_scale(extent: np.ndarray, category: str,
                   sizes: dict[str, tuple[str, float]] | None = None) -> float:
    """Uniform scale factor that gives an upright model of (3,) ``extent`` its category's real size."""
    kind, metres = (CATEGORY_SIZES if sizes is None else sizes).get(category, DEFAULT_SIZE)
    if kind == "height":
        current = float(extent[2])
    elif kind == "length":
        current = float(max(extent[0], extent[1]))
    else:
        raise ValueError(f"size kind of {category!r} must be 'height' or 'length', got {kind!r}")
    if not current > 0:
        raise ValueError(f"cannot scale a {category} of extent {extent} to a {kind} of {metres} m")
    return metres / current


def normalize_mesh(mesh: Mesh, category: str, up_axis: str = "z", scale: float | None = None,
                   sizes: dict[str, tuple[str, float]] | None = None) -> Mesh:
    """Bring a mesh to the canonical pose (upright, metres, centred, standing on z = 0).

    Args:
        mesh: the mesh in its file's units and axes.
        category: object category; picks the real size from ``sizes``.
        up_axis: the mesh's up axis (ModelNet: ``z``; Sweet Home 3D OBJ and most GLB: ``y``).
        scale: explicit metres per file unit (e.g. 0.01 for centimetres); when given, the category
            size is not used.
        sizes: per-category sizes overriding :data:`CATEGORY_SIZES`.

    Returns:
        a new :class:`Mesh` in the canonical pose.
    """
    validate_mesh(mesh, mesh.name)
    v = mesh.vertices @ up_rotation(up_axis).T
    if scale is None:
        scale = category_scale(v.max(axis=0) - v.min(axis=0), category, sizes)
    return replace(mesh, vertices=canonical_placement(v * scale))


def sample_object(source: ShapeObject | Mesh, n: int = OBJECT_POINTS, rng: RngLike = None,
                  category: str | None = None, name: str | None = None) -> ShapeObject:
    """``n`` surface points of an object (paper: 1000), in its canonical pose.

    Args:
        source: a :class:`ShapeObject` with a dense surface sample (e.g. from :func:`load_furniture`;
            ``n`` of its points are drawn without replacement, which keeps the sampling area-weighted)
            or a canonical-pose :class:`Mesh` (area-weighted sampling of its triangles; a point-cloud
            mesh is subsampled).
        n: number of points.
        rng: generator or seed.
        category, name: override the record's category and name.

    Returns:
        a new :class:`ShapeObject` of ``n`` points (with normals when known), re-placed canonically.
    """
    rng = as_rng(rng)
    if isinstance(source, Mesh):
        if source.is_point_cloud:
            points, normals = source.vertices, None
        else:
            points, normals, _ = sample_surface(source.vertices, source.faces, n, rng)
            return ShapeObject(canonical_placement(points), category or "object", name or source.name,
                               normals)
        base_category, base_name = category or "object", name or source.name
    else:
        points, normals = source.points, source.normals
        base_category, base_name = category or source.category, name or source.name
    if len(points) == 0:
        raise ValueError(f"object {base_name!r} has no points to sample")
    pick = rng.choice(len(points), size=n, replace=n > len(points))
    return ShapeObject(canonical_placement(points[pick]), base_category, base_name,
                       None if normals is None else np.asarray(normals)[pick])


def furniture_catalog(root: str | os.PathLike | None = None) -> list[dict]:
    """The entries of the shipped furniture's ``index.json`` (id, name, category, size_m, area_m2, ...).

    Raises:
        FileNotFoundError: when the folder has no ``index.json``.
    """
    root = Path(root) if root is not None else FURNITURE_DIR
    index = root / "index.json"
    if not index.is_file():
        raise FileNotFoundError(f"{index}: furniture index missing (run scripts/build_furniture_assets.py)")
    return json.loads(index.read_text())["models"]


def _load_entry(root: Path, entry: dict) -> ShapeObject:
    path = root / entry["file"]
    with np.load(path, allow_pickle=False) as data:
        lo, hi = data["lo"].astype(np.float64), data["hi"].astype(np.float64)
        points = lo + data["points"].astype(np.float64) / 65535.0 * (hi - lo)
        normals = data["normals"].astype(np.float32) / 127.0
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-6)
    return ShapeObject(points, entry["category"], entry["id"], normals)


def load_furniture(category: str | list[str] | None = None,
                   root: str | os.PathLike | None = None) -> list[ShapeObject]:
    """The shipped CC-0 furniture as dense surface samples in the canonical pose.

    Args:
        category: a category name (``chair``, ``table``, ``desk``, ``bed``, ``sofa``, ``toilet``,
            ``dresser``, ``nightstand``, ``cabinet``, ``monitor``, ``other``), a list of them, or None
            for all models.
        root: folder of the set (default: the shipped one).

    Returns:
        one :class:`ShapeObject` per model (4k–20k points at ~1.5 cm spacing, with normals), sorted by
        id. Use :func:`sample_object` for the paper's 1000-point objects.

    Raises:
        ValueError: for a category with no shipped model (e.g. ``bathtub``: no CC-0 model exists).
    """
    root = Path(root) if root is not None else FURNITURE_DIR
    wanted = None if category is None else {category} if isinstance(category, str) else set(category)
    entries = [e for e in furniture_catalog(root) if wanted is None or e["category"] in wanted]
    if not entries:
        known = sorted({e["category"] for e in furniture_catalog(root)})
        raise ValueError(f"no shipped furniture of category {category!r}; shipped: {', '.join(known)}")
    return [_load_entry(root, e) for e in sorted(entries, key=lambda e: e["id"])]


def default_objects(seed: RngLike = 0, n: int = OBJECT_POINTS,
                    categories: tuple[str, ...] = OBJECT_CATEGORIES,
                    max_radius: float | None = MAX_OBJECT_RADIUS) -> list[ShapeObject]:
    """The paper's moving objects from the shipped set, each sampled to ``n`` points (paper: 1000).

    Args:
        seed: generator or seed; the same seed gives the same objects.
        n: points per object.
        categories: object categories (default: the paper's eight ModelNet classes; those without a
            shipped model, i.e. bathtub, are skipped with a log line).
        max_radius: leave out pieces whose xy bounding radius exceeds this (metres; None keeps all),
            see :data:`MAX_OBJECT_RADIUS`.
    """
    rng = as_rng(seed)
    shipped = {e["category"] for e in furniture_catalog()}
    missing = [c for c in categories if c not in shipped]
    if missing:
        logger.info("no shipped CC-0 model for %s; skipped", ", ".join(missing))
    present = [c for c in categories if c in shipped]
    pieces = [o for o in load_furniture(present) if max_radius is None or o.radius <= max_radius]
    return [sample_object(obj, n, rng) for obj in pieces]


def read_object(path: str | os.PathLike, category: str, n: int = OBJECT_POINTS, rng: RngLike = None,
                up_axis: str = "z", scale: float | None = None,
                sizes: dict[str, tuple[str, float]] | None = None) -> ShapeObject:
    """Read an object mesh (PLY, OFF, OBJ, GLB, NPZ; any units and up axis) as an ``n``-point
    :class:`ShapeObject` in the canonical pose and at a real size (see :func:`normalize_mesh`).

    Example: a Sweet Home 3D OBJ (y up, centimetres) is ``read_object(p, "chair", up_axis="y",
    scale=0.01)``; a ModelNet OFF (z up, no scale) is ``read_object(p, "chair")``.
    """
    from fourdcontrast.io.mesh import read_mesh

    path = Path(path)
    mesh = read_mesh(path)
    if mesh.is_point_cloud and len(mesh.vertices) < 2:
        raise ValueError(f"{path}: a single point is not an object")
    if not mesh.is_point_cloud and not np.any(_areas(mesh) > 0):
        raise ValueError(f"{path}: mesh has no triangle of positive area")
    try:
        mesh = normalize_mesh(mesh, category, up_axis, scale, sizes)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    return sample_object(mesh, n, rng, category=category, name=path.stem)


def _areas(mesh: Mesh) -> np.ndarray:
    from fourdcontrast.geometry import triangle_areas

    return triangle_areas(mesh.vertices, mesh.faces)
