"""Optional numba kernels for :mod:`fourdcontrast.data.correspondence` (install ``fourdcontrast[fast]``).

Each kernel computes exactly what the numpy code beside it in ``correspondence`` computes (the tests
compare them element for element); they only fuse passes that numpy has to make one by one:

- :func:`sorted_unique`: a stable least-significant-digit radix sort of non-negative integer keys
  (two counting passes of at most 16 bits each for the 2 cm voxel keys of a room) and one sweep that
  yields the unique keys, the first row of every key and the unique index of every row.
- :func:`pairs`: the voxel pairs of two frames in two sweeps (count, then fill) instead of a gather, a
  comparison, a ``flatnonzero`` and two column writes.
- :func:`view_voxels`: the 3D view of a frame, its voxel keys and their radix sort in one call.
- :func:`scene_voxels`: the cached 4D scene voxels a frame uses, and the voxel of each scene point.
- :func:`source_map`, :func:`first_rows`, :func:`rows_pairs`: the per-frame maps of the 3D and 4D
  grids, one sweep each.

``AVAILABLE`` says whether numba could be imported; without it nothing here is compiled and the
numpy code is used.
"""

from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError:  # the numpy path is complete without it
    numba = None

AVAILABLE = numba is not None
"""Whether numba is installed (then ``backend="auto"`` uses these kernels)."""
RADIX_BITS = 16
"""Widest digit of the radix sort, bits (2^16 counters: fits the L2 cache)."""


def _sorted_unique_py(key: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(key)
    passes = max(1, -(-bits // RADIX_BITS))
    width = -(-bits // passes)
    mask = (1 << width) - 1
    count = np.zeros((passes, (1 << width) + 1), dtype=np.int64)
    for r in range(n):  # the digit histograms of every pass in one sweep
        k = key[r]
        for p in range(passes):
            count[p, ((k >> (p * width)) & mask) + 1] += 1
    for p in range(passes):
        for d in range(1, (1 << width) + 1):
            count[p, d] += count[p, d - 1]
    src_k, src_r = key.copy(), np.arange(n, dtype=np.int64)
    dst_k, dst_r = np.empty_like(src_k), np.empty(n, dtype=np.int64)
    for p in range(passes):  # stable: rows keep their order within a digit; keys travel with rows
        shift = p * width
        for i in range(n):
            k = src_k[i]
            d = (k >> shift) & mask
            pos = count[p, d]
            dst_k[pos] = k
            dst_r[pos] = src_r[i]
            count[p, d] = pos + 1
        src_k, dst_k = dst_k, src_k
        src_r, dst_r = dst_r, src_r
    inverse = np.empty(n, dtype=np.int64)
    heads = np.empty(n, dtype=np.int64)
    uniq = np.empty_like(src_k)
    v = -1
    for i in range(n):
        if i == 0 or src_k[i] != src_k[i - 1]:
            v += 1
            heads[v] = src_r[i]
            uniq[v] = src_k[i]
        inverse[src_r[i]] = v
    return uniq[: v + 1].copy(), heads[: v + 1].copy(), inverse


def _view_voxels_py(points: np.ndarray, a: np.ndarray, b: np.ndarray):
    n = points.shape[0]
    cells = np.empty((3, n), dtype=np.int64)
    low = np.empty(3, dtype=np.int64)
    high = np.empty(3, dtype=np.int64)
    for r in range(3):  # the float32 formula of correspondence._view_axes, term by term
        a0, a1, a2, br = a[r, 0], a[r, 1], a[r, 2], b[r]
        lo, hi = np.int64(0), np.int64(0)
        for i in range(n):
            c = np.int64(np.floor(a0 * points[i, 0] + a1 * points[i, 1] + a2 * points[i, 2] + br))
            cells[r, i] = c
            if i == 0 or c < lo:
                lo = c
            if i == 0 or c > hi:
                hi = c
        low[r], high[r] = lo, hi
    bits = np.empty(3, dtype=np.int64)
    for r in range(3):
        span, nb = high[r] - low[r] + 1, 0
        while span > 0:
            nb += 1
            span >>= 1
        bits[r] = nb
    total = bits[0] + bits[1] + bits[2]
    if total > 62:  # caller falls back to numpy
        return np.zeros((0, 3), np.int32), np.zeros(0, np.int64), np.zeros(0, np.int64), False
    key = np.empty(n, dtype=np.int64)
    for i in range(n):
        key[i] = (((cells[0, i] - low[0]) << bits[1] | (cells[1, i] - low[1])) << bits[2]) | (
            cells[2, i] - low[2]
        )
    _, index, inverse = _unique_kernel(key, total)
    coords = np.empty((len(index), 3), dtype=np.int32)
    for v in range(len(index)):
        for r in range(3):
            coords[v, r] = cells[r, index[v]]
    return coords, index, inverse, True


def _scene_voxels_py(
    index: np.ndarray, voxel_of_point: np.ndarray, extra: np.ndarray, n_voxels: int, out: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    used = np.zeros(n_voxels, dtype=np.bool_)
    for r in range(len(index)):
        used[voxel_of_point[index[r]]] = True
    for e in range(len(extra)):
        used[extra[e]] = True
    rank = np.empty(n_voxels, dtype=np.int64)
    ids = np.empty(n_voxels, dtype=np.int64)
    c = 0
    for v in range(n_voxels):
        if used[v]:
            ids[c] = v
            c += 1
        rank[v] = c - 1
    for r in range(len(index)):
        out[r] = rank[voxel_of_point[index[r]]]
    return ids[:c].copy(), rank


_unique_kernel = _sorted_unique_py


def _source_map_py(keys: np.ndarray, values: np.ndarray, domain: int) -> tuple[np.ndarray, int]:
    m = np.full(domain, -1, dtype=np.int32)
    filled = 0
    for r in range(len(keys)):
        if m[keys[r]] < 0:
            filled += 1
        m[keys[r]] = values[r]
    return m, filled


def _first_rows_py(voxel: np.ndarray, out: np.ndarray) -> None:
    out[:] = len(voxel)
    for r in range(len(voxel) - 1, -1, -1):
        out[voxel[r]] = r


def _rows_pairs_py(point_voxel: np.ndarray, index: np.ndarray) -> np.ndarray:
    out = np.empty((len(index), 2), dtype=np.int64)
    for v in range(len(index)):
        out[v, 0] = v
        out[v, 1] = point_voxel[index[v]]
    return out


def _pairs_py(source_map: np.ndarray, rep_keys: np.ndarray, offset: int) -> np.ndarray:
    k = 0
    for v in range(len(rep_keys)):
        if source_map[rep_keys[v]] >= 0:
            k += 1
    out = np.empty((k, 2), dtype=np.int64)
    k = 0
    for v in range(len(rep_keys)):
        w = source_map[rep_keys[v]]
        if w >= 0:
            out[k, 0] = v + offset
            out[k, 1] = w
            k += 1
    return out


if AVAILABLE:
    _sorted_unique_jit = numba.njit(cache=True, nogil=True)(_sorted_unique_py)
    _pairs_jit = numba.njit(cache=True, nogil=True)(_pairs_py)
    _unique_kernel = _sorted_unique_jit  # what the compiled _view_voxels_py calls
    _view_voxels_jit = numba.njit(cache=True, nogil=True)(_view_voxels_py)
    _scene_voxels_jit = numba.njit(cache=True, nogil=True)(_scene_voxels_py)
    _source_map_jit = numba.njit(cache=True, nogil=True)(_source_map_py)
    _first_rows_jit = numba.njit(cache=True, nogil=True)(_first_rows_py)
    _rows_pairs_jit = numba.njit(cache=True, nogil=True)(_rows_pairs_py)


def sorted_unique(key: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique values of (n,) non-negative integer ``key`` (all below ``2**bits``), ascending, with the
    first row holding each ((V,) int64) and the (n,) int64 unique index of every row.

    Same result as ``correspondence._sorted_unique``. Requires numba (:data:`AVAILABLE`).
    """
    if len(key) == 0:
        empty = np.zeros(0, np.int64)
        return key[:0].copy(), empty, empty
    return _sorted_unique_jit(key, int(bits))


def pairs(source_map: np.ndarray, rep_keys: np.ndarray, offset: int) -> np.ndarray:
    """(K, 2) int64 ``(offset + v, source_map[rep_keys[v]])`` for the ``v`` where that is >= 0.

    Same result as ``correspondence._pairs``. Requires numba (:data:`AVAILABLE`).
    """
    return _pairs_jit(source_map, rep_keys, int(offset))


def source_map(keys: np.ndarray, values: np.ndarray, domain: int) -> tuple[np.ndarray, int]:
    """(domain,) int32 ``values`` at their ``keys`` (-1 elsewhere) and how many distinct keys were
    written (fewer than ``len(keys)`` when a key repeats). Same as ``correspondence._source_map``."""
    return _source_map_jit(keys, values, int(domain))


def first_rows(voxel: np.ndarray, out: np.ndarray) -> None:
    """Write into (V,) int64 ``out`` the first row of (n,) ``voxel`` holding each voxel (``n`` where
    none does). Same as ``correspondence._first_rows``."""
    _first_rows_jit(voxel, out)


def rows_pairs(point_voxel: np.ndarray, index: np.ndarray) -> np.ndarray:
    """(V, 2) int64 ``(v, point_voxel[index[v]])``: every voxel with the voxel of its representative
    point in another grid. Same as ``correspondence._rows_pairs``."""
    return _rows_pairs_jit(point_voxel, index)


def view_voxels(
    points: np.ndarray, a: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Voxelize a frame's 3D view in one kernel: (V, 3) int32 voxels sorted lexicographically, (V,)
    int64 first point of each and (n,) int64 voxel of every point of the (n, 3) float32 ``points``
    under ``floor(a · p + b)``; None when the voxel keys do not fit 62 bits. Same as
    ``correspondence._voxelize_soa(correspondence._view_axes(points.T, a, b))``."""
    if len(points) == 0:
        return None
    coords, index, inverse, ok = _view_voxels_jit(np.ascontiguousarray(points, dtype=np.float32), a, b)
    return (coords, index, inverse) if ok else None


def scene_voxels(
    index: np.ndarray, voxel_of_point: np.ndarray, extra: np.ndarray, n_voxels: int, out: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The cached scene voxels a frame uses: the voxels of its scene points ``index`` (via the scene's
    ``voxel_of_point``) and the ``extra`` voxels (object points inside scene voxels). Returns the used
    voxel ids ascending and (n_voxels,) int64 rank of every voxel among them; writes each scene point's
    rank into ``out``. Same as the scene part of ``correspondence._frame_4d``."""
    return _scene_voxels_jit(index, voxel_of_point, extra, int(n_voxels), out)
