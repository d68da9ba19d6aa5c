"""Instances and axis-aligned boxes — what instance segmentation and 3D detection predict, next to the
ground truth.

- :func:`instance_colors` — every point coloured by its instance (distinct colours, stuff and unassigned
  points grey); :func:`match_instances` gives a prediction the colour of the ground-truth instance it
  overlaps, so the same object has the same colour in every panel;
- :func:`box_corners` / :func:`box_segments` — the 8 corners and 12 edges of axis-aligned boxes;
- matplotlib: :func:`plot_instances`, :func:`plot_boxes` (wireframes in 3D, rectangles from above, colour
  per class, optional scores) and :func:`plot_detection_comparison` (ground truth and predictions side by
  side, one call);
- plotly: :func:`instances_figure` and :func:`boxes_figure` (box wireframes as line traces).

Boxes are ``(K, 6)`` arrays of min xyz / max xyz in metres — the layout of
:func:`fourdcontrast.downstream.detection.box_targets` and ``predict_boxes``. Instance ids are ``(N,)``
ints per point, negative for stuff (wall, floor) and unassigned points. Colours come from
:mod:`fourdviz.colors`: boxes take their class's colour of :func:`~fourdviz.colors.label_colors` (the
semantic-label colours of the notebooks), instances a colour of their own.
"""

from __future__ import annotations

import numpy as np

from fourdcontrast.geometry import as_rng
from fourdviz import colors as C
from fourdviz._display import subsample_indices
from fourdviz._optional import require

__all__ = [
    "BOX_EDGES",
    "box_corners",
    "box_segments",
    "boxes_figure",
    "check_boxes",
    "class_color",
    "clip_boxes",
    "instance_colors",
    "instances_first",
    "instances_figure",
    "masks_to_ids",
    "match_instances",
    "plot_boxes",
    "plot_detection_comparison",
    "plot_instances",
    "plot_view",
    "view_boxes",
]

MAX_TOP_POINTS = 30_000
"""Points drawn in a top-down panel (2D scatters stay fast well beyond this)."""
MAX_3D_POINTS = 6000
"""Points drawn in a 3D panel (matplotlib's 3D scatter slows beyond ~10^4)."""
MAX_PLOTLY_POINTS = 15_000
"""Points sent to the browser by the plotly figures."""
MATCH_IOU = 0.5
"""Point IoU at which a predicted instance counts as a ground-truth one (the colour it takes)."""
UNMATCHED_COLOR = (0.25, 0.25, 0.25)
"""Dark grey of the unmatched-prediction label in legends (each unmatched prediction keeps a colour)."""

BOX_EDGES: np.ndarray = np.array(
    [(0, 1), (1, 3), (3, 2), (2, 0),  # bottom face (z = min)
     (4, 5), (5, 7), (7, 6), (6, 4),  # top face (z = max)
     (0, 4), (1, 5), (2, 6), (3, 7)],  # verticals
    dtype=np.int64)
"""The 12 edges of a box as pairs of corner indices of :func:`box_corners` (corner ``k`` takes max x when
bit 0 of ``k`` is set, max y for bit 1, max z for bit 2)."""


# --- geometry and colours (numpy only) ------------------------------------------------------------
def check_boxes(boxes, classes=None, scores=None, what: str = "boxes"):
    """Validated ``(boxes (K, 6) float64, classes (K,) int64 or None, scores (K,) float64 or None)``.

    Raises:
        ValueError: one message naming ``what`` and the problem — not (K, 6), not finite, a min above its
            max, or ``classes`` / ``scores`` of another length.
    """
    b = np.asarray(boxes, dtype=np.float64)
    if b.size == 0:
        b = b.reshape(0, 6)
    if b.ndim != 2 or b.shape[1] != 6:
        raise ValueError(f"{what}: expected a (K, 6) array of min xyz / max xyz in metres, got shape "
                         f"{b.shape}")
    if not np.isfinite(b).all():
        raise ValueError(f"{what}: {int((~np.isfinite(b)).any(1).sum())} of {len(b)} boxes are not finite")
    bad = np.flatnonzero((b[:, :3] > b[:, 3:]).any(1))
    if len(bad):
        raise ValueError(f"{what}: box {int(bad[0])} has a min corner above its max corner "
                         f"({b[bad[0]].tolist()}); boxes are min xyz then max xyz")
    out = [b]
    for name, values, dtype in (("classes", classes, np.int64), ("scores", scores, np.float64)):
        if values is None:
            out.append(None)
            continue
        v = np.asarray(values)
        if v.shape != (len(b),):
            raise ValueError(f"{what}: {name} has shape {v.shape}, expected ({len(b)},) — one per box")
        out.append(v.astype(dtype))
    return tuple(out)


def box_corners(boxes) -> np.ndarray:
    """(K, 8, 3) corners of axis-aligned boxes (K, 6) (min xyz / max xyz, metres); corner ``k`` takes the
    max of x / y / z where bit 0 / 1 / 2 of ``k`` is set."""
    b, _, _ = check_boxes(boxes)
    bits = (np.arange(8)[:, None] >> np.arange(3)[None, :]) & 1  # (8, 3)
    return np.where(bits[None].astype(bool), b[:, None, 3:], b[:, None, :3])


def box_segments(boxes) -> np.ndarray:
    """(K, 12, 2, 3) the 12 edges of every box as segments (start, end), metres (:data:`BOX_EDGES`)."""
    corners = box_corners(boxes)
    return corners[:, BOX_EDGES]


def clip_boxes(boxes, points) -> np.ndarray:
    """(K, 6) boxes cut at the axis-aligned bounding box of ``points`` (N, 3) — for display: a box wholly
    outside becomes flat on the border nearest to it."""
    b, _, _ = check_boxes(boxes)
    p = _check_points(points)
    if not len(p):
        return b
    lo, hi = p.min(0), p.max(0)
    return np.concatenate([np.clip(b[:, :3], lo, hi), np.clip(b[:, 3:], lo, hi)], axis=1)


def _check_points(points, what: str = "points") -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"{what}: expected an (N, 3) array of positions in metres, got shape {p.shape}")
    return p


def _check_ids(instance_ids, n: int, what: str = "instance_ids") -> np.ndarray:
    ids = np.asarray(instance_ids)
    if ids.shape != (n,):
        raise ValueError(f"{what}: shape {ids.shape}, expected ({n},) — one instance id per point")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{what}: expected integer instance ids (negative: none), got dtype {ids.dtype}")
    return ids.astype(np.int64)


def masks_to_ids(masks, ids=None) -> np.ndarray:
    """(P, N) bool instance masks → (N,) int64 instance id per point (``ids[p]``, default ``p``; -1 where no
    mask covers the point; where masks overlap, the later mask wins)."""
    m = np.asarray(masks, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"masks: expected a (P, N) boolean array, got shape {m.shape}")
    ids = np.arange(len(m)) if ids is None else np.asarray(ids, dtype=np.int64)
    if ids.shape != (len(m),):
        raise ValueError(f"masks: {len(ids)} ids for {len(m)} masks")
    out = np.full(m.shape[1], -1, dtype=np.int64)
    for k in range(len(m)):
        out[m[k]] = ids[k]
    return out


def match_instances(predicted, reference, iou: float = MATCH_IOU) -> np.ndarray:
    """Relabel ``predicted`` (N,) instance ids so that a prediction takes the id of the ``reference`` (N,)
    instance it overlaps with point IoU ≥ ``iou`` (greedy, best pair first, each reference instance at most
    once); unmatched predictions get new ids above every reference id. Negative ids stay as they are.
    With the result, :func:`instance_colors` gives a found object the colour of its ground truth."""
    pred = _check_ids(predicted, len(np.asarray(predicted)), "predicted")
    ref = _check_ids(reference, len(pred), "reference")
    p_ids, r_ids = np.unique(pred[pred >= 0]), np.unique(ref[ref >= 0])
    out = pred.copy()
    if not len(p_ids):
        return out
    pi = np.searchsorted(p_ids, pred)
    ri = np.searchsorted(r_ids, ref) if len(r_ids) else np.zeros_like(ref)
    both = (pred >= 0) & (ref >= 0)
    inter = np.zeros((len(p_ids), max(len(r_ids), 1)))
    np.add.at(inter, (pi[both], ri[both]), 1)
    p_size = np.bincount(pi[pred >= 0], minlength=len(p_ids))[:, None]
    r_size = np.bincount(ri[ref >= 0], minlength=max(len(r_ids), 1))[None, :]
    ious = inter / np.maximum(p_size + r_size - inter, 1)
    mapping, used = {}, set()
    for flat in np.argsort(-ious, axis=None, kind="stable"):
        a, b = np.unravel_index(flat, ious.shape)
        if ious[a, b] < iou or not len(r_ids):
            break
        if a in mapping or b in used:
            continue
        mapping[a] = int(r_ids[b])
        used.add(b)
    fresh = (int(r_ids.max()) + 1) if len(r_ids) else 0
    for a in range(len(p_ids)):
        if a not in mapping:
            mapping[a], fresh = fresh, fresh + 1
    table = np.array([mapping[a] for a in range(len(p_ids))], dtype=np.int64)
    out[pred >= 0] = table[pi[pred >= 0]]
    return out


_INSTANCE_ORDER = (0, 2, 4, 6, 8, 10, 12, 16, 18, 1, 3, 5, 7, 9, 11, 13, 17, 19)
"""tab20 entries of the instance palette: its 9 dark colours, then their 9 light partners (its greys, 14 and
15, left out so that no instance looks like stuff): consecutive ids get different hues."""


def _instance_table() -> np.ndarray:
    return C.label_colors(np.array(_INSTANCE_ORDER))


def instance_colors(instance_ids) -> np.ndarray:
    """(N,) instance ids → (N, 3) float32 colours: one colour per id (the id indexes an 18-colour palette —
    tab20 without its greys, dark colours first — so the same id has the same colour in every panel; ids
    18 apart share one),
    negative ids (stuff, unassigned) grey (:data:`~fourdviz.colors.SCENE_COLOR`)."""
    ids = np.asarray(instance_ids, dtype=np.int64)
    table = _instance_table()
    out = table[np.mod(ids, len(table))].astype(np.float32)
    out[ids < 0] = C.SCENE_COLOR
    return out


def class_color(c: int) -> tuple[float, float, float]:
    """Colour of class ``c``'s boxes: its semantic-label colour (:func:`~fourdviz.colors.label_colors`)."""
    return tuple(float(v) for v in C.label_colors(np.array([int(c)]))[0])  # type: ignore[return-value]


def _count(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


def _class_name(class_names, c: int) -> str:
    return class_names[c] if class_names is not None and 0 <= c < len(class_names) else f"class {c}"


# --- matplotlib -----------------------------------------------------------------------------------
def _new_axes(view: str, width: float = 5.5, height: float = 5.0):
    from fourdviz.static import _axes3d, _figure

    fig = _figure(width, height)
    return fig, (_axes3d(fig, 1, 1, 1) if view == "3d" else fig.add_subplot(1, 1, 1))


def _check_view(view: str) -> None:
    if view not in ("top", "3d"):
        raise ValueError(f"view must be 'top' (seen from above) or '3d', got {view!r}")


def _is_3d(ax) -> bool:
    return getattr(ax, "name", "") == "3d"


def _style(ax, points: np.ndarray, title: str | None) -> None:
    from fourdviz.static import _equal_3d, _top_down

    if not _is_3d(ax):
        _top_down(ax, title, xlabel="x (m)")
        return
    _equal_3d(ax, points)
    if title:
        ax.set_title(title, fontsize=10)


def instances_first(instance_ids, max_points: int | None, rng=0) -> np.ndarray:
    """Sorted indices of at most ``max_points`` points to draw, instance points first: they get up to 3/4 of
    the budget (all of it when there are few stuff points), stuff and unassigned points the rest (and
    whatever the instances leave), each a random subsample. All points when ``max_points`` is None or
    larger than their number. A room is mostly wall and floor, so a plain subsample would thin its
    objects out with it."""
    ids = np.asarray(instance_ids)
    if max_points is None or len(ids) <= max_points:
        return np.arange(len(ids), dtype=np.int64)
    inst, stuff = np.flatnonzero(ids >= 0), np.flatnonzero(ids < 0)
    n_inst = min(len(inst), max(max_points - len(stuff), (3 * max_points) // 4))
    n_stuff = min(len(stuff), max_points - n_inst)
    r = as_rng(rng)
    return np.sort(np.concatenate([r.choice(inst, n_inst, replace=False),
                                   r.choice(stuff, n_stuff, replace=False)])).astype(np.int64)


def _draw_points(ax, points: np.ndarray, colors: np.ndarray, max_points: int | None, rng, size: float,
                 ids: np.ndarray | None = None) -> int:
    """Scatter a subsample of ``points`` (instance points first when ``ids`` are given; top-down: highest
    drawn last); returns how many were drawn."""
    limit = MAX_3D_POINTS if _is_3d(ax) else MAX_TOP_POINTS
    limit = limit if max_points is None else max_points
    keep = subsample_indices(len(points), limit, rng) if ids is None else instances_first(ids, limit, rng)
    if not _is_3d(ax):
        keep = keep[np.argsort(points[keep, 2], kind="stable")]
        ax.scatter(points[keep, 0], points[keep, 1], c=colors[keep], s=size, linewidths=0)
    elif len(keep):
        ax.scatter(points[keep, 0], points[keep, 1], points[keep, 2], c=colors[keep], s=size, linewidths=0,
                   depthshade=False)
    return len(keep)


def plot_instances(points, instance_ids, ax=None, view: str = "top", max_points: int | None = None,
                   point_size: float = 1.0, title: str | None = None, rng=0):
    """Points coloured by instance (:func:`instance_colors`; stuff and unassigned points grey).

    Args:
        points: (N, 3) metres.
        instance_ids: (N,) int per point, negative: no instance.
        ax: draw on this matplotlib axes (a 3D one draws in 3D); None: a new figure.
        view: ``"top"`` (from above, the highest points drawn last) or ``"3d"`` (for a new figure).
        max_points: points drawn (default 30 000 from above, 6000 in 3D): a random subsample, instance
            points first (:func:`instances_first`).
        point_size: marker area (pt²).
        title: axes title (default: how many instances, and the subsample).
        rng: generator or seed of the display subsample.

    Returns:
        The figure.
    """
    _check_view(view)
    p = _check_points(points)
    ids = _check_ids(instance_ids, len(p))
    fig, ax = _new_axes(view) if ax is None else (ax.figure, ax)
    shown = _draw_points(ax, p, instance_colors(ids), max_points, rng, point_size, ids)
    if title is None:
        title = _count(len(np.unique(ids[ids >= 0])), "instance") + (
            f" ({shown:,} of {len(p):,} points, instances first)" if shown < len(p) else "")
    _style(ax, p, title)
    return fig


def plot_boxes(ax_or_points, boxes, classes=None, scores=None, class_names=None, view: str = "top",
               linewidth: float = 1.6, linestyle: str = "-", color=None, show_scores: bool = True,
               legend: bool = True, max_points: int | None = None, title: str | None = None, rng=0):
    """Axis-aligned boxes: 12-edge wireframes on a 3D axes, rectangles (their xy extent) from above; the
    colour of each box's class (:func:`class_color`), its score written at a corner.

    Args:
        ax_or_points: a matplotlib axes to draw on (3D or 2D), or (N, 3) points to draw in grey under the
            boxes in a new figure.
        boxes: (K, 6) min xyz / max xyz, metres.
        classes: (K,) class per box (None: all class 0 — one colour).
        scores: (K,) score per box, written next to it when ``show_scores`` (None: nothing written).
        class_names: names indexed by class, for the legend.
        view: for a new figure, ``"top"`` or ``"3d"``.
        linewidth, linestyle: of the box edges; color: one colour for every box instead of the class's.
        legend: add a legend of the classes drawn.
        max_points, rng: display subsample of ``ax_or_points``.
        title: axes title (None: leave it).

    Returns:
        The figure. In 3D every box is one line artist (its 12 edges, NaN-separated); from above one
        ``Rectangle`` patch.

    Raises:
        ValueError: boxes not (K, 6), ``classes`` / ``scores`` of another length, bad ``view``.
    """
    _check_view(view)
    b, cls, sc = check_boxes(boxes, classes, scores)
    cls = np.zeros(len(b), dtype=np.int64) if cls is None else cls
    if hasattr(ax_or_points, "plot"):
        ax, pts = ax_or_points, None
        fig = ax.figure
    else:
        pts = _check_points(ax_or_points)
        fig, ax = _new_axes(view)
        _draw_points(ax, pts, np.tile(np.float32(C.SCENE_COLOR), (len(pts), 1)), max_points, rng, 1.0)
    from matplotlib.patches import Rectangle

    seen: dict[int, object] = {}
    for k in range(len(b)):
        col = color if color is not None else class_color(cls[k])
        if _is_3d(ax):
            seg = box_segments(b[k:k + 1])[0]  # (12, 2, 3)
            path = np.concatenate([seg, np.full((12, 1, 3), np.nan)], axis=1).reshape(-1, 3)
            (artist,) = ax.plot(path[:, 0], path[:, 1], path[:, 2], color=col, lw=linewidth, ls=linestyle)
            anchor = b[k, 3:]
        else:
            artist = Rectangle(tuple(b[k, :2]), b[k, 3] - b[k, 0], b[k, 4] - b[k, 1], fill=False,
                               edgecolor=col, lw=linewidth, ls=linestyle, zorder=4)
            ax.add_patch(artist)
            anchor = b[k, [3, 4]]
        seen.setdefault(int(cls[k]), artist)
        if sc is not None and show_scores:
            kw = dict(fontsize=8, color="k", zorder=5, clip_on=True,
                      bbox=dict(facecolor=col, alpha=0.55, pad=1.0, linewidth=0))
            if _is_3d(ax):
                ax.text(*anchor, f"{sc[k]:.2f}", **kw)
            else:
                ax.text(*anchor, f"{sc[k]:.2f}", ha="right", va="top", **kw)
    if pts is not None:
        _style(ax, np.concatenate([pts, b[:, :3], b[:, 3:]]) if len(b) else pts, title)
    else:
        if not _is_3d(ax):
            ax.autoscale_view()
        if title:
            ax.set_title(title, fontsize=10)
    if legend and seen:
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=color if color is not None else class_color(c), lw=linewidth,
                          ls=linestyle, label=_class_name(class_names, c)) for c in sorted(seen)]
        ax.legend(handles=handles, fontsize=7, loc="upper right")
    return fig


def plot_detection_comparison(points, panels: dict, class_names=None, view: str = "top",
                              match_colors: bool = True, max_points: int | None = None,
                              point_size: float = 1.0, title: str | None = None, rng=0):
    """Ground truth and predictions of one scene side by side, one column per panel: a row of instances
    (points coloured by instance) and a row of boxes (over the grey points), each row only when some
    panel has it.

    Args:
        points: (N, 3) the scene's points, metres.
        panels: ``{title: {"instances": (N,) ids, "boxes": (K, 6), "classes": (K,), "scores": (K,)}}``,
            every key optional (e.g. ``{"ground truth": {...}, "scratch": {...}, "4DContrast": {...}}``).
            In the boxes row the first panel's boxes (the ground truth) are drawn dashed black under
            every other panel's; each boxes panel has a legend of its classes. Every panel shows the
            points' extent: boxes are cut at the points'
            bounding box (:func:`clip_boxes`), so a stray prediction lies flat on its border.
        class_names: names indexed by class (legends).
        view: ``"top"`` or ``"3d"``.
        match_colors: colour every other panel's instances like the first panel's instance they overlap
            (:func:`match_instances`), so a found object has its ground truth's colour.
        max_points, point_size, rng: display subsample and marker area.
        title: figure title.

    Returns:
        The figure.
    """
    _check_view(view)
    p = _check_points(points)
    if not panels:
        raise ValueError("panels: give at least one panel, e.g. {'ground truth': {'instances': ids}}")
    unknown = {k for v in panels.values() for k in v} - {"instances", "boxes", "classes", "scores"}
    if unknown:
        raise ValueError(f"panels: unknown keys {sorted(unknown)} (use instances, boxes, classes, scores)")
    names = list(panels)
    rows = [r for r in ("instances", "boxes") if any(r in v for v in panels.values())]
    if not rows:
        raise ValueError("panels: no panel has 'instances' or 'boxes' to draw")
    from fourdviz.static import _axes3d, _figure

    fig = _figure(4.2 * len(names), 4.0 * len(rows) + (0.9 if view == "3d" else 0.4))
    reference = panels[names[0]].get("instances")
    reference = None if reference is None else _check_ids(reference, len(p), f"panel {names[0]!r} instances")
    ref_boxes = panels[names[0]].get("boxes")
    for i, row in enumerate(rows):
        for j, name in enumerate(names):
            idx = i * len(names) + j + 1
            ax = _axes3d(fig, len(rows), len(names), idx) if view == "3d" else \
                fig.add_subplot(len(rows), len(names), idx)
            panel = panels[name]
            if row not in panel:
                ax.set_axis_off()
                continue
            if row == "instances":
                ids = _check_ids(panel["instances"], len(p), f"panel {name!r} instances")
                if match_colors and reference is not None and j > 0:
                    ids = match_instances(ids, reference)
                n = len(np.unique(ids[ids >= 0]))
                plot_instances(p, ids, ax=ax, max_points=max_points, point_size=point_size,
                               title=f"{name}: {_count(n, 'instance')}", rng=rng)
            else:
                _draw_points(ax, p, np.tile(np.float32(C.SCENE_COLOR), (len(p), 1)), max_points, rng,
                             point_size)
                if j > 0 and ref_boxes is not None:
                    plot_boxes(ax, clip_boxes(ref_boxes, p), color=(0.0, 0.0, 0.0), linestyle="--",
                               linewidth=0.9, legend=False)
                b = clip_boxes(check_boxes(panel["boxes"], what=f"panel {name!r} boxes")[0], p)
                plot_boxes(ax, b, panel.get("classes"), panel.get("scores"), class_names,
                           title=f"{name}: {_count(len(b), 'box', 'boxes')}")
                _style(ax, p, None)
            if view == "top" and len(p):  # the room's extent: a stray box does not shrink the room
                lo, hi = p[:, :2].min(0), p[:, :2].max(0)
                pad = 0.04 * max(float((hi - lo).max()), 1e-3)
                ax.set_xlim(lo[0] - pad, hi[0] + pad)
                ax.set_ylim(lo[1] - pad, hi[1] + pad)
                ax.set_aspect("equal", adjustable="box")
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


# --- plotly ---------------------------------------------------------------------------------------
def _go():
    return require("plotly.graph_objects", "the plotly instance and box figures")


def _points_trace(go, points, colors, max_points, rng, name, marker_size):
    from fourdviz.interactive import indexed_colors

    keep = subsample_indices(len(points), MAX_PLOTLY_POINTS if max_points is None else max_points, rng)
    values, scale, cmin, cmax = indexed_colors(colors[keep])
    p = points[keep]
    return go.Scatter3d(x=p[:, 0], y=p[:, 1], z=p[:, 2], mode="markers", name=name, hoverinfo="skip",
                        marker=dict(size=marker_size, color=values, colorscale=scale, cmin=cmin, cmax=cmax,
                                    line=dict(width=0))), len(keep)


def _layout(go, title: str, height: int):
    return go.Layout(height=height, margin=dict(l=0, r=0, t=40, b=0), title=dict(text=title, x=0.02),
                     scene=dict(aspectmode="data", xaxis_title="x (m)", yaxis_title="y (m)",
                                zaxis_title="z (m)"),
                     legend=dict(itemsizing="constant"))


def _finish(go, fig, widget: bool):
    if not widget:
        return fig
    require("ipywidgets", "the plotly FigureWidget")
    require("anywidget", "plotly's FigureWidget")
    return go.FigureWidget(fig)


def instances_figure(points, instance_ids, max_points: int | None = None, marker_size: float = 2.0,
                     title: str | None = None, height: int = 520, widget: bool = False, rng=0):
    """Plotly 3D figure of points coloured by instance (:func:`instance_colors`): one trace of the stuff /
    unassigned points (grey) and one of the instances' points, subsampled to ``max_points`` (default
    15 000) in all.

    ``widget=True`` returns a ``FigureWidget`` (a notebook then stores a small widget reference instead of
    the figure's data).
    """
    go = _go()
    p = _check_points(points)
    ids = _check_ids(instance_ids, len(p))
    keep = subsample_indices(len(p), MAX_PLOTLY_POINTS if max_points is None else max_points, rng)
    colors = instance_colors(ids)
    data = []
    for name, mask in (("stuff / no instance", ids[keep] < 0), ("instances", ids[keep] >= 0)):
        sel = keep[mask]
        trace, _ = _points_trace(go, p[sel], colors[sel], None, rng, name, marker_size)
        data.append(trace)
    n = _count(len(np.unique(ids[ids >= 0])), "instance")
    note = f" ({len(keep):,} of {len(p):,} points)" if len(keep) < len(p) else ""
    fig = go.Figure(data=data, layout=_layout(go, title or f"{n}{note}", height))
    return _finish(go, fig, widget)


def boxes_figure(points, boxes, classes=None, scores=None, class_names=None, instance_ids=None,
                 reference_boxes=None, max_points: int | None = None, marker_size: float = 2.0,
                 title: str | None = None, height: int = 520, widget: bool = False, rng=0):
    """Plotly 3D figure of boxes over a point cloud: each box one line trace (its 12 edges, None-separated)
    in its class's colour, grouped in the legend by class, its class and score on hover.

    Args:
        points: (N, 3) metres, drawn grey (or coloured by ``instance_ids``); None: boxes only.
        boxes, classes, scores: (K, 6) min / max xyz metres, (K,), (K,) (classes None: class 0).
        class_names: names indexed by class.
        instance_ids: (N,) colour the points by instance (:func:`instance_colors`).
        reference_boxes: (G, 6) boxes drawn first as thin dashed black lines (e.g. the ground truth), one
            trace ``"ground truth"``.
        widget: return a ``FigureWidget``.

    Returns:
        The figure: the point trace ``"points"``, the reference trace ``"ground truth"``, then one trace per
        box (``meta["box"]`` its row in ``boxes``), named by its class.
    """
    go = _go()
    b, cls, sc = check_boxes(boxes, classes, scores)
    cls = np.zeros(len(b), dtype=np.int64) if cls is None else cls
    data, note = [], ""
    if points is not None:
        p = _check_points(points)
        colors = np.tile(np.float32(C.SCENE_COLOR), (len(p), 1)) if instance_ids is None else \
            instance_colors(_check_ids(instance_ids, len(p)))
        trace, shown = _points_trace(go, p, colors, max_points, rng, "points", marker_size)
        data.append(trace)
        note = f" ({shown:,} of {len(p):,} points)" if shown < len(p) else ""

    def wire(bx):
        seg = box_segments(bx)  # (K, 12, 2, 3)
        path = np.concatenate([seg, np.full(seg.shape[:2] + (1, 3), np.nan)], axis=2).reshape(-1, 3)
        return [None if np.isnan(v) else float(v) for v in path[:, 0]], \
            [None if np.isnan(v) else float(v) for v in path[:, 1]], \
            [None if np.isnan(v) else float(v) for v in path[:, 2]]

    if reference_boxes is not None:
        rb, _, _ = check_boxes(reference_boxes, what="reference_boxes")
        x, y, z = wire(rb)
        data.append(go.Scatter3d(x=x, y=y, z=z, mode="lines", name="ground truth", hoverinfo="skip",
                                 line=dict(color="black", width=2, dash="dash")))
    shown_classes = set()
    for k in range(len(b)):
        c = int(cls[k])
        name = _class_name(class_names, c)
        label = name + (f", score {sc[k]:.2f}" if sc is not None else "")
        x, y, z = wire(b[k:k + 1])
        data.append(go.Scatter3d(x=x, y=y, z=z, mode="lines", name=name, legendgroup=name,
                                 showlegend=c not in shown_classes, hovertemplate=f"{label}<extra></extra>",
                                 meta=dict(box=k), line=dict(color=C.to_hex(class_color(c)), width=5)))
        shown_classes.add(c)
    fig = go.Figure(data=data, layout=_layout(go, title or f"{_count(len(b), 'box', 'boxes')}{note}", height))
    return _finish(go, fig, widget)


# --- single views ----------------------------------------------------------------------------------
def view_boxes(view) -> tuple[np.ndarray, np.ndarray]:
    """``(boxes (K, 6), classes (K,))``: the amodal boxes of a single view's objects — each instance id of
    its visible points (``view.instances`` >= 0) boxed over its visible and hidden points
    (``view.hidden_points``), classed by the majority label of them all. ``view``: a
    :class:`fourdcontrast.downstream.views.View` (any object with those attributes)."""
    pts = np.concatenate([view.points, view.hidden_points])
    ids = np.concatenate([view.instances, view.hidden_instances])
    labels = np.concatenate([view.labels, view.hidden_labels])
    objects = np.unique(view.instances[view.instances >= 0])
    boxes = np.array([np.r_[pts[ids == i].min(0), pts[ids == i].max(0)] for i in objects]).reshape(-1, 6)
    classes = np.array([np.bincount(labels[(ids == i) & (labels >= 0)]).argmax() for i in objects],
                       dtype=np.int64)
    return boxes, classes


def plot_view(view, room=None, class_names=None, max_points: int | None = None, point_size: float = 1.0,
              title: str | None = None, rng=0):
    """A single-view partial scan (:func:`fourdcontrast.downstream.views.single_view`) in two panels.

    Left, from above: the room in light grey (when ``room`` is given), the visible points in their
    semantic-label colours, the hidden points of the view's objects in pale red, the camera (a star) with
    its horizontal field of view out to its far depth, and the objects' amodal boxes (:func:`view_boxes`).
    Right, through the camera: the visible points projected onto its image plane, coloured by depth.

    Args:
        view: a ``View`` (``points``, ``labels``, ``instances``, ``hidden_*``, ``camera``).
        room: the room it was seen in (a ``Scene``), or None.
        class_names: names indexed by label (legend of the boxes; default ``view.class_names``).
        max_points, point_size, rng: display subsample and marker area.
        title: figure title (default: the view's name, its points and objects).

    Returns:
        The figure.

    Raises:
        ValueError: the view has no camera.
    """
    from fourdviz.static import _figure

    if getattr(view, "camera", None) is None:
        raise ValueError(f"view {getattr(view, 'name', '?')} has no camera to draw")
    cam = view.camera
    class_names = class_names if class_names is not None else getattr(view, "class_names", None)
    fig = _figure(11.0, 4.8)
    top, image = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    limit = MAX_TOP_POINTS if max_points is None else max_points
    if room is not None:
        r = _check_points(room.points)
        keep = subsample_indices(len(r), limit, rng)
        top.scatter(r[keep, 0], r[keep, 1], c=[C.SCENE_COLOR], s=point_size * 0.5, linewidths=0, alpha=0.35)
    if len(view.hidden_points):
        pale_red = np.tile(np.float32((0.95, 0.6, 0.6)), (len(view.hidden_points), 1))
        _draw_points(top, view.hidden_points, pale_red, limit, rng, point_size)
    _draw_points(top, view.points, C.label_colors(view.labels), limit, rng, point_size)
    boxes, classes = view_boxes(view)
    plot_boxes(top, boxes, classes, class_names=class_names)
    right, _, forward = cam.axes()
    half = np.radians(cam.fov_deg[0] / 2)
    far = cam.depth_range[1]
    f2 = forward[:2] / max(np.linalg.norm(forward[:2]), 1e-9)
    r2 = right[:2] / max(np.linalg.norm(right[:2]), 1e-9)
    for s in (-1, 1):
        ray = cam.position[:2] + far * (np.cos(half) * f2 + s * np.sin(half) * r2)
        top.plot([cam.position[0], ray[0]], [cam.position[1], ray[1]], color="k", lw=0.8, ls=":")
    top.plot(*cam.position[:2], marker="*", color="k", ms=14, zorder=6)
    extent = np.concatenate([view.points, view.hidden_points, *([] if room is None else [room.points])])
    _style(top, extent, "from above: seen (labels), hidden (red), amodal boxes")
    c = (np.asarray(view.points, dtype=np.float64) - cam.position) @ cam.axes().T
    keep = subsample_indices(len(c), limit, rng)
    keep = keep[np.argsort(-c[keep, 2], kind="stable")]  # nearest drawn last
    sc = image.scatter(c[keep, 0] / c[keep, 2], -c[keep, 1] / c[keep, 2], c=c[keep, 2], cmap="viridis_r",
                       s=point_size, linewidths=0)
    image.set_aspect("equal")
    image.set_xticks([])
    image.set_yticks([])
    image.set_title(f"through the camera ({cam.fov_deg[0]:g}° × {cam.fov_deg[1]:g}°)", fontsize=10)
    fig.colorbar(sc, ax=image, label="depth (m)", shrink=0.8)
    if title is None:
        title = (f"{getattr(view, 'name', 'view')}: {len(view.points):,} points seen, "
                 f"{_count(len(boxes), 'object')}")
    fig.suptitle(title, fontsize=11)
    return fig
