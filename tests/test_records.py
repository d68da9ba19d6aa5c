import numpy as np
import pytest

from fourdcontrast.records import SOURCE_OBJECT, SOURCE_SCENE, Frame, Scene, Sequence, ShapeObject


def test_scene_rejects_wrong_shapes():
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        Scene(points=np.zeros((4, 2)))
    with pytest.raises(ValueError, match="labels has 3 entries for 4 points"):
        Scene(points=np.zeros((4, 3)), labels=np.zeros(3, dtype=int))


def test_object_radius_and_height():
    obj = ShapeObject(points=np.array([[3.0, 4.0, 0.0], [0.0, -1.0, 2.0]]))
    assert obj.radius == pytest.approx(5.0)
    assert obj.height == pytest.approx(2.0)


def test_frame_view_points_and_keys():
    frame = Frame(points=np.eye(3), source=[0, 1, 0], index=[5, 5, 7])
    t = np.eye(4)
    t[:3, :3] *= 2.0
    t[:3, 3] = [1.0, 0.0, 0.0]
    frame.view_transform = t
    np.testing.assert_allclose(frame.view_points(), 2 * np.eye(3) + [1, 0, 0])
    assert len(set(frame.keys.tolist())) == 3


def test_sequence_source_points():
    scene = Scene(points=np.arange(12, dtype=np.float32).reshape(4, 3))
    obj = ShapeObject(points=-np.ones((2, 3)))
    seq = Sequence(frames=[], scene=scene, obj=obj)
    got = seq.source_points(np.array([SOURCE_SCENE, SOURCE_OBJECT]), np.array([2, 1]))
    np.testing.assert_array_equal(got, [[6, 7, 8], [-1, -1, -1]])
