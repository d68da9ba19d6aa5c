"""Round trips between our records and open3d geometry."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("open3d")

from fourdviz import colors as C  # noqa: E402
from fourdviz import o3d as fo3d  # noqa: E402
from fourdviz.correspondences import match_frames  # noqa: E402


def test_point_cloud_round_trip(sequence):
    pcd = fo3d.frame_to_point_cloud(sequence, 2)
    points, colors = fo3d.from_point_cloud(pcd)
    np.testing.assert_allclose(points, sequence.frames[2].points, atol=1e-6)
    np.testing.assert_allclose(colors, C.point_colors(sequence, 2), atol=1e-6)


def test_view_point_cloud_uses_view_transform(sequence):
    points, _ = fo3d.from_point_cloud(fo3d.frame_to_point_cloud(sequence, 1, view=True))
    np.testing.assert_allclose(points, sequence.frames[1].view_points(), atol=1e-5)


def test_scene_round_trip(sequence):
    scene = fo3d.scene_from_point_cloud(fo3d.scene_to_point_cloud(sequence.scene), name="back")
    np.testing.assert_allclose(scene.points, sequence.scene.points, atol=1e-6)
    assert scene.name == "back" and scene.colors.shape == scene.points.shape


def test_correspondence_line_set(sequence):
    ls = fo3d.correspondences_to_line_set(sequence, 0, 1, offset=(5, 0, 0))
    points, lines, colors = fo3d.from_line_set(ls)
    a, b = match_frames(sequence, 0, 1)
    assert lines.shape == (len(a), 2)
    np.testing.assert_allclose(points[lines[:, 0]], sequence.frames[0].points[a], atol=1e-6)
    np.testing.assert_allclose(points[lines[:, 1]], sequence.frames[1].points[b] + [5, 0, 0], atol=1e-5)
    assert np.allclose(colors, C.pair_color(0, 1, len(sequence)))


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="colors"):
        fo3d.to_point_cloud(np.zeros((4, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="start"):
        fo3d.to_line_set(np.zeros((4, 3)), np.zeros((5, 3)))
