import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fourdcontrast.io.mesh import mesh_from_ply
from fourdcontrast.io.ply import read_ply, write_ply


def test_reads_scannet_format_binary(tmp_path, rng, scannet_ply_bytes):
    v = rng.normal(size=(6, 3)).astype(np.float32)
    c = rng.integers(0, 256, size=(6, 4))
    f = np.array([[0, 1, 2], [3, 4, 5], [0, 2, 4]])
    path = tmp_path / "scene_vh_clean_2.ply"
    path.write_bytes(scannet_ply_bytes(v, c, f))
    ply = read_ply(path)
    assert ply.format == "binary_little_endian"
    assert ply.comments == ["VCGLIB generated"]
    np.testing.assert_array_equal(np.stack([ply["vertex"][k] for k in "xyz"], 1), v)
    np.testing.assert_array_equal(ply["vertex"]["alpha"], c[:, 3])
    np.testing.assert_array_equal(ply["face"]["vertex_indices"], f)
    mesh = mesh_from_ply(path)
    np.testing.assert_allclose(mesh.colors, c[:, :3] / 255.0, atol=1e-7)


def test_big_endian_and_mixed_polygons(tmp_path):
    header = ("ply\nformat binary_big_endian 1.0\nelement vertex 4\nproperty double x\nproperty double y\n"
              "property double z\nelement face 2\nproperty list uchar int vertex_index\nend_header\n")
    body = b"".join(struct.pack(">ddd", *p) for p in [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)])
    body += struct.pack(">Biiii", 4, 0, 1, 2, 3) + struct.pack(">Biii", 3, 0, 2, 3)
    path = tmp_path / "be.ply"
    path.write_bytes(header.encode() + body)
    ply = read_ply(path)
    faces = ply["face"]["vertex_index"]
    assert faces.dtype == object and list(faces[0]) == [0, 1, 2, 3] and list(faces[1]) == [0, 2, 3]
    mesh = mesh_from_ply(path)
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3], [0, 2, 3]])
    assert mesh.vertices[2].tolist() == [1.0, 1.0, 0.0]


@pytest.mark.parametrize("binary", [True, False])
def test_write_read_round_trip(tmp_path, rng, binary):
    v = rng.normal(size=(20, 3))
    faces = rng.integers(0, 20, size=(7, 3))
    labels = rng.integers(0, 41, size=20).astype(np.uint16)
    path = write_ply(tmp_path / "a.ply", v, faces, colors=rng.random((20, 3)),
                     vertex_properties={"label": labels}, binary=binary)
    ply = read_ply(path)
    np.testing.assert_allclose(np.stack([ply["vertex"][k] for k in "xyz"], 1), v, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(ply["vertex"]["label"], labels)
    np.testing.assert_array_equal(ply["face"]["vertex_indices"], faces)
    assert [p.name for p in tmp_path.iterdir()] == ["a.ply"]  # no temporary file left


@settings(max_examples=25, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 30), st.just(3)),
              elements=st.floats(-1e4, 1e4, width=32)))
def test_round_trip_property(tmp_path_factory, points):
    path = write_ply(tmp_path_factory.mktemp("p") / "p.ply", points)
    ply = read_ply(path)
    np.testing.assert_array_equal(np.stack([ply["vertex"][k] for k in "xyz"], 1), points)


def test_truncated_file_is_rejected(tmp_path, rng, scannet_ply_bytes):
    path = tmp_path / "t.ply"
    data = scannet_ply_bytes(rng.normal(size=(50, 3)), rng.integers(0, 256, (50, 4)), [[0, 1, 2]] * 10)
    path.write_bytes(data[: len(data) - 300])
    with pytest.raises(ValueError, match=r"t\.ply.*truncated"):
        read_ply(path)


def test_wrong_header_and_missing_file(tmp_path):
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"plx\nformat ascii 1.0\nend_header\n")
    with pytest.raises(ValueError, match=r"bad\.ply.*'ply'"):
        read_ply(bad)
    bad.write_bytes(b"ply\nformat binary_middle_endian 1.0\nend_header\n")
    with pytest.raises(ValueError, match="unknown format"):
        read_ply(bad)
    bad.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\n")
    with pytest.raises(ValueError, match="end_header"):
        read_ply(bad)
    with pytest.raises(FileNotFoundError, match="nothere"):
        read_ply(tmp_path / "nothere.ply")
