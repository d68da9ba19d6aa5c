"""ScanNet scan reader (``scans/<scene>/``) → labelled :class:`~fourdcontrast.records.Scene`.

Files of a scene ``<s>`` (only the mesh is required):

- ``<s>_vh_clean_2.ply``: binary PLY, vertices ``x, y, z, red, green, blue, alpha`` (metres, z up) and
  faces; the scene points are the mesh vertices (paper, Supplement Fig. 9: "raw scan mesh vertices").
- ``<s>_vh_clean_2.labels.ply``: the same vertices with a ``label`` property (NYU40 ids), mapped with
  :data:`~fourdcontrast.sources.classes.NYU40_TO_CLASS`.
- ``<s>.aggregation.json`` (``segGroups``: ``objectId``, ``label`` = raw category, ``segments``) and
  ``<s>_vh_clean_2.0.010000.segs.json`` (``segIndices``: one segment id per vertex): instance ids, and
  labels through :data:`~fourdcontrast.sources.classes.RAW_CATEGORY_TO_CLASS` when there is no
  labels PLY (unknown raw categories → ``other``).
- ``<s>.txt``: ``axisAlignment = m00 m01 ... m33`` (row-major 4×4), applied when present.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fourdcontrast.io.mesh import mesh_from_ply, validate_mesh
from fourdcontrast.io.ply import read_ply
from fourdcontrast.records import Scene
from fourdcontrast.sources.classes import CLASS_NAMES, class_of_nyu40, class_of_raw_category

MESH_SUFFIX = "_vh_clean_2.ply"
LABELS_SUFFIX = "_vh_clean_2.labels.ply"
AGGREGATION_SUFFIX = ".aggregation.json"
SEGS_SUFFIX = "_vh_clean_2.0.010000.segs.json"
META_SUFFIX = ".txt"


@dataclass
class ScanNetFiles:
    """Paths of one ScanNet scene's files (None where absent)."""

    name: str
    mesh: Path
    labels: Path | None = None
    aggregation: Path | None = None
    segs: Path | None = None
    meta: Path | None = None


def scannet_files(path: str | os.PathLike) -> ScanNetFiles:
    """Locate a scene's files from its folder or its ``_vh_clean_2.ply``.

    Raises:
        FileNotFoundError: when the mesh is missing.
    """
    path = Path(path)
    if path.is_dir():
        name, folder = path.name, path
    elif path.name.endswith(MESH_SUFFIX):
        name, folder = path.name[: -len(MESH_SUFFIX)], path.parent
    else:
        raise FileNotFoundError(f"{path}: neither a ScanNet scene folder nor a *{MESH_SUFFIX} file")
    mesh = folder / f"{name}{MESH_SUFFIX}"
    if not mesh.is_file():
        raise FileNotFoundError(f"{mesh}: ScanNet mesh missing")

    def optional(suffix: str) -> Path | None:
        p = folder / f"{name}{suffix}"
        return p if p.is_file() else None

    return ScanNetFiles(name, mesh, optional(LABELS_SUFFIX), optional(AGGREGATION_SUFFIX),
                        optional(SEGS_SUFFIX), optional(META_SUFFIX))


def read_axis_alignment(path: str | os.PathLike) -> np.ndarray | None:
    """The (4, 4) ``axisAlignment`` matrix of a scene's ``<scene>.txt``, or None when it has none.

    Raises:
        ValueError: naming the file, when the line does not hold 16 numbers.
    """
    path = Path(path)
    for line in path.read_text(errors="replace").splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "axisAlignment":
            try:
                numbers = [float(x) for x in value.split()]
            except ValueError as exc:
                raise ValueError(f"{path}: axisAlignment is not numeric: {value.strip()[:60]!r}") from exc
            if len(numbers) != 16 or not np.isfinite(numbers).all():
                raise ValueError(f"{path}: axisAlignment needs 16 finite numbers, got {len(numbers)}")
            return np.array(numbers).reshape(4, 4)
    return None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: malformed JSON: {exc}") from exc


def read_instances(aggregation: str | os.PathLike, segs: str | os.PathLike,
                   n_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-vertex instance ids and class ids from an aggregation and a segs file.

    Returns:
        instances (n_vertices,) int64 (the aggregation's ``objectId``; -1 where no group covers the
        vertex) and labels (n_vertices,) int64 class ids of the groups' raw categories (-1 likewise).

    Raises:
        ValueError: naming the file, when ``segIndices`` does not have one entry per vertex or a file
            lacks its keys.
    """
    aggregation, segs = Path(aggregation), Path(segs)
    seg_data, agg_data = _read_json(segs), _read_json(aggregation)
    if "segIndices" not in seg_data:
        raise ValueError(f"{segs}: no 'segIndices'")
    seg_indices = np.asarray(seg_data["segIndices"], dtype=np.int64)
    if len(seg_indices) != n_vertices:
        raise ValueError(f"{segs}: {len(seg_indices)} segment indices for {n_vertices} mesh vertices")
    if "segGroups" not in agg_data:
        raise ValueError(f"{aggregation}: no 'segGroups'")
    seg_ids, inverse = np.unique(seg_indices, return_inverse=True)
    seg_instance = np.full(len(seg_ids), -1, dtype=np.int64)
    seg_label = np.full(len(seg_ids), -1, dtype=np.int64)
    for group in agg_data["segGroups"]:
        try:
            instance = int(group.get("objectId", group["id"]))
            label = class_of_raw_category(str(group["label"]))
            segments = np.asarray(group["segments"], dtype=np.int64)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{aggregation}: malformed segGroup {str(group)[:80]!r}") from exc
        pos = np.searchsorted(seg_ids, segments)
        ok = (pos < len(seg_ids)) & (seg_ids[np.minimum(pos, len(seg_ids) - 1)] == segments)
        seg_instance[pos[ok]] = instance
        seg_label[pos[ok]] = label
    return seg_instance[inverse], seg_label[inverse]


def read_scannet_scene(path: str | os.PathLike, align: bool = True, use_labels_ply: bool = True) -> Scene:
    """Read a ScanNet scan as a :class:`Scene` (vertices, colours, labels, instances).

    Args:
        path: the scene folder (``scans/scene0000_00``) or its ``_vh_clean_2.ply``.
        align: apply ``axisAlignment`` from ``<scene>.txt`` when present.
        use_labels_ply: take labels from ``_vh_clean_2.labels.ply`` (NYU40) when present; otherwise
            (or when absent) from the aggregation's raw categories.

    Returns:
        the scene, ``class_names`` = :data:`CLASS_NAMES` when any label source exists (labels -1
        where unannotated), ``instances`` when the aggregation and segs files exist.

    Raises:
        FileNotFoundError: when the mesh is missing.
        ValueError: naming the file, for malformed, truncated, empty or non-finite data, or when the
            companion files do not match the mesh's vertex count.
    """
    files = scannet_files(path)
    mesh = validate_mesh(mesh_from_ply(files.mesh), files.mesh)
    n = len(mesh.vertices)
    points = mesh.vertices
    if align and files.meta is not None:
        matrix = read_axis_alignment(files.meta)
        if matrix is not None:
            points = points @ matrix[:3, :3].T + matrix[:3, 3]
    labels = instances = None
    if files.aggregation is not None and files.segs is not None:
        instances, labels = read_instances(files.aggregation, files.segs, n)
    if use_labels_ply and files.labels is not None:
        vertex = read_ply(files.labels).elements.get("vertex", {})
        if "label" not in vertex:
            raise ValueError(f"{files.labels}: no vertex 'label' property")
        if len(vertex["label"]) != n:
            raise ValueError(f"{files.labels}: {len(vertex['label'])} labels for {n} mesh vertices")
        lut = np.array([class_of_nyu40(i) for i in range(41)], dtype=np.int64)
        nyu = vertex["label"].astype(np.int64)
        labels = np.where((nyu >= 0) & (nyu <= 40), lut[np.clip(nyu, 0, 40)], class_of_nyu40(41))
    return Scene(points.astype(np.float32), colors=mesh.colors, labels=labels, instances=instances,
                 name=files.name, class_names=CLASS_NAMES if labels is not None else None)
