"""The linked embedding view and its helpers, driven from Python (test_browser.py drives it in JupyterLab)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fourdcontrast.records import SOURCE_OBJECT
from fourdcontrast.sources.classes import CLASS_NAMES, class_id
from fourdviz import embedding


def labelled(sequence):
    """The test sequence with the default class set and a chair as the moving object."""
    labels = np.asarray(sequence.scene.labels)  # floor 0, wall 1, table 2 → floor, wall, table
    mapped = np.array([class_id("floor"), class_id("wall"), class_id("table")])[labels]
    scene = replace(sequence.scene, labels=mapped, class_names=CLASS_NAMES)
    return replace(sequence, scene=scene, obj=replace(sequence.obj, category="chair"))


def test_frame_point_labels_follow_provenance(sequence):
    seq = labelled(sequence)
    for t in range(len(seq.frames)):
        labels, is_obj = embedding.frame_point_labels(seq, t)
        f = seq.frames[t]
        assert np.array_equal(is_obj, f.source == SOURCE_OBJECT)
        assert np.array_equal(labels[~is_obj], seq.scene.labels[f.index[~is_obj]])
        assert np.all(labels[is_obj] == class_id("chair"))


def test_object_of_a_class_outside_the_scene_classes_is_unlabelled(sequence):
    labels, is_obj = embedding.frame_point_labels(sequence, 0)  # a "box" in a floor/wall/table room
    assert is_obj.any() and np.all(labels[is_obj] == -1)
    assert np.all(labels[~is_obj] >= 0)


def test_voxel_labels_use_each_voxels_representative_point(sequence):
    from fourdcontrast.data.correspondence import compute_correspondences

    seq = labelled(sequence)
    corr = compute_correspondences(seq, 0.1, 0.2)
    for t in range(len(seq.frames)):
        labels, is_obj = embedding.voxel_labels_3d(seq, corr, t)
        assert len(labels) == len(corr.coords_3d[t])
        point_labels, point_obj = embedding.frame_point_labels(seq, t)
        rep = corr.voxel_point_3d[t]
        assert np.array_equal(labels, point_labels[rep]) and np.array_equal(is_obj, point_obj[rep])


def test_embed_many_shares_one_subsample_and_keeps_the_forced_points():
    rng = np.random.default_rng(0)
    n = 500
    keep = np.zeros(n, bool)
    keep[[3, 77, 499]] = True
    feats = {"a": rng.normal(size=(n, 8)), "b": rng.normal(size=(n, 4))}
    xy, chosen, used = embedding.embed_many(feats, method="pca", max_points=100, rng=0, keep=keep)
    assert used == "pca" and len(chosen) == 100 and len(np.unique(chosen)) == 100
    assert {3, 77, 499} <= set(chosen.tolist())
    assert set(xy) == {"a", "b"} and all(v.shape == (100, 2) for v in xy.values())
    again, chosen2, _ = embedding.embed_many(feats, method="pca", max_points=100, rng=0, keep=keep)
    assert np.array_equal(chosen, chosen2) and np.allclose(again["a"], xy["a"])


def test_static_pictures(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    xy = {"random": rng.normal(size=(60, 2)), "trained": rng.normal(size=(60, 2))}
    labels = rng.integers(-1, 3, 60)
    fig = embedding.plot_embedding_grid(xy, {"class": (labels, ("a", "b", "c")),
                                             "object": (labels > 1, embedding.OBJECT_VS_SCENE)},
                                        method="pca", titles={"trained": "score 1"})
    assert len(fig.axes) == 4
    fig = embedding.plot_linked_selection(rng.normal(size=(60, 3)), xy["random"], labels, [1, 2, 3])
    assert len(fig.axes) == 2
    fig = embedding.plot_selection_across(xy, labels, [1, 2, 3], ("a", "b", "c"),
                                          points=rng.normal(size=(60, 3)))
    assert len(fig.axes) == 3
    lab, names = embedding.object_vs_scene(labels > 1)
    assert names[lab[labels > 1][0]] == "moving object" and names[lab[labels <= 1][0]] == "scene"


def test_similarity_rows_keep_the_object_and_crop_around_its_path(sequence, features):
    pytest.importorskip("matplotlib")
    fig = embedding.plot_similarity_rows(sequence, {"a": features, "b": features}, (0, 5), crop=0.5,
                                         max_points=100, titles={"a": "x"})
    assert len(fig.axes) == 2 * len(sequence.frames) + 1  # + colour bar
    drawn = fig.axes[1].collections[0].get_offsets()
    n_obj = int((sequence.frames[1].source == SOURCE_OBJECT).sum())
    assert n_obj <= len(drawn) <= n_obj + 100


pytest.importorskip("plotly")
pytest.importorskip("ipywidgets")
pytest.importorskip("anywidget")


def make_explorer(n: int = 80):
    rng = np.random.default_rng(1)
    points = rng.uniform(0, 4, size=(n, 3))
    xy = {"random": rng.normal(size=(n, 2)), "trained": rng.normal(size=(n, 2)) * 3}
    labels = rng.integers(0, 3, n)
    colorings = {"class": (labels, ("floor", "wall", "chair")),
                 "object": ((labels == 2).astype(int), embedding.OBJECT_VS_SCENE)}
    return embedding.EmbeddingExplorer(points, xy, colorings, radius=0.8), points, xy, labels


def send(figure, event: str, indexes: list[int], selector=None) -> None:
    """The message the browser sends for a click or a box selection on trace 0."""
    figure._js2py_pointsCallback = {
        "event_type": event,
        "points": {"trace_indexes": [0] * len(indexes), "point_indexes": indexes, "xs": [0.0] * len(indexes),
                   "ys": [0.0] * len(indexes)},
        "device_state": None,
        "selector": selector,
    }


def test_selection_in_the_embedding_is_highlighted_in_3d():
    ex, points, xy, labels = make_explorer()
    box = {"type": "box", "selector_state": {"xrange": [-1, 1], "yrange": [-1, 1]}}
    send(ex.embedding_figure, "plotly_selected", [5, 2, 9], box)
    assert ex.selected.tolist() == [2, 5, 9]
    assert np.allclose(ex.highlighted_3d(), points[[2, 5, 9]])
    assert list(ex.embedding_figure.data[0].selectedpoints) == [2, 5, 9]
    assert ex.scene_figure.data[0].marker.opacity < 1
    assert "3 points selected" in ex.status.value
    send(ex.embedding_figure, "plotly_deselect", [])
    assert len(ex.selected) == 0 and len(ex.highlighted_3d()) == 0
    assert ex.embedding_figure.data[0].selectedpoints is None and ex.scene_figure.data[0].marker.opacity == 1


def test_click_in_3d_selects_the_neighbourhood_in_the_embedding():
    ex, points, xy, labels = make_explorer()
    send(ex.scene_figure, "plotly_click", [7])
    near = np.flatnonzero(np.linalg.norm(points - points[7], axis=1) <= 0.8)
    assert 7 in ex.selected and ex.selected.tolist() == near.tolist()
    assert list(ex.embedding_figure.data[0].selectedpoints) == near.tolist()


def test_class_menu_box_and_menus():
    ex, points, xy, labels = make_explorer()
    ex.class_menu.value = 2
    assert ex.selected.tolist() == np.flatnonzero(labels == 2).tolist()
    ex.select_box(-0.5, 0.5, -0.5, 0.5)
    inside = np.flatnonzero((np.abs(xy["random"]) <= 0.5).all(1))
    assert ex.selected.tolist() == inside.tolist()
    ex.embedding_menu.value = "trained"
    assert np.allclose(ex.embedding_figure.data[0].x, xy["trained"][:, 0])
    assert ex.selected.tolist() == inside.tolist()  # the selection survives a switch of features
    before = np.asarray(ex.scene_figure.data[0].marker.color).copy()
    ex.coloring_menu.value = "object"
    assert not np.array_equal(before, np.asarray(ex.scene_figure.data[0].marker.color))
    assert "moving object" in ex.legend.value
    ex.clear()
    assert len(ex.selected) == 0 and ex.class_menu.value == embedding.NO_CLASS
    with pytest.raises(IndexError):
        ex.select([len(points)])
    assert len(ex.snapshot().axes) == 2


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="shape"):
        embedding.EmbeddingExplorer(np.zeros((5, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="labels"):
        embedding.EmbeddingExplorer(np.zeros((5, 3)), np.zeros((5, 2)), {"c": (np.zeros(4, int), ("a",))})
