import numpy as np
import pytest

from fourdcontrast.data import make_sequence
from fourdcontrast.data.correspondence import (
    compute_correspondences,
    frame_correspondences,
    prepare_scene_cache,
)
from fourdcontrast.geometry import apply_transform
from fourdcontrast.records import SOURCE_OBJECT, Frame, Sequence


@pytest.fixture(scope="module")
def sequence(room, chair):
    return make_sequence(room, chair, np.random.default_rng(3))


@pytest.fixture(scope="module")
def corr(sequence):
    return compute_correspondences(sequence)


def _canonical(seq, frame, rows):
    """Source position of the rows of a frame: scene point as scanned, object point in canonical pose."""
    return seq.source_points(frame.source[rows], frame.index[rows])


def test_frame_correspondences_are_exact(sequence):
    for i in range(len(sequence)):
        for j in range(i + 1, len(sequence)):
            a, b = frame_correspondences(sequence, i, j)
            fi, fj = sequence.frames[i], sequence.frames[j]
            assert len(a) > 0.3 * len(sequence.scene)
            np.testing.assert_array_equal(fi.keys[a], fj.keys[b])
            src = _canonical(sequence, fi, a)
            obj = fi.source[a] == SOURCE_OBJECT
            # each point is its source point moved by the frame's known transform
            for frame, rows in ((fi, a), (fj, b)):
                np.testing.assert_array_equal(frame.points[rows][~obj], src[~obj])
                np.testing.assert_allclose(
                    frame.points[rows][obj], apply_transform(src[obj], frame.object_pose), atol=1e-5
                )
            # the 3D views: undo each view transform and land on the same 4D point
            for frame, rows in ((fi, a), (fj, b)):
                back = apply_transform(frame.view_points()[rows], np.linalg.inv(frame.view_transform))
                np.testing.assert_allclose(back, frame.points[rows], atol=1e-4)
            # every common source point is found
            common = np.intersect1d(fi.keys, fj.keys)
            assert len(common) == len(a)


def test_voxel_maps(sequence, corr):
    for t, frame in enumerate(sequence.frames):
        expect = np.floor(frame.view_points().astype(np.float64) / 0.02).astype(np.int64)
        got = corr.coords_3d[t][corr.point_to_voxel_3d[t]]
        diff = np.abs(got - expect)
        assert diff.max() <= 1 and (diff == 0).all(axis=1).mean() > 0.999  # float32 vs float64 on edges
        assert len(np.unique(corr.coords_3d[t], axis=0)) == len(corr.coords_3d[t])
        np.testing.assert_array_equal(
            corr.point_to_voxel_3d[t][corr.voxel_point_3d[t]], np.arange(len(corr.coords_3d[t]))
        )
        c4 = corr.coords_4d[corr.point_to_voxel_4d[t]]
        assert (c4[:, 3] == t).all()
        e4 = np.floor(frame.points.astype(np.float64) / 0.05).astype(np.int64)
        diff4 = np.abs(c4[:, :3] - e4)
        assert diff4.max() <= 1 and (diff4 == 0).all(axis=1).mean() > 0.999
    assert len(np.unique(corr.coords_4d, axis=0)) == len(corr.coords_4d)


def test_voxel_pairs(sequence, corr):
    frames = sequence.frames
    starts = np.cumsum([0] + [np.count_nonzero(corr.coords_4d[:, 3] == t) for t in range(len(frames))])
    for (i, j), pairs in corr.pairs_3d.items():
        assert i < j and len(pairs) > 0.3 * len(corr.coords_3d[i])
        rep = corr.voxel_point_3d[i][pairs[:, 0]]
        key = frames[i].keys[rep]
        # the representative point of voxel i appears in frame j inside voxel j
        pos = {k: r for r, k in enumerate(frames[j].keys)}
        rows_j = np.array([pos[k] for k in key[:2000]])
        np.testing.assert_array_equal(corr.point_to_voxel_3d[j][rows_j], pairs[:2000, 1])
    for (i, j), pairs in corr.pairs_4d.items():
        assert (corr.coords_4d[pairs[:, 0], 3] == i).all() and (corr.coords_4d[pairs[:, 1], 3] == j).all()
        rep = corr.voxel_point_4d[pairs[:, 0]]
        assert (corr.point_to_voxel_4d[i][rep] == pairs[:, 0]).all()
        assert (pairs[:, 0] >= starts[i]).all() and (pairs[:, 0] < starts[i + 1]).all()
    for t, pairs in enumerate(corr.pairs_3d4d):
        np.testing.assert_array_equal(pairs[:, 0], np.arange(len(corr.coords_3d[t])))
        np.testing.assert_array_equal(pairs[:, 1], corr.point_to_voxel_4d[t][corr.voxel_point_3d[t]])


def test_cache_gives_same_result(sequence, corr):
    cached = compute_correspondences(sequence, cache=prepare_scene_cache(sequence.scene))
    for t in range(len(sequence)):
        np.testing.assert_array_equal(cached.coords_3d[t], corr.coords_3d[t])
        np.testing.assert_array_equal(cached.point_to_voxel_3d[t], corr.point_to_voxel_3d[t])
        # 4D voxel numbering within a frame may differ: compare the voxel coordinates of every point
        np.testing.assert_array_equal(
            cached.coords_4d[cached.point_to_voxel_4d[t]], corr.coords_4d[corr.point_to_voxel_4d[t]]
        )
    for key in corr.pairs_3d:
        np.testing.assert_array_equal(cached.pairs_3d[key], corr.pairs_3d[key])
        a = cached.coords_4d[cached.pairs_4d[key]]
        b = corr.coords_4d[corr.pairs_4d[key]]
        assert {tuple(r) for r in a.reshape(len(a), -1)} == {tuple(r) for r in b.reshape(len(b), -1)}


def test_bad_frames_raise(sequence):
    f = sequence.frames[0]
    pts = f.points.copy()
    pts[0] = np.nan
    bad = Sequence([Frame(pts, f.source, f.index)], sequence.scene, sequence.obj)
    with pytest.raises(ValueError, match="NaN"):
        compute_correspondences(bad)
    dup = Frame(f.points[:2], f.source[[0, 0]], f.index[[0, 0]])
    with pytest.raises(ValueError, match="more than once"):
        compute_correspondences(Sequence([dup], sequence.scene, sequence.obj))


@pytest.mark.parametrize("backend", ["numpy", "auto"])
def test_index_arrays_are_int32(sequence, backend):
    """Every point/voxel index array is int32 (half the bytes of int64), with either backend."""
    c = compute_correspondences(sequence, cache=prepare_scene_cache(sequence.scene), backend=backend)
    arrays = [c.coords_4d, c.voxel_point_4d, *c.pairs_3d.values(), *c.pairs_4d.values()]
    for name in ("coords_3d", "point_to_voxel_3d", "voxel_point_3d", "point_to_voxel_4d", "pairs_3d4d"):
        arrays += getattr(c, name)
    assert {a.dtype for a in arrays} == {np.dtype(np.int32)}
    assert all(p.shape[1:] == (2,) for p in [*c.pairs_3d.values(), *c.pairs_4d.values(), *c.pairs_3d4d])
