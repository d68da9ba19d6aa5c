import argparse
import json

import numpy as np
import pytest

from fourdcontrast.data.generate import (
    GenerationConfig,
    SceneSpec,
    add_cli_arguments,
    load_object,
    load_objects,
    load_scene,
    run_cli,
    run_generation,
    unit_seed,
)
from fourdcontrast.data.shards import Shard
from fourdcontrast.data.synthetic import synthetic_room
from fourdcontrast.sources.furniture import CATEGORY_SIZES

TRAJECTORIES = 3


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    for i in range(3):
        scene = synthetic_room(i, size=(5.0 + 0.3 * i, 4.0, 2.4), spacing=0.05, ceiling=bool(i % 2))
        np.savez(root / f"room{i}.npz", points=scene.points)
    return root


@pytest.fixture(scope="module")
def specs(scene_dir):
    return [SceneSpec("file", str(p)) for p in sorted(scene_dir.glob("*.npz"))]


@pytest.fixture(scope="module")
def objects():
    return load_objects("default")


@pytest.fixture(scope="module")
def config():
    return GenerationConfig(trajectories_per_scene=TRAJECTORIES, length=4, seed=5)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, specs, objects, config):
    out = tmp_path_factory.mktemp("reference")
    manifest = run_generation(specs, objects, out, config)
    return out, manifest


def _shard_arrays(path):
    with np.load(path) as d:
        return {k: d[k] for k in d.files}


def _assert_same_output(a, b):
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    assert ma["units"] == mb["units"] and ma["totals"] == mb["totals"]
    for unit in ma["units"].values():
        xa, xb = _shard_arrays(a / unit["shard"]), _shard_arrays(b / unit["shard"])
        assert xa.keys() == xb.keys()
        for k in xa:
            np.testing.assert_array_equal(xa[k], xb[k], err_msg=k)


def test_generation_output_and_manifest(reference, specs):
    out, manifest = reference
    totals = manifest["totals"]
    assert (
        totals["units_done"] == len(specs)
        and totals["sequences"] + totals["failed"] == len(specs) * TRAJECTORIES
    )
    assert totals["sequences"] >= len(specs) * TRAJECTORIES - 1
    assert 0 <= totals["discard_rate"] < 1
    assert manifest["parameters"]["seed"] == 5 and "SeedSequence" in manifest["seeds"]
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))
    seeds = set()
    for i, unit in manifest["units"].items():
        shard = Shard(out / unit["shard"])
        assert len(shard) == unit["sequences"]
        for k in range(len(shard)):
            seq = shard[k]
            seeds.add(seq.seed)
            assert len(seq) == 4 and seq.chunks is not None
        assert unit_seed(5, int(i), 0) in seeds | {None} or unit["failed"] > 0
    assert len(seeds) == manifest["totals"]["sequences"]


def test_resume_after_interruption_equals_uninterrupted(tmp_path, reference, specs, objects, config):
    out = tmp_path / "run"

    def crash(index, counts):
        raise KeyboardInterrupt("simulated interruption")

    with pytest.raises(KeyboardInterrupt):
        run_generation(specs, objects, out, config, on_unit=crash)
    partial = json.loads((out / "manifest.json").read_text())
    assert partial["totals"]["units_done"] == 1
    with pytest.raises(ValueError, match="--resume"):
        run_generation(specs, objects, out, config)
    # a shard renamed into place whose manifest entry was lost is regenerated, not duplicated
    partial["units"] = {}
    (out / "manifest.json").write_text(json.dumps(partial))
    run_generation(specs, objects, out, config, resume=True)
    _assert_same_output(reference[0], out)
    assert len(list(out.glob("shard_*.npz"))) == len(specs)


def test_resume_rejects_other_parameters(tmp_path, specs, objects, config):
    run_generation(specs[:1], objects, tmp_path, config)
    other = GenerationConfig(trajectories_per_scene=TRAJECTORIES, length=4, seed=6)
    with pytest.raises(ValueError, match="other parameters"):
        run_generation(specs[:1], objects, tmp_path, other, resume=True)


def test_workers_do_not_change_the_output(tmp_path, reference, specs, objects, config):
    run_generation(specs, objects, tmp_path, config, workers=2)
    _assert_same_output(reference[0], tmp_path)


def test_cli(tmp_path, scene_dir):
    parser = argparse.ArgumentParser()
    add_cli_arguments(parser)
    args = parser.parse_args(
        ["--scenes", str(scene_dir), "--trajectories-per-scene", "1", "--out", str(tmp_path / "o")]
    )
    assert run_cli(args) == 0
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["totals"]["units_done"] == 3
    bad = parser.parse_args(["--scenes", str(tmp_path / "missing"), "--out", str(tmp_path / "p")])
    assert run_cli(bad) == 1


def test_bad_scene_file_names_the_file(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="broken.npz"):
        load_scene(path)
    np.savez(tmp_path / "nopoints.npz", colors=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="nopoints.npz.*points"):
        load_scene(tmp_path / "nopoints.npz")


def test_load_ply_scene_and_mesh_object(tmp_path):
    import trimesh

    scene = synthetic_room(0, size=(3.0, 2.5, 2.4), spacing=0.1)
    trimesh.PointCloud(scene.points).export(tmp_path / "room.ply")
    loaded = load_scene(tmp_path / "room.ply")
    np.testing.assert_allclose(loaded.points, scene.points, atol=1e-6)
    assert loaded.name == "room"
    (tmp_path / "chair").mkdir()
    trimesh.creation.box(extents=(0.4, 0.5, 0.9)).export(tmp_path / "chair" / "box.obj")
    obj = load_object(tmp_path / "chair" / "box.obj")
    assert len(obj) == 1000 and obj.category == "chair"
    assert obj.points[:, 2].min() == pytest.approx(0.0, abs=1e-6)
    # objects come at a plausible real size for their category (sources.CATEGORY_SIZES: chair 0.85 m tall)
    assert CATEGORY_SIZES["chair"] == ("height", 0.85)
    assert obj.height == pytest.approx(0.85, abs=1e-3)
    lo, hi = obj.points[:, :2].min(axis=0), obj.points[:, :2].max(axis=0)
    np.testing.assert_allclose(lo + hi, 0.0, atol=1e-6)
    again = load_object(tmp_path / "chair" / "box.obj")
    np.testing.assert_array_equal(obj.points, again.points)


def test_a_generation_folder_is_refused_or_overwritten(tmp_path, scene_dir, specs, objects, config, capsys):
    import hashlib

    from fourdcontrast.cli import main

    out = tmp_path / "gen"
    run_generation(specs[:1], objects, out, config)
    capsys.readouterr()  # its progress bar

    def content():
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())}

    before = content()
    args = ["generate", "--scenes", str(scene_dir), "--trajectories-per-scene", "1", "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("fourdcontrast: error: ")
    assert str(out) in err and "1 of 1 scenes done" in err and "--resume" in err and "--overwrite" in err
    assert content() == before  # nothing changed, by content
    (out / "shard_000099.npz").write_bytes(b"a shard of the old run")
    manifest = run_generation(specs[:2], objects, out, config, overwrite=True)
    assert manifest["totals"]["units_done"] == 2 and not (out / "shard_000099.npz").exists()
    with pytest.raises(ValueError, match="exclude each other"):
        run_generation(specs[:2], objects, out, config, resume=True, overwrite=True)
