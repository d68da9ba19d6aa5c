"""Correspondences of a 4D sequence (paper, Sec. 3.2, Eqs. 3–8).

Point level: two points of two frames correspond iff they are the same source point (provenance), so
the pairs ``A_ij`` are exact. Voxel level: every frame's 3D view is voxelized at 2 cm, the 4D sequence
(scene coordinates plus the frame index as time) at 5 cm × 1 frame, and the pairs the three losses
need are expressed between voxels:

- L3D (Eq. 3–4), frames ``i < j``: for every 3D voxel of frame ``i`` whose representative point
  (its first point) also appears in frame ``j``: (that voxel, the 3D voxel of the point in frame ``j``).
- L3D4D (Eq. 5–6), frame ``i``: for every 3D voxel of frame ``i``: (that voxel, the 4D voxel of its
  representative point).
- L4D (Eq. 7–8), frames ``i < j``: for every 4D voxel of time ``i`` whose representative point
  appears in frame ``j``: (that voxel, the 4D voxel of the point at time ``j``).

Speed (``benchmarks/generation.py``): voxel sets come from one stable sort per frame (the head of each
run of equal keys is the voxel's first point), the 4D scene voxels from the per-scene cache, and the
pairs from per-frame (domain,) int32 maps "source point → voxel" gathered at the representative points.
With numba installed (``fourdcontrast[fast]``) the hot loops run as the fused kernels of
:mod:`fourdcontrast.data.kernels` (``backend="auto"``); results are identical with either backend.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fourdcontrast.data import kernels  # optional numba kernels
from fourdcontrast.records import SOURCE_SCENE, Frame, Sequence
from fourdcontrast.sparse.quantize import Quantization, pack_keys, unique_voxels

DEFAULT_VOXEL_SIZE_3D = 0.02
"""3D voxel edge in metres (paper, Sec. 4: 2 cm)."""
DEFAULT_VOXEL_SIZE_4D = 0.05
"""4D voxel edge in metres, one voxel per frame in time (paper, Sec. 4: 5 cm)."""
DEFAULT_BACKEND = "auto"
"""Kernels of :func:`compute_correspondences`: ``"numpy"``, ``"numba"`` (optional, ``fourdcontrast[fast]``,
same results) or ``"auto"`` (numba when installed)."""
BACKENDS = ("auto", "numpy", "numba")


def _positions(frame: Frame, domain: int) -> np.ndarray:
    """(domain,) int64: row of each provenance key in ``frame``, -1 where absent."""
    pos = np.full(domain, -1, dtype=np.int64)
    pos[frame.keys] = np.arange(len(frame), dtype=np.int64)
    return pos


def _domain(sequence: Sequence) -> int:
    return 2 * max(len(sequence.scene), len(sequence.obj), 1)


def frame_correspondences(sequence: Sequence, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact point correspondences ``A_ij`` between frames ``i`` and ``j``.

    Returns:
        ``(idx_i, idx_j)``: (K,) int64 rows of frames ``i`` and ``j`` holding the same source point
        (same provenance), ordered by ``idx_i``.
    """
    fi, fj = sequence.frames[i], sequence.frames[j]
    pos_j = _positions(fj, _domain(sequence))
    rows_j = pos_j[fi.keys]
    idx_i = np.flatnonzero(rows_j >= 0)
    return idx_i, rows_j[idx_i]


def _voxelize(coords: np.ndarray) -> Quantization:
    """Unique rows of (n, D) int64 ``coords`` (sorted lexicographically) with the first point of every
    voxel and the voxel of every point (:func:`~fourdcontrast.sparse.quantize.unique_voxels`, numpy)."""
    q = unique_voxels(torch.from_numpy(coords))
    return Quantization(q.coordinates.numpy(), q.index.numpy(), q.inverse.numpy())


def _view_coefficients(view_transform: np.ndarray, voxel_size: float) -> tuple[np.ndarray, np.ndarray]:
    a = (view_transform[:3, :3] / voxel_size).astype(np.float32)
    b = (view_transform[:3, 3] / voxel_size).astype(np.float32)
    return a, b


def _use_numba(backend: str) -> bool:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "numba" and not kernels.AVAILABLE:
        raise ValueError("backend 'numba' needs numba: pip install 'fourdcontrast[fast]'")
    return backend != "numpy" and kernels.AVAILABLE


def _voxelize_soa(axes: list[np.ndarray], fast: bool = False) -> Quantization:
    """Voxelize integer coordinates given per axis (D arrays of (n,) float32 holding whole numbers):
    unique voxels (int32, sorted lexicographically), (V,) int32 first point per voxel and (n,) int32
    voxel of every point."""
    n = len(axes[0])
    if n == 0:
        empty = np.zeros(0, np.int32)
        return Quantization(np.zeros((0, len(axes)), np.int32), empty, empty)
    lows = [int(a.min()) for a in axes]
    bits = [int(int(a.max()) - lo + 1).bit_length() for a, lo in zip(axes, lows, strict=True)]
    if sum(bits) > 62:
        q = _voxelize(np.stack([a.astype(np.int64) for a in axes], axis=1))
        index, inverse = q.index.astype(np.int32), q.inverse.astype(np.int32)
        return Quantization(q.coordinates.astype(np.int32), index, inverse)
    key_dtype = np.int32 if sum(bits) <= 31 else np.int64  # int32 keys sort twice as fast
    key = None
    for a, lo, b in zip(axes, lows, bits, strict=True):
        k = (a - np.float32(lo)).astype(key_dtype)
        key = k if key is None else (key << b) | k
    if fast:
        u, index, inverse = kernels.sorted_unique(key, sum(bits))
    else:
        u, index, inverse = _sorted_unique(key)
        index, inverse = index.astype(np.int32), inverse.astype(np.int32)
    coords = np.empty((len(u), len(axes)), dtype=np.int32)
    shift = 0
    for axis in range(len(axes) - 1, -1, -1):
        coords[:, axis] = ((u >> shift) & ((1 << bits[axis]) - 1)) + lows[axis]
        shift += bits[axis]
    return Quantization(coords, index, inverse)


def _sorted_unique(key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique values of (n,) integer ``key`` (n > 0), ascending, with the first row holding each and
    the (n,) int64 unique index of every row.

    One stable sort: equal keys keep their row order, so the head of every run of equal keys is the
    first row holding that key (no second pass for "first point of the voxel").
    """
    s, perm = torch.sort(torch.from_numpy(key), stable=True)
    s, perm = s.numpy(), perm.numpy()
    head = np.empty(len(s), dtype=bool)
    head[0] = True
    np.not_equal(s[1:], s[:-1], out=head[1:])
    starts = np.flatnonzero(head)
    run = np.cumsum(head, dtype=np.int64)
    run -= 1
    inverse = np.empty(len(s), dtype=np.int64)
    inverse[perm] = run
    return s[starts], perm[starts], inverse


def _view_axes(soa: np.ndarray, a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
    """Per axis (n,) float32 ``floor(a · p + b)`` of points given as (3, n) float32 rows — the single
    formula every path uses, so cached and plain results agree bit for bit."""
    return [np.floor(a[r, 0] * soa[0] + a[r, 1] * soa[1] + a[r, 2] * soa[2] + b[r]) for r in range(3)]


def _voxels_4d(points: np.ndarray, voxel_size: float) -> np.ndarray:
    return np.floor(points * np.float32(1.0 / voxel_size)).astype(np.int64)


def voxelize_view(frame: Frame, voxel_size: float = DEFAULT_VOXEL_SIZE_3D) -> Quantization:
    """Voxelize the frame's 3D view (``view_transform`` applied) at ``voxel_size`` metres: (V, 3) int32
    voxels sorted lexicographically, (V,) int32 first point of each, (n,) int32 voxel of every point."""
    a, b = _view_coefficients(frame.view_transform, voxel_size)
    return _voxelize_soa(_view_axes(np.ascontiguousarray(frame.points.T), a, b))


def _voxelize_view(frame: Frame, voxel_size: float, fast: bool) -> Quantization:
    a, b = _view_coefficients(frame.view_transform, voxel_size)
    if fast:
        fused = kernels.view_voxels(frame.points, a, b)  # reads (n, 3) rows: no transposed copy
        if fused is not None:
            return Quantization(*fused)
    return _voxelize_soa(_view_axes(_frame_soa(frame), a, b), fast)


@dataclass
class SceneCache:
    """Per-scene work reused by every sequence of a scene (see :func:`prepare_scene_cache`).

    Attributes:
        voxel_size_4d: the 4D voxel edge the cache was built for, metres.
        voxel_of_point: (N,) int64 the 4D-grid (spatial) voxel of every scene point.
        voxel_coords4: (V, 4) int32 spatial voxel coordinates, sorted lexicographically, with a 4th
            (time) column of zeros to fill per frame.
        voxel_keys: (V,) int64 packed, sorted keys of those coordinates.
        low: (3,) int64 minimum voxel coordinate (key packing offset).
        bits: bits per axis of the key packing.
    """

    voxel_size_4d: float
    voxel_of_point: np.ndarray
    voxel_coords4: np.ndarray
    voxel_keys: np.ndarray
    low: np.ndarray
    bits: list[int]

    def keys_of(self, coords: np.ndarray) -> np.ndarray:
        """(m,) int64 packed keys of (m, 3) voxel coordinates, -1 outside the scene's key range."""
        shifted = coords - self.low
        inside = ((shifted >= 0) & (shifted < (1 << np.array(self.bits)))).all(axis=1)
        key = np.zeros(len(coords), dtype=np.int64)
        for axis, b in enumerate(self.bits):
            key = (key << b) | shifted[:, axis]
        return np.where(inside, key, -1)


def prepare_scene_cache(scene, voxel_size_4d: float = DEFAULT_VOXEL_SIZE_4D) -> SceneCache:
    """Precompute what :func:`compute_correspondences` can reuse across sequences of ``scene``."""
    coords = _voxels_4d(scene.points, voxel_size_4d)
    q = _voxelize(coords)
    packed = pack_keys(torch.from_numpy(q.coordinates))
    if packed is None:
        raise ValueError(f"scene {scene.name!r} is too large to pack {voxel_size_4d} m voxel keys")
    return SceneCache(
        voxel_size_4d=float(voxel_size_4d),
        voxel_of_point=q.inverse,
        voxel_coords4=np.column_stack([q.coordinates, np.zeros(len(q.coordinates), np.int64)]).astype(
            np.int32
        ),
        voxel_keys=packed[0].numpy(),
        low=q.coordinates.min(axis=0),
        bits=packed[1],
    )


@dataclass
class _Frame4D:
    """4D voxels of one frame before they are stacked into the sequence's grid.

    ``scene_ids`` (rows of the cache's voxels, ascending) come first, then ``coords`` (new voxels,
    (m, 3) int32); ``point_voxel`` is the (n,) int32 voxel of every point in that local numbering.
    """

    scene_ids: np.ndarray | None
    coords: np.ndarray
    point_voxel: np.ndarray

    def __len__(self) -> int:
        return (0 if self.scene_ids is None else len(self.scene_ids)) + len(self.coords)


def _scene_prefix(frame: Frame) -> tuple[np.ndarray, int, bool]:
    """Scene mask of the frame's points, their count, and whether they all come first (composed order)."""
    is_scene = frame.source == SOURCE_SCENE
    n_s = int(np.count_nonzero(is_scene))
    return is_scene, n_s, bool(is_scene[:n_s].all())


def _frame_4d(frame: Frame, voxel_size: float, cache: SceneCache | None, fast: bool = False) -> _Frame4D:
    """4D (spatial) voxels of one frame: with ``cache``, the scene voxels its scene points use (in the
    cache's sorted order) followed by the voxels only its object points occupy (sorted); without, all
    its voxels sorted lexicographically."""
    if cache is None:
        q = _voxelize(_voxels_4d(frame.points, voxel_size))
        return _Frame4D(None, q.coordinates.astype(np.int32), q.inverse.astype(np.int32))
    is_scene, n_s, composed = _scene_prefix(frame)
    oc = _voxels_4d(frame.points[n_s:] if composed else frame.points[~is_scene], voxel_size)
    okey = cache.keys_of(oc)
    pos = np.minimum(np.searchsorted(cache.voxel_keys, okey), len(cache.voxel_keys) - 1)
    found = cache.voxel_keys[pos] == okey
    p2v = np.empty(len(frame), dtype=np.int32)
    if fast and composed:  # one kernel: used voxels, their ranks and the scene points' voxels
        scene_ids, rank = kernels.scene_voxels(
            frame.index[:n_s], cache.voxel_of_point, pos[found], len(cache.voxel_keys), p2v[:n_s]
        )
    else:
        sv = cache.voxel_of_point[frame.index[:n_s] if composed else frame.index[is_scene]]
        used = np.zeros(len(cache.voxel_keys), bool)
        used[sv] = True
        used[pos[found]] = True
        scene_ids = np.flatnonzero(used)
        rank = np.cumsum(used, dtype=np.int32)
        rank -= 1
    rest = oc[~found]
    new = _voxelize_soa([c.astype(np.float32) for c in rest.T])  # few points: object voxels off the scene
    obj_v = np.empty(len(oc), dtype=np.int32)
    obj_v[found] = rank[pos[found]]
    obj_v[~found] = len(scene_ids) + new.inverse
    if composed:
        if not fast:
            np.take(rank, sv, out=p2v[:n_s])
        p2v[n_s:] = obj_v
    else:
        p2v[is_scene] = rank[sv]
        p2v[~is_scene] = obj_v
    return _Frame4D(scene_ids, new.coordinates, p2v)


@dataclass
class Correspondences:
    """Point- and voxel-level correspondences of one sequence of ``T`` frames (Eqs. 3–8).

    Attributes:
        voxel_size_3d: 3D voxel edge, metres.
        voxel_size_4d: 4D voxel edge, metres (time: one voxel per frame).
        coords_3d: per frame, (V_t, 3) int32 voxel coordinates of the frame's 3D view.
        point_to_voxel_3d: per frame, (n_t,) int32 the 3D voxel of every point of the frame.
        voxel_point_3d: per frame, (V_t,) int32 the representative (first) point of every 3D voxel.
        coords_4d: (W, 4) int32 voxel coordinates (x, y, z, t) of the 4D sequence, grouped by frame
            (t ascending; within a frame no particular order).
        point_to_voxel_4d: per frame, (n_t,) int32 the 4D voxel (row of ``coords_4d``) of every point.
        voxel_point_4d: (W,) int32 representative point of every 4D voxel, a row of frame
            ``coords_4d[w, 3]``.
        pairs_3d: for frames ``i < j``, (K, 2) int32 (3D voxel of frame i, 3D voxel of frame j) for L3D.
        pairs_3d4d: per frame, (V_t, 2) int32 (3D voxel of the frame, 4D voxel) for L3D4D.
        pairs_4d: for frames ``i < j``, (K, 2) int32 (4D voxel at time i, 4D voxel at time j) for L4D.

    Every index array is int32 (half the bytes of int64; a sequence has far fewer than 2^31 points or
    voxels): cast to int64 before indexing torch tensors with them, as
    :func:`~fourdcontrast.data.dataset.collate_sequences` does. ``pairs_3d`` / ``pairs_4d`` of the
    pairs ``(i, j)`` of one frame ``i`` may be views of one shared buffer.
    """

    voxel_size_3d: float
    voxel_size_4d: float
    coords_3d: list[np.ndarray]
    point_to_voxel_3d: list[np.ndarray]
    voxel_point_3d: list[np.ndarray]
    coords_4d: np.ndarray
    point_to_voxel_4d: list[np.ndarray]
    voxel_point_4d: np.ndarray
    pairs_3d: dict[tuple[int, int], np.ndarray]
    pairs_3d4d: list[np.ndarray]
    pairs_4d: dict[tuple[int, int], np.ndarray]

    def __len__(self) -> int:
        return len(self.coords_3d)


def _frame_soa(frame: Frame) -> np.ndarray:
    """(3, n) float32 frame points, one row per axis."""
    return np.ascontiguousarray(frame.points.T)


def _source_keys(frame: Frame, n_scene: int) -> np.ndarray:
    """(n,) int64 source-space key of every point: scene point k → k, object point k → n_scene + k."""
    is_scene, n_s, composed = _scene_prefix(frame)
    keys = frame.index.astype(np.int64)  # intp: numpy's fast path for fancy indexing
    if composed:  # scene points first: a slice, no mask
        keys[n_s:] += n_scene
    else:
        keys[~is_scene] += n_scene
    return keys


def _source_map(keys: np.ndarray, values: np.ndarray, domain: int) -> tuple[np.ndarray, int]:
    """(domain,) int32 ``values`` scattered to their source keys, -1 where the frame lacks the point,
    and the number of distinct keys written (< ``len(keys)`` when a source point repeats)."""
    m = np.full(domain, -1, dtype=np.int32)
    m[keys] = values.astype(np.int32, copy=False)  # a scatter that casts on the fly is three times slower
    return m, int(np.count_nonzero(m >= 0))


def _fill_map(keys: np.ndarray, values: np.ndarray, out: np.ndarray, fast: bool) -> int:
    """Write :func:`_source_map` of ``keys`` and ``values`` into the (domain,) int32 ``out``; returns the
    number of distinct keys written."""
    if fast:
        return kernels.fill_source_map(keys, values, out)
    out.fill(-1)
    out[keys] = values.astype(np.int32, copy=False)
    return int(np.count_nonzero(out >= 0))


def _first_rows(voxel: np.ndarray, out: np.ndarray) -> None:
    """Write into (V,) integer ``out`` the first row of (n,) ``voxel`` holding each voxel."""
    first = torch.from_numpy(out).fill_(len(voxel))
    rows = torch.arange(len(voxel), dtype=first.dtype)
    first.scatter_reduce_(0, torch.from_numpy(voxel).long(), rows, reduce="amin")


def _rows_pairs(point_voxel: np.ndarray, index: np.ndarray) -> np.ndarray:
    """(V, 2) int32 ``(v, point_voxel[index[v]])`` for every voxel ``v`` with representative ``index[v]``."""
    pairs = np.empty((len(index), 2), dtype=np.int32)
    pairs[:, 0] = np.arange(len(index))
    np.take(point_voxel, index, out=pairs[:, 1])
    return pairs


def _pairs(source_map: np.ndarray, rep_keys: np.ndarray, offset: int) -> np.ndarray:
    """(K, 2) int32 (offset + v, source_map[rep_keys[v]]) for the voxels ``v`` whose representative
    point is present in the other frame (``source_map`` >= 0)."""
    target = source_map[rep_keys]
    rows = np.flatnonzero(target >= 0)
    out = np.empty((len(rows), 2), dtype=np.int32)
    np.add(rows, offset, out=out[:, 0])
    out[:, 1] = target[rows]
    return out


def compute_correspondences(
    sequence: Sequence,
    voxel_size_3d: float = DEFAULT_VOXEL_SIZE_3D,
    voxel_size_4d: float = DEFAULT_VOXEL_SIZE_4D,
    cache: SceneCache | None = None,
    backend: str = DEFAULT_BACKEND,
) -> Correspondences:
    """All point→voxel maps and voxel-level pairs of ``sequence`` (see the module docstring).

    Args:
        sequence: the (augmented) sequence; 3D views use ``Frame.view_transform``.
        voxel_size_3d: 3D voxel edge in metres (paper: 0.02).
        voxel_size_4d: 4D voxel edge in metres (paper: 0.05).
        cache: optional :func:`prepare_scene_cache` of ``sequence.scene`` (same ``voxel_size_4d``);
            the result is the same with or without it, only faster.
        backend: ``"numpy"``, ``"numba"`` or ``"auto"`` (see :data:`DEFAULT_BACKEND`); the result is
            the same with every backend.

    Raises:
        ValueError: when a frame has NaN coordinates or duplicate provenance, or the cache does not fit.
    """
    fast = _use_numba(backend)
    frames = sequence.frames
    for t, f in enumerate(frames):
        if not np.isfinite(f.points).all():
            raise ValueError(f"frame {t} of the sequence has NaN or infinite coordinates")
    if cache is not None and (
        len(cache.voxel_of_point) != len(sequence.scene) or cache.voxel_size_4d != float(voxel_size_4d)
    ):
        raise ValueError("the scene cache was built for another scene or 4D voxel size")
    n_scene = len(sequence.scene)
    domain = n_scene + len(sequence.obj)
    # source-space key: scene point k → k, object point k → N + k (composed frames are sorted by it)
    keys = [_source_keys(f, n_scene) for f in frames]
    for t, k in enumerate(keys):
        if len(k) and (k.min() < 0 or k.max() >= domain):
            raise ValueError(f"frame {t} has provenance indices outside the scene / object")
    q3 = [_voxelize_view(f, voxel_size_3d, fast) for f in frames]
    # (T, domain) int32: per frame the 3D voxel of each source point, -1 where absent
    vmap3 = np.empty((len(frames), domain), dtype=np.int32)
    for t, (k, q) in enumerate(zip(keys, q3, strict=True)):
        if _fill_map(k, q.inverse, vmap3[t], fast) != len(k):
            raise ValueError(f"frame {t} holds the same source point more than once")

    # 4D grid: the frames' voxels stacked in time order, written straight into the final arrays
    parts = [_frame_4d(f, voxel_size_4d, cache, fast) for f in frames]
    starts = np.cumsum([0] + [len(p) for p in parts])
    coords_4d = np.empty((starts[-1], 4), dtype=np.int32)
    voxel_point_4d = np.empty(starts[-1], dtype=np.int32)
    vmap4 = np.empty((len(frames), domain), dtype=np.int32)
    p2v4 = []
    for t, (part, k) in enumerate(zip(parts, keys, strict=True)):
        lo, hi = int(starts[t]), int(starts[t + 1])
        n_ids = 0
        if part.scene_ids is not None:
            n_ids = len(part.scene_ids)
            torch.index_select(
                torch.from_numpy(cache.voxel_coords4),
                0,
                torch.from_numpy(part.scene_ids),
                out=torch.from_numpy(coords_4d[lo : lo + n_ids]),
            )
        coords_4d[lo + n_ids : hi, :3] = part.coords
        coords_4d[lo:hi, 3] = t
        p2v = part.point_voxel
        (kernels.first_rows if fast else _first_rows)(p2v, voxel_point_4d[lo:hi])
        p2v += lo
        p2v4.append(p2v)
        _fill_map(k, p2v, vmap4[t], fast)

    pairs_3d, pairs_4d = {}, {}
    for i in range(len(frames) - 1):
        rep4 = voxel_point_4d[starts[i] : starts[i + 1]]
        if fast:  # one sweep per frame and grid for all its later frames
            later = [(i, j) for j in range(i + 1, len(frames))]
            p3 = kernels.frame_pairs(vmap3, i + 1, keys[i], q3[i].index, 0)
            p4 = kernels.frame_pairs(vmap4, i + 1, keys[i], rep4, int(starts[i]))
            pairs_3d.update(zip(later, p3, strict=True))
            pairs_4d.update(zip(later, p4, strict=True))
            continue
        rep_keys3 = keys[i][q3[i].index.astype(np.intp)]  # intp: numpy's fast fancy-indexing path
        rep_keys4 = keys[i][rep4.astype(np.intp)]
        for j in range(i + 1, len(frames)):
            pairs_3d[(i, j)] = _pairs(vmap3[j], rep_keys3, 0)
            pairs_4d[(i, j)] = _pairs(vmap4[j], rep_keys4, int(starts[i]))
    pairs_3d4d = [(kernels.rows_pairs if fast else _rows_pairs)(p2v4[t], q.index) for t, q in enumerate(q3)]
    return Correspondences(
        voxel_size_3d=float(voxel_size_3d),
        voxel_size_4d=float(voxel_size_4d),
        coords_3d=[q.coordinates for q in q3],
        point_to_voxel_3d=[q.inverse for q in q3],
        voxel_point_3d=[q.index for q in q3],
        coords_4d=coords_4d,
        point_to_voxel_4d=p2v4,
        voxel_point_4d=voxel_point_4d,
        pairs_3d=pairs_3d,
        pairs_3d4d=pairs_3d4d,
        pairs_4d=pairs_4d,
    )
