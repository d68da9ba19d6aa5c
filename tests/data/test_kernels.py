import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fourdcontrast.data import kernels
from fourdcontrast.data.correspondence import (
    _first_rows,
    _pairs,
    _rows_pairs,
    _sorted_unique,
    _source_map,
    compute_correspondences,
    prepare_scene_cache,
)

needs_numba = pytest.mark.skipif(not kernels.AVAILABLE, reason="numba not installed")


def _keys(bits, dtype):
    return arrays(dtype, st.integers(1, 300), elements=st.integers(0, (1 << bits) - 1))


def _assert_same(got, expect):
    for g, e in zip(got, expect, strict=True):
        assert g.dtype == e.dtype or g.dtype.kind == e.dtype.kind == "i"
        np.testing.assert_array_equal(g, e)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_radix_unique_matches_numpy(data):
    bits = data.draw(st.sampled_from([1, 5, 17, 26, 31, 40]))
    key = data.draw(_keys(bits, np.int32 if bits <= 31 else np.int64))
    expect = _sorted_unique(key)
    _assert_same(kernels._sorted_unique_py(key, bits), expect)
    if kernels.AVAILABLE:
        _assert_same(kernels.sorted_unique(key, bits), expect)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_pairs_kernel_matches_numpy(data):
    n = data.draw(st.integers(1, 200))
    source_map = data.draw(arrays(np.int32, n, elements=st.integers(-1, 50)))
    rep_keys = data.draw(arrays(np.int64, st.integers(0, 100), elements=st.integers(0, n - 1)))
    offset = data.draw(st.integers(0, 1000))
    expect = _pairs(source_map, rep_keys, offset)
    np.testing.assert_array_equal(kernels._pairs_py(source_map, rep_keys, offset), expect)
    if kernels.AVAILABLE:
        got = kernels.pairs(source_map, rep_keys, offset)
        assert got.dtype == np.int64 and got.shape == expect.shape
        np.testing.assert_array_equal(got, expect)


@needs_numba
def test_empty_key_has_no_voxels():
    u, index, inverse = kernels.sorted_unique(np.zeros(0, np.int32), 3)
    assert len(u) == len(index) == len(inverse) == 0


@needs_numba
@pytest.mark.parametrize("cached", [False, True])
def test_backends_give_identical_correspondences(room, chair, cached):
    from fourdcontrast.data import make_sequence

    seq = make_sequence(room, chair, np.random.default_rng(5))
    cache = prepare_scene_cache(room) if cached else None
    a = compute_correspondences(seq, cache=cache, backend="numpy")
    b = compute_correspondences(seq, cache=cache, backend="numba")
    for name in ("coords_3d", "point_to_voxel_3d", "voxel_point_3d", "point_to_voxel_4d", "pairs_3d4d"):
        for x, y in zip(getattr(a, name), getattr(b, name), strict=True):
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.coords_4d, b.coords_4d)
    np.testing.assert_array_equal(a.voxel_point_4d, b.voxel_point_4d)
    for name in ("pairs_3d", "pairs_4d"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.keys() == y.keys()
        for key in x:
            assert x[key].dtype == y[key].dtype == np.int32
            np.testing.assert_array_equal(x[key], y[key])


def test_unknown_backend_raises(room, chair):
    from fourdcontrast.data import make_sequence

    seq = make_sequence(room, chair, np.random.default_rng(5))
    with pytest.raises(ValueError, match="backend"):
        compute_correspondences(seq, backend="cuda")


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_map_kernels_match_numpy(data):
    domain = data.draw(st.integers(1, 100))
    keys = data.draw(arrays(np.int64, st.integers(1, 60), elements=st.integers(0, domain - 1)))
    values = data.draw(arrays(np.int64, len(keys), elements=st.integers(0, 1000)))
    impls = [(kernels._source_map_py, kernels._first_rows_py, kernels._rows_pairs_py)]
    if kernels.AVAILABLE:
        impls.append((kernels.source_map, kernels.first_rows, kernels.rows_pairs))
    m, filled = _source_map(np.unique(keys), values[: len(np.unique(keys))], domain)
    voxel = data.draw(arrays(np.int64, st.integers(1, 60), elements=st.integers(0, 9)))
    n_vox = int(voxel.max()) + 1
    first = np.empty(n_vox, np.int64)
    _first_rows(voxel, first)
    index = data.draw(arrays(np.int64, st.integers(0, 30), elements=st.integers(0, len(voxel) - 1)))
    for smap, frows, rpairs in impls:
        # distinct keys: the same map and count; a repeated key: fewer distinct keys than rows
        got, got_filled = smap(np.unique(keys), values[: len(np.unique(keys))], domain)
        np.testing.assert_array_equal(got, m)
        assert got.dtype == np.int32 and got_filled == filled
        assert (smap(keys, values, domain)[1] < len(keys)) == (len(np.unique(keys)) < len(keys))
        out = np.empty(n_vox, np.int64)
        frows(voxel, out)
        np.testing.assert_array_equal(out, first)
        np.testing.assert_array_equal(rpairs(voxel, index), _rows_pairs(voxel, index))


@needs_numba
@settings(max_examples=30, deadline=None)
@given(
    arrays(np.float32, st.tuples(st.integers(1, 300), st.just(3)), elements=st.floats(-3, 3, width=32)),
    st.floats(0, 6.3),
    st.floats(0.8, 1.2),
    st.floats(0.005, 0.1),
)
def test_fused_view_voxels_match_numpy(points, angle, scale, voxel_size):
    from fourdcontrast.data.correspondence import _view_axes, _view_coefficients, _voxelize_soa

    c, s = np.cos(angle), np.sin(angle)
    view = np.eye(4)
    view[:3, :3] = scale * np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    view[:3, 3] = [0.3, -1.2, 0.05]
    soa = np.ascontiguousarray(points.T)
    a, b = _view_coefficients(view, voxel_size)
    expect = _voxelize_soa(_view_axes(soa, a, b))
    got = kernels.view_voxels(points, a, b)
    for g, e in zip(got, (expect.coordinates, expect.index, expect.inverse), strict=True):
        assert g.dtype == e.dtype
        np.testing.assert_array_equal(g, e)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_scene_voxels_kernel_matches_numpy(data):
    n_voxels = data.draw(st.integers(1, 40))
    vop = data.draw(arrays(np.int64, st.integers(1, 80), elements=st.integers(0, n_voxels - 1)))
    index = np.unique(data.draw(arrays(np.int64, st.integers(0, 60), elements=st.integers(0, len(vop) - 1))))
    extra = data.draw(arrays(np.int64, st.integers(0, 5), elements=st.integers(0, n_voxels - 1)))
    used = np.zeros(n_voxels, bool)
    used[vop[index]] = True
    used[extra] = True
    ids = np.flatnonzero(used)
    rank = np.cumsum(used) - 1
    impls = [kernels._scene_voxels_py] + ([kernels.scene_voxels] if kernels.AVAILABLE else [])
    for impl in impls:
        out = np.empty(len(index), np.int64)
        got_ids, got_rank = impl(index, vop, extra, n_voxels, out)
        np.testing.assert_array_equal(got_ids, ids)
        np.testing.assert_array_equal(got_rank[ids], rank[ids])  # only used voxels' ranks are read
        np.testing.assert_array_equal(out, rank[vop[index]])


@needs_numba
@settings(max_examples=40, deadline=None)
@given(st.data())
def test_frame_pairs_match_pairs_per_frame(data):
    """The one-sweep pairs of a frame with all later frames equal ``_pairs`` frame by frame."""
    domain = data.draw(st.integers(1, 80))
    frames = data.draw(st.integers(2, 5))
    maps = data.draw(arrays(np.int32, (frames, domain), elements=st.integers(-1, 40)))
    n = data.draw(st.integers(1, 60))
    keys = data.draw(arrays(np.int64, n, elements=st.integers(0, domain - 1)))
    index = data.draw(arrays(np.int32, st.integers(0, 50), elements=st.integers(0, n - 1)))
    first = data.draw(st.integers(1, frames - 1))
    offset = data.draw(st.integers(0, 1000))
    got = kernels.frame_pairs(maps, first, keys, index, offset)
    assert len(got) == frames - first
    for j, pairs in zip(range(first, frames), got, strict=True):
        assert pairs.dtype == np.int32
        np.testing.assert_array_equal(pairs, _pairs(maps[j], keys[index.astype(np.int64)], offset))


@needs_numba
def test_fused_view_voxels_with_wide_keys_match_numpy():
    """A view spanning more than 2^31 packed voxel keys takes the int64-key path: same result."""
    from fourdcontrast.data.correspondence import _view_axes, _view_coefficients, _voxelize_soa

    points = np.random.default_rng(0).uniform(-400, 400, (500, 3)).astype(np.float32)
    a, b = _view_coefficients(np.eye(4), 0.02)
    expect = _voxelize_soa(_view_axes(np.ascontiguousarray(points.T), a, b))
    got = kernels.view_voxels(points, a, b)
    for g, e in zip(got, (expect.coordinates, expect.index, expect.inverse), strict=True):
        assert g.dtype == e.dtype
        np.testing.assert_array_equal(g, e)
