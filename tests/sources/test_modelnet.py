import numpy as np
import pytest
import trimesh

from fourdcontrast.io.off import write_off
from fourdcontrast.sources.furniture import CATEGORY_SIZES
from fourdcontrast.sources.modelnet import list_modelnet, load_modelnet, modelnet_category, read_modelnet


def write_modelnet(root, category, index, split="train", scale=37.0):
    """A ModelNet-style OFF with the ``OFF<V> <F> 0`` header quirk, arbitrary units, off-centre."""
    box = trimesh.creation.box(extents=(0.5, 0.6, 1.0))
    path = root / category / split / f"{category}_{index:04d}.off"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_off(path, box.vertices * scale + [100.0, -40.0, 7.0], box.faces, counts_on_header_line=True)
    assert path.read_text().startswith("OFF8 12 0\n")
    return path


def test_read_modelnet_scales_to_category_size(tmp_path):
    path = write_modelnet(tmp_path, "chair", 1)
    obj = read_modelnet(path, rng=0)
    assert len(obj) == 1000 and obj.category == "chair" and obj.name == "chair_0001"
    assert obj.height == pytest.approx(CATEGORY_SIZES["chair"][1], abs=1e-5)
    lo, hi = obj.points.min(0), obj.points.max(0)
    assert lo[2] == pytest.approx(0, abs=1e-6)
    np.testing.assert_allclose((lo[:2] + hi[:2]) / 2, 0, atol=1e-5)
    # Box proportions are kept (uniform scale): 0.5 × 0.6 × 1.0.
    np.testing.assert_allclose((hi - lo) / (hi - lo)[2], [0.5, 0.6, 1.0], atol=0.03)
    np.testing.assert_array_equal(read_modelnet(path, rng=0).points, obj.points)


def test_length_categories_and_custom_sizes(tmp_path):
    path = write_modelnet(tmp_path, "sofa", 3)
    obj = read_modelnet(path, rng=1)
    ext = obj.points.max(0) - obj.points.min(0)
    assert max(ext[0], ext[1]) == pytest.approx(CATEGORY_SIZES["sofa"][1], abs=1e-5)
    small = read_modelnet(path, rng=1, sizes={"sofa": ("height", 0.4)})
    assert small.height == pytest.approx(0.4, abs=1e-5)


def test_category_from_path():
    assert modelnet_category("ModelNet40/night_stand/test/night_stand_0201.off") == "nightstand"
    assert modelnet_category("x/toilet_0001.off") == "toilet"


def test_list_and_load(tmp_path):
    for i in range(3):
        write_modelnet(tmp_path, "chair", i)
    write_modelnet(tmp_path, "night_stand", 0)
    write_modelnet(tmp_path, "table", 0, split="test")
    files = list_modelnet(tmp_path, ("chair", "nightstand", "table"))
    assert [f.name for f in files] == ["chair_0000.off", "chair_0001.off", "chair_0002.off",
                                       "night_stand_0000.off"]
    objs = load_modelnet(tmp_path, ("chair", "nightstand"), limit=2, seed=3)
    assert [o.category for o in objs] == ["chair", "chair", "nightstand"]
    again = load_modelnet(tmp_path, ("chair", "nightstand"), limit=2, seed=3)
    assert all(np.array_equal(a.points, b.points) for a, b in zip(objs, again, strict=True))
    with pytest.raises(FileNotFoundError, match="no .off files"):
        list_modelnet(tmp_path, ("bathtub",))


def test_bad_file_is_skipped_when_loading_but_raises_alone(tmp_path):
    write_modelnet(tmp_path, "desk", 0)
    bad = tmp_path / "desk" / "train" / "desk_0001.off"
    bad.write_text("OFF3 1 0\n0 0 0\n0 0 0\n0 0 0\n3 0 1 2\n")  # zero-area triangle
    with pytest.raises(ValueError, match=r"desk_0001\.off"):
        read_modelnet(bad)
    assert len(load_modelnet(tmp_path, ("desk",))) == 1
