"""In-notebook interactive back end: plotly ``FigureWidget`` + ipywidgets.

- :class:`SequenceExplorer` — a sequence in 3D with a frame slider, toggles for scene / object /
  correspondences, and click-a-point → every frame coloured by cosine feature similarity to it.
- :class:`TrajectoryExplorer` — the trajectory sampler's parameters on sliders, the height-map
  classification and the sampled path redrawn on every change.

Both stay responsive on large scenes by showing a random subsample (``max_points`` per frame) and say
so on screen. Display either object in a notebook cell (it renders its ``widget``).
Needs ``plotly``, ``ipywidgets`` and ``anywidget`` (``pip install 'fourdcontrast[viz]'``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from fourdviz import colors as C
from fourdviz._display import side_by_side_offsets, subsample_indices
from fourdviz._optional import require
from fourdviz.correspondences import MAX_DISPLAY_LINES, display_pairs, segments
from fourdviz.features import check_features, cosine_similarity

logger = logging.getLogger(__name__)

MAX_INTERACTIVE_POINTS = 10_000
"""Points shown per frame in the browser (WebGL stays fluid up to a few 10^4 in total)."""
MAX_PALETTE = 512
"""Most distinct colours in a point trace's colour scale (scan colours are quantised to fit)."""
MARKER_SIZE = 2.5
"""Marker size of points, pixels."""
FIGURE_HEIGHT = 560
"""Height of the explorer's figure, pixels."""
# Trajectory sampling defaults (paper, Sec. 3.3 and supplement), also the sliders' initial values.
TRAJECTORY_LENGTH = 4
STEP_RANGE = (0.30, 0.90)
MAX_TURN_DEG = 150.0
CELL_SIZE = 0.10
FLOOR_TOLERANCE = 0.20


def _plotly():
    require("ipywidgets", "the interactive explorer")
    require("anywidget", "plotly's FigureWidget (interactive explorer)")
    return require("plotly.graph_objects", "the interactive explorer")


def indexed_colors(rgb: np.ndarray, max_colors: int = MAX_PALETTE) -> tuple[np.ndarray, list, float, float]:
    """(N, 3) RGB in [0, 1] → numeric marker values plus a discrete plotly colour scale that maps them
    back to (quantised) colours.

    Numbers travel to the browser as one binary array, whereas N colour strings are validated one by one
    by plotly (seconds for 10^5 points). Colours are quantised to 16 levels per channel (8, then 4 when
    that leaves more than ``max_colors`` distinct colours).

    Returns:
        ``(values, colorscale, cmin, cmax)`` for ``marker.color``, ``marker.colorscale``, ``cmin``, ``cmax``.
    """
    rgb = np.clip(np.asarray(rgb, dtype=np.float64), 0.0, 1.0)
    for levels in (15, 7, 3):
        q = np.round(rgb * levels).astype(np.int64)
        codes = (q[:, 0] * 16 + q[:, 1]) * 16 + q[:, 2]
        uniq, inverse = np.unique(codes, return_inverse=True)
        if len(uniq) <= max_colors:
            break
    n = max(len(uniq), 1)
    hexes = [C.to_hex(np.array([c // 256, (c // 16) % 16, c % 16]) / levels) for c in uniq] or ["#000000"]
    scale = []
    for k, h in enumerate(hexes):
        scale += [[k / n, h], [(k + 1) / n, h]]
    return (inverse.reshape(-1) + 0.5) / n, scale, 0.0, 1.0


class SequenceExplorer:
    """Interactive 3D explorer of a 4D sequence in a notebook.

    Args:
        sequence: a :class:`fourdcontrast.Sequence`.
        features: optional per-frame (n_t, C) features; clicking a point then colours every frame by
            cosine similarity to that point's feature.
        layout: ``"side"`` (frames next to each other, default) or ``"overlay"`` (the 4D view in place).
        max_points: points shown per frame (random subsample, said on screen; None = all).
        max_lines: correspondence lines per consecutive frame pair.
        marker_size: point size in pixels.
        rng: generator or seed of the display subsamples.

    Attributes:
        figure: the plotly ``FigureWidget``.
        widget: the ipywidgets box (controls + figure) that the notebook displays.
        query: ``(frame, index)`` of the current query point, or None.
        similarity: similarities to the query of the displayed points, one array per point trace
            (scene and object trace of each frame, order of ``marker_colors()``); None without a query.
    """

    def __init__(
        self,
        sequence,
        features=None,
        layout: str = "side",
        max_points: int | None = MAX_INTERACTIVE_POINTS,
        max_lines: int = MAX_DISPLAY_LINES,
        marker_size: float = MARKER_SIZE,
        rng=0,
    ):
        go = _plotly()
        widgets = require("ipywidgets", "the interactive explorer")
        self.sequence = sequence
        self.features = check_features(sequence, features) if features is not None else None
        self.query: tuple[int, int] | None = None
        self.similarity: list[np.ndarray] | None = None
        T = len(sequence.frames)
        if layout == "side":
            self._offsets = side_by_side_offsets(sequence)
        elif layout == "overlay":
            self._offsets = np.zeros((T, 3))
        else:
            raise ValueError(f"SequenceExplorer: unknown layout {layout!r} (use 'side' or 'overlay')")

        # one scene trace and one object trace per frame; _traces[k] = (frame, part, point indices)
        self._traces: list[tuple[int, str, np.ndarray]] = []
        self._base_colors: list[dict] = []
        data = []
        shown = total = 0
        for t, frame in enumerate(sequence.frames):
            keep = subsample_indices(len(frame), max_points, rng)
            shown, total = shown + len(keep), total + len(frame)
            colors = C.point_colors(sequence, t)
            for part, mask in (("scene", frame.source[keep] == 0), ("object", frame.source[keep] != 0)):
                idx = keep[mask]
                p = frame.points[idx] + self._offsets[t]
                values, scale, cmin, cmax = indexed_colors(colors[idx])
                self._base_colors.append(
                    dict(color=values, colorscale=scale, cmin=cmin, cmax=cmax, showscale=False)
                )
                data.append(
                    go.Scatter3d(
                        x=p[:, 0],
                        y=p[:, 1],
                        z=p[:, 2],
                        mode="markers",
                        name=f"frame {t} {part}",
                        legendgroup=f"frame {t}",
                        marker=dict(size=marker_size, line=dict(width=0), **self._base_colors[-1]),
                        hovertemplate=f"frame {t} {part} #%{{customdata}}<extra></extra>",
                        customdata=idx,
                    )
                )
                self._traces.append((t, part, idx))
        self._n_point_traces = len(data)
        self._pair_traces = []
        for i in range(T - 1):
            a, b, _ = display_pairs(sequence, i, i + 1, max_lines, rng)
            seg = segments(
                sequence.frames[i].points[a] + self._offsets[i],
                sequence.frames[i + 1].points[b] + self._offsets[i + 1],
            )
            data.append(
                go.Scatter3d(
                    x=seg[:, 0],
                    y=seg[:, 1],
                    z=seg[:, 2],
                    mode="lines",
                    name=f"matches {i}↔{i + 1}",
                    line=dict(color=C.to_hex(C.pair_color(i, i + 1, T)), width=2),
                    hoverinfo="skip",
                )
            )
            self._pair_traces.append((i, i + 1))
        poses = np.array([f.object_pose for f in sequence.frames])
        path = poses[:, :3, 3] + self._offsets
        data.append(
            go.Scatter3d(
                x=path[:, 0],
                y=path[:, 1],
                z=path[:, 2],
                mode="lines+markers+text",
                name="trajectory",
                text=[f"t={t}" for t in range(T)],
                hoverinfo="skip",
                line=dict(color="black", width=4),
                marker=dict(size=4, color="black"),
            )
        )
        data.append(
            go.Scatter3d(
                x=[],
                y=[],
                z=[],
                mode="markers",
                name="query point",
                hoverinfo="skip",
                marker=dict(size=9, color="black", symbol="diamond", line=dict(color="white", width=2)),
            )
        )
        self._query_trace = len(data) - 1
        self.figure = go.FigureWidget(
            data=data,
            layout=go.Layout(
                height=FIGURE_HEIGHT,
                margin=dict(l=0, r=0, t=30, b=0),
                scene=dict(aspectmode="data", xaxis_title="x (m)", yaxis_title="y (m)", zaxis_title="z (m)"),
                legend=dict(itemsizing="constant"),
                uirevision="keep",
                title=dict(text=f"{sequence.scene.name} + {sequence.obj.category}: {T} frames", x=0.02),
            ),
        )
        for k in range(self._n_point_traces):
            self.figure.data[k].on_click(self._on_click)

        self.frame_slider = widgets.IntSlider(
            value=-1, min=-1, max=T - 1, description="frame", continuous_update=True
        )
        self.show_scene = widgets.Checkbox(value=True, description="scene", indent=False)
        self.show_object = widgets.Checkbox(value=True, description="object", indent=False)
        self.show_matches = widgets.Checkbox(value=True, description="correspondences", indent=False)
        for w in (self.frame_slider, self.show_scene, self.show_object, self.show_matches):
            w.observe(self._on_controls, names="value")
        self.clear_button = widgets.Button(description="clear similarity", disabled=True)
        self.clear_button.on_click(lambda _: self.clear_query())
        note = (
            f"showing {shown:,} of {total:,} points (subsampled for display)"
            if shown < total
            else f"showing all {total:,} points"
        )
        hint = (
            "click a point to colour every frame by feature similarity"
            if self.features is not None
            else "pass features= to enable the similarity heatmap"
        )
        self.status = widgets.HTML(f"<b>{note}</b> · frame −1 = all frames · {hint}")
        self.query_label = widgets.HTML("query: none")
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.frame_slider, self.show_scene, self.show_object, self.show_matches]),
                self.status,
                widgets.HBox([self.query_label, self.clear_button]),
                self.figure,
            ]
        )

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def _on_controls(self, change=None) -> None:
        f = self.frame_slider.value
        with self.figure.batch_update():
            for k, (t, part, _) in enumerate(self._traces):
                on = self.show_scene.value if part == "scene" else self.show_object.value
                self.figure.data[k].visible = bool(on and f in (-1, t))
            for k, (i, j) in enumerate(self._pair_traces):
                self.figure.data[self._n_point_traces + k].visible = bool(
                    self.show_matches.value and f in (-1, i, j)
                )

    def _on_click(self, trace, points, selector) -> None:
        if not points.point_inds:
            return
        k = next(
            n
            for n in range(self._n_point_traces)
            if self.figure.data[n] is trace or self.figure.data[n].uid == trace.uid
        )
        t, _, idx = self._traces[k]
        self.set_query(t, int(idx[points.point_inds[0]]))

    def set_query(self, frame: int, index: int) -> None:
        """Colour every frame by cosine similarity to point ``index`` of frame ``frame``."""
        f = self.sequence.frames[frame]
        self.query = (int(frame), int(index))
        what = f"frame {frame}, point {index} ({'object' if f.source[index] else 'scene'} #{f.index[index]})"
        if self.features is None:
            self.query_label.value = f"picked: {what} — no features to compare"
            return
        q = self.features[frame][index]
        # only the displayed points are compared (the rest are not drawn)
        self.similarity = cosine_similarity([self.features[t][idx] for t, _, idx in self._traces], q)
        with self.figure.batch_update():
            for k in range(self._n_point_traces):
                m = self.figure.data[k].marker
                m.color = self.similarity[k]
                m.colorscale = "Viridis"
                m.cmin, m.cmax = -1.0, 1.0
                m.showscale = k == 0
                if k == 0:
                    m.colorbar = dict(title="cosine sim.", len=0.6)
            p = f.points[index] + self._offsets[frame]
            qt = self.figure.data[self._query_trace]
            qt.x, qt.y, qt.z = [float(p[0])], [float(p[1])], [float(p[2])]
        self.query_label.value = f"query: {what} — colour = cosine similarity of features"
        self.clear_button.disabled = False
        logger.debug("similarity query %s", self.query)

    def clear_query(self) -> None:
        """Back to the scene / object colours."""
        self.query, self.similarity = None, None
        with self.figure.batch_update():
            for k in range(self._n_point_traces):
                self.figure.data[k].marker.update(self._base_colors[k])
            qt = self.figure.data[self._query_trace]
            qt.x, qt.y, qt.z = [], [], []
        self.query_label.value = "query: none"
        self.clear_button.disabled = True

    def marker_colors(self) -> list[np.ndarray]:
        """The current marker colour values of the point traces (palette indices, or similarities when
        ``showing_similarity``)."""
        return [np.asarray(self.figure.data[k].marker.color) for k in range(self._n_point_traces)]

    @property
    def showing_similarity(self) -> bool:
        """True when the point traces are coloured by similarity (colour range −1 … 1)."""
        return all(self.figure.data[k].marker.cmin == -1.0 for k in range(self._n_point_traces))


def _default_sampler():
    try:
        from fourdcontrast.data.trajectory import sample_trajectory
    except ImportError as exc:
        raise ImportError(
            "TrajectoryExplorer needs fourdcontrast.data.trajectory.sample_trajectory (the data pipeline), "
            "which is not available here; pass sampler=<callable> instead"
        ) from exc
    return sample_trajectory


class TrajectoryExplorer:
    """Sliders for the trajectory sampler's parameters; shows the height-map classification (floor,
    valid region, candidate positions) and the sampled path, redrawn on every change.

    Args:
        scene: a :class:`fourdcontrast.Scene`.
        obj: a :class:`fourdcontrast.ShapeObject`.
        sampler: ``sampler(scene, obj, length=, rng=, step_range=, max_turn_deg=, cell_size=,
            floor_tolerance=) -> Trajectory``; default ``fourdcontrast.data.trajectory.sample_trajectory``.
        seed: initial seed.

    Attributes:
        trajectory: the last sampled trajectory (None if sampling failed; see ``status``).
        figure, widget: the plotly FigureWidget and the ipywidgets box.
    """

    def __init__(self, scene, obj, sampler: Callable | None = None, seed: int = 0):
        go = _plotly()
        widgets = require("ipywidgets", "the trajectory explorer")
        self.scene, self.obj = scene, obj
        self.sampler = sampler if sampler is not None else _default_sampler()
        self.trajectory = None
        style = dict(description_width="130px")
        layout = widgets.Layout(width="420px")
        self.length = widgets.IntSlider(
            value=TRAJECTORY_LENGTH,
            min=2,
            max=12,
            description="frames",
            style=style,
            layout=layout,
            continuous_update=False,
        )
        self.step_range = widgets.FloatRangeSlider(
            value=STEP_RANGE,
            min=0.05,
            max=2.0,
            step=0.05,
            description="step range (m)",
            style=style,
            layout=layout,
            continuous_update=False,
        )
        self.max_turn = widgets.FloatSlider(
            value=MAX_TURN_DEG,
            min=0,
            max=180,
            step=5,
            description="max turn (deg)",
            style=style,
            layout=layout,
            continuous_update=False,
        )
        self.cell_size = widgets.FloatSlider(
            value=CELL_SIZE,
            min=0.05,
            max=0.30,
            step=0.01,
            description="cell size (m)",
            style=style,
            layout=layout,
            continuous_update=False,
        )
        self.floor_tolerance = widgets.FloatSlider(
            value=FLOOR_TOLERANCE,
            min=0.02,
            max=0.60,
            step=0.02,
            description="floor tolerance (m)",
            style=style,
            layout=layout,
            continuous_update=False,
        )
        self.seed = widgets.IntText(
            value=seed, description="seed", style=style, layout=widgets.Layout(width="220px")
        )
        self.resample = widgets.Button(description="next seed")
        self.resample.on_click(lambda _: setattr(self.seed, "value", self.seed.value + 1))
        self.status = widgets.HTML()
        self.figure = go.FigureWidget(
            data=[
                go.Heatmap(
                    z=[[0]],
                    colorscale=_CLASS_SCALE,
                    zmin=-0.5,
                    zmax=4.5,
                    name="cells",
                    colorbar=dict(tickvals=[0, 1, 2, 3, 4], ticktext=_CLASS_NAMES, len=0.8),
                    hovertemplate="x %{x:.2f} m, y %{y:.2f} m: %{text}<extra></extra>",
                ),
                go.Scatter(
                    x=[],
                    y=[],
                    mode="lines+markers+text",
                    name="path",
                    textposition="top right",
                    line=dict(color="#d62728", width=3),
                    marker=dict(size=9, color="#d62728"),
                ),
            ],
            layout=go.Layout(
                height=FIGURE_HEIGHT,
                margin=dict(l=50, r=10, t=40, b=40),
                xaxis=dict(title="x (m)", scaleanchor="y"),
                yaxis=dict(title="y (m)"),
                showlegend=False,
            ),
        )
        controls = [
            self.length,
            self.step_range,
            self.max_turn,
            self.cell_size,
            self.floor_tolerance,
            self.seed,
        ]
        for w in controls:
            w.observe(self.update, names="value")
        self.widget = widgets.VBox(
            [
                widgets.HBox([widgets.VBox(controls[:3]), widgets.VBox([*controls[3:], self.resample])]),
                self.status,
                self.figure,
            ]
        )
        self.update()

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def parameters(self) -> dict:
        """The sampler's keyword arguments from the current slider values."""
        return dict(
            length=int(self.length.value),
            rng=int(self.seed.value),
            step_range=tuple(self.step_range.value),
            max_turn_deg=float(self.max_turn.value),
            cell_size=float(self.cell_size.value),
            floor_tolerance=float(self.floor_tolerance.value),
        )

    def update(self, change=None) -> None:
        """Resample with the current parameters and redraw (errors are shown, not raised)."""
        params = self.parameters()
        try:
            traj = self.sampler(self.scene, self.obj, **params)
        except Exception as exc:  # noqa: BLE001 - any sampler failure is reported in the widget
            self.trajectory = None
            self.status.value = (
                f"<span style='color:#b00'>sampling failed: {type(exc).__name__}: {exc}</span>"
            )
            logger.debug("trajectory sampling failed: %s", exc)
            return
        self.trajectory = traj
        hm = traj.height_map
        classes = np.zeros(hm.shape, dtype=np.int64)
        classes[np.asarray(hm.accumulation) > 0] = 1
        classes[np.asarray(hm.floor, dtype=bool)] = 2
        classes[np.asarray(hm.valid, dtype=bool)] = 3
        if hm.candidates is not None:
            classes[np.asarray(hm.candidates, dtype=bool)] = 4
        xs = hm.origin[0] + (np.arange(hm.shape[0]) + 0.5) * hm.cell_size
        ys = hm.origin[1] + (np.arange(hm.shape[1]) + 0.5) * hm.cell_size
        names = np.array(_CLASS_NAMES, dtype=object)[classes.T]
        pos = np.asarray(traj.positions)
        steps = traj.step_lengths
        with self.figure.batch_update():
            heat = self.figure.data[0]
            heat.z, heat.x, heat.y, heat.text = classes.T, xs, ys, names
            path = self.figure.data[1]
            path.x, path.y = pos[:, 0], pos[:, 1]
            path.text = [f"t={t}" for t in range(len(pos))]
            self.figure.layout.title = (
                f"{len(pos)} positions, steps {steps.min():.2f}–{steps.max():.2f} m"
                if len(steps)
                else "trajectory"
            )
        n_cand = int(np.asarray(hm.candidates).sum()) if hm.candidates is not None else 0
        self.status.value = (
            f"floor at z = {hm.floor_height:.2f} m · {int(np.asarray(hm.valid).sum()):,} valid cells · "
            f"{n_cand:,} candidate positions (object radius {traj.object_radius:.2f} m)"
        )


_CLASS_NAMES = ["empty", "occupied", "floor", "valid", "candidate"]
_CLASS_SCALE = [
    [0.0, "#ffffff"],
    [0.2, "#ffffff"],
    [0.2, "#8c8c8c"],
    [0.4, "#8c8c8c"],
    [0.4, "#cfe3f5"],
    [0.6, "#cfe3f5"],
    [0.6, "#7fc97f"],
    [0.8, "#7fc97f"],
    [0.8, "#1b7837"],
    [1.0, "#1b7837"],
]


def explore_sequence(sequence, features=None, **kwargs) -> SequenceExplorer:
    """Shorthand for :class:`SequenceExplorer` (display the result in a notebook cell)."""
    return SequenceExplorer(sequence, features, **kwargs)


def explore_trajectory(scene, obj, sampler: Callable | None = None, **kwargs) -> TrajectoryExplorer:
    """Shorthand for :class:`TrajectoryExplorer`."""
    return TrajectoryExplorer(scene, obj, sampler, **kwargs)
