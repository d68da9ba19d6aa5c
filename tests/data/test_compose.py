import numpy as np
import pytest

from fourdcontrast.data.compose import compose_sequence
from fourdcontrast.data.trajectory import sample_trajectory
from fourdcontrast.geometry import apply_transform
from fourdcontrast.records import SOURCE_OBJECT, SOURCE_SCENE, ShapeObject


def test_compose_places_object_with_provenance(room, chair):
    traj = sample_trajectory(room, chair, length=4, rng=0)
    seq = compose_sequence(room, chair, traj, seed=7)
    assert len(seq) == 4 and seq.seed == 7 and seq.trajectory is traj
    for t, frame in enumerate(seq.frames):
        assert len(frame) == len(room) + len(chair)
        np.testing.assert_array_equal(frame.view_transform, np.eye(4))
        np.testing.assert_array_equal(frame.object_pose, traj.poses()[t])
        is_obj = frame.source == SOURCE_OBJECT
        np.testing.assert_array_equal(frame.points[~is_obj], room.points[frame.index[~is_obj]])
        assert (frame.source[~is_obj] == SOURCE_SCENE).all()
        expected = apply_transform(chair.points[frame.index[is_obj]], traj.poses()[t])
        np.testing.assert_allclose(frame.points[is_obj], expected, atol=1e-5)
        # the object stands on the floor at the trajectory point
        assert frame.points[is_obj, 2].min() == pytest.approx(traj.height_map.floor_height, abs=1e-5)
        centre = frame.points[is_obj, :2].mean(axis=0)
        assert np.linalg.norm(centre - traj.positions[t, :2]) < chair.radius
        np.testing.assert_array_equal(
            seq.source_points(frame.source[~is_obj], frame.index[~is_obj]), frame.points[~is_obj]
        )


def test_compose_rejects_nan_object(room, chair):
    traj = sample_trajectory(room, chair, rng=0)
    bad = ShapeObject(points=np.where(np.arange(3) == 0, np.nan, chair.points))
    with pytest.raises(ValueError, match="NaN"):
        compose_sequence(room, bad, traj)
