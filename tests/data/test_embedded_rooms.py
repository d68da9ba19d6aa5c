"""The trajectory sampler and the whole chain on the embedded procedural rooms (uneven, tilted floors,
clutter, doors, windows; with and without a ceiling) rather than on the tests' synthetic boxes."""

import numpy as np
import pytest

import fourdcontrast as fc
from fourdcontrast.data.trajectory import turn_angles


@pytest.fixture(scope="module")
def chair():
    return next(o for o in fc.default_objects(seed=0) if o.category == "chair")


@pytest.mark.parametrize("seed, ceiling", [(0, False), (1, True), (2, False), (5, True)])
def test_sampler_finds_the_free_floor_of_embedded_rooms(chair, seed, ceiling):
    scene = fc.make_room(np.random.default_rng(seed), ceiling=ceiling)
    floor_z = np.percentile(scene.points[scene.labels == scene.class_names.index("floor"), 2], 50)
    hm = fc.candidate_positions(fc.compute_height_map(scene), chair.radius)
    assert abs(hm.floor_height - floor_z) < 0.05
    # most of the floor class is free floor: the ceiling must not invalidate it
    assert hm.valid.sum() > 0.3 * hm.floor.sum() > 0
    traj = fc.sample_trajectory(scene, chair, length=4, rng=seed, height_map=hm)
    steps = traj.step_lengths
    assert np.all((steps >= 0.30 - 1e-9) & (steps <= 0.90 + 1e-9))
    assert np.all(np.degrees(turn_angles(traj.positions)) < 150.0)
    cells = hm.cells_of(traj.positions[:, :2])
    assert hm.candidates[cells[:, 0], cells[:, 1]].all()
    seq = fc.augment_sequence(fc.compose_sequence(scene, chair, traj), rng=seed)
    assert fc.validity(fc.compose_sequence(scene, chair, traj), seq).ok
