"""Every static view renders a non-blank, readable figure; PNGs are written atomically."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from fourdcontrast.records import SOURCE_OBJECT  # noqa: E402
from fourdviz import static  # noqa: E402


def assert_not_blank(fig, min_ink: float = 0.01) -> np.ndarray:
    """The rendered figure has ink (non-white pixels) and more than a handful of distinct colours."""
    rgba = static.figure_to_rgba(fig)
    rgb = rgba[..., :3].astype(np.int32)
    ink = (rgb.sum(axis=-1) < 3 * 245).mean()
    assert ink > min_ink, f"figure is nearly blank ({ink:.4f} of pixels inked)"
    assert len(np.unique(rgb.reshape(-1, 3)[::7], axis=0)) > 20, "figure has almost no distinct colours"
    return rgba


def labels_of(sequence):
    out = []
    for f in sequence.frames:
        lab = sequence.scene.labels[np.where(f.source == SOURCE_OBJECT, 0, f.index)]
        out.append(np.where(f.source == SOURCE_OBJECT, 3, lab))
    return out


@pytest.mark.parametrize("layout", ["side", "overlay"])
def test_plot_sequence_renders(sequence, layout):
    fig = static.plot_sequence(sequence, layout=layout)
    assert_not_blank(fig)
    assert "4D sequence" in fig._suptitle.get_text()


def test_figures_render_themselves_as_png_for_jupyter(sequence):
    # a notebook shows the returned figure even when pyplot has not picked the inline backend yet
    png = static.plot_sequence(sequence)._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_plot_sequence_says_when_subsampled(sequence):
    fig = static.plot_sequence(sequence, max_points=100)
    assert "subsampled" in fig._suptitle.get_text()
    assert "subsampled" not in static.plot_sequence(sequence, max_points=None)._suptitle.get_text()


def test_plot_sequence_rejects_unknown_layout(sequence):
    with pytest.raises(ValueError, match="layout"):
        static.plot_sequence(sequence, layout="grid")


def test_plot_sequence_draws_the_3d_views(sequence):
    fig = static.plot_sequence(sequence, use_view=True, max_points=None)
    assert_not_blank(fig)
    assert fig.axes[0].get_title().startswith("3D view 0")
    # the panel shows the view points, not the 4D coordinates
    drawn = np.asarray(fig.axes[0].collections[0]._offsets3d).T
    expected = sequence.frames[0].view_points()
    assert not np.allclose(expected, sequence.frames[0].points)
    np.testing.assert_allclose(np.sort(drawn[:, 0]), np.sort(expected[:, 0]), rtol=1e-5)
    with pytest.raises(ValueError, match="use_view"):
        static.plot_sequence(sequence, layout="overlay", use_view=True)


def test_plot_trajectory_sampling_renders(sequence):
    fig = static.plot_trajectory_sampling(sequence.trajectory, sequence.scene)
    assert_not_blank(fig, 0.05)
    assert len(fig.axes) >= 2


@pytest.mark.parametrize("use_view", [False, True])
def test_plot_correspondences_renders(sequence, use_view):
    fig = static.plot_correspondences(sequence, use_view=use_view, max_lines=50)
    assert_not_blank(fig)
    lines = [c for c in fig.axes[0].collections if type(c).__name__ == "LineCollection"]
    assert len(lines) == len(sequence) - 1
    assert all(len(c.get_segments()) == 50 for c in lines)


def test_plot_correspondences_3d4d_renders(sequence):
    assert_not_blank(static.plot_correspondences_3d4d(sequence, frame=2))


def test_plot_correspondence_check_shows_broken(corrupted_sequence):
    fig = static.plot_correspondence_check(corrupted_sequence, 1, 0)
    assert_not_blank(fig)
    title = fig._suptitle.get_text()
    assert "0 broken" not in title and "broken" in title


@pytest.mark.parametrize("i, j", [(0, 1), (1, 0)])
def test_correspondence_check_zooms_on_the_corrupted_frame(corrupted_sequence, i, j):
    fig = static.plot_correspondence_check(corrupted_sequence, i, j)
    assert fig.axes[1].get_title().startswith("object in frame 1")


def test_correspondence_check_draws_ok_lines_beside_many_broken(corrupted_sequence):
    fig = static.plot_correspondence_check(corrupted_sequence, 1, 0, max_lines=3)
    legend = " ".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())
    assert "; 3 drawn)" in legend and "0 broken" not in legend


def test_plot_similarity_renders(sequence, features):
    fig = static.plot_similarity(sequence, features, query=(1, 5))
    assert_not_blank(fig)
    assert "frame 1" in fig._suptitle.get_text()


def test_plot_similarity_rejects_mismatched_features(sequence, features):
    with pytest.raises(ValueError, match="frame 0"):
        static.plot_similarity(sequence, [features[0][:-1], *features[1:]])


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_plot_embedding_renders(sequence, features, method):
    if method == "tsne":
        pytest.importorskip("sklearn")
    fig = static.plot_embedding(
        features, labels_of(sequence), ("floor", "wall", "table", "object"), method=method, max_points=150
    )
    assert_not_blank(fig)
    assert method.upper() in fig.axes[0].get_title()
    assert len(fig.axes[0].get_legend().get_texts()) == 4


def test_save_figure_writes_png_atomically(sequence, tmp_path):
    path = static.save_figure(
        static.plot_trajectory_sampling(sequence.trajectory), tmp_path / "sub" / "t.png"
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["t.png"]  # no temp file left behind


def test_plot_semantic_comparison_counts_right_points_and_marks_the_wrong_ones():
    from fourdviz.static import plot_semantic_comparison

    pts = np.stack([np.arange(10.0), np.zeros(10), np.zeros(10)], 1)
    truth = np.array([0, 0, 1, 1, 2, 2, -1, -1, 0, 1])
    good, bad = truth.copy(), truth.copy()
    bad[[0, 2, 6]] = 3  # two labelled points wrong, one unlabelled (never counted)
    fig = plot_semantic_comparison(pts, truth, {"good": good, "bad": bad}, ("a", "b", "c", "d"), title="t")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:3] == ["ground truth", "good: 100% of points right", "bad: 75% of points right"]
    wrong = fig.axes[5].collections[0]  # the bad prediction's wrong points: red where labelled and wrong
    red = np.isclose(wrong.get_facecolors()[:, 0], 0.85)
    assert red.sum() == 2
    labels = [t.get_text() for t in fig.axes[3].get_legend().get_texts()]
    assert labels == ["a", "b", "c", "d"]  # "d" is only predicted: its colour is in the legend too
    with pytest.raises(ValueError, match="truth: 3 labels for 10 points"):
        plot_semantic_comparison(pts, truth[:3], {})
