"""What per-point features separate: 2D embeddings next to the points in 3D, linked both ways.

- :func:`frame_point_labels` / :func:`voxel_labels_3d` — semantic class and object-vs-scene of every point
  (voxel) of a frame, from the provenance of the points (``Frame.source`` / ``Frame.index``) and the
  correspondences' representative point of each 3D voxel (``Correspondences.voxel_point_3d``);
- :func:`embed_many` — several feature sets of the same points embedded on one common subsample;
- :func:`plot_embedding_grid` — static grid: one row per feature set, one column per colouring;
- :func:`plot_linked_selection` — static picture of a selection in the embedding and in 3D;
- :class:`EmbeddingExplorer` — in a notebook (plotly ``FigureWidget`` + ipywidgets): box/lasso-select
  points in the embedding and see them highlighted in the 3D scene; click a point in 3D (its
  neighbourhood within a radius) or pick a class and see where those points lie in the embedding.
"""

from __future__ import annotations

import html
import logging

import numpy as np

from fourdviz import colors as C
from fourdviz._optional import require
from fourdviz.features import MAX_EMBEDDING_POINTS, embed

logger = logging.getLogger(__name__)

OBJECT_VS_SCENE = ("scene", "moving object")
"""Names of the object-vs-scene colouring (:func:`object_vs_scene`)."""
_OBJECT_LABEL = 6
"""Label of object points in :func:`object_vs_scene` (tab20 entry 6: red, against the blue scene)."""
SELECT_RADIUS = 0.3
"""Radius in metres of the neighbourhood a click in the 3D view selects."""
EMBED_MARKER_SIZE = 5.0
"""Marker size of the 2D embedding (pixels)."""
SCENE_MARKER_SIZE = 2.5
"""Marker size of the 3D view (pixels)."""
HIGHLIGHT_COLOR = "#e6007e"
"""Colour of selected points in the 3D view (magenta: not in the class palette)."""
UNSELECTED_OPACITY = 0.12
"""Opacity of unselected points while a selection exists."""
FIGURE_HEIGHT = 460
"""Height of both figures (pixels)."""
FIGURE_WIDTH = 540
"""Width of each of the two figures (pixels; they sit side by side)."""
NO_CLASS = -99
"""Value of the "select class" menu's empty entry."""


# --- labels from provenance ------------------------------------------------------------------------
def frame_point_labels(sequence, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Semantic class and object flag of every point of frame ``t``.

    Scene points take the scan's label of the point they come from (``scene.labels[frame.index]``);
    points of the moving object take the scene class of the object's category
    (:func:`fourdcontrast.sources.classes.class_of_category`, e.g. ``chair`` → chair, ``dresser`` →
    cabinet). Unlabelled scans give -1.

    Returns:
        ``(labels, is_object)``: (n_t,) int64 class ids into ``sequence.scene.class_names`` (or the
        default class set) and (n_t,) bool.
    """
    from fourdcontrast.records import SOURCE_OBJECT
    from fourdcontrast.sources.classes import CLASS_NAMES, class_of_category

    frame = sequence.frames[t]
    is_obj = frame.source == SOURCE_OBJECT
    labels = np.full(len(frame), -1, dtype=np.int64)
    scene = sequence.scene
    if scene.labels is not None:
        labels[~is_obj] = scene.labels[frame.index[~is_obj]]
    names = scene.class_names or CLASS_NAMES
    category = class_of_category(sequence.obj.category)
    labels[is_obj] = names.index(CLASS_NAMES[category]) if CLASS_NAMES[category] in names else -1
    return labels, is_obj


def voxel_labels_3d(sequence, correspondences, t: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`frame_point_labels` of the 3D voxels of frame ``t``: each voxel takes the labels of its
    representative point (``correspondences.voxel_point_3d[t]``), in the row order of
    ``correspondences.coords_3d[t]`` (and of that frame's rows in a collated batch)."""
    labels, is_obj = frame_point_labels(sequence, t)
    rep = correspondences.voxel_point_3d[t]
    return labels[rep], is_obj[rep]


def object_vs_scene(is_object) -> tuple[np.ndarray, tuple[str, ...]]:
    """A colouring ``(labels, names)`` of an object flag: scene points blue, object points red (in the
    class palette of :func:`fourdviz.colors.label_colors`)."""
    labels = np.where(np.asarray(is_object, bool), _OBJECT_LABEL, 0).astype(np.int64)
    names = (OBJECT_VS_SCENE[0],) + ("",) * (_OBJECT_LABEL - 1) + (OBJECT_VS_SCENE[1],)
    return labels, names


# --- embeddings -------------------------------------------------------------------------------------
def embed_many(features: dict, method: str = "auto", max_points: int = MAX_EMBEDDING_POINTS, rng=0,
               keep=None) -> tuple[dict, np.ndarray, str]:
    """Embed several feature sets of the same N points on one common subsample.

    Args:
        features: ``{name: (N, C) array}`` (widths may differ between sets).
        method: see :func:`fourdviz.features.embed`.
        max_points: points embedded (random subsample shared by all sets).
        rng: generator or seed.
        keep: optional (N,) bool of points always kept (e.g. the few object points), the rest filled at
            random up to ``max_points``.

    Returns:
        ``({name: (K, 2) coordinates}, chosen (K,) indices into the N points, method used)``.
    """
    from fourdcontrast.geometry import as_rng

    names = list(features)
    n = len(features[names[0]])
    if any(len(features[k]) != n for k in names):
        raise ValueError("embed_many: every feature set needs one row per point")
    gen = as_rng(rng)
    must = np.flatnonzero(keep) if keep is not None else np.zeros(0, np.int64)
    must = must[:max_points]
    rest = np.setdiff1d(np.arange(n), must)
    extra = max(0, min(max_points, n) - len(must))
    chosen = np.sort(np.concatenate([must, gen.choice(rest, size=min(extra, len(rest)), replace=False)]))
    out, used = {}, method
    for name in names:
        seed = int(gen.integers(2**31 - 1))
        xy, _, used = embed(np.asarray(features[name])[chosen], method=method, max_points=len(chosen),
                            rng=seed)
        out[name] = xy
    return out, chosen.astype(np.int64), used


def _label_legend(ax, labels, class_names):
    from matplotlib.lines import Line2D

    values, counts = np.unique(labels, return_counts=True)
    handles = [Line2D([], [], marker="o", ls="", color=C.label_colors(np.array([v]))[0], markersize=5,
                      label=f"{_name(class_names, v)} ({c})") for v, c in zip(values, counts, strict=True)]
    ax.legend(handles=handles, fontsize=7, loc="best", framealpha=0.8)


def _name(class_names, value: int) -> str:
    value = int(value)
    if value < 0:
        return "unlabelled"
    return class_names[value] if class_names is not None and value < len(class_names) else str(value)


def plot_embedding_grid(embeddings: dict, colorings: dict, method: str = "", titles: dict | None = None,
                        point_size: float = 3.0):
    """Static grid of 2D embeddings: one row per feature set, one column per colouring.

    Args:
        embeddings: ``{name: (K, 2)}`` (e.g. from :func:`embed_many`).
        colorings: ``{name: (labels (K,) int, class names)}``; labels -1 are grey.
        method: the embedding's name for the axis labels (``"tsne"``, ``"umap"``, ``"pca"``).
        titles: optional extra text per feature set (e.g. a score).
        point_size: marker area.
    """
    from fourdviz.static import _figure

    rows, cols = len(embeddings), len(colorings)
    fig = _figure(4.0 * cols, 3.6 * rows)
    for r, (ename, xy) in enumerate(embeddings.items()):
        for c, (cname, (labels, names)) in enumerate(colorings.items()):
            ax = fig.add_subplot(rows, cols, r * cols + c + 1)
            labels = np.asarray(labels).astype(np.int64)
            order = np.argsort(labels >= 0, kind="stable")  # unlabelled first (underneath)
            ax.scatter(xy[order, 0], xy[order, 1], c=C.label_colors(labels[order]), s=point_size,
                       linewidths=0)
            if c == 0:
                extra = f" — {titles[ename]}" if titles and ename in titles else ""
                ax.set_ylabel(f"{ename}{extra}\n{method} 2", fontsize=9)
            ax.set_xlabel(f"{method} 1", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"coloured by {cname}", fontsize=10)
            _label_legend(ax, labels, names)
    return fig


def plot_linked_selection(points: np.ndarray, xy: np.ndarray, labels: np.ndarray, selected,
                          class_names=None, title: str | None = None, elev: float = 55.0,
                          azim: float = -60.0):
    """A selection shown both ways: the embedding (selected points outlined, others faded) and the 3D
    points (selected in magenta over the faded scene, coloured by class).

    Args:
        points: (K, 3) positions; xy: (K, 2) embedding; labels: (K,) class ids.
        selected: indices (or a (K,) bool mask) of the selected points.
    """
    from fourdviz.static import _equal_3d, _figure

    labels = np.asarray(labels).astype(np.int64)
    sel = np.zeros(len(points), bool)
    sel[np.asarray(selected)] = True
    colors = C.label_colors(labels)
    fig = _figure(11.5, 4.8)
    ax = fig.add_subplot(1, 2, 1)
    ax.scatter(xy[~sel, 0], xy[~sel, 1], c=colors[~sel], s=4, alpha=0.3, linewidths=0)
    ax.scatter(xy[sel, 0], xy[sel, 1], c=colors[sel], s=12, edgecolors=HIGHLIGHT_COLOR, linewidths=0.8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"embedding: {int(sel.sum())} of {len(sel)} points selected", fontsize=10)
    _label_legend(ax, labels[sel] if sel.any() else labels, class_names)
    ax3 = fig.add_subplot(1, 2, 2, projection="3d")
    ax3.view_init(elev=elev, azim=azim)
    ax3.scatter(*points[~sel].T, c=colors[~sel], s=2, alpha=0.35, linewidths=0, depthshade=False)
    ax3.scatter(*points[sel].T, c=HIGHLIGHT_COLOR, s=6, linewidths=0, depthshade=False)
    _equal_3d(ax3, points)
    ax3.set_title("the same points in the scene (selected: magenta)", fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def plot_similarity_rows(sequence, features: dict, query: tuple[int, int], titles: dict | None = None,
                         max_points: int | None = 6000, crop: float | None = None, rng=0, elev: float = 55.0,
                         azim: float = -60.0):
    """Feature-similarity heatmaps of several feature sets of one sequence, one row per set, one column per
    frame: every point coloured by the cosine similarity of its feature to the query point's
    ``(frame, index)`` (black star), so e.g. random and pre-trained features compare point for point.

    Args:
        sequence: a :class:`fourdcontrast.Sequence`.
        features: ``{name: per-frame (n_t, C) arrays}``.
        query: ``(frame, point index)``.
        titles: optional extra text per feature set (e.g. its feature-match recall).
        max_points: points drawn per frame (the same subsample for every row; the object's points are
            always drawn).
        crop: draw only the points within ``crop`` metres (in x-y) of the object's path — a close-up of
            the moving object and its surroundings (None: the whole scene).
    """
    from fourdviz._display import subsample_indices
    from fourdviz.features import check_features, query_similarity
    from fourdviz.static import _equal_3d, _figure

    T = len(sequence.frames)  # noqa: N806
    rows = len(features)
    fig = _figure(2.8 * T + 1.0, 2.8 * rows + 0.4)
    from fourdcontrast.records import SOURCE_OBJECT

    path = np.array([f.object_pose[:2, 3] for f in sequence.frames])
    keeps = []
    for f in sequence.frames:
        inside = np.ones(len(f), bool)
        if crop is not None:
            d = np.linalg.norm(f.points[:, None, :2] - path[None], axis=2).min(axis=1)
            inside = d <= crop
        candidates = np.flatnonzero(inside & (f.source != SOURCE_OBJECT))
        sub = candidates[subsample_indices(len(candidates), max_points, rng)]
        keeps.append(np.sort(np.concatenate([sub, np.flatnonzero(f.source == SOURCE_OBJECT)])))
    all_pts = np.concatenate([f.points[k] for f, k in zip(sequence.frames, keeps, strict=True)])
    sc = None
    for r, (name, feats) in enumerate(features.items()):
        sims = query_similarity(check_features(sequence, feats), *query)
        for t in range(T):
            ax = fig.add_subplot(rows, T, r * T + t + 1, projection="3d")
            ax.view_init(elev=elev, azim=azim)
            keep = keeps[t]
            order = keep[np.argsort(sims[t][keep])]  # most similar on top
            p = sequence.frames[t].points[order]
            sc = ax.scatter(p[:, 0], p[:, 1], p[:, 2], c=sims[t][order], cmap=C.SIMILARITY_CMAP, vmin=-1,
                            vmax=1, s=1.5, linewidths=0, depthshade=False)
            if t == query[0]:
                q = sequence.frames[t].points[query[1]]
                ax.scatter(*q, marker="*", s=200, c=[C.QUERY_COLOR], edgecolors="w", linewidths=0.8,
                           zorder=10)
            _equal_3d(ax, all_pts)
            ax.set_axis_off()
            label = f"frame {t}" + (" (query)" if t == query[0] else "")
            if t == 0:
                extra = f"\n{titles[name]}" if titles and name in titles else ""
                label = f"{name}{extra}\n{label}"
            ax.set_title(label, fontsize=9)
    fig.colorbar(sc, ax=fig.axes, shrink=0.5, label="cosine similarity to the query")
    return fig


def plot_selection_across(embeddings: dict, labels: np.ndarray, selected, class_names=None,
                          points: np.ndarray | None = None, title: str | None = None, panel: float = 3.4):
    """One selection in several embeddings at once (one panel per feature set: selected points in colour
    and outlined, the rest faded), and optionally where the points are in 3D (first panel).

    Args:
        embeddings: ``{name: (K, 2)}`` of the same K points.
        labels: (K,) class ids (colours); selected: indices or a (K,) bool mask.
        points: optional (K, 3) positions for a 3D panel of the selection (magenta over the faded rest).
        panel: size of one panel in inches.
    """
    from fourdviz.static import _equal_3d, _figure

    labels = np.asarray(labels).astype(np.int64)
    k = len(labels)
    sel = np.zeros(k, bool)
    sel[np.asarray(selected)] = True
    colors = C.label_colors(labels)
    n = len(embeddings) + (points is not None)
    fig = _figure(panel * n, panel + 0.5)
    col = 1
    if points is not None:
        ax3 = fig.add_subplot(1, n, 1, projection="3d")
        ax3.view_init(elev=55.0, azim=-60.0)
        ax3.scatter(*points[~sel].T, c=colors[~sel], s=1.5, alpha=0.3, linewidths=0, depthshade=False)
        ax3.scatter(*points[sel].T, c=HIGHLIGHT_COLOR, s=5, linewidths=0, depthshade=False)
        _equal_3d(ax3, points)
        ax3.set_axis_off()
        ax3.set_title(f"{int(sel.sum())} points in the scene", fontsize=9)
        col = 2
    for c, (name, xy) in enumerate(embeddings.items(), start=col):
        ax = fig.add_subplot(1, n, c)
        ax.scatter(xy[~sel, 0], xy[~sel, 1], c=colors[~sel], s=2, alpha=0.25, linewidths=0)
        ax.scatter(xy[sel, 0], xy[sel, 1], c=colors[sel], s=7, edgecolors=HIGHLIGHT_COLOR, linewidths=0.5)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{name} features", fontsize=9)
    if sel.any():
        _label_legend(fig.axes[col - 1], labels[sel], class_names)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


# --- the interactive explorer -----------------------------------------------------------------------
def _plotly():
    require("ipywidgets", "the embedding explorer")
    require("anywidget", "plotly's FigureWidget (embedding explorer)")
    return require("plotly.graph_objects", "the embedding explorer")


class EmbeddingExplorer:
    """Linked views of per-point features: a 2D embedding and the same points in 3D.

    * **embedding → scene**: box- or lasso-select points in the embedding (the plot's drag mode; box by
      default) and they are highlighted in the 3D view;
    * **scene → embedding**: click a point in the 3D view and its neighbourhood (``radius`` metres) is
      selected, or pick a class in the "select class" menu; the selection is highlighted in the embedding.

    Args:
        points: (K, 3) positions of the embedded points (metres).
        embeddings: ``{name: (K, 2)}`` — one or several feature sets (a menu switches between them), or
            one (K, 2) array.
        colorings: ``{name: (labels (K,) int, class names)}`` — colour menus (the first is the default and
            the one "select class" uses).
        radius: neighbourhood selected by a click in 3D.
        title: figure title.

    Attributes:
        selected: (k,) int64 indices of the selected points (empty: nothing selected).
        embedding_figure, scene_figure: the two plotly ``FigureWidget``s; ``widget``: the whole view.
    """

    def __init__(self, points, embeddings, colorings: dict | None = None, radius: float = SELECT_RADIUS,
                 title: str | None = None):
        go = _plotly()
        widgets = require("ipywidgets", "the embedding explorer")
        from fourdviz.interactive import indexed_colors

        self.points = np.asarray(points, dtype=np.float64)
        k = len(self.points)
        if not isinstance(embeddings, dict):
            embeddings = {"features": embeddings}
        self.embeddings = {name: np.asarray(xy, dtype=np.float64) for name, xy in embeddings.items()}
        for name, xy in self.embeddings.items():
            if xy.shape != (k, 2):
                raise ValueError(f"embedding {name!r} has shape {xy.shape}, expected ({k}, 2)")
        self.colorings = dict(colorings or {"none": (np.zeros(k, np.int64), ("points",))})
        for name, (labels, _) in self.colorings.items():
            if len(labels) != k:
                raise ValueError(f"colouring {name!r} has {len(labels)} labels for {k} points")
        self.colorings = {name: (np.asarray(lab).astype(np.int64), names)
                          for name, (lab, names) in self.colorings.items()}
        self._indexed = {name: indexed_colors(C.label_colors(lab))
                         for name, (lab, _) in self.colorings.items()}
        self.selected = np.zeros(0, dtype=np.int64)
        self._source = "code"
        first_e, first_c = next(iter(self.embeddings)), next(iter(self.colorings))
        self._embedding_name, self._coloring_name = first_e, first_c
        values, scale, cmin, cmax = self._indexed[first_c]
        hover = self._hover_text()
        xy = self.embeddings[first_e]
        self.embedding_figure = go.FigureWidget(
            data=[go.Scatter(
                x=xy[:, 0], y=xy[:, 1], mode="markers", name="points", text=hover,
                hovertemplate="%{text}<extra></extra>",
                marker=dict(size=EMBED_MARKER_SIZE, color=values, colorscale=scale, cmin=cmin, cmax=cmax,
                            line=dict(width=0)),
                selected=dict(marker=dict(opacity=1.0)),
                unselected=dict(marker=dict(opacity=UNSELECTED_OPACITY)),
            )],
            layout=go.Layout(height=FIGURE_HEIGHT, width=FIGURE_WIDTH, dragmode="select",
                             margin=dict(l=10, r=10, t=40, b=10),
                             title=dict(text=f"embedding: {first_e} (drag to select)", x=0.02),
                             xaxis=dict(showticklabels=False, zeroline=False),
                             yaxis=dict(showticklabels=False, zeroline=False), showlegend=False,
                             uirevision="keep"),
        )
        p = self.points
        self.scene_figure = go.FigureWidget(
            data=[
                go.Scatter3d(x=p[:, 0], y=p[:, 1], z=p[:, 2], mode="markers", name="points", text=hover,
                             hovertemplate="%{text}<extra></extra>",
                             marker=dict(size=SCENE_MARKER_SIZE, color=values, colorscale=scale, cmin=cmin,
                                         cmax=cmax, line=dict(width=0), opacity=1.0)),
                go.Scatter3d(x=[], y=[], z=[], mode="markers", name="selection", hoverinfo="skip",
                             marker=dict(size=SCENE_MARKER_SIZE + 1.5, color=HIGHLIGHT_COLOR,
                                         line=dict(width=0))),
            ],
            layout=go.Layout(height=FIGURE_HEIGHT, width=FIGURE_WIDTH, margin=dict(l=0, r=0, t=40, b=0),
                             showlegend=False,
                             title=dict(text=title or "the same points in 3D (click: select around)", x=0.02),
                             scene=dict(aspectmode="data", xaxis_title="x (m)", yaxis_title="y (m)",
                                        zaxis_title="z (m)"),
                             uirevision="keep"),
        )
        self.embedding_figure.data[0].on_selection(self._on_embedding_selection)
        self.embedding_figure.data[0].on_deselect(lambda *_: self.clear())
        self.scene_figure.data[0].on_click(self._on_scene_click)

        self.embedding_menu = widgets.Dropdown(options=list(self.embeddings), value=first_e,
                                               description="features")
        self.coloring_menu = widgets.Dropdown(options=list(self.colorings), value=first_c,
                                              description="colour by")
        labels0, names0 = self.colorings[first_c]
        classes = [(f"{_name(names0, int(v))} ({int((np.asarray(labels0) == v).sum())})", int(v))
                   for v in np.unique(labels0)]
        self.class_menu = widgets.Dropdown(options=[("—", NO_CLASS), *classes], value=NO_CLASS,
                                           description="select class")
        self.radius = widgets.FloatSlider(value=radius, min=0.05, max=1.5, step=0.05,
                                          description="click radius (m)",
                                          style=dict(description_width="110px"))
        self.clear_button = widgets.Button(description="clear selection")
        self.embedding_menu.observe(self._on_embedding_menu, names="value")
        self.coloring_menu.observe(self._on_coloring_menu, names="value")
        self.class_menu.observe(self._on_class_menu, names="value")
        self.clear_button.on_click(lambda _: self.clear())
        self.legend = widgets.HTML(self._legend_html())
        self.status = widgets.HTML("nothing selected — drag a box in the embedding, click a point in 3D, or "
                                   "pick a class")
        self.widget = widgets.VBox([
            widgets.HBox([self.embedding_menu, self.coloring_menu, self.class_menu]),
            widgets.HBox([self.radius, self.clear_button]),
            self.legend,
            self.status,
            widgets.HBox([self.embedding_figure, self.scene_figure],
                         layout=widgets.Layout(width="100%")),
        ])

    # --- display ---------------------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def _hover_text(self) -> list[str]:
        parts = []
        for name, (labels, names) in self.colorings.items():
            parts.append([f"{name}: {_name(names, int(v))}" for v in labels])
        return [f"#{i}<br>" + "<br>".join(col[i] for col in parts) for i in range(len(self.points))]

    def _legend_html(self) -> str:
        labels, names = self.colorings[self._coloring_name]
        values, counts = np.unique(labels, return_counts=True)
        items = [f"<span style='display:inline-block;width:10px;height:10px;margin:0 3px 0 10px;"
                 f"background:{C.to_hex(C.label_colors(np.array([v]))[0])}'></span>"
                 f"{html.escape(_name(names, int(v)))} ({c})" for v, c in zip(values, counts, strict=True)]
        return "<div style='font-size:12px'>" + "".join(items) + "</div>"

    # --- callbacks -------------------------------------------------------------------------------------
    def _on_embedding_selection(self, trace, points, selector) -> None:
        self.select(points.point_inds, source="embedding")

    def _on_scene_click(self, trace, points, selector) -> None:
        if points.point_inds:
            self.select_around(int(points.point_inds[0]))

    def _on_embedding_menu(self, change) -> None:
        self._embedding_name = change["new"]
        xy = self.embeddings[self._embedding_name]
        with self.embedding_figure.batch_update():
            t = self.embedding_figure.data[0]
            t.x, t.y = xy[:, 0], xy[:, 1]
            self.embedding_figure.layout.title.text = f"embedding: {self._embedding_name}"
        self._show_selection()

    def _on_coloring_menu(self, change) -> None:
        self._coloring_name = change["new"]
        values, scale, cmin, cmax = self._indexed[self._coloring_name]
        for fig in (self.embedding_figure, self.scene_figure):
            fig.data[0].marker.update(color=values, colorscale=scale, cmin=cmin, cmax=cmax)
        self.legend.value = self._legend_html()

    def _on_class_menu(self, change) -> None:
        if change["new"] == NO_CLASS:
            return
        labels = np.asarray(next(iter(self.colorings.values()))[0])
        self.select(np.flatnonzero(labels == change["new"]), source="class")

    # --- selection -------------------------------------------------------------------------------------
    def select(self, indices, source: str = "code") -> None:
        """Select points by index (into the K points) and highlight them in both views."""
        idx = np.unique(np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices,
                                   dtype=np.int64))
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self.points)):
            raise IndexError(f"selection outside the {len(self.points)} points")
        self.selected = idx
        self._source = source
        self._show_selection()

    def select_around(self, index: int, radius: float | None = None) -> None:
        """Select the points within ``radius`` metres (the slider's value by default) of point ``index``."""
        r = self.radius.value if radius is None else float(radius)
        d = np.linalg.norm(self.points - self.points[int(index)], axis=1)
        self.select(np.flatnonzero(d <= r), source=f"3D click on #{int(index)}")

    def select_box(self, x0: float, x1: float, y0: float, y1: float) -> None:
        """Select the points whose current embedding coordinates lie in the box (what a box drag does)."""
        xy = self.embeddings[self._embedding_name]
        inside = (xy[:, 0] >= min(x0, x1)) & (xy[:, 0] <= max(x0, x1)) & (xy[:, 1] >= min(y0, y1)) & (
            xy[:, 1] <= max(y0, y1))
        self.select(np.flatnonzero(inside), source="box")

    def clear(self) -> None:
        """Remove the selection."""
        self.selected = np.zeros(0, dtype=np.int64)
        self.class_menu.value = NO_CLASS
        self._show_selection()

    def _show_selection(self) -> None:
        sel = self.selected
        with self.embedding_figure.batch_update():
            self.embedding_figure.data[0].selectedpoints = sel.tolist() if len(sel) else None
        with self.scene_figure.batch_update():
            h = self.scene_figure.data[1]
            p = self.points[sel]
            h.x, h.y, h.z = p[:, 0], p[:, 1], p[:, 2]
            self.scene_figure.data[0].marker.opacity = UNSELECTED_OPACITY * 2 if len(sel) else 1.0
        self.status.value = self.describe()

    def describe(self) -> str:
        """One line about the selection: its size and its make-up by the first colouring."""
        if not len(self.selected):
            return "nothing selected"
        labels, names = next(iter(self.colorings.values()))
        values, counts = np.unique(np.asarray(labels)[self.selected], return_counts=True)
        order = np.argsort(-counts)
        n = len(self.selected)
        mix = ", ".join(f"{_name(names, int(values[i]))} {counts[i] / n:.0%}" for i in order[:5])
        return f"<b>{n} points selected</b> ({self._source}) — {mix}"

    def highlighted_3d(self) -> np.ndarray:
        """(k, 3) positions currently drawn as highlighted in the 3D view."""
        h = self.scene_figure.data[1]
        if h.x is None or not len(h.x):
            return np.zeros((0, 3))
        return np.column_stack([np.asarray(h.x, float), np.asarray(h.y, float), np.asarray(h.z, float)])

    def snapshot(self, title: str | None = None):
        """A static (matplotlib) picture of the current state: :func:`plot_linked_selection`."""
        labels, names = self.colorings[self._coloring_name]
        return plot_linked_selection(self.points, self.embeddings[self._embedding_name], np.asarray(labels),
                                     self.selected, names, title=title)


def explore_embedding(points, embeddings, colorings: dict | None = None, **kwargs) -> EmbeddingExplorer:
    """Shorthand for :class:`EmbeddingExplorer` (display the result in a notebook cell)."""
    return EmbeddingExplorer(points, embeddings, colorings, **kwargs)


__all__ = [
    "OBJECT_VS_SCENE",
    "EmbeddingExplorer",
    "embed_many",
    "explore_embedding",
    "frame_point_labels",
    "object_vs_scene",
    "plot_embedding_grid",
    "plot_linked_selection",
    "plot_selection_across",
    "plot_similarity_rows",
    "voxel_labels_3d",
]
