import numpy as np
import pytest

from fourdcontrast.data import make_sequence
from fourdcontrast.data.augment import AugmentationError, AugmentOptions
from fourdcontrast.data.trajectory import candidate_positions, compute_height_map, nearest_candidate_lookup


def test_make_sequence_deterministic_and_cached_map_equal(room, chair):
    a = make_sequence(room, chair, 17, seed=17)
    hm = candidate_positions(compute_height_map(room), chair.radius)
    b = make_sequence(
        room, chair, np.random.default_rng(17), height_map=hm, lookup=nearest_candidate_lookup(hm)
    )
    assert a.seed == 17 and len(a) == 4
    np.testing.assert_array_equal(a.trajectory.positions, b.trajectory.positions)
    for fa, fb in zip(a.frames, b.frames, strict=True):
        np.testing.assert_array_equal(fa.points, fb.points)
        np.testing.assert_array_equal(fa.keys, fb.keys)
        np.testing.assert_array_equal(fa.view_transform, fb.view_transform)


def test_make_sequence_gives_up_with_clear_error(room, chair):
    stats = {}
    with pytest.raises(AugmentationError, match="2 trajectories all failed"):
        make_sequence(
            room,
            chair,
            0,
            max_sequence_tries=2,
            augment_options=AugmentOptions(min_scene_fraction=0.99, max_tries=2),
            stats=stats,
        )
    assert stats == {"tries": 4, "discarded": 4}
