import numpy as np
import pytest

from fourdcontrast.data.correspondence import compute_correspondences
from fourdcontrast.data.dataset import collate_sequences
from fourdcontrast.data.static import StaticPairDataset, static_pair
from fourdcontrast.records import SOURCE_SCENE, Scene


def test_static_pair_views_are_resampled_and_transformed(small_room):
    seq = static_pair(small_room, 3)
    assert len(seq) == 2 and len(seq.obj) == 0
    a, b = seq.frames
    assert (a.source == SOURCE_SCENE).all() and (b.source == SOURCE_SCENE).all()
    assert 0.7 * len(small_room) < len(a) < len(small_room)  # resampled (80-95 % kept)
    assert not np.array_equal(a.index, b.index)  # different points in each view
    assert not np.allclose(a.view_transform, b.view_transform)  # independent random views
    np.testing.assert_array_equal(a.points, small_room.points[a.index])  # scene coordinates kept


def test_static_pair_correspondences_are_exact(small_room):
    seq = static_pair(small_room, 4)
    corr = compute_correspondences(seq, 0.05, 0.1)
    pairs = corr.pairs_3d[(0, 1)]
    assert len(pairs) > 0.5 * min(len(c) for c in corr.coords_3d)
    a, b = seq.frames
    # the representative point of a voxel of view 0 is the same scan point as a point in the paired voxel
    rep = a.index[corr.voxel_point_3d[0][pairs[:, 0]]]
    pos_b = {k: i for i, k in enumerate(b.index)}
    rows_b = np.array([pos_b[k] for k in rep])
    np.testing.assert_array_equal(corr.point_to_voxel_3d[1][rows_b], pairs[:, 1])


def test_static_pair_is_deterministic_and_checks_input(small_room):
    one, two = static_pair(small_room, 7), static_pair(small_room, 7)
    np.testing.assert_array_equal(one.frames[1].index, two.frames[1].index)
    np.testing.assert_array_equal(one.frames[1].view_transform, two.frames[1].view_transform)
    with pytest.raises(ValueError, match="at least 2 views"):
        static_pair(small_room, 0, views=1)
    with pytest.raises(ValueError, match="no points"):
        static_pair(Scene(points=np.zeros((0, 3)), name="empty"), 0)


def test_static_pair_dataset_collates(small_room):
    ds = StaticPairDataset([small_room], pairs_per_scene=3, voxel_size_3d=0.05, voxel_size_4d=0.1)
    assert len(ds) == 3
    batch = collate_sequences([ds[0], ds[2]])
    assert batch.length == 2 and batch.batch_size == 2
    assert len(batch.pairs_3d) > 0 and int(batch.pairs_3d_group.max()) == 1
    np.testing.assert_array_equal(ds[1].sequence.frames[0].index, ds[1].sequence.frames[0].index)
    with pytest.raises(IndexError):
        ds[3]


def test_batch_points_3d_are_representative_points(small_room):
    ds = StaticPairDataset([small_room], pairs_per_scene=1, voxel_size_3d=0.05, voxel_size_4d=0.1)
    sample = ds[0]
    batch = collate_sequences([sample])
    assert batch.points_3d.shape == (len(batch.coords_3d), 3)
    corr, frame = sample.correspondences, sample.sequence.frames[1]
    start = len(corr.coords_3d[0])
    np.testing.assert_array_equal(batch.points_3d[start:].numpy(), frame.points[corr.voxel_point_3d[1]])
    # each representative point lies in its voxel of the frame's 3D view
    view = frame.view_points()[corr.voxel_point_3d[1]]
    np.testing.assert_array_equal(np.floor(view / 0.05).astype(np.int64), batch.coords_3d[start:, 1:].numpy())
