import json
import struct

import numpy as np
import pytest

from fourdcontrast.io.ply import write_ply
from fourdcontrast.sources.classes import CLASS_NAMES, class_id
from fourdcontrast.sources.scannet import read_axis_alignment, read_scannet_scene

NAME = "scene0042_00"


def make_scene(scannet_ply_bytes, folder, rng, n=40, labels_ply=True, aggregation=True, meta=True):
    """Write a small scene in ScanNet's formats; returns its vertices, colours and segment ids."""
    folder.mkdir(parents=True, exist_ok=True)
    v = rng.uniform(0, 3, size=(n, 3)).astype(np.float32)
    c = rng.integers(0, 256, size=(n, 4))
    faces = np.arange(n - n % 3).reshape(-1, 3)
    (folder / f"{NAME}_vh_clean_2.ply").write_bytes(scannet_ply_bytes(v, c, faces))
    segs = np.repeat(np.arange(4) * 10 + 3, n // 4)  # segment ids 3, 13, 23, 33
    if aggregation:
        (folder / f"{NAME}_vh_clean_2.0.010000.segs.json").write_text(
            json.dumps({"sceneId": NAME, "segIndices": segs.tolist()}))
        groups = [
            {"id": 0, "objectId": 0, "label": "wall", "segments": [3]},
            {"id": 1, "objectId": 1, "label": "office chair", "segments": [13]},
            {"id": 2, "objectId": 2, "label": "guitar case", "segments": [23]},
        ]  # segment 33 is in no group
        (folder / f"{NAME}.aggregation.json").write_text(json.dumps({"sceneId": NAME, "segGroups": groups}))
    if labels_ply:
        nyu = np.repeat(np.array([1, 5, 39, 0], dtype=np.uint16), n // 4)
        write_ply(folder / f"{NAME}_vh_clean_2.labels.ply", v, faces, colors=c.astype(np.uint8),
                  vertex_properties={"label": nyu})
    if meta:
        m = np.eye(4)
        m[:3, 3] = [-1.5, 2.0, 0.25]
        (folder / f"{NAME}.txt").write_text(
            "colorHeight = 968\naxisAlignment = " + " ".join(map(str, m.ravel())) + "\nsceneType = Office\n")
    return v, c, segs


def test_full_scene(tmp_path, rng, scannet_ply_bytes):
    v, c, _ = make_scene(scannet_ply_bytes, tmp_path / NAME, rng)
    scene = read_scannet_scene(tmp_path / NAME)
    assert scene.name == NAME and scene.class_names == CLASS_NAMES
    np.testing.assert_allclose(scene.points, v + np.array([-1.5, 2.0, 0.25], dtype=np.float32), atol=1e-6)
    np.testing.assert_allclose(scene.colors, c[:, :3] / 255.0, atol=1e-7)
    expected = [class_id("wall"), class_id("chair"), class_id("other"), -1]
    np.testing.assert_array_equal(scene.labels, np.repeat(expected, 10))
    np.testing.assert_array_equal(scene.instances, np.repeat([0, 1, 2, -1], 10))


def test_labels_from_aggregation_without_labels_ply_and_no_alignment(tmp_path, rng, scannet_ply_bytes):
    v, _, _ = make_scene(scannet_ply_bytes, tmp_path / NAME, rng, labels_ply=False)
    scene = read_scannet_scene(tmp_path / NAME / f"{NAME}_vh_clean_2.ply", align=False)
    np.testing.assert_array_equal(scene.points, v)
    expected = [class_id("wall"), class_id("chair"), class_id("other"), -1]
    np.testing.assert_array_equal(scene.labels, np.repeat(expected, 10))


def test_mesh_only(tmp_path, rng, scannet_ply_bytes):
    make_scene(scannet_ply_bytes, tmp_path / NAME, rng, labels_ply=False, aggregation=False, meta=False)
    scene = read_scannet_scene(tmp_path / NAME)
    assert scene.labels is None and scene.instances is None and scene.class_names is None
    assert len(scene) == 40


def test_axis_alignment_errors(tmp_path):
    p = tmp_path / "s.txt"
    p.write_text("axisAlignment = 1 0 0\n")
    with pytest.raises(ValueError, match=r"s\.txt.*16"):
        read_axis_alignment(p)
    p.write_text("sceneType = Office\n")
    assert read_axis_alignment(p) is None


def test_mismatched_segs_nan_and_missing_mesh(tmp_path, rng, scannet_ply_bytes):
    folder = tmp_path / NAME
    make_scene(scannet_ply_bytes, folder, rng)
    segs = folder / f"{NAME}_vh_clean_2.0.010000.segs.json"
    segs.write_text(json.dumps({"segIndices": [3] * 39}))
    with pytest.raises(ValueError, match=r"segs\.json.*39 segment indices for 40"):
        read_scannet_scene(folder)
    segs.write_text("{not json")
    with pytest.raises(ValueError, match="malformed JSON"):
        read_scannet_scene(folder)
    mesh = folder / f"{NAME}_vh_clean_2.ply"
    data = bytearray(mesh.read_bytes())
    start = data.index(b"end_header\n") + len(b"end_header\n")
    data[start:start + 4] = struct.pack("<f", np.nan)
    mesh.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"vh_clean_2\.ply.*NaN"):
        read_scannet_scene(folder)
    mesh.unlink()
    with pytest.raises(FileNotFoundError, match="mesh missing"):
        read_scannet_scene(folder)
