"""Optional numba kernels for :mod:`fourdcontrast.data.correspondence` (install ``fourdcontrast[fast]``).

Each kernel computes exactly what the numpy code beside it in ``correspondence`` computes (the tests
compare them element for element); they only fuse passes that numpy has to make one by one:

- :func:`sorted_unique`: a stable least-significant-digit radix sort of non-negative integer keys
  (two counting passes of at most 16 bits each for the 2 cm voxel keys of a room) and one sweep that
  yields the unique keys, the first row of every key and the unique index of every row.
- :func:`pairs`: the voxel pairs of two frames in two sweeps (count, then fill) instead of a gather, a
  comparison, a ``flatnonzero`` and two column writes.

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
    perm = np.arange(n, dtype=np.int64)
    tmp = np.empty(n, dtype=np.int64)
    count = np.empty((1 << width) + 1, dtype=np.int64)
    for p in range(passes):
        shift = p * width
        count[:] = 0
        for r in range(n):
            count[((key[r] >> shift) & mask) + 1] += 1
        for d in range(1, len(count)):
            count[d] += count[d - 1]
        for k in range(n):  # stable: rows keep their order within a digit
            r = perm[k]
            d = (key[r] >> shift) & mask
            tmp[count[d]] = r
            count[d] += 1
        perm, tmp = tmp, perm
    inverse = np.empty(n, dtype=np.int64)
    heads = np.empty(n, dtype=np.int64)
    v = -1
    last = key[perm[0]] - 1  # n > 0: differs from the first key
    for k in range(n):
        r = perm[k]
        if key[r] != last:
            v += 1
            heads[v] = r
            last = key[r]
        inverse[r] = v
    index = heads[: v + 1].copy()
    return key[index], index, inverse


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
