"""Generic meshes and point clouds: PLY, OFF, OBJ, GLB/GLTF, STL (via trimesh) and NPZ.

A point cloud is a :class:`Mesh` without faces. Every reader validates what it returns: at least one
vertex, finite coordinates, face indices in range — bad input gets one error naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fourdcontrast.io.atomic import atomic_path
from fourdcontrast.io.off import read_off, write_off
from fourdcontrast.io.ply import read_ply, write_ply
from fourdcontrast.records import Scene

TRIMESH_SUFFIXES = (".obj", ".glb", ".gltf", ".stl")
"""Suffixes read through trimesh."""
MESH_SUFFIXES = (".ply", ".off", ".npz", *TRIMESH_SUFFIXES)
"""Every suffix :func:`read_mesh` reads."""


@dataclass
class Mesh:
    """A triangle mesh, or a point cloud when ``faces`` is empty.

    Attributes:
        vertices: (V, 3) float64 positions (units and up axis as in the file).
        faces: (F, 3) int64 vertex indices of the triangles; (0, 3) for a point cloud.
        colors: optional (V, 3) float32 RGB in [0, 1].
        name: identifier (the file stem when read from a file).
    """

    vertices: np.ndarray
    faces: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.int64))
    colors: np.ndarray | None = None
    name: str = "mesh"

    def __post_init__(self) -> None:
        self.vertices = np.asarray(self.vertices, dtype=np.float64).reshape(-1, 3)
        self.faces = np.asarray(self.faces, dtype=np.int64).reshape(-1, 3)
        if self.colors is not None:
            self.colors = np.asarray(self.colors, dtype=np.float32).reshape(-1, 3)

    @property
    def is_point_cloud(self) -> bool:
        return len(self.faces) == 0


def validate_mesh(mesh: Mesh, source: str | os.PathLike = "mesh") -> Mesh:
    """Check that ``mesh`` is usable; returns it unchanged.

    Raises:
        ValueError: naming ``source``, when there is no vertex, a coordinate is NaN or infinite, a
            face index is out of range, or colours do not match the vertices.
    """
    if len(mesh.vertices) == 0:
        raise ValueError(f"{source}: empty mesh (no vertices)")
    bad = ~np.isfinite(mesh.vertices).all(axis=1)
    if bad.any():
        raise ValueError(f"{source}: {int(bad.sum())} vertices have NaN or infinite coordinates "
                         f"(first: vertex {int(np.argmax(bad))})")
    if len(mesh.faces) and (mesh.faces.min() < 0 or mesh.faces.max() >= len(mesh.vertices)):
        raise ValueError(f"{source}: face index out of range [0, {len(mesh.vertices)})")
    if mesh.colors is not None and len(mesh.colors) != len(mesh.vertices):
        raise ValueError(f"{source}: {len(mesh.colors)} colours for {len(mesh.vertices)} vertices")
    return mesh


def _ply_faces(faces: np.ndarray) -> np.ndarray:
    if faces.dtype != object:
        k = faces.shape[1] if faces.ndim == 2 else 0
        if k == 3 or len(faces) == 0:
            return faces.reshape(-1, 3)
        faces = list(faces)
    tris = [(f[0], f[i], f[i + 1]) for f in faces for i in range(1, len(f) - 1)]
    return np.asarray(tris, dtype=np.int64).reshape(-1, 3)


def mesh_from_ply(path: str | os.PathLike) -> Mesh:
    """Read a PLY mesh or point cloud (colours from ``red, green, blue`` when present)."""
    path = Path(path)
    ply = read_ply(path)
    if "vertex" not in ply:
        raise ValueError(f"{path}: malformed PLY file: no 'vertex' element")
    v = ply["vertex"]
    missing = [c for c in "xyz" if c not in v]
    if missing:
        raise ValueError(f"{path}: malformed PLY file: vertex property {missing[0]!r} missing")
    vertices = np.stack([v["x"], v["y"], v["z"]], axis=1)
    colors = None
    if all(c in v for c in ("red", "green", "blue")):
        colors = np.stack([v["red"], v["green"], v["blue"]], axis=1).astype(np.float32)
        if np.issubdtype(v["red"].dtype, np.integer):
            colors /= 255.0
    faces = np.zeros((0, 3), dtype=np.int64)
    if "face" in ply:
        key = "vertex_indices" if "vertex_indices" in ply["face"] else "vertex_index"
        if key in ply["face"]:
            faces = _ply_faces(ply["face"][key])
    return Mesh(vertices, faces, colors, name=path.stem)


def _mesh_from_trimesh(path: Path) -> Mesh:
    import trimesh

    try:
        loaded = trimesh.load(path, force="mesh", process=False)
    except Exception as exc:  # trimesh raises many types for bad files
        raise ValueError(f"{path}: cannot be read as a mesh: {exc}") from exc
    if not isinstance(loaded, trimesh.Trimesh):
        raise ValueError(f"{path}: holds no mesh geometry")
    colors = None
    visual = getattr(loaded, "visual", None)
    if visual is not None and getattr(visual, "kind", None) == "vertex":
        colors = np.asarray(visual.vertex_colors)[:, :3].astype(np.float32) / 255.0
    return Mesh(np.asarray(loaded.vertices), np.asarray(loaded.faces), colors, name=path.stem)


def _mesh_from_npz(path: Path) -> Mesh:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:
        raise ValueError(f"{path}: cannot be read as NPZ: {exc}") from exc
    key = "vertices" if "vertices" in arrays else "points" if "points" in arrays else None
    if key is None:
        raise ValueError(f"{path}: NPZ holds neither 'vertices' nor 'points' (keys: {sorted(arrays)})")
    if arrays[key].ndim != 2 or arrays[key].shape[1] != 3:
        raise ValueError(f"{path}: '{key}' has shape {arrays[key].shape}, expected (N, 3)")
    faces = arrays.get("faces", np.zeros((0, 3), dtype=np.int64))
    return Mesh(arrays[key], faces, arrays.get("colors"), name=path.stem)


def read_mesh(path: str | os.PathLike) -> Mesh:
    """Read a mesh or point cloud by suffix (PLY, OFF, OBJ, GLB, GLTF, STL, NPZ) and validate it.

    NPZ files hold ``vertices`` (or ``points``) (N, 3), optionally ``faces`` (F, 3) and ``colors``
    (N, 3) in [0, 1]. Units and up axis are whatever the file uses.

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: naming the file, for an unknown suffix or malformed, empty or non-finite content.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such mesh file")
    suffix = path.suffix.lower()
    if suffix == ".ply":
        mesh = mesh_from_ply(path)
    elif suffix == ".off":
        vertices, faces = read_off(path)
        mesh = Mesh(vertices, faces, name=path.stem)
    elif suffix in TRIMESH_SUFFIXES:
        mesh = _mesh_from_trimesh(path)
    elif suffix == ".npz":
        mesh = _mesh_from_npz(path)
    else:
        raise ValueError(f"{path}: unknown mesh format {suffix!r} (known: {', '.join(MESH_SUFFIXES)})")
    return validate_mesh(mesh, path)


def write_mesh(path: str | os.PathLike, mesh: Mesh) -> Path:
    """Write ``mesh`` by suffix (PLY, OFF, OBJ, NPZ), atomically. Returns the path."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".ply":
        return write_ply(path, mesh.vertices, mesh.faces if len(mesh.faces) else None, mesh.colors)
    if suffix == ".off":
        return write_off(path, mesh.vertices, mesh.faces)
    if suffix == ".npz":
        arrays = {"vertices": mesh.vertices, "faces": mesh.faces}
        if mesh.colors is not None:
            arrays["colors"] = mesh.colors
        with atomic_path(path) as tmp:
            np.savez_compressed(tmp, **arrays)
        return path
    if suffix == ".obj":
        lines = [f"v {x:.6g} {y:.6g} {z:.6g}" for x, y, z in mesh.vertices]
        lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in mesh.faces.tolist()]
        with atomic_path(path) as tmp:
            tmp.write_text("\n".join(lines) + "\n", encoding="ascii")
        return path
    raise ValueError(f"{path}: cannot write mesh format {suffix!r} (known: .ply, .off, .obj, .npz)")


def read_scene(path: str | os.PathLike, name: str | None = None) -> Scene:
    """Read a scan (mesh or point cloud, metres, z up) as a :class:`Scene` of its vertices.

    Colours are read when present; so are per-point ``label`` and ``instance`` (PLY vertex properties
    or NPZ arrays ``labels``/``instances``, as :func:`write_scene` writes them) and, from NPZ,
    ``class_names``.
    """
    path = Path(path)
    mesh = read_mesh(path)
    labels = instances = class_names = None
    if path.suffix.lower() == ".ply":
        vertex = read_ply(path)["vertex"]
        labels, instances = vertex.get("label"), vertex.get("instance")
    elif path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as data:
            labels = data["labels"] if "labels" in data.files else None
            instances = data["instances"] if "instances" in data.files else None
            if "class_names" in data.files:
                class_names = tuple(str(c) for c in data["class_names"])
    return Scene(mesh.vertices.astype(np.float32), colors=mesh.colors, labels=_as_int(labels),
                 instances=_as_int(instances), name=name or mesh.name, class_names=class_names)


def _as_int(values: np.ndarray | None) -> np.ndarray | None:
    return None if values is None else np.asarray(values).astype(np.int64)


def write_scene(path: str | os.PathLike, scene: Scene) -> Path:
    """Write a :class:`Scene` as PLY (binary; colours, ``label`` and ``instance`` as int32 vertex
    properties) or NPZ (``points``, ``colors``, ``labels``, ``instances``, ``class_names``),
    atomically. Returns the path."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".ply":
        props = {k: np.asarray(v, dtype=np.int32) for k, v in
                 (("label", scene.labels), ("instance", scene.instances)) if v is not None}
        return write_ply(path, scene.points, colors=scene.colors, vertex_properties=props)
    if suffix == ".npz":
        arrays = {"points": scene.points}
        for key in ("colors", "labels", "instances"):
            if getattr(scene, key) is not None:
                arrays[key] = getattr(scene, key)
        if scene.class_names is not None:
            arrays["class_names"] = np.array(scene.class_names)
        with atomic_path(path) as tmp:
            np.savez_compressed(tmp, **arrays)
        return path
    raise ValueError(f"{path}: cannot write a scene as {suffix!r} (known: .ply, .npz)")
