import numpy as np
import pytest
import trimesh

from fourdcontrast.io.mesh import Mesh, read_mesh, read_scene, write_mesh, write_scene

CUBE = trimesh.creation.box(extents=(1.0, 2.0, 3.0))


@pytest.mark.parametrize("suffix", [".ply", ".off", ".obj", ".npz"])
def test_round_trip_by_suffix(tmp_path, suffix):
    mesh = Mesh(CUBE.vertices, CUBE.faces, name="cube")
    path = write_mesh(tmp_path / f"cube{suffix}", mesh)
    back = read_mesh(path)
    np.testing.assert_allclose(back.vertices, mesh.vertices, atol=1e-5)
    np.testing.assert_array_equal(back.faces, mesh.faces)
    assert back.name == "cube"


def test_glb_through_trimesh(tmp_path):
    path = tmp_path / "cube.glb"
    CUBE.export(path)
    mesh = read_mesh(path)
    assert len(mesh.faces) == 12
    np.testing.assert_allclose(mesh.vertices.max(0) - mesh.vertices.min(0), [1, 2, 3], atol=1e-6)


def test_npz_point_cloud_and_scene(tmp_path, rng):
    points = rng.random((100, 3))
    colors = rng.random((100, 3))
    np.savez(tmp_path / "scan.npz", points=points, colors=colors)
    mesh = read_mesh(tmp_path / "scan.npz")
    assert mesh.is_point_cloud and len(mesh.vertices) == 100
    scene = read_scene(tmp_path / "scan.npz")
    np.testing.assert_allclose(scene.points, points, rtol=1e-6)
    np.testing.assert_allclose(scene.colors, colors, rtol=1e-6)
    assert scene.name == "scan"


def test_nan_coordinates_are_rejected(tmp_path):
    v = CUBE.vertices.copy()
    v[3, 1] = np.nan
    for suffix in (".ply", ".off", ".npz"):
        path = write_mesh(tmp_path / f"nan{suffix}", Mesh(v, CUBE.faces))
        with pytest.raises(ValueError, match=rf"nan\{suffix}.*NaN.*vertex 3"):
            read_mesh(path)


def test_empty_mesh_unknown_suffix_missing_file(tmp_path):
    (tmp_path / "empty.off").write_text("OFF\n0 0 0\n")
    with pytest.raises(ValueError, match=r"empty\.off.*empty mesh"):
        read_mesh(tmp_path / "empty.off")
    np.savez(tmp_path / "nokeys.npz", stuff=np.zeros(3))
    with pytest.raises(ValueError, match="neither 'vertices' nor 'points'"):
        read_mesh(tmp_path / "nokeys.npz")
    (tmp_path / "a.xyz").write_text("0 0 0\n")
    with pytest.raises(ValueError, match="unknown mesh format"):
        read_mesh(tmp_path / "a.xyz")
    with pytest.raises(FileNotFoundError, match="gone"):
        read_mesh(tmp_path / "gone.ply")
    (tmp_path / "broken.obj").write_text("v 0 0\nf 1 2 9\n")
    with pytest.raises(ValueError, match=r"broken\.obj"):
        read_mesh(tmp_path / "broken.obj")


@pytest.mark.parametrize("suffix", [".ply", ".npz"])
def test_scene_round_trip_with_labels(tmp_path, suffix):
    from fourdcontrast.records import Scene
    from fourdcontrast.sources.classes import CLASS_NAMES

    rng = np.random.default_rng(2)
    scene = Scene(rng.random((50, 3)), colors=rng.random((50, 3)), labels=rng.integers(-1, 12, 50),
                  instances=rng.integers(-1, 9, 50), name="s", class_names=CLASS_NAMES)
    back = read_scene(write_scene(tmp_path / f"s{suffix}", scene))
    np.testing.assert_array_equal(back.points, scene.points)
    np.testing.assert_array_equal(back.labels, scene.labels)
    np.testing.assert_array_equal(back.instances, scene.instances)
    np.testing.assert_allclose(back.colors, scene.colors, atol=1 / 255 if suffix == ".ply" else 0)
    if suffix == ".npz":
        assert back.class_names == CLASS_NAMES
    with pytest.raises(ValueError, match="cannot write a scene"):
        write_scene(tmp_path / "s.obj", scene)
