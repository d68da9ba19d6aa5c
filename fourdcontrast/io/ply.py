"""PLY reader and writer (ASCII, binary little- and big-endian), enough for ScanNet scans.

ScanNet's ``<scene>_vh_clean_2.ply`` is binary little-endian with vertex properties
``x, y, z, red, green, blue, alpha`` and a face list ``vertex_indices``; ``_vh_clean_2.labels.ply`` adds
a ``label`` vertex property (NYU40 ids).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fourdcontrast.io.atomic import atomic_path

PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
"""PLY scalar type names → numpy type codes (without byte order)."""
_FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}
_WRITABLE = {"i8": np.int32, "u8": np.uint32, "b1": np.uint8, "f2": np.float32}
"""Numpy types PLY lacks → the type written instead."""
MAX_HEADER_BYTES = 1 << 16
"""A PLY header longer than this is treated as malformed."""


@dataclass
class _Property:
    name: str
    dtype: str
    count_dtype: str | None = None  # set for list properties


@dataclass
class _Element:
    name: str
    count: int
    properties: list[_Property] = field(default_factory=list)


@dataclass
class PlyData:
    """The contents of a PLY file.

    Attributes:
        elements: element name → property name → array. Scalar properties are (n,) arrays; list
            properties are (n, k) arrays when every row has k entries, else (n,) object arrays.
        format: ``ascii``, ``binary_little_endian`` or ``binary_big_endian``.
        comments: the header's comment lines.
    """

    elements: dict[str, dict[str, np.ndarray]]
    format: str = "binary_little_endian"
    comments: list[str] = field(default_factory=list)

    def __getitem__(self, element: str) -> dict[str, np.ndarray]:
        return self.elements[element]

    def __contains__(self, element: str) -> bool:
        return element in self.elements


def _error(path: Path, problem: str) -> ValueError:
    return ValueError(f"{path}: malformed PLY file: {problem}")


def _parse_header(path: Path, data: bytes) -> tuple[str, list[_Element], list[str], int]:
    if not data.startswith(b"ply"):
        raise _error(path, "it does not start with 'ply'")
    end = data.find(b"end_header", 0, MAX_HEADER_BYTES)
    if end < 0:
        raise _error(path, "no 'end_header' line")
    body = data.find(b"\n", end)
    if body < 0:
        raise _error(path, "nothing after 'end_header'")
    lines = data[:end].decode("ascii", errors="replace").splitlines()[1:]
    fmt, elements, comments = None, [], []
    for raw in lines:
        words = raw.split()
        if not words:
            continue
        key = words[0]
        if key == "format":
            if len(words) < 2 or words[1] not in _FORMATS:
                raise _error(path, f"unknown format line {raw.strip()!r}")
            fmt = words[1]
        elif key in ("comment", "obj_info"):
            comments.append(raw.strip()[len(key) + 1:])
        elif key == "element":
            if len(words) != 3 or not words[2].isdigit():
                raise _error(path, f"bad element line {raw.strip()!r}")
            elements.append(_Element(words[1], int(words[2])))
        elif key == "property":
            if not elements:
                raise _error(path, "property before any element")
            if len(words) == 5 and words[1] == "list" and words[2] in PLY_TYPES and words[3] in PLY_TYPES:
                elements[-1].properties.append(_Property(words[4], PLY_TYPES[words[3]], PLY_TYPES[words[2]]))
            elif len(words) == 3 and words[1] in PLY_TYPES:
                elements[-1].properties.append(_Property(words[2], PLY_TYPES[words[1]]))
            else:
                raise _error(path, f"bad property line {raw.strip()!r}")
        else:
            raise _error(path, f"unknown header line {raw.strip()!r}")
    if fmt is None:
        raise _error(path, "no format line")
    return fmt, elements, comments, body + 1


def _read_binary_element(path: Path, el: _Element, data: bytes, offset: int, order: str):
    scalar = [(p.name, order + p.dtype) for p in el.properties if p.count_dtype is None]
    if all(p.count_dtype is None for p in el.properties):
        dtype = np.dtype(scalar)
        need = dtype.itemsize * el.count
        if len(data) - offset < need:
            raise _error(path, f"truncated: element '{el.name}' needs {need} bytes, "
                               f"{len(data) - offset} left")
        rows = np.frombuffer(data, dtype=dtype, count=el.count, offset=offset)
        return {n: rows[n].copy() for n, _ in scalar}, offset + need
    # Lists: assume every row has the counts of the first row (true for triangle meshes), verify after.
    fields, pos = [], offset
    for p in el.properties:
        if el.count == 0:
            break
        if p.count_dtype is None:
            fields.append((p.name, order + p.dtype))
            pos += np.dtype(p.dtype).itemsize
        else:
            if pos + np.dtype(p.count_dtype).itemsize > len(data):
                raise _error(path, f"truncated inside element '{el.name}'")
            k = int(np.frombuffer(data, dtype=order + p.count_dtype, count=1, offset=pos)[0])
            fields.append((f"__count_{p.name}", order + p.count_dtype))
            fields.append((p.name, order + p.dtype, (k,)) if k else (p.name, order + p.dtype, (0,)))
            pos += np.dtype(p.count_dtype).itemsize + k * np.dtype(p.dtype).itemsize
    if el.count:
        dtype = np.dtype(fields)
        need = dtype.itemsize * el.count
        if len(data) - offset >= need:
            rows = np.frombuffer(data, dtype=dtype, count=el.count, offset=offset)
            lists = [p for p in el.properties if p.count_dtype is not None]
            if all((rows[f"__count_{p.name}"] == rows.dtype[p.name].shape[0]).all() for p in lists):
                return {p.name: rows[p.name].copy() for p in el.properties}, offset + need
    return _read_binary_element_slow(path, el, data, offset, order)


def _read_binary_element_slow(path: Path, el: _Element, data: bytes, offset: int, order: str):
    out: dict[str, list] = {p.name: [] for p in el.properties}
    pos = offset
    try:
        for _ in range(el.count):
            for p in el.properties:
                if p.count_dtype is None:
                    out[p.name].append(np.frombuffer(data, order + p.dtype, 1, pos)[0])
                    pos += np.dtype(p.dtype).itemsize
                else:
                    k = int(np.frombuffer(data, order + p.count_dtype, 1, pos)[0])
                    pos += np.dtype(p.count_dtype).itemsize
                    out[p.name].append(np.frombuffer(data, order + p.dtype, k, pos).copy())
                    pos += k * np.dtype(p.dtype).itemsize
    except ValueError as exc:
        raise _error(path, f"truncated inside element '{el.name}'") from exc
    return {p.name: _pack(out[p.name], p) for p in el.properties}, pos


def _pack(values: list, p: _Property) -> np.ndarray:
    if p.count_dtype is None:
        return np.asarray(values, dtype=p.dtype)
    lengths = {len(v) for v in values}
    if len(lengths) <= 1:
        k = lengths.pop() if lengths else 0
        return np.asarray(values, dtype=p.dtype).reshape(len(values), k)
    packed = np.empty(len(values), dtype=object)
    packed[:] = [np.asarray(v, dtype=p.dtype) for v in values]
    return packed


def _read_ascii(path: Path, elements: list[_Element], data: bytes, offset: int):
    lines = data[offset:].decode("ascii", errors="replace").splitlines()
    lines = [line for line in lines if line.strip()]
    result, row = {}, 0
    for el in elements:
        if row + el.count > len(lines):
            raise _error(path, f"truncated: element '{el.name}' needs {el.count} lines, "
                               f"{len(lines) - row} left")
        out: dict[str, list] = {p.name: [] for p in el.properties}
        for line in lines[row:row + el.count]:
            words, i = line.split(), 0
            try:
                for p in el.properties:
                    if p.count_dtype is None:
                        out[p.name].append(float(words[i]))
                        i += 1
                    else:
                        k = int(words[i])
                        out[p.name].append([float(w) for w in words[i + 1:i + 1 + k]])
                        if len(out[p.name][-1]) != k:
                            raise IndexError
                        i += 1 + k
            except (IndexError, ValueError) as exc:
                raise _error(path, f"bad line in element '{el.name}': {line[:80]!r}") from exc
        result[el.name] = {p.name: _pack(out[p.name], p) for p in el.properties}
        row += el.count
    return result


def read_ply(path: str | os.PathLike) -> PlyData:
    """Read a PLY file.

    Args:
        path: the ``.ply`` file.

    Returns:
        the :class:`PlyData` with every element and property.

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: naming the file, when the header is malformed or the data is truncated.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such PLY file")
    data = path.read_bytes()
    fmt, elements, comments, offset = _parse_header(path, data)
    if fmt == "ascii":
        return PlyData(_read_ascii(path, elements, data, offset), fmt, comments)
    result = {}
    for el in elements:
        result[el.name], offset = _read_binary_element(path, el, data, offset, _FORMATS[fmt])
    return PlyData(result, fmt, comments)


def _colors_u8(colors: np.ndarray) -> np.ndarray:
    colors = np.asarray(colors)
    if colors.dtype == np.uint8:
        return colors
    return np.clip(np.round(colors.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


def write_ply(
    path: str | os.PathLike,
    vertices: np.ndarray,
    faces: np.ndarray | None = None,
    colors: np.ndarray | None = None,
    vertex_properties: dict[str, np.ndarray] | None = None,
    binary: bool = True,
) -> Path:
    """Write points or a triangle mesh as PLY (atomically).

    Args:
        path: destination file.
        vertices: (N, 3) positions (written as float32 ``x, y, z``).
        faces: optional (F, K) int vertex indices (written as ``list uchar int vertex_indices``).
        colors: optional (N, 3) or (N, 4) colours, uint8 or floats in [0, 1]; written as uint8
            ``red, green, blue`` (and ``alpha`` for 4 columns), as in ScanNet.
        vertex_properties: further (N,) per-vertex scalars by name (e.g. ``{"label": ...}``); the
            array's dtype is kept.
        binary: binary little-endian (default) or ASCII.

    Returns:
        the path written.
    """
    path = Path(path)
    vertices = np.asarray(vertices, dtype=np.float32).reshape(-1, 3)
    n = len(vertices)
    columns: list[tuple[str, np.ndarray]] = [(axis, vertices[:, i]) for i, axis in enumerate("xyz")]
    if colors is not None:
        c = _colors_u8(colors)
        for i, name in enumerate(("red", "green", "blue", "alpha")[: c.shape[1]]):
            columns.append((name, c[:, i]))
    for name, values in (vertex_properties or {}).items():
        values = np.asarray(values)
        values = values.astype(_WRITABLE.get(values.dtype.str[1:], values.dtype))
        if values.shape != (n,):
            raise ValueError(f"vertex property {name!r} has shape {values.shape}, expected ({n},)")
        columns.append((name, values))
    names = {"i1": "char", "u1": "uchar", "i2": "short", "u2": "ushort", "i4": "int", "u4": "uint",
             "f4": "float", "f8": "double"}
    header = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0", f"element vertex {n}"]
    header += [f"property {names[c.dtype.str[1:]]} {name}" for name, c in columns]
    faces_arr = None if faces is None else np.asarray(faces, dtype=np.int32)
    if faces_arr is not None:
        faces_arr = faces_arr.reshape(len(faces_arr), -1)
        header += [f"element face {len(faces_arr)}", "property list uchar int vertex_indices"]
    header.append("end_header")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        if binary:
            rows = np.empty(n, dtype=[(name, "<" + c.dtype.str[1:]) for name, c in columns])
            for name, c in columns:
                rows[name] = c
            f.write(rows.tobytes())
            if faces_arr is not None:
                k = faces_arr.shape[1]
                frows = np.empty(len(faces_arr), dtype=[("n", "u1"), ("v", "<i4", (k,))])
                frows["n"], frows["v"] = k, faces_arr
                f.write(frows.tobytes())
        else:
            for i in range(n):
                f.write((" ".join(repr(c[i].item()) for _, c in columns) + "\n").encode("ascii"))
            for face in faces_arr if faces_arr is not None else ():
                f.write((f"{len(face)} " + " ".join(map(str, face.tolist())) + "\n").encode("ascii"))
    return path
