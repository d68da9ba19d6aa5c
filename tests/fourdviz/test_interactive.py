"""The notebook explorers, driven from Python (the browser test drives them through JupyterLab)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("plotly")
pytest.importorskip("ipywidgets")
pytest.importorskip("anywidget")

from fourdcontrast.records import Trajectory  # noqa: E402
from fourdviz import interactive  # noqa: E402


def click(explorer, trace_index: int, point_index: int) -> None:
    """Send the message the browser sends on a click (through the widget's synced trait)."""
    explorer.figure._js2py_pointsCallback = {
        "event_type": "plotly_click",
        "points": {"trace_indexes": [trace_index], "point_indexes": [point_index], "xs": [0.0], "ys": [0.0]},
        "device_state": None,
        "selector": None,
    }


def test_click_colours_every_frame_by_similarity(sequence, features):
    ex = interactive.SequenceExplorer(sequence, features)
    before = [c.copy() for c in ex.marker_colors()]
    assert not ex.showing_similarity
    click(ex, 1, 4)  # trace 1 = frame 0 object points
    t, part, idx = ex._traces[1]
    assert ex.query == (0, int(idx[4]))
    after = ex.marker_colors()
    assert ex.showing_similarity
    q = ex.figure.data[ex._query_trace]
    assert np.allclose(
        [q.x[0], q.y[0], q.z[0]], sequence.frames[0].points[idx[4]] + ex._offsets[0], atol=1e-5
    )
    assert after[1][4] == pytest.approx(1.0, abs=1e-5)  # the query point itself
    assert any(not np.array_equal(a, b) for a, b in zip(after, before, strict=True))
    # same provenance in another frame → same feature → similarity 1
    k = sequence.frames[0].keys[idx[4]]
    t1, _, idx1 = ex._traces[3]
    hit = np.flatnonzero(sequence.frames[1].keys[idx1] == k)
    if len(hit):
        assert after[3][hit[0]] == pytest.approx(1.0, abs=1e-5)
    ex.clear_query()
    assert ex.query is None and not ex.showing_similarity
    assert all(np.array_equal(a, b) for a, b in zip(ex.marker_colors(), before, strict=True))


def test_indexed_colors_round_trip():
    rgb = np.array([[1, 0, 0], [0, 0, 1], [1, 0, 0], [0.5, 0.5, 0.5]])
    values, scale, cmin, cmax = interactive.indexed_colors(rgb)
    assert values[0] == values[2] != values[1]
    lookup = {round(a, 6): c for a, c in scale[::2]}
    n = len(scale) // 2
    assert lookup[round((values[0] * n - 0.5) / n, 6)] == "#ff0000"
    assert lookup[round((values[1] * n - 0.5) / n, 6)] == "#0000ff"


def test_click_without_features_reports_the_point(sequence):
    ex = interactive.SequenceExplorer(sequence)
    click(ex, 0, 0)
    assert ex.query is not None and "no features" in ex.query_label.value
    assert ex.similarity is None


def test_frame_slider_and_toggles(sequence):
    ex = interactive.SequenceExplorer(sequence)
    ex.frame_slider.value = 2
    vis = [(t, d.visible) for (t, _, _), d in zip(ex._traces, ex.figure.data, strict=False)]
    assert all(v == (t == 2) for t, v in vis)
    ex.show_scene.value = False
    assert not any(ex.figure.data[k].visible for k, (_, p, _) in enumerate(ex._traces) if p == "scene")
    ex.show_matches.value = False
    assert not any(ex.figure.data[ex._n_point_traces + k].visible for k in range(len(ex._pair_traces)))


def test_large_scene_is_subsampled_and_says_so():
    from vizdata import make_features, make_sequence

    seq = make_sequence(n_scene=100_000, n_object=1000, frames=3)
    ex = interactive.SequenceExplorer(seq, make_features(seq), max_points=5000)
    shown = sum(len(idx) for _, _, idx in ex._traces)
    assert shown == 3 * 5000
    assert "subsampled for display" in ex.status.value
    click(ex, 0, 10)
    assert all(len(c) == len(idx) for c, (_, _, idx) in zip(ex.marker_colors(), ex._traces, strict=True))


def fake_sampler(calls):
    def sampler(scene, obj, length, rng, step_range, max_turn_deg, cell_size, floor_tolerance):
        calls.append(dict(length=length, rng=rng, step_range=step_range, cell_size=cell_size))
        from vizdata import make_height_map

        gen = np.random.default_rng(rng)
        pos = np.c_[gen.uniform(1, 3, length), gen.uniform(1, 2, length), np.zeros(length)]
        return Trajectory(pos, np.zeros(length), make_height_map(scene), object_radius=obj.radius)

    return sampler


def test_trajectory_explorer_resamples_on_slider_change(sequence):
    calls = []
    ex = interactive.TrajectoryExplorer(sequence.scene, sequence.obj, sampler=fake_sampler(calls))
    assert len(ex.figure.data[1].x) == interactive.TRAJECTORY_LENGTH
    assert calls[-1]["step_range"] == interactive.STEP_RANGE
    ex.length.value = 7
    assert calls[-1]["length"] == 7 and len(ex.figure.data[1].x) == 7
    first = np.array(ex.figure.data[1].x)
    ex.resample.click()
    assert calls[-1]["rng"] == 1 and not np.allclose(first[:4], ex.figure.data[1].x[:4])
    assert "candidate positions" in ex.status.value
    assert np.asarray(ex.figure.data[0].z).max() == 4  # candidates drawn


def test_trajectory_explorer_reports_sampler_errors(sequence):
    def failing(scene, obj, **kw):
        raise RuntimeError("no valid region for this object")

    ex = interactive.TrajectoryExplorer(sequence.scene, sequence.obj, sampler=failing)
    assert ex.trajectory is None and "no valid region" in ex.status.value


def test_unknown_layout_is_rejected(sequence):
    with pytest.raises(ValueError, match="layout"):
        interactive.SequenceExplorer(sequence, layout="grid")
