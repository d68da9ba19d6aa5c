import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fourdcontrast.geometry import (
    apply_transform,
    random_rotation,
    rotation_matrix,
    rotation_z,
    sample_surface,
    similarity,
)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_random_rotation_is_orthonormal(seed):
    r = random_rotation(seed)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) > 0.999


@settings(max_examples=30, deadline=None)
@given(st.floats(-7, 7))
def test_rotation_z_matches_axis_angle(yaw):
    np.testing.assert_allclose(rotation_z(yaw), rotation_matrix([0, 0, 1], yaw), atol=1e-12)


def test_similarity_scales_distances():
    t = similarity(rotation_z(0.3), [1, 2, 3], scale=1.5)
    p = np.random.default_rng(0).normal(size=(10, 3))
    q = apply_transform(p, t)
    np.testing.assert_allclose(np.linalg.norm(q[0] - q[1]), 1.5 * np.linalg.norm(p[0] - p[1]), rtol=1e-5)


def test_sample_surface_is_area_weighted_and_on_surface():
    # two unit squares in z=0 and x=0, the second twice as large
    v = np.array(
        [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0], [0, 2, 0], [0, 2, 1], [0, 0, 1]], float
    )
    f = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    pts, normals, face = sample_surface(v, f, 30000, rng=1)
    on_floor = np.isclose(pts[:, 2], 0, atol=1e-6)
    on_wall = np.isclose(pts[:, 0], 0, atol=1e-6)
    assert np.all(on_floor | on_wall)
    assert abs(on_wall.mean() - 2 / 3) < 0.02
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1, rtol=1e-5)
