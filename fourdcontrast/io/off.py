"""OFF (Object File Format) reader and writer, as used by ModelNet.

Many ModelNet files put the counts on the header line (``OFF1234 5678 0`` instead of ``OFF`` and then
``1234 5678 0``); both spellings are read. Polygons with more than three corners are split into
triangle fans.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from fourdcontrast.io.atomic import atomic_path

_HEADER = re.compile(r"^\s*(C?N?OFF)\s*(.*)$")


def _error(path: Path, problem: str) -> ValueError:
    return ValueError(f"{path}: malformed OFF file: {problem}")


def _triangulate(path: Path, polygons: list[list[int]]) -> np.ndarray:
    tris = []
    for poly in polygons:
        for i in range(1, len(poly) - 1):
            tris.append((poly[0], poly[i], poly[i + 1]))
    return np.asarray(tris, dtype=np.int64).reshape(-1, 3)


def read_off(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read an OFF mesh.

    Args:
        path: the ``.off`` file (header ``OFF``, ``COFF`` or ``NOFF``; counts on the header line or
            the next one).

    Returns:
        vertices (V, 3) float64 and faces (F, 3) int64 (polygons triangulated as fans).

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: naming the file, for a wrong header, bad counts, a truncated body or face indices
            out of range.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such OFF file")
    text = path.read_text(encoding="ascii", errors="replace")
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise _error(path, "the file is empty")
    match = _HEADER.match(lines[0])
    if match is None:
        raise _error(path, f"first line {lines[0][:40]!r} does not start with 'OFF'")
    rest, body = match.group(2).split(), 1
    if not rest:
        if len(lines) < 2:
            raise _error(path, "no counts line")
        rest, body = lines[1].split(), 2
    try:
        n_vertices, n_faces = int(rest[0]), int(rest[1])
    except (IndexError, ValueError) as exc:
        raise _error(path, f"bad counts {' '.join(rest)[:40]!r}") from exc
    if n_vertices < 0 or n_faces < 0:
        raise _error(path, "negative counts")
    if len(lines) < body + n_vertices + n_faces:
        raise _error(path, f"truncated: {n_vertices} vertices and {n_faces} faces declared, "
                           f"{len(lines) - body} lines follow")
    try:
        vertices = np.array([line.split()[:3] for line in lines[body:body + n_vertices]], dtype=np.float64)
        vertices = vertices.reshape(n_vertices, 3)
    except ValueError as exc:
        raise _error(path, "a vertex line does not hold three numbers") from exc
    polygons = []
    for line in lines[body + n_vertices:body + n_vertices + n_faces]:
        words = line.split()
        try:
            k = int(words[0])
            poly = [int(w) for w in words[1:1 + k]]
        except (IndexError, ValueError) as exc:
            raise _error(path, f"bad face line {line[:40]!r}") from exc
        if len(poly) != k or k < 3:
            raise _error(path, f"bad face line {line[:40]!r}")
        polygons.append(poly)
    faces = _triangulate(path, polygons)
    if len(faces) and (faces.min() < 0 or faces.max() >= n_vertices):
        raise _error(path, f"face index out of range [0, {n_vertices})")
    return vertices, faces


def write_off(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray,
              counts_on_header_line: bool = False) -> Path:
    """Write an OFF mesh (atomically).

    Args:
        path: destination file.
        vertices: (V, 3) positions.
        faces: (F, K) int vertex indices.
        counts_on_header_line: write ModelNet's quirk ``OFF<V> <F> 0`` instead of a separate line.

    Returns:
        the path written.
    """
    path = Path(path)
    vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(faces, dtype=np.int64)
    faces = faces.reshape(len(faces), -1)
    counts = f"{len(vertices)} {len(faces)} 0"
    lines = [f"OFF{counts}"] if counts_on_header_line else ["OFF", counts]
    lines += [" ".join(f"{c:.6g}" for c in v) for v in vertices]
    lines += [f"{len(f)} " + " ".join(map(str, f)) for f in faces.tolist()]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path
