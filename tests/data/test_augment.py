import numpy as np
import pytest

from fourdcontrast.data.augment import (
    AugmentationError,
    AugmentOptions,
    augment_composed,
    augment_sequence,
    augment_views,
    bounds,
    chunk_mask,
    presence,
    resample,
    sample_chunks,
    validity,
)
from fourdcontrast.data.compose import compose_sequence
from fourdcontrast.data.trajectory import sample_trajectory
from fourdcontrast.records import SOURCE_OBJECT, SOURCE_SCENE


@pytest.fixture(scope="module")
def composed(room, chair):
    return compose_sequence(room, chair, sample_trajectory(room, chair, length=4, rng=1))


def _brute_chunk_mask(points, chunks):
    p = points.astype(np.float64)
    inside = np.zeros(len(p), bool)
    for lo, hi in chunks:
        inside |= ((p >= lo) & (p < hi)).all(axis=1)
    return inside


def test_chunks_count_and_size(room):
    lo, hi = bounds(room.points)
    extent = hi - lo
    counts = set()
    for seed in range(40):
        chunks = sample_chunks(room.points, seed)
        counts.add(len(chunks))
        assert 5 <= len(chunks) <= 15
        size = (chunks[:, 1] - chunks[:, 0]) / extent
        # 1 cm corner grid: sizes within [0.15, 0.45] of the extent, the same ratio on every axis
        assert (size >= 0.15 - 1e-9).all() and (size <= 0.45 + 1e-9).all()
        assert (np.ptp(size, axis=1) <= 0.01 / extent.min() + 1e-9).all()
        centre = chunks.mean(axis=1)
        assert ((centre >= lo - 0.01) & (centre <= hi + 0.01)).all()
    assert min(counts) <= 6 and max(counts) >= 14


def test_chunk_mask_matches_brute_force(room, rng):
    for seed in range(10):
        chunks = sample_chunks(room.points, seed)
        np.testing.assert_array_equal(chunk_mask(room.points, chunks), _brute_chunk_mask(room.points, chunks))
    off_grid = np.array([[[0.123, 0.4, -1], [1.777, 2.0, 3]]])
    np.testing.assert_array_equal(chunk_mask(room.points, off_grid), _brute_chunk_mask(room.points, off_grid))


def test_resample_keeps_a_random_subset(composed):
    frame = composed.frames[0]
    a = resample(frame, 0, fraction_range=(0.5, 0.5))
    assert abs(len(a) / len(frame) - 0.5) < 0.02
    assert len(np.intersect1d(a.keys, frame.keys)) == len(a)
    b = resample(frame, 1, fraction_range=(0.5, 0.5))
    assert not np.array_equal(a.keys, b.keys)


def test_augment_sequence_rules(composed):
    n, m = len(composed.scene), len(composed.obj)
    for seed in range(5):
        aug = augment_sequence(composed, seed)
        assert aug.chunks is not None and 5 <= len(aug.chunks) <= 15
        removed = _brute_chunk_mask(composed.scene.points, aug.chunks)
        scene_all, obj_all = np.ones(n, bool), np.ones(m, bool)
        for t, frame in enumerate(aug.frames):
            is_scene = frame.source == SOURCE_SCENE
            assert not removed[frame.index[is_scene]].any(), "no scene point inside a removed chunk"
            assert len(frame) >= 0.5 * len(composed.frames[t])
            s, o = presence(frame, n, m)
            scene_all &= s
            obj_all &= o
            # 4D points untouched: each point is its source point moved by the object pose only
            np.testing.assert_array_equal(
                frame.points[is_scene], composed.scene.points[frame.index[is_scene]]
            )
            np.testing.assert_array_equal(frame.object_pose, composed.frames[t].object_pose)
        assert scene_all.mean() >= 0.30 and obj_all.mean() >= 0.30
        v = validity(composed, aug)
        assert v.ok and v.scene_fraction == pytest.approx(scene_all.mean())
        # frames resampled independently: they differ
        assert not np.array_equal(aug.frames[0].keys, aug.frames[1].keys)


def test_object_points_never_removed_by_chunks(composed):
    aug = augment_sequence(composed, 3, AugmentOptions(resample_fraction=(1.0, 1.0)))
    for frame in aug.frames:
        assert np.count_nonzero(frame.source == SOURCE_OBJECT) == len(composed.obj)


def test_views_are_recorded_similarities(composed):
    aug = augment_views(composed, 0, scale_range=(0.8, 1.2), max_translation=0.5)
    transforms = [f.view_transform for f in aug.frames]
    for t, frame in zip(transforms, aug.frames, strict=True):
        r = t[:3, :3]
        scale = np.cbrt(np.linalg.det(r))
        assert 0.8 <= scale <= 1.2
        np.testing.assert_allclose(r @ r.T / scale**2, np.eye(3), atol=1e-9)
        np.testing.assert_allclose(r[2], [0, 0, scale], atol=1e-9)  # rotation about z: scans stay upright
        assert (np.abs(t[:3, 3]) <= 0.5).all()
        np.testing.assert_allclose(frame.view_points(), frame.points @ r.T + t[:3, 3], atol=1e-4)
    assert not np.allclose(transforms[0], transforms[1])
    np.testing.assert_array_equal(aug.frames[0].points, composed.frames[0].points)


def test_discard_then_clear_error(composed):
    stats = {}
    with pytest.raises(AugmentationError, match="room.*3 tries"):
        augment_sequence(composed, 0, AugmentOptions(min_kept_fraction=0.99, max_tries=3), stats=stats)
    assert stats == {"tries": 3, "discarded": 3}


@pytest.mark.parametrize("options", [None, AugmentOptions(chunk_count=(2, 3), view_rotation="so3")])
def test_fused_path_equals_compose_then_augment(room, chair, options):
    traj = sample_trajectory(room, chair, rng=5)
    a = augment_sequence(compose_sequence(room, chair, traj), 11, options)
    b = augment_composed(room, chair, traj, 11, options)
    np.testing.assert_array_equal(a.chunks, b.chunks)
    for fa, fb in zip(a.frames, b.frames, strict=True):
        np.testing.assert_array_equal(fa.points, fb.points)
        np.testing.assert_array_equal(fa.keys, fb.keys)
        np.testing.assert_array_equal(fa.view_transform, fb.view_transform)


def test_augment_deterministic(composed):
    a, b = augment_sequence(composed, 9), augment_sequence(composed, 9)
    for fa, fb in zip(a.frames, b.frames, strict=True):
        np.testing.assert_array_equal(fa.keys, fb.keys)
        np.testing.assert_array_equal(fa.view_transform, fb.view_transform)


@pytest.mark.parametrize("numba", [False, True])
def test_chunk_mask_paths_agree(room, numba, monkeypatch):
    """The numba sweep and the numpy lookups give the same mask (and both the brute-force one)."""
    from fourdcontrast.data import kernels

    if numba and not kernels.AVAILABLE:
        pytest.skip("numba not installed")
    monkeypatch.setattr(kernels, "AVAILABLE", numba)
    for seed in range(5):
        chunks = sample_chunks(room.points, seed)
        np.testing.assert_array_equal(chunk_mask(room.points, chunks), _brute_chunk_mask(room.points, chunks))


def test_bounds_match_numpy_columns(room):
    """``bounds`` (one numba sweep when available) equals the column-wise numpy extremes, NaN included."""
    points = room.points[::7].copy()
    expect = (points.min(axis=0).astype(np.float64), points.max(axis=0).astype(np.float64))
    for got, e in zip(bounds(points), expect, strict=True):
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, e)
    points[5, 1] = np.nan
    lo, hi = bounds(points)
    assert np.isnan(lo[1]) and np.isnan(hi[1]) and np.isfinite(lo[[0, 2]]).all()


def test_fused_path_same_with_and_without_numba(room, chair, monkeypatch):
    """The one-sweep kept-point composition gives the frames ``compose_frame`` gives, dtypes included."""
    from fourdcontrast.data import kernels

    traj = sample_trajectory(room, chair, rng=5)
    a = augment_composed(room, chair, traj, 11)
    monkeypatch.setattr(kernels, "AVAILABLE", False)
    b = augment_composed(room, chair, traj, 11)
    for fa, fb in zip(a.frames, b.frames, strict=True):
        for x, y in ((fa.points, fb.points), (fa.source, fb.source), (fa.index, fb.index)):
            assert x.dtype == y.dtype and x.flags.c_contiguous
            np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(fa.object_pose, fb.object_pose)


@pytest.mark.parametrize("bad", [
    {"chunk_count": (15, 5)}, {"chunk_size": (-0.1, 0.2)}, {"resample_fraction": (0.5, 1.5)},
    {"min_kept_fraction": 1.5}, {"max_tries": 0}, {"view_rotation": "xyz"}, {"view_translation": -1.0},
])
def test_augment_options_reject_bad_values(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        AugmentOptions(**bad)
    assert AugmentOptions().chunk_count == (5, 15) and AugmentOptions().min_kept_fraction == 0.5


def test_crop_sequence_keeps_one_box_around_the_moving_object(composed):
    """data.crop_size: every frame keeps exactly the points inside the same (x, y) square, centred on the
    moving object's centroid over the frames; the object stays, heights are all kept, poses unchanged."""
    from fourdcontrast.data.augment import crop_sequence

    size = 1.5
    before = [(f.points.copy(), f.keys.copy()) for f in composed.frames]
    cropped = crop_sequence(composed, size)
    moving = np.concatenate([f.points[f.source == SOURCE_OBJECT] for f in composed.frames]).astype(np.float64)
    centre = moving.mean(axis=0)[:2]
    for f, c in zip(composed.frames, cropped.frames, strict=True):
        inside = (np.abs(f.points[:, :2] - centre.astype(np.float32)) <= size / 2).all(axis=1)
        assert 0 < inside.sum() < len(f)  # the room is larger than the crop
        np.testing.assert_array_equal(c.points, f.points[inside])
        np.testing.assert_array_equal(c.keys, f.keys[inside])
        np.testing.assert_array_equal(c.view_transform, f.view_transform)
        assert (c.source == SOURCE_OBJECT).sum() > 0
        assert np.ptp(c.points[:, 2]) > 2.0  # floor to ceiling kept (no vertical crop)
        assert (np.ptp(c.points[:, :2], axis=0) <= size + 1e-5).all()
    # a scene point is in every frame's crop or in none (same box; composed frames hold every scene point)
    scene_keys = [set(c.keys[c.source == SOURCE_SCENE].tolist()) for c in cropped.frames]
    assert all(k == scene_keys[0] for k in scene_keys)
    for f, (points, keys) in zip(composed.frames, before, strict=True):  # the input is not modified
        np.testing.assert_array_equal(f.points, points)
        np.testing.assert_array_equal(f.keys, keys)
    with pytest.raises(ValueError, match="crop size"):
        crop_sequence(composed, 0.0)


def test_crop_sequence_without_object_points_centres_on_the_first_frame(composed):
    from fourdcontrast.data.augment import crop_sequence, subset_frame

    static = composed.__class__(
        frames=[subset_frame(f, f.source == SOURCE_SCENE) for f in composed.frames],
        scene=composed.scene, obj=composed.obj)
    cropped = crop_sequence(static, 2.0)
    lo, hi = bounds(static.frames[0].points)
    centre = (lo[:2] + hi[:2]) / 2
    kept = cropped.frames[0].points[:, :2]
    assert len(kept) and (np.abs(kept - centre) <= 1.0 + 1e-5).all()
