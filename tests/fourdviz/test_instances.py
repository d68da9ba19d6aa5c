"""Instances and boxes: hand-worked geometry, colours, matching, and what the figures draw."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from fourdviz import colors as C  # noqa: E402
from fourdviz import instances as I  # noqa: E402
from fourdviz.static import figure_to_rgba  # noqa: E402

BOX = np.array([[1.0, 2.0, 0.0, 2.0, 4.0, 3.0]])  # 1 × 2 × 3 m
"""A hand-worked box: x 1..2, y 2..4, z 0..3."""
NAMES = tuple(f"c{k}" for k in range(9))
CORNERS = {(x, y, z) for x, y, z in itertools.product((1.0, 2.0), (2.0, 4.0), (0.0, 3.0))}


def two_boxes():
    return np.array([[0.0, 0.0, 0.0, 1.0, 1.0, 1.0], [2.0, 1.0, 0.0, 3.0, 3.0, 0.5]])


def room(n: int = 400):
    """Points on a 4 × 4 m floor with unique x, two instances (ids 5 and 7) and stuff (-1)."""
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 4, (n, 3))
    pts[:, 0] = np.linspace(0, 4, n)  # unique x: a drawn point can be traced back
    ids = np.full(n, -1)
    ids[pts[:, 0] < 1] = 5
    ids[(pts[:, 0] > 2) & (pts[:, 0] < 3)] = 7
    return pts, ids


# --- geometry -------------------------------------------------------------------------------------
def test_box_corners_are_the_eight_min_max_combinations():
    corners = I.box_corners(BOX)
    assert corners.shape == (1, 8, 3)
    assert {tuple(c) for c in corners[0]} == CORNERS
    # corner k takes the max of x / y / z where bit 0 / 1 / 2 of k is set
    assert corners[0, 0].tolist() == [1.0, 2.0, 0.0] and corners[0, 7].tolist() == [2.0, 4.0, 3.0]
    assert corners[0, 1].tolist() == [2.0, 2.0, 0.0] and corners[0, 6].tolist() == [1.0, 4.0, 3.0]


def test_box_segments_are_the_twelve_edges():
    seg = I.box_segments(BOX)[0]
    assert seg.shape == (12, 2, 3)
    assert all(tuple(p) in CORNERS for p in seg.reshape(-1, 3))
    delta = np.abs(seg[:, 1] - seg[:, 0])
    # every edge runs along one axis: 4 edges of 1 m along x, 4 of 2 m along y, 4 of 3 m along z
    assert ((delta > 0).sum(1) == 1).all()
    assert sorted(delta.sum(1).tolist()) == [1.0] * 4 + [2.0] * 4 + [3.0] * 4
    assert len({frozenset(map(tuple, s)) for s in seg}) == 12  # no edge twice
    ends = [tuple(p) for p in seg.reshape(-1, 3)]
    assert all(ends.count(c) == 3 for c in CORNERS)  # three edges meet at every corner


@pytest.mark.parametrize("boxes, match", [
    (np.zeros((3, 5)), r"\(K, 6\)"),
    (np.zeros(6), r"\(K, 6\)"),
    (np.array([[0, 0, 0, 1, np.nan, 1.0]]), "not finite"),
    (np.array([[0, 0, 2.0, 1, 1, 1]]), "min corner above its max"),
])
def test_bad_boxes_raise_one_clear_error(boxes, match):
    with pytest.raises(ValueError, match=match):
        I.box_corners(boxes)
    with pytest.raises(ValueError, match=match):
        I.plot_boxes(np.zeros((5, 3)), boxes)


def test_classes_and_scores_must_match_the_boxes():
    with pytest.raises(ValueError, match=r"classes has shape \(1,\), expected \(2,\)"):
        I.check_boxes(two_boxes(), classes=[1])
    with pytest.raises(ValueError, match=r"scores has shape \(3,\), expected \(2,\)"):
        I.plot_boxes(np.zeros((5, 3)), two_boxes(), [1, 2], [0.1, 0.2, 0.3])
    b, c, s = I.check_boxes(np.zeros((0, 6)), [], [])
    assert b.shape == (0, 6) and c.shape == (0,) and s.shape == (0,)


def test_bad_points_and_ids_raise_one_clear_error():
    pts, ids = room()
    with pytest.raises(ValueError, match=r"points: expected an \(N, 3\)"):
        I.plot_instances(pts[:, :2], ids)
    with pytest.raises(ValueError, match="one instance id per point"):
        I.plot_instances(pts, ids[:-1])
    with pytest.raises(ValueError, match="integer instance ids"):
        I.plot_instances(pts, ids.astype(float))
    with pytest.raises(ValueError, match="view"):
        I.plot_instances(pts, ids, view="side")


# --- colours and matching -------------------------------------------------------------------------
def test_instance_colours_are_distinct_and_stuff_is_grey():
    ids = np.array([-1, -3, *range(18), 0, 18])
    col = I.instance_colors(ids)
    assert np.allclose(col[:2], C.SCENE_COLOR)
    distinct = {tuple(np.round(c, 4)) for c in col[2:20]}
    assert len(distinct) == 18  # 18 ids, 18 colours
    # no instance looks like stuff: every instance colour is far from grey (r = g = b)
    assert (col[2:20].max(1) - col[2:20].min(1) > 0.1).all()
    assert np.array_equal(col[20], col[2])  # the same id, the same colour
    # consecutive ids differ in hue, not only in lightness (tab20's pairs are split)
    assert all(np.abs(col[k] - col[k + 1]).max() > 0.2 for k in range(2, 10))


def test_match_instances_gives_a_found_object_its_ground_truth_id():
    ref = np.array([-1, 5, 5, 5, 5, 7, 7, 7, -1])
    pred = np.array([3, 3, 3, 3, -1, 9, 9, 4, 4])
    # pred 3 ∩ ref 5 = 3 points, union 5 → IoU 0.6 → 5; pred 9 ∩ ref 7 = 2, union 3 → 0.67 → 7;
    # pred 4 ∩ ref 7 = 1, union 4 → 0.25 < 0.5 → a new id (8, above every reference id)
    assert I.match_instances(pred, ref).tolist() == [5, 5, 5, 5, -1, 7, 7, 8, 8]
    # at a threshold above 0.6, pred 3 is no longer matched: the new ids go in order of the predictions
    assert I.match_instances(pred, ref, iou=0.65).tolist() == [8, 8, 8, 8, -1, 7, 7, 9, 9]


def test_match_instances_uses_each_reference_instance_once():
    ref = np.array([1, 1, 1, 1])
    pred = np.array([2, 2, 2, 3])  # both overlap ref 1; the better one (2, IoU 0.75) takes it
    assert I.match_instances(pred, ref, iou=0.2).tolist() == [1, 1, 1, 2]


def test_clip_boxes_cuts_at_the_points_extent():
    pts = np.array([[0.0, 0, 0], [4, 4, 2]])
    boxes = np.array([[-1.0, 1, 0.5, 2, 5, 3], [1, 1, 0, 2, 2, 1], [9, 9, 9, 10, 10, 10]])
    assert I.clip_boxes(boxes, pts).tolist() == [[0, 1, 0.5, 2, 4, 2], [1, 1, 0, 2, 2, 1], [4, 4, 2, 4, 4, 2]]


def test_masks_to_ids():
    masks = np.array([[1, 1, 0, 0], [0, 0, 1, 0]], dtype=bool)
    assert I.masks_to_ids(masks).tolist() == [0, 0, 1, -1]
    assert I.masks_to_ids(masks, [7, 9]).tolist() == [7, 7, 9, -1]
    with pytest.raises(ValueError, match="2 masks"):
        I.masks_to_ids(masks, [7])


# --- matplotlib -----------------------------------------------------------------------------------
def drawn_colours(collection, points):
    """The colour of every drawn point of a 2D scatter, by its point index (x is unique)."""
    x = collection.get_offsets()[:, 0]
    index = np.searchsorted(points[:, 0], x)
    return index, collection.get_facecolors()[:, :3]


def test_plot_instances_colours_each_instance_and_greys_stuff():
    pts, ids = room()
    fig = I.plot_instances(pts, ids)
    ax = fig.axes[0]
    assert ax.get_title() == "2 instances"
    index, colours = drawn_colours(ax.collections[0], pts)
    assert sorted(index.tolist()) == list(range(len(pts)))  # every point drawn
    for value in (-1, 5, 7):
        got = np.unique(colours[ids[index] == value].round(4), axis=0)
        assert len(got) == 1 and np.allclose(got[0], I.instance_colors(np.array([value]))[0], atol=1e-3)
    assert (figure_to_rgba(fig)[..., :3] < 240).any()


def test_plot_instances_subsamples_instances_first_and_says_so():
    pts, ids = room()
    fig = I.plot_instances(pts, ids, max_points=100)
    index, _ = drawn_colours(fig.axes[0].collections[0], pts)
    assert len(index) == 100 and len(set(index.tolist())) == 100
    assert (ids[index] >= 0).sum() == 75  # 3/4 of the budget to the instances, the rest to stuff
    assert "100 of 400 points, instances first" in fig.axes[0].get_title()


def test_instances_first_gives_unused_budget_to_the_other_side():
    ids = np.array([-1] * 10 + [3] * 90)
    keep = I.instances_first(ids, 50, rng=0)
    assert len(keep) == 50 and (ids[keep] >= 0).sum() == 40  # 3/4 of 50 rounded down = 37, but only 10 stuff
    ids = np.array([-1] * 90 + [3] * 10)
    keep = I.instances_first(ids, 50, rng=0)
    assert (ids[keep] >= 0).sum() == 10 and len(keep) == 50  # every instance point, stuff fills the rest
    assert I.instances_first(ids, None).tolist() == list(range(100))
    assert I.instances_first(ids, 500).tolist() == list(range(100))


def test_plot_boxes_top_down_draws_one_rectangle_per_box_in_its_class_colour():
    from matplotlib.patches import Rectangle

    fig = I.plot_boxes(np.zeros((5, 3)), two_boxes(), [3, 8], [0.91, 0.42], class_names=NAMES)
    ax = fig.axes[0]
    rects = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(rects) == 2
    for r, b, c in zip(rects, two_boxes(), (3, 8), strict=True):
        assert r.get_xy() == pytest.approx(b[:2])
        assert (r.get_width(), r.get_height()) == pytest.approx((b[3] - b[0], b[4] - b[1]))
        assert r.get_edgecolor()[:3] == pytest.approx(I.class_color(c))
    assert [t.get_text() for t in ax.texts] == ["0.91", "0.42"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["c3", "c8"]


def test_plot_boxes_in_3d_draws_the_twelve_edges_of_every_box():
    fig = I.plot_boxes(np.zeros((5, 3)), two_boxes(), [3, 8], view="3d")
    ax = fig.axes[0]
    assert len(ax.lines) == 2
    for line, b, c in zip(ax.lines, two_boxes(), (3, 8), strict=True):
        xs, ys, zs = line.get_data_3d()
        path = np.stack([xs, ys, zs], 1).reshape(12, 3, 3)  # (start, end, NaN) per edge
        assert np.isnan(path[:, 2]).all()
        assert np.allclose(path[:, :2], I.box_segments(b[None])[0])
        assert line.get_color()[:3] == pytest.approx(I.class_color(c))
    assert not ax.texts  # no scores given, none written


def test_plot_boxes_draws_on_a_given_axes():
    from fourdviz.static import _figure

    fig = _figure(4, 4)
    ax = fig.add_subplot(1, 1, 1)
    assert I.plot_boxes(ax, BOX, [2], legend=False) is fig
    assert len(ax.patches) == 1 and ax.get_legend() is None


def test_detection_comparison_lays_out_panels_and_matches_colours(caplog):
    pts, gt = room()
    pred = gt.copy()
    pred[gt == 5] = 40  # the same object under another id → drawn in the colour of ground-truth 5
    pred[gt == 7] = -1  # missed
    panels = {"ground truth": {"instances": gt, "boxes": two_boxes(), "classes": [3, 8]},
              "scratch": {"instances": pred, "boxes": two_boxes()[:1], "classes": [3], "scores": [0.5]},
              "4DContrast": {"boxes": np.zeros((0, 6)), "classes": [], "scores": []}}
    fig = I.plot_detection_comparison(pts, panels, title="room")
    axes = fig.axes
    assert len(axes) == 6  # 2 rows × 3 panels
    assert [a.get_title() for a in axes] == ["ground truth: 2 instances", "scratch: 1 instance", "",
                                             "ground truth: 2 boxes", "scratch: 1 box", "4DContrast: 0 boxes"]
    assert not axes[2].axison  # the 4DContrast panel has no instances
    index, colours = drawn_colours(axes[1].collections[0], pts)
    found = colours[gt[index] == 5]
    assert np.allclose(found, I.instance_colors(np.array([5]))[0], atol=1e-3)
    assert np.allclose(colours[gt[index] == 7], C.SCENE_COLOR, atol=1e-3)
    # the ground-truth boxes are drawn dashed black under the predictions of every other panel
    dashed = [p for p in axes[4].patches if p.get_linestyle() == "--"]
    assert len(dashed) == 2 and all(p.get_edgecolor()[:3] == (0, 0, 0) for p in dashed)
    assert len([p for p in axes[5].patches if p.get_linestyle() == "--"]) == 2
    assert len(axes[3].patches) == 2  # ground truth: its own boxes only
    # each boxes panel names the classes it draws
    assert [t.get_text() for t in axes[3].get_legend().get_texts()] == ["class 3", "class 8"]
    assert [t.get_text() for t in axes[4].get_legend().get_texts()] == ["class 3"]
    # every panel shows the room, however far a predicted box strays
    stray = {**panels, "4DContrast": {"boxes": np.array([[-30.0, -30, 0, -29, -29, 1]]), "classes": [3]}}
    fig = I.plot_detection_comparison(pts, stray)
    with caplog.at_level("WARNING", logger="matplotlib"):
        figure_to_rgba(fig)  # fixed limits with an equal aspect: no "Ignoring fixed x limits" warnings
    assert not [r for r in caplog.records if "Ignoring fixed" in r.getMessage()]
    for ax in fig.axes:
        if ax.axison:
            assert ax.get_xlim()[0] > -1 and ax.get_ylim()[0] > -1 and ax.get_xlim()[1] < 5
    (flat,) = [r for r in fig.axes[5].patches if r.get_linestyle() == "-"]  # the stray box, cut at the room
    assert flat.get_xy() == pytest.approx(pts[:, :2].min(0)) and flat.get_width() == 0
    fig3d = I.plot_detection_comparison(pts, panels, view="3d")
    assert all(a.name == "3d" for a in fig3d.axes)


def test_detection_comparison_rejects_bad_panels():
    pts, gt = room()
    with pytest.raises(ValueError, match="unknown keys"):
        I.plot_detection_comparison(pts, {"gt": {"masks": gt}})
    with pytest.raises(ValueError, match="no panel has"):
        I.plot_detection_comparison(pts, {"gt": {"classes": [1]}})
    with pytest.raises(ValueError, match="panel 'gt' instances"):
        I.plot_detection_comparison(pts, {"gt": {"instances": gt[:-1]}})


# --- plotly ---------------------------------------------------------------------------------------
def test_boxes_figure_has_one_wireframe_trace_per_box():
    pytest.importorskip("plotly")
    fig = I.boxes_figure(np.zeros((5, 3)), two_boxes(), [3, 8], [0.9, 0.4], class_names=NAMES,
                         reference_boxes=BOX)
    names = [t.name for t in fig.data]
    assert names == ["points", "ground truth", "c3", "c8"]
    for trace, b, c in zip(fig.data[2:], two_boxes(), (3, 8), strict=True):
        xyz = np.array([[np.nan if v is None else v for v in axis] for axis in (trace.x, trace.y, trace.z)]).T
        path = xyz.reshape(12, 3, 3)
        assert np.isnan(path[:, 2]).all()
        assert np.allclose(path[:, :2], I.box_segments(b[None])[0])
        assert trace.line.color == C.to_hex(I.class_color(c))
    assert "score 0.90" in fig.data[2].hovertemplate
    assert len(fig.data[1].x) == 12 * 3  # the reference box, one wireframe
    assert fig.data[1].line.dash == "dash"
    with pytest.raises(ValueError, match=r"\(K, 6\)"):
        I.boxes_figure(None, np.zeros((2, 4)))


def test_instances_figure_greys_stuff_and_colours_instances():
    pytest.importorskip("plotly")
    pts, ids = room()
    ids[ids == 5] = 0  # id 0 is an instance too
    fig = I.instances_figure(pts, ids)
    assert [t.name for t in fig.data] == ["stuff / no instance", "instances"]
    assert len(fig.data[0].x) == (ids < 0).sum() and len(fig.data[1].x) == (ids >= 0).sum()
    (grey,) = {h for _, h in fig.data[0].marker.colorscale}  # one colour (quantised to 16 levels)
    rgb = np.array([int(grey[i:i + 2], 16) for i in (1, 3, 5)]) / 255
    assert np.abs(rgb - np.array(C.SCENE_COLOR)).max() < 0.05
    assert len({h for _, h in fig.data[1].marker.colorscale}) == 2  # two instances, two colours
    assert fig.layout.title.text == "2 instances"
    with pytest.raises(ValueError, match="one instance id per point"):
        I.instances_figure(pts, ids[:3])


def _hand_view():
    """A hand-made single view: instance 3 seen in part (x 0..1), hidden beyond (x 1..2); instance 4 seen
    whole; the floor (-1) seen."""
    from fourdcontrast.downstream.views import Camera, View

    seen = np.array([[0.0, 0, 0], [1.0, 1, 1], [5.0, 5, 0], [6.0, 6, 1], [3.0, 0, 0]])
    return View(seen, labels=np.array([2, 2, 4, 4, 1]), instances=np.array([3, 3, 4, 4, -1]), name="v",
                hidden_points=np.array([[2.0, 0.5, 0.5]]), hidden_labels=np.array([2]),
                hidden_instances=np.array([3]),
                camera=Camera(np.array([-2.0, 0.5, 1.0]), 0.0, 0.2))


def test_view_boxes_are_the_whole_objects_with_their_hidden_points():
    boxes, classes = I.view_boxes(_hand_view())
    np.testing.assert_array_equal(boxes, [[0, 0, 0, 2, 1, 1], [5, 5, 0, 6, 6, 1]])
    np.testing.assert_array_equal(classes, [2, 4])


def test_plot_view_draws_the_objects_boxes_the_camera_and_its_image():
    from matplotlib.patches import Rectangle

    from fourdcontrast.downstream.views import single_view
    from fourdcontrast.sources.rooms import default_scene

    room_ = default_scene(5)
    view = single_view(room_, 0)
    fig = I.plot_view(view, room_)
    top, image = fig.axes[:2]
    boxes, _ = I.view_boxes(view)
    rects = [p for p in top.patches if isinstance(p, Rectangle)]
    assert len(rects) == len(boxes) >= 1
    assert any(line.get_marker() == "*" for line in top.lines)  # the camera
    assert len(image.collections) == 1 and len(image.collections[0].get_offsets()) == len(view.points)
    assert f"{len(view.points):,} points seen" in fig._suptitle.get_text()
    assert figure_to_rgba(fig).shape[2] == 4
    bare = _hand_view()
    bare.camera = None
    with pytest.raises(ValueError, match="v has no camera"):
        I.plot_view(bare)
