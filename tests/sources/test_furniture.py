import json

import numpy as np
import pytest
import trimesh
from hypothesis import given, settings
from hypothesis import strategies as st

from fourdcontrast.geometry import rotation_matrix
from fourdcontrast.io.mesh import Mesh, write_mesh
from fourdcontrast.records import ShapeObject
from fourdcontrast.sources.classes import OBJECT_CATEGORIES
from fourdcontrast.sources.furniture import (
    CATEGORY_SIZES,
    FURNITURE_DIR,
    MAX_OBJECT_RADIUS,
    default_objects,
    furniture_catalog,
    load_furniture,
    normalize_mesh,
    read_object,
    sample_object,
    up_rotation,
)

ASSET_BUDGET_BYTES = 12 * 1024 * 1024


def test_shipped_set_covers_the_paper_classes_except_bathtub():
    catalog = furniture_catalog()
    categories = {e["category"] for e in catalog}
    assert set(OBJECT_CATEGORIES) - categories == {"bathtub"}
    assert {"bed", "monitor"} <= categories
    assert all(e["license"] == "CC0-1.0" and "BlendSwap-CC-0.sh3f" in e["source"] for e in catalog)
    provenance = (FURNITURE_DIR / "PROVENANCE.md").read_text()
    assert "CC0" in provenance and "No bathtub" in provenance
    assert all(e["id"] in provenance for e in catalog)


def test_assets_fit_the_budget():
    size = sum(p.stat().st_size for p in FURNITURE_DIR.parent.rglob("*") if p.is_file())
    assert size <= ASSET_BUDGET_BYTES


def test_loaded_pieces_are_canonical_and_real_size():
    catalog = {e["id"]: e for e in furniture_catalog()}
    pieces = load_furniture()
    assert len(pieces) == len(catalog)
    for obj in pieces:
        entry = catalog[obj.name]
        lo, hi = obj.points.min(0), obj.points.max(0)
        assert len(obj) == entry["n_points"] >= 4000
        assert lo[2] == pytest.approx(0, abs=0.01)
        np.testing.assert_allclose((lo[:2] + hi[:2]) / 2, 0, atol=0.02)
        # Samples lie on the surface, so the extent is within a few cm of the catalog size.
        np.testing.assert_allclose(hi - lo, entry["size_m"], atol=0.06)
        np.testing.assert_allclose(np.linalg.norm(obj.normals, axis=1), 1, atol=1e-3)


def test_chair_backrest_is_at_plus_y():
    for chair in load_furniture("chair")[:5]:
        top = chair.points[chair.points[:, 2] > 0.8 * chair.height]
        assert top[:, 1].mean() > 0, chair.name


def test_category_filter_and_missing_category():
    assert {o.category for o in load_furniture(["toilet", "desk"])} == {"toilet", "desk"}
    with pytest.raises(ValueError, match="no shipped furniture of category 'bathtub'"):
        load_furniture("bathtub")


def test_sample_object_is_deterministic_and_1000_points():
    chair = load_furniture("chair")[0]
    a, b = sample_object(chair, rng=5), sample_object(chair, rng=5)
    assert len(a) == 1000 and a.category == "chair" and a.name == chair.name
    np.testing.assert_array_equal(a.points, b.points)
    assert not np.array_equal(a.points, sample_object(chair, rng=6).points)
    assert a.points[:, 2].min() == pytest.approx(0, abs=1e-6)
    assert a.normals.shape == (1000, 3)


def test_default_objects_skips_bathtub_and_huge_pieces():
    objs = default_objects(seed=1)
    assert {o.category for o in objs} == set(OBJECT_CATEGORIES) - {"bathtub"}
    assert all(len(o) == 1000 for o in objs)
    assert max(o.radius for o in objs) <= MAX_OBJECT_RADIUS + 0.01
    assert len(default_objects(seed=1, max_radius=None)) > len(objs)
    again = default_objects(seed=1)
    assert all(np.array_equal(a.points, b.points) for a, b in zip(objs, again, strict=True))


def test_sweet_home_obj_in_centimetres_y_up(tmp_path):
    # A 40 × 50 × 90 cm box, y up: width x, height y, depth z.
    box = trimesh.creation.box(extents=(40.0, 90.0, 50.0))
    path = write_mesh(tmp_path / "piece.obj", Mesh(box.vertices + [0, 45, 0], box.faces))
    obj = read_object(path, "chair", up_axis="y", scale=0.01, rng=0)
    ext = obj.points.max(0) - obj.points.min(0)
    np.testing.assert_allclose(ext, [0.4, 0.5, 0.9], atol=0.02)


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(sorted(CATEGORY_SIZES)), st.floats(0.01, 100.0), st.sampled_from(["x", "-y", "z"]),
       st.floats(-np.pi, np.pi))
def test_normalize_mesh_gives_the_category_size(category, scale, up_axis, yaw):
    box = trimesh.creation.box(extents=(0.7, 0.4, 1.0))
    # Build the box upright, turn it about z, then tip it so that ``up_axis`` is its up.
    v = box.vertices @ rotation_matrix([0, 0, 1], yaw).T
    v = v @ up_rotation(up_axis) * scale  # inverse of the up rotation (orthogonal)
    mesh = normalize_mesh(Mesh(v, box.faces), category, up_axis=up_axis)
    ext = mesh.vertices.max(0) - mesh.vertices.min(0)
    kind, metres = CATEGORY_SIZES[category]
    assert (ext[2] if kind == "height" else max(ext[:2])) == pytest.approx(metres, rel=1e-6)
    assert mesh.vertices[:, 2].min() == pytest.approx(0, abs=1e-9)
    assert np.argmax(ext) == 2 or kind == "length"  # the tall side stands up


def test_up_axis_errors():
    with pytest.raises(ValueError, match="unknown up axis 'w'"):
        up_rotation("w")


def test_sample_object_from_mesh_and_point_cloud():
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    obj = sample_object(Mesh(box.vertices, box.faces), n=500, rng=0, category="cube")
    assert len(obj) == 500 and obj.category == "cube"
    cloud = sample_object(ShapeObject(np.random.default_rng(0).random((50, 3))), n=80, rng=0)
    assert len(cloud) == 80  # more than available: drawn with replacement


def test_index_json_is_valid_json():
    data = json.loads((FURNITURE_DIR / "index.json").read_text())
    assert data["license"] == "CC0-1.0" and len(data["sh3f_sha256"]) == 64
