"""Single-view partial scans (``fourdcontrast/downstream/views.py``): the camera, the z-buffer visibility, the
free floor, the views of rooms with their objects' hidden points, the cache, and the amodal boxes that
detection trains on and is scored against.

Mutants tried (each turned a test here red): ``instance.amodal_arrays`` ignoring the hidden points (training
and ground-truth boxes shrink to the visible part); the z-buffer without splats (a wall behind a sparsely
sampled box shows through it); no depth tolerance (a facing wall loses most of its points); the frustum test
on one axis only; ``single_view`` keeping the first candidate pose instead of the one seeing the most objects;
the hidden points taken from every instance instead of the view's objects; the view cache dropping the hidden
points.
"""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fourdcontrast.downstream import views as V
from fourdcontrast.downstream.config import FinetuneConfig
from fourdcontrast.downstream.data import embedded_views
from fourdcontrast.downstream.detection import detection_training_sample
from fourdcontrast.downstream.instance import box_targets, ground_truth_boxes
from fourdcontrast.records import Scene
from fourdcontrast.sources.classes import CLASS_NAMES
from fourdcontrast.sources.rooms import default_scene

NOAUG = {"rotate_z": False, "elastic": None, "tilt_deg": 0.0, "scale": [1.0, 1.0], "translation": 0.0}


def _plane(x: float, size: float, spacing: float, rng) -> np.ndarray:
    """Points of the square {x} × [-size/2, size/2]² (metres) at about ``spacing``, jittered."""
    g = np.arange(-size / 2, size / 2, spacing)
    yy, zz = np.meshgrid(g, g)
    pts = np.stack([np.full(yy.size, x), yy.ravel(), zz.ravel() + 1.0], 1)
    return pts + rng.uniform(-spacing / 3, spacing / 3, pts.shape) * [0, 1, 1]


def _box_surface(centre, half: float, spacing: float) -> np.ndarray:
    g = np.arange(-half, half + 1e-9, spacing)
    a, b = np.meshgrid(g, g)
    a, b = a.ravel(), b.ravel()
    faces = [np.stack([np.full_like(a, s * half), a, b], 1) for s in (-1, 1)]
    faces += [np.stack([a, np.full_like(a, s * half), b], 1) for s in (-1, 1)]
    faces += [np.stack([a, b, np.full_like(a, s * half)], 1) for s in (-1, 1)]
    return np.concatenate(faces) + centre


def _camera(**kw) -> V.Camera:
    return V.Camera(np.array([0.0, 0.0, 1.0]), kw.pop("yaw", 0.0), kw.pop("pitch", 0.0), **kw)


def test_camera_axes_are_right_handed_and_look_along_the_yaw_and_down_by_the_pitch():
    axes = _camera(yaw=np.pi / 2, pitch=0.3).axes()
    np.testing.assert_allclose(axes @ axes.T, np.eye(3), atol=1e-12)
    right, down, forward = axes
    np.testing.assert_allclose(forward, [0, np.cos(0.3), -np.sin(0.3)], atol=1e-12)
    assert down[2] < 0 and abs(right[2]) < 1e-12
    np.testing.assert_allclose(np.cross(right, down), forward, atol=1e-12)  # x right, y down, z forward


def test_a_facing_wall_is_seen_and_what_stands_in_front_of_it_hides_it():
    rng = np.random.default_rng(0)
    wall = _plane(3.0, 1.0, 0.025, rng)
    assert V.visible_mask(wall, _camera()).mean() > 0.95
    slanted = wall - [3.0, 0, 0]
    slanted[:, 0] = slanted[:, 1] * np.tan(np.radians(50)) + rng.normal(0, 0.004, len(wall)) + 3.0
    assert V.visible_mask(slanted, _camera()).mean() > 0.95  # the depth tolerance: a slanted, noisy surface
    box = _box_surface(np.array([1.5, 0.0, 1.0]), 0.15, 0.03)
    seen = V.visible_mask(np.concatenate([wall, box]), _camera())
    wall_seen, box_seen = seen[:len(wall)], seen[len(wall):]
    behind = np.abs(wall[:, 1:] - [0.0, 1.0]).max(1) < 0.1  # straight behind the box (its shadow is larger)
    assert behind.sum() > 20 and not wall_seen[behind].any()
    clear = np.abs(wall[:, 1:] - [0.0, 1.0]).max(1) > 0.4  # outside its shadow (±0.33 m: 0.15 · 3 / 1.35)
    assert wall_seen[clear].mean() > 0.95
    front = box[:, 0] < 1.5 - 0.15 + 1e-6
    assert box_seen[front].mean() > 0.95 and not box_seen[box[:, 0] > 1.5 + 0.15 - 1e-6].any()


def test_points_behind_the_camera_outside_the_frustum_or_beyond_its_range_are_not_seen():
    cam = _camera()
    near, far = cam.depth_range
    half_h = np.tan(np.radians(cam.fov_deg[0] / 2))
    half_v = np.tan(np.radians(cam.fov_deg[1] / 2))
    pts = np.array([[-2.0, 0, 1],  # behind
                    [2.0, 2.0 * half_h * 1.05, 1],  # right of the frustum
                    [2.0, 0, 1 + 2.0 * half_v * 1.05],  # above it
                    [near * 0.9, 0, 1], [far * 1.01, 0, 1],  # too near, too far
                    [2.0, 2.0 * half_h * 0.9, 1]])  # inside
    np.testing.assert_array_equal(V.visible_mask(pts, cam), [0, 0, 0, 0, 0, 1])


@settings(max_examples=15, deadline=None)
@given(st.floats(-np.pi, np.pi), st.floats(-2, 2), st.floats(-2, 2))
def test_visibility_does_not_depend_on_where_the_room_is_or_which_way_it_faces(theta, dx, dy):
    rng = np.random.default_rng(1)
    pts = np.concatenate([_plane(3.0, 1.2, 0.025, rng), _box_surface(np.array([1.6, 0.2, 1.0]), 0.2, 0.03)])
    cam = _camera(yaw=0.1, pitch=0.05)
    c, s = np.cos(theta), np.sin(theta)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    shift = np.array([dx, dy, 0.0])
    moved = V.Camera(rot @ cam.position + shift, cam.yaw + theta, cam.pitch)
    a, b = V.visible_mask(pts, cam), V.visible_mask(pts @ rot.T + shift, moved)
    assert (a != b).mean() < 0.002  # only pixel-boundary round-off may differ


def test_free_floor_keeps_its_clearance_from_furniture_and_walls():
    room = default_scene(3)
    floor = V.free_floor(room)
    assert len(floor) > 50
    band = room.points[(room.points[:, 2] > V.FLOOR_BAND[0]) & (room.points[:, 2] < V.FLOOR_BAND[1])]
    nearest = np.min(np.linalg.norm(floor[:, None, :] - band[None, ::7, :2], axis=2), axis=1)
    assert nearest.min() >= V.VIEW_CLEARANCE - V.HEIGHT_MAP_CELL  # one cell of slack: the grid's
    lo, hi = room.points[:, :2].min(0), room.points[:, :2].max(0)
    assert np.all(floor >= lo + V.VIEW_CLEARANCE - 1e-9) and np.all(floor <= hi - V.VIEW_CLEARANCE + 1e-9)


@pytest.fixture(scope="module")
def room_and_view():
    room = default_scene(5)
    return room, V.single_view(room, np.random.default_rng(0))


def test_a_view_is_the_visible_part_of_the_room_and_its_objects_are_complete_with_their_hidden_points(
        room_and_view):
    room, view = room_and_view
    key = {tuple(p) for p in room.points.tolist()}
    assert 0 < len(view) < len(room) and all(tuple(p) in key for p in view.points[::50].tolist())
    objects = np.unique(view.instances[view.instances >= 0])
    assert len(objects) >= 1
    for i in objects:
        assert (view.instances == i).sum() >= V.VIEW_MIN_POINTS
        assert (view.instances == i).sum() + (view.hidden_instances == i).sum() == (room.instances == i).sum()
    assert set(np.unique(view.hidden_instances)) <= set(objects)  # hidden points only of the view's objects
    assert view.class_names == room.class_names and view.camera is not None
    again = V.single_view(room, np.random.default_rng(0))
    np.testing.assert_array_equal(again.points, view.points)  # deterministic per seed


def test_the_kept_pose_sees_the_most_objects_of_the_candidates(room_and_view, monkeypatch):
    room, view = room_and_view
    counts = []
    original = V._objects_in_view

    def spy(*args):
        out = original(*args)
        counts.append(len(out))
        return out

    monkeypatch.setattr(V, "_objects_in_view", spy)
    best = V.single_view(room, np.random.default_rng(0))
    assert len(counts) == V.VIEW_CANDIDATES
    assert len(np.unique(best.instances[best.instances >= 0])) == max(counts)


def test_a_view_without_labels_or_free_floor_is_refused_by_name():
    with pytest.raises(ValueError, match="needs labels"):
        V.single_view(Scene(np.zeros((10, 3)), name="bare"))
    crowded = Scene(np.random.default_rng(0).uniform([0, 0, 0.5], [1, 1, 1.5], (500, 3)),
                    labels=np.zeros(500, dtype=np.int64), instances=np.zeros(500, dtype=np.int64),
                    name="cupboard", class_names=CLASS_NAMES)
    with pytest.raises(ValueError, match="cupboard: no free floor"):
        V.single_view(crowded)


def test_amodal_boxes_train_and_score_detection_on_views_and_can_be_switched_off(room_and_view):
    room, view = room_and_view
    stuff = (CLASS_NAMES.index("wall"), CLASS_NAMES.index("floor"))
    objects = np.unique(view.instances[view.instances >= 0])
    whole = {int(i): np.concatenate([room.points[room.instances == i].min(0),
                                     room.points[room.instances == i].max(0)]) for i in objects}
    visible, _, ids = box_targets(view.points, view.labels, view.instances, stuff)
    amodal = ground_truth_boxes(view, stuff)["gt_boxes"]
    modal = ground_truth_boxes(view, stuff, complete=False)["gt_boxes"]
    np.testing.assert_allclose(amodal, np.stack([whole[int(i)] for i in ids]), atol=1e-6)
    np.testing.assert_allclose(modal, visible)
    assert np.any(np.abs(amodal - modal) > 0.05)  # some object is partly hidden
    for complete, expected in ((True, amodal), (False, modal)):
        config = FinetuneConfig().replace(
            data={"voxel_size": 0.1, "crop": None, "complete_instances": complete}, augment=NOAUG)
        coords, _, target = detection_training_sample(view, config, len(CLASS_NAMES),
                                                      np.random.default_rng(0))
        np.testing.assert_allclose(target.boxes, expected, atol=1e-5)
        assert len(coords) <= len(np.unique(np.floor(view.points / 0.1), axis=0))  # input: the visible points


def test_limiting_the_labelled_points_of_views_keeps_their_hidden_points(room_and_view):
    from fourdcontrast.downstream.data import LabelledDataset
    from fourdcontrast.downstream.training import prepare_training_scenes

    _, view = room_and_view
    config = FinetuneConfig().replace(data={"limited_points": 20})
    (kept,) = prepare_training_scenes(LabelledDataset([view], CLASS_NAMES, "v"), config)
    assert isinstance(kept, V.View) and len(kept.hidden_points) == len(view.hidden_points)
    assert (kept.labels >= 0).sum() == 20


def test_embedded_views_are_cached_with_their_hidden_points_and_compacted(tmp_path, monkeypatch):
    views = embedded_views("val", 2, 1000, tmp_path, store_voxel=0.05)
    files = list(tmp_path.iterdir())
    assert [f.name for f in files] == ["views_val_seed1000_n2_v50mm.npz"]

    def no_new_views(*args, **kwargs):
        raise AssertionError("the cached views were made again")

    with monkeypatch.context() as m:
        m.setattr(V, "single_view", no_new_views)
        again = embedded_views("val", 2, 1000, tmp_path, store_voxel=0.05)
    for a, b in zip(views, again, strict=True):
        assert a.name == b.name and a.name.startswith("val_room_1001_")
        for attr in ("points", "labels", "instances", "hidden_points", "hidden_labels", "hidden_instances"):
            np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr))
        np.testing.assert_allclose(a.camera.position, b.camera.position)
        cells = np.floor(a.points / 0.05)
        assert len(np.unique(cells, axis=0)) == len(a)  # one point per 5 cm cell
        assert len(a.hidden_points) > 0
    first = embedded_views("val", 1, 1000, None, store_voxel=0.05)[0]
    np.testing.assert_array_equal(first.points, views[0].points)  # view i depends on i only


def test_the_views_dataset_is_a_config_choice_and_a_benchmark_preset():
    from fourdcontrast.downstream import benchmark as bm
    from fourdcontrast.downstream.config import load_finetune_config

    config = load_finetune_config("cpu-detection-views")
    assert config.data.dataset == "embedded-views" and config.model.task == "detection"
    views, scannet = bm.PRESETS["cpu-views"], bm.PRESETS["cpu-scannet"]
    assert views.dataset == "embedded-views" and views.task == "detection"
    assert bm.grid_spec(views, "test")["pretrain_config_digests"] == \
        bm.grid_spec(scannet, "test")["pretrain_config_digests"]  # the semantic grid's backbones
    assert "dataset" not in bm.grid_spec(scannet, "test")["preset"]  # the committed grids stay resumable
    assert ("4dcontrast@3600s", "scratch", "finetune", "scenes", 1.0) in views.primary
    with pytest.raises(ValueError, match="dataset must be"):
        dataclasses.replace(views, dataset="sunrgbd")


def test_the_views_report_names_its_data_and_the_papers_table_5():
    from fourdcontrast.downstream import benchmark as bm
    from fourdcontrast.downstream.report import map_markdown_report

    spec = {**bm.grid_spec(bm.PRESETS["cpu-views"], "test"), "preset_name": "cpu-views"}
    rows = [{"split": "test", "mode": "finetune", "protocol": "scenes", "level": "1.0", "seed": str(s),
             "method": m, "map50": str(v + s / 100), "map25": str(v + 0.1)}
            for s in (0, 1) for m, v in (("scratch", 0.2), ("4dcontrast@3600s", 0.25),
                                         ("pointcontrast@3600s", 0.22))]
    text = map_markdown_report(rows, "detection", None, spec)
    assert "single-view partial scans" in text and "200 **test** views" in text
    assert "Table 5" in text and "Table 7" not in text
