import numpy as np
import pytest

from fourdcontrast.downstream.splits import (
    LIMITED_POINTS,
    LIMITED_SCENE_FRACTIONS,
    annotation_priority,
    limited_annotations,
    limited_scenes,
    read_scene_list,
    scene_count,
    splitmix64,
)

NAMES = [f"scene{i:04d}_00" for i in range(100)]


def test_scene_count_rule():
    assert [scene_count(100, f) for f in LIMITED_SCENE_FRACTIONS] == [1, 5, 10, 20]
    assert scene_count(3, 0.01) == 1  # at least one scene
    assert scene_count(1201, 0.01) == 12
    with pytest.raises(ValueError):
        scene_count(10, 0.0)


def test_limited_scenes_deterministic_nested_and_order_free():
    subsets = [limited_scenes(NAMES, f, seed=0) for f in LIMITED_SCENE_FRACTIONS]
    assert [len(s) for s in subsets] == [1, 5, 10, 20]
    for small, big in zip(subsets, subsets[1:], strict=False):
        assert set(small) <= set(big)
    assert limited_scenes(list(reversed(NAMES)), 0.1, seed=0) == list(reversed(subsets[2]))
    assert limited_scenes(NAMES, 0.1, seed=1) != subsets[2]
    # the rule is a fixed hash: this value is the same on every machine and numpy version
    assert subsets[0] == ["scene0001_00"]


def test_splitmix64_reference_values():
    # SplitMix64 finaliser of 0 and 1 (reference implementation, wrapping 64-bit arithmetic)
    assert int(splitmix64(np.array([0], dtype=np.uint64))[0]) == 0xE220A8397B1DCDAF
    assert int(splitmix64(np.array([1], dtype=np.uint64))[0]) == 0x910A2DEC89025CC1


def test_limited_annotations_deterministic_nested_and_ignoring_unlabelled():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 1000)
    labels[::3] = -1
    kept = [limited_annotations(labels, n, "scene0000_00", seed=0) for n in LIMITED_POINTS]
    for n, k in zip(LIMITED_POINTS, kept, strict=True):
        assert (k != -1).sum() == n
        assert np.all(k[k != -1] == labels[k != -1])
        assert np.all(labels[k != -1] != -1)
    for small, big in zip(kept, kept[1:], strict=False):
        assert set(np.flatnonzero(small != -1)) <= set(np.flatnonzero(big != -1))
    again = limited_annotations(labels, 20, "scene0000_00", seed=0)
    np.testing.assert_array_equal(again, kept[0])
    assert not np.array_equal(limited_annotations(labels, 20, "scene0001_00", seed=0), kept[0])
    assert labels[0] == -1 and kept[0] is not labels  # input untouched, new array
    few = np.array([-1, 2, -1])
    np.testing.assert_array_equal(limited_annotations(few, 20, "s"), few)
    p = annotation_priority(5, "s", 0)
    assert p.dtype == np.uint64 and len(set(p.tolist())) == 5


def test_read_scene_list(tmp_path):
    f = tmp_path / "list.txt"
    f.write_text("scene0000_00\n\n# comment\nscene0001_00\n")
    assert read_scene_list(f) == ["scene0000_00", "scene0001_00"]
    with pytest.raises(FileNotFoundError):
        read_scene_list(tmp_path / "missing.txt")
