import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fourdcontrast.data.synthetic import synthetic_box_object
from fourdcontrast.data.trajectory import (
    candidate_positions,
    compute_height_map,
    nearest_candidate_lookup,
    sample_trajectory,
    turn_angles,
)
from fourdcontrast.records import Scene, ShapeObject


def _valid_at(hm, xy):
    cells = hm.cells_of(np.atleast_2d(xy))
    inside = ((cells >= 0) & (cells < hm.shape)).all(axis=1)
    out = np.zeros(len(cells), bool)
    out[inside] = hm.valid[cells[inside, 0], cells[inside, 1]]
    return out


def test_height_map_room_with_ceiling_and_table(room):
    hm = compute_height_map(room)
    assert abs(hm.floor_height) < 0.01
    # open floor valid, under the table top (0.72 m, inside the table's legs) invalid, outside invalid
    assert _valid_at(hm, [[2.5, 2.0], [3.5, 3.0], [0.3, 0.3]]).all()
    assert not _valid_at(hm, [[1.2, 1.0], [1.0, 0.9]]).any()
    assert not _valid_at(hm, [[-0.05, 1.0], [4.05, 1.0], [-0.5, 1.0], [4.5, 1.0]]).any()
    # free floor columns accumulate exactly one voxel; the table columns more (floor + top)
    cells = hm.cells_of(np.array([[2.5, 2.0], [1.2, 1.0]]))
    acc = hm.accumulation[cells[:, 0], cells[:, 1]]
    assert acc[0] == 1 and acc[1] >= 2
    # valid cells: top of the accumulated voxels within 20 cm of the floor
    assert (hm.max_height[hm.valid & (hm.accumulation > 0)] <= hm.floor_height + 0.20 + 1e-6).all()
    # most of the 4 x 3.5 m floor minus the 1.2 x 0.8 m table is valid
    area = hm.valid.sum() * hm.cell_size**2
    assert 10.0 < area < 4.0 * 3.5


def test_ceiling_does_not_invalidate_floor(room, open_room):
    with_ceiling, without = compute_height_map(room), compute_height_map(open_room)
    assert with_ceiling.valid.sum() > 1000
    np.testing.assert_array_equal(with_ceiling.valid, without.valid)


def test_messy_room_tilt_holes_clutter_overhang(messy_room):
    hm = compute_height_map(messy_room)
    assert 0.0 < hm.floor_height < 0.025  # tilted 0 → 2.5 cm across the room
    assert _valid_at(hm, [[3.0, 2.5]]).all(), "a hole in the floor scan stays valid"
    assert not _valid_at(hm, [[3.4, 0.5]]).any(), "clutter on the floor is invalid"
    assert _valid_at(hm, [[0.7, 3.2]]).all(), "an overhang at 1.9 m (above the clearance) keeps the floor"
    assert _valid_at(hm, [[0.3, 1.0], [3.7, 1.0]]).all(), "both ends of the tilted floor are valid"


def test_no_floor_raises(walls_only):
    with pytest.raises(ValueError, match="walls_only.*no usable floor"):
        compute_height_map(walls_only)


def test_nan_and_empty_raise(room):
    pts = room.points.copy()
    pts[5, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        compute_height_map(Scene(points=pts, name="bad"))
    with pytest.raises(ValueError, match="no points"):
        compute_height_map(Scene(points=np.zeros((0, 3)), name="empty"))
    obj = ShapeObject(points=np.full((10, 3), np.nan))
    with pytest.raises(ValueError, match="NaN"):
        sample_trajectory(room, obj, rng=0)


def test_object_larger_than_room_raises(room):
    huge = synthetic_box_object(0, size=(5.0, 5.0, 1.0))
    with pytest.raises(ValueError, match="does not fit"):
        sample_trajectory(room, huge, rng=0)


def test_candidates_keep_bounding_circle_inside_valid(room, chair):
    hm = candidate_positions(compute_height_map(room), chair.radius)
    assert hm.candidates.any() and not (hm.candidates & ~hm.valid).any()
    centres = hm.cell_centers(np.argwhere(hm.candidates))
    angles = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    for r in (0.0, 0.5 * chair.radius, chair.radius * 0.999):
        ring = centres[:, None, :] + r * np.stack([np.cos(angles), np.sin(angles)], -1)[None]
        assert _valid_at(hm, ring.reshape(-1, 2)).all()
    # a smaller object has more candidates
    assert candidate_positions(hm, 0.1).candidates.sum() > hm.candidates.sum()


def _check_trajectory(traj, hm, length, step_range, max_turn_deg):
    assert traj.positions.shape == (length, 3) and traj.yaws.shape == (length,)
    steps = traj.step_lengths
    # the sampler accepts a step only after snapping to a candidate cell centre: exact bounds
    assert (steps >= step_range[0] - 1e-9).all() and (steps <= step_range[1] + 1e-9).all()
    assert (np.rad2deg(turn_angles(traj.positions)) < max_turn_deg).all()
    cells = hm.cells_of(traj.positions[:, :2])
    assert traj.height_map.candidates[cells[:, 0], cells[:, 1]].all()
    np.testing.assert_allclose(hm.cell_centers(cells), traj.positions[:, :2], atol=1e-9)
    np.testing.assert_allclose(traj.positions[:, 2], hm.floor_height)


def test_trajectory_constraints(messy_room, chair):
    hm = compute_height_map(messy_room)
    for seed in range(25):
        traj = sample_trajectory(messy_room, chair, length=6, rng=seed, height_map=hm)
        _check_trajectory(traj, hm, 6, (0.30, 0.90), 150.0)
        assert traj.object_radius == pytest.approx(chair.radius)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    lo=st.floats(0.1, 0.6),
    span=st.floats(0.1, 0.6),
    turn=st.floats(30.0, 180.0),
    length=st.integers(1, 6),
)
def test_trajectory_constraints_property(room, chair, seed, lo, span, turn, length):
    hm = candidate_positions(compute_height_map(room), chair.radius)
    lookup = nearest_candidate_lookup(hm)
    try:
        traj = sample_trajectory(
            room, chair, length, seed, (lo, lo + span), turn, height_map=hm, lookup=lookup
        )
    except ValueError as exc:  # legitimately impossible combinations must say so
        assert "could not sample a trajectory" in str(exc)
        return
    _check_trajectory(traj, hm, length, (lo, lo + span), turn)


def test_trajectory_deterministic(room, chair):
    a = sample_trajectory(room, chair, rng=42)
    b = sample_trajectory(room, chair, rng=np.random.default_rng(42))
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.yaws, b.yaws)
    c = sample_trajectory(room, chair, rng=43)
    assert not np.array_equal(a.positions, c.positions)


def test_yaw_modes(room, chair):
    hm = compute_height_map(room)
    for seed in range(10):
        t = sample_trajectory(
            room, chair, length=5, rng=seed, height_map=hm, yaw_mode="heading", max_yaw_step_deg=10
        )
        d = np.diff(t.positions[:, :2], axis=0)
        heading = np.arctan2(d[:, 1], d[:, 0])
        diff = np.angle(np.exp(1j * (t.yaws[:-1] - heading)))
        assert (np.abs(diff) <= np.deg2rad(10) + 1e-9).all()
        r = sample_trajectory(room, chair, length=5, rng=seed, height_map=hm, max_yaw_step_deg=20)
        step = np.angle(np.exp(1j * np.diff(r.yaws)))
        assert (np.abs(step) <= np.deg2rad(20) + 1e-9).all()
    with pytest.raises(ValueError, match="yaw_mode"):
        sample_trajectory(room, chair, rng=0, height_map=hm, yaw_mode="spin")
