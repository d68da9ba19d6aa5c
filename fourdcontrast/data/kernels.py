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
- :func:`bounds`, :func:`chunk_mask`, :func:`compose_kept`: a scene's bounds, chunk-removal mask and
  kept points of a frame (``augment``), one sweep each.
- :func:`frame_pairs`: the pairs of one frame with every later frame in one sweep (one gather of each
  representative point's key instead of one per later frame).

Point and voxel indices come out as int32 (half the bytes of int64; a frame has far fewer than 2^31
points).

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
    # int32 rows: half the memory traffic of int64 (a frame has far fewer than 2^31 points)
    src_k, src_r = np.empty_like(key), np.empty(n, dtype=np.int32)
    dst_k, dst_r = np.empty_like(key), np.empty(n, dtype=np.int32)
    for i in range(n):  # first pass reads the keys in row order: no row array to read
        k = key[i]
        d = k & mask
        pos = count[0, d]
        dst_k[pos] = k
        dst_r[pos] = i
        count[0, d] = pos + 1
    src_k, dst_k = dst_k, src_k
    src_r, dst_r = dst_r, src_r
    for p in range(1, passes):  # stable: rows keep their order within a digit; keys travel with rows
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
    inverse = np.empty(n, dtype=np.int32)
    heads = dst_r  # free once the sorted rows are in src_r; written at most as far as it is read
    uniq = dst_k
    v = -1
    for i in range(n):
        if i == 0 or src_k[i] != src_k[i - 1]:
            v += 1
            heads[v] = src_r[i]
            uniq[v] = src_k[i]
        inverse[src_r[i]] = v
    return uniq[: v + 1].copy(), heads[: v + 1].copy(), inverse


def _view_cell(points: np.ndarray, a: np.ndarray, b: np.ndarray, i: int, r: int) -> np.int64:
    """The float32 formula of correspondence._view_axes, term by term, for point ``i`` and axis ``r``."""
    return np.int64(np.floor(a[r, 0] * points[i, 0] + a[r, 1] * points[i, 1] + a[r, 2] * points[i, 2] + b[r]))


def _view_keys(
    points: np.ndarray, a: np.ndarray, b: np.ndarray, low: np.ndarray, bits: np.ndarray, key: np.ndarray
) -> None:
    for i in range(points.shape[0]):
        c0 = _view_cell(points, a, b, i, 0) - low[0]
        c1 = _view_cell(points, a, b, i, 1) - low[1]
        c2 = _view_cell(points, a, b, i, 2) - low[2]
        key[i] = ((c0 << bits[1]) | c1) << bits[2] | c2


def _unpack_keys(uniq, low: np.ndarray, bits: np.ndarray) -> np.ndarray:
    coords = np.empty((len(uniq), 3), dtype=np.int32)
    m1, m2 = (np.int64(1) << bits[1]) - 1, (np.int64(1) << bits[2]) - 1
    for v in range(len(uniq)):
        u = np.int64(uniq[v])
        coords[v, 0] = (u >> (bits[1] + bits[2])) + low[0]
        coords[v, 1] = ((u >> bits[2]) & m1) + low[1]
        coords[v, 2] = (u & m2) + low[2]
    return coords


def _view_sort_packed(points: np.ndarray, a: np.ndarray, b: np.ndarray, low: np.ndarray, bits: np.ndarray):
    """The int32-key case of :func:`_view_voxels_py`: every row travels as one int64 ``key << 32 | row``
    (one 8-byte write per element and pass instead of two)."""
    n = points.shape[0]
    total = bits[0] + bits[1] + bits[2]
    passes = max(1, -(-total // RADIX_BITS))
    width = -(-total // passes)
    mask = (1 << width) - 1
    count = np.zeros((passes, (1 << width) + 1), dtype=np.int64)
    src = np.empty(n, dtype=np.int64)
    for i in range(n):
        c0 = _view_cell(points, a, b, i, 0) - low[0]
        c1 = _view_cell(points, a, b, i, 1) - low[1]
        c2 = _view_cell(points, a, b, i, 2) - low[2]
        src[i] = ((((c0 << bits[1]) | c1) << bits[2] | c2) << 32) | i
    for p in range(passes):  # one histogram sweep per digit: faster than counting in the sweep above
        shift = 32 + p * width
        for i in range(n):
            count[p, ((src[i] >> shift) & mask) + 1] += 1
    for p in range(passes):
        for d in range(1, (1 << width) + 1):
            count[p, d] += count[p, d - 1]
    dst = np.empty(n, dtype=np.int64)
    for p in range(passes):  # stable LSD passes over the key bits (above the row's 32 bits)
        shift = 32 + p * width
        for i in range(n):
            x = src[i]
            d = (x >> shift) & mask
            pos = count[p, d]
            dst[pos] = x
            count[p, d] = pos + 1
        src, dst = dst, src
    inverse = np.empty(n, dtype=np.int32)
    heads = np.empty(n, dtype=np.int32)
    uniq = dst  # free now; the v-th unique key is written at or before the slot being read
    v = -1
    prev = np.int64(-1)
    for i in range(n):
        x = src[i]
        k = x >> 32
        r = x & 0xFFFFFFFF
        if k != prev:
            v += 1
            heads[v] = r
            uniq[v] = k
            prev = k
        inverse[r] = v
    return _unpack_kernel(uniq[: v + 1], low, bits), heads[: v + 1].copy(), inverse


def _view_voxels_py(points: np.ndarray, a: np.ndarray, b: np.ndarray):
    n = points.shape[0]
    low = np.zeros(3, dtype=np.int64)
    high = np.zeros(3, dtype=np.int64)
    for r in range(3):  # bounds first, keys in a second sweep: no (3, n) array of cells
        a0, a1, a2, br = a[r, 0], a[r, 1], a[r, 2], b[r]
        lo = hi = a0 * points[0, 0] + a1 * points[0, 1] + a2 * points[0, 2] + br
        for i in range(1, n):  # floor is monotonic: floor of the float bounds = bounds of the cells
            c = a0 * points[i, 0] + a1 * points[i, 1] + a2 * points[i, 2] + br
            lo = min(lo, c)
            hi = max(hi, c)
        low[r], high[r] = np.int64(np.floor(lo)), np.int64(np.floor(hi))
    bits = np.empty(3, dtype=np.int64)
    for r in range(3):
        span, nb = high[r] - low[r] + 1, 0
        while span > 0:
            nb += 1
            span >>= 1
        bits[r] = nb
    total = bits[0] + bits[1] + bits[2]
    if total > 62:  # caller falls back to numpy
        return np.zeros((0, 3), np.int32), np.zeros(0, np.int32), np.zeros(0, np.int32), False
    if total <= 31:  # key and row packed in one int64
        coords, index, inverse = _packed_kernel(points, a, b, low, bits)
        return coords, index, inverse, True
    key64 = np.empty(n, dtype=np.int64)
    _key_kernel(points, a, b, low, bits, key64)
    uniq64, index, inverse = _unique_kernel(key64, total)
    return _unpack_kernel(uniq64, low, bits), index, inverse, True


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
_key_kernel = _view_keys
_unpack_kernel = _unpack_keys
_packed_kernel = _view_sort_packed


def _fill_source_map(keys: np.ndarray, values: np.ndarray, out: np.ndarray) -> int:
    out[:] = -1
    filled = 0
    for r in range(len(keys)):
        if out[keys[r]] < 0:
            filled += 1
        out[keys[r]] = values[r]
    return filled


def _source_map_py(keys: np.ndarray, values: np.ndarray, domain: int) -> tuple[np.ndarray, int]:
    m = np.empty(domain, dtype=np.int32)
    return m, _fill_map_kernel(keys, values, m)


def _first_rows_py(voxel: np.ndarray, out: np.ndarray) -> None:
    out[:] = len(voxel)
    for r in range(len(voxel) - 1, -1, -1):
        out[voxel[r]] = r


def _rows_pairs_py(point_voxel: np.ndarray, index: np.ndarray) -> np.ndarray:
    out = np.empty((len(index), 2), dtype=np.int32)
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


def _frame_pairs_py(
    maps: np.ndarray, first: int, keys: np.ndarray, index: np.ndarray, offset: int, out: np.ndarray
) -> np.ndarray:
    rep = np.empty(len(index), dtype=np.int64)
    for v in range(len(index)):  # one gather of the representatives' keys serves every later frame
        rep[v] = keys[index[v]]
    counts = np.zeros(maps.shape[0] - first, dtype=np.int64)
    for j in range(first, maps.shape[0]):
        row, dst = maps[j], out[j - first]
        c = 0
        for v in range(len(rep)):  # branch-free: always write the next slot, advance when present
            w = row[rep[v]]
            dst[c, 0] = v + offset
            dst[c, 1] = w
            c += w >= 0
        counts[j - first] = c
    return counts


def _bounds_py(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    l0 = h0 = points[0, 0]
    l1 = h1 = points[0, 1]
    l2 = h2 = points[0, 2]
    nan = False
    for i in range(points.shape[0]):  # six independent chains: one sweep at full speed
        x, y, z = points[i, 0], points[i, 1], points[i, 2]
        nan |= (x != x) | (y != y) | (z != z)
        l0 = x if x < l0 else l0
        h0 = x if x > h0 else h0
        l1 = y if y < l1 else l1
        h1 = y if y > h1 else h1
        l2 = z if z < l2 else l2
        h2 = z if z > h2 else h2
    lo = np.array([l0, l1, l2], dtype=np.float64)
    hi = np.array([h0, h1, h2], dtype=np.float64)
    return lo, hi, not nan


def _compose_kept_py(
    scene_points: np.ndarray, keep: np.ndarray, scene_source: np.int8, object_source: np.int8
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    n = scene_points.shape[0]
    s = 0
    for i in range(n):
        s += keep[i]
    total = s
    for i in range(n, len(keep)):
        total += keep[i]
    # one spare row: the branch-free loops write every point at the next free row, kept or not
    points = np.empty((total + 1, 3), dtype=np.float32)
    source = np.empty(total + 1, dtype=np.int8)
    index = np.empty(total + 1, dtype=np.int64)
    r = 0
    for i in range(n):
        points[r, 0] = scene_points[i, 0]
        points[r, 1] = scene_points[i, 1]
        points[r, 2] = scene_points[i, 2]
        source[r] = scene_source
        index[r] = i
        r += keep[i]
    for i in range(n, len(keep)):
        source[r] = object_source
        index[r] = i - n
        r += keep[i]
    return points[:total], source[:total], index[:total], s


def _chunk_mask_py(
    points: np.ndarray, low: np.ndarray, inv: np.float32, tables: tuple, firsts: np.ndarray
) -> np.ndarray:
    out = np.empty(points.shape[0], dtype=np.bool_)
    t0, t1, t2 = tables
    l0, l1, l2 = low[0], low[1], low[2]
    f0, f1, f2 = firsts[0], firsts[1], firsts[2]
    for i in range(points.shape[0]):  # the float32 bin formula of augment.chunk_mask, per point;
        # points >= low: the products are >= 0, where truncation is floor
        b0 = np.int64((points[i, 0] - l0) * inv) - f0
        b1 = np.int64((points[i, 1] - l1) * inv) - f1
        b2 = np.int64((points[i, 2] - l2) * inv) - f2
        out[i] = (t0[b0] & t1[b1] & t2[b2]) != 0
    return out


_fill_map_kernel = _fill_source_map


if AVAILABLE:
    _sorted_unique_jit = numba.njit(cache=True, nogil=True)(_sorted_unique_py)
    _pairs_jit = numba.njit(cache=True, nogil=True)(_pairs_py)
    _unique_kernel = _sorted_unique_jit  # what the compiled _view_voxels_py calls
    _view_cell = numba.njit(cache=True, nogil=True, inline="always")(_view_cell)
    _key_kernel = numba.njit(cache=True, nogil=True)(_view_keys)
    _unpack_kernel = numba.njit(cache=True, nogil=True)(_unpack_keys)
    _packed_kernel = numba.njit(cache=True, nogil=True)(_view_sort_packed)
    _view_voxels_jit = numba.njit(cache=True, nogil=True)(_view_voxels_py)
    _scene_voxels_jit = numba.njit(cache=True, nogil=True)(_scene_voxels_py)
    _fill_map_kernel = numba.njit(cache=True, nogil=True)(_fill_source_map)
    _source_map_jit = numba.njit(cache=True, nogil=True)(_source_map_py)
    _frame_pairs_jit = numba.njit(cache=True, nogil=True)(_frame_pairs_py)
    _chunk_mask_jit = numba.njit(cache=True, nogil=True)(_chunk_mask_py)
    _bounds_jit = numba.njit(cache=True, nogil=True)(_bounds_py)
    _compose_kept_jit = numba.njit(cache=True, nogil=True)(_compose_kept_py)
    _first_rows_jit = numba.njit(cache=True, nogil=True)(_first_rows_py)
    _rows_pairs_jit = numba.njit(cache=True, nogil=True)(_rows_pairs_py)


def sorted_unique(key: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique values of (n,) non-negative integer ``key`` (all below ``2**bits``), ascending, with the
    first row holding each ((V,) int32) and the (n,) int32 unique index of every row.

    Same values as ``correspondence._sorted_unique``. Requires numba (:data:`AVAILABLE`).
    """
    if len(key) == 0:
        empty = np.zeros(0, np.int32)
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


def fill_source_map(keys: np.ndarray, values: np.ndarray, out: np.ndarray) -> int:
    """:func:`source_map` written into ``out`` (a (domain,) int32 row, e.g. of a (T, domain) stack);
    returns the number of distinct keys."""
    return _fill_map_kernel(keys, values, out)


def frame_pairs(
    maps: np.ndarray, first: int, keys: np.ndarray, index: np.ndarray, offset: int
) -> list[np.ndarray]:
    """The voxel pairs of one frame with every later frame in one sweep.

    Args:
        maps: (T, domain) int32 per frame the voxel of every source point, -1 where absent.
        first: first later frame ``j`` (``i + 1`` for frame ``i``).
        keys: (n,) int64 source key of every point of frame ``i``.
        index: (V,) representative point of every voxel of frame ``i``.
        offset: added to the voxel ids of frame ``i`` (its first row in a stacked grid).

    Returns:
        For ``j = first .. T-1``, (K_j, 2) int32 ``(offset + v, maps[j, keys[index[v]]])`` for the ``v``
        where that is >= 0, ``v`` ascending: ``pairs(maps[j], keys[index], offset)`` for every ``j``.
    """
    out = np.empty((maps.shape[0] - first, len(index), 2), dtype=np.int32)
    counts = _frame_pairs_jit(maps, int(first), keys, index, int(offset), out)
    return [out[j, : counts[j]] for j in range(len(counts))]


def first_rows(voxel: np.ndarray, out: np.ndarray) -> None:
    """Write into (V,) ``out`` the first row of (n,) ``voxel`` holding each voxel (``n`` where
    none does). Same as ``correspondence._first_rows``."""
    _first_rows_jit(voxel, out)


def rows_pairs(point_voxel: np.ndarray, index: np.ndarray) -> np.ndarray:
    """(V, 2) int32 ``(v, point_voxel[index[v]])``: every voxel with the voxel of its representative
    point in another grid. Same as ``correspondence._rows_pairs``."""
    return _rows_pairs_jit(point_voxel, index)


def view_voxels(
    points: np.ndarray, a: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Voxelize a frame's 3D view in one kernel: (V, 3) int32 voxels sorted lexicographically, (V,)
    int32 first point of each and (n,) int32 voxel of every point of the (n, 3) float32 ``points``
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


def chunk_mask(
    points: np.ndarray, low: np.ndarray, inv: np.float32, tables: tuple, firsts: np.ndarray
) -> np.ndarray:
    """(n,) bool: the points whose per-axis bins ``floor((p - low) * inv) - first`` share a chunk bit
    in the three per-axis ``tables`` — the table lookup of ``augment.chunk_mask`` in one sweep.

    Args:
        points: (n, 3) float32 points.
        low: (3,) float32 grid anchor: the points' minimum corner (no point lies below it).
        inv: float32 inverse bin size.
        tables: three (B_axis,) unsigned bitmask tables covering every bin of the points.
        firsts: (3,) int64 bin of each table's first entry.
    """
    points = np.ascontiguousarray(points, dtype=np.float32)
    return _chunk_mask_jit(points, low, np.float32(inv), tables, firsts)


def bounds(points: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(3,) float64 minimum and maximum corners of (n, 3) float32 ``points`` (n > 0), or None when a
    coordinate is NaN (the caller's numpy code then decides). Same values as ``augment.bounds``."""
    lo, hi, ok = _bounds_jit(np.ascontiguousarray(points, dtype=np.float32))
    return (lo, hi) if ok else None


def compose_kept(
    scene_points: np.ndarray, keep: np.ndarray, scene_source: int, object_source: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The kept points of a composed frame in one sweep: (k, 3) float32 points (scene points filled,
    object rows left for the caller to place), (k,) int8 source, (k,) int64 index and the number of
    scene points. ``keep`` is (n + m,) bool over the n scene points then the m object points."""
    return _compose_kept_jit(scene_points, keep, np.int8(scene_source), np.int8(object_source))
