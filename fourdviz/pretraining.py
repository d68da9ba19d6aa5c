"""Pictures of pre-training: the meta-architecture (paper Fig. 3), the logged curves of one or several runs
(loss terms, SimSiam's collapse monitor, feature-match recall) and a live view of a running pre-training.

- :func:`plot_meta_architecture` — Φ3D, P3D, Φ4D, P4D and which outputs each loss term connects, with the
  stop-gradients (dashed, "SG") and the paths the gradient takes (solid arrows);
- :func:`plot_pretrain_log` — the rows of ``log.csv`` (:func:`fourdcontrast.train.pretrain.read_log`) of
  one run or of several runs side by side (e.g. with and without stop-gradient);
- :func:`run_with_live_log` — run a pre-training in a background thread and redraw its curves into one
  notebook output while it runs (plain Python: just runs it).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fourdviz.static import _figure

TERM_COLORS = {"loss": "#222222", "loss_3d": "#2ca02c", "loss_3d4d": "#ff7f0e", "loss_4d": "#1f77b4"}
"""Colour of each loss term: green L3D, orange L3D4D, blue L4D (the arrow colours of the paper's Fig. 3)."""
TERM_LABELS = {"loss": "L (Eq. 9)", "loss_3d": "L3D (Eq. 4)", "loss_3d4d": "L3D4D (Eq. 6)",
               "loss_4d": "L4D (Eq. 8)"}
RUN_STYLES = ("-", "--", ":", "-.")
"""Line style of the 1st, 2nd, … run in :func:`plot_pretrain_log`."""
LIVE_INTERVAL_S = 3.0
"""Seconds between redraws of :func:`run_with_live_log`."""


# --- the meta-architecture -------------------------------------------------------------------------
def _box(ax, xy, text, color, width=1.5, height=0.62, fontsize=9):
    from matplotlib.patches import FancyBboxPatch

    x, y = xy
    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height,
                                boxstyle="round,pad=0.04,rounding_size=0.12", fc=color, ec="#333333", lw=1))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)


def _arrow(ax, a, b, color="#333333", style="-", lw=1.3, rad=0.0, label=None, label_pos=0.5, fontsize=8):
    ax.annotate("", xy=b, xytext=a, arrowprops=dict(arrowstyle="-|>", color=color, lw=lw, ls=style,
                                                    shrinkA=2, shrinkB=2,
                                                    connectionstyle=f"arc3,rad={rad}"))
    if label:
        x = a[0] + label_pos * (b[0] - a[0])
        y = a[1] + label_pos * (b[1] - a[1])
        ax.text(x, y, label, fontsize=fontsize, color=color, ha="center", va="center",
                bbox=dict(fc="white", ec="none", pad=0.5))


def plot_meta_architecture(model=None):
    """The 4DContrast pre-training meta-architecture (paper Sec. 3.2, Fig. 3) as a diagram.

    Two 3D frames F_i, F_j of a sequence go through the shared 3D encoder Φ3D (U-Net + 1×1 projector)
    and predictor P3D; the whole sequence goes through the 4D encoder Φ4D and predictor P4D. Each loss
    term is a negative cosine similarity D(p, z) between a predictor output p and an encoder output z of
    corresponding voxels; the input under a stop-gradient (SG) is dashed, so every solid arrow into a
    loss is a path the gradient takes back.

    Args:
        model: optional :class:`fourdcontrast.models.fourdcontrast.FourDContrast`; its backbones' names and
            parameter counts are written into the boxes.
    """
    fig = _figure(12.5, 5.6)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_xlim(-0.2, 12.6)
    ax.set_ylim(-0.2, 6.3)
    ax.set_axis_off()
    n3 = n4 = ""
    if model is not None:
        c = model.config

        def count(*mods):
            return sum(p.numel() for m in mods if m is not None for p in m.parameters()) / 1e6

        n3 = f"\n{c.backbone_3d}, {count(model.encoder_3d, model.projector_3d):.1f} M"
        if model.encoder_4d is not None:
            n4 = count(model.encoder_4d, model.projector_4d)
            n4 = f"\n{c.backbone_4d} {c.second_dimension}D, {n4:.1f} M"
    green, orange, blue = TERM_COLORS["loss_3d"], TERM_COLORS["loss_3d4d"], TERM_COLORS["loss_4d"]
    c3, c4, cz, cp = "#dbe9f6", "#fde0c5", "#f2f2f2", "#e8e0f3"
    rows = {"i": 5.3, "j": 3.6, "4d": 1.2}
    # inputs
    _box(ax, (0.8, rows["i"]), "3D frame $F_i$\n(own rotation,\nscale, 2 cm)", c3, 1.5, 0.95, 8)
    _box(ax, (0.8, rows["j"]), "3D frame $F_j$\n(own rotation,\nscale, 2 cm)", c3, 1.5, 0.95, 8)
    _box(ax, (0.8, rows["4d"]), "4D sequence\n$F_0 … F_{t-1}$\n(5 cm × 1 frame)", c4, 1.5, 0.95, 8)
    # encoders and predictors
    for key in ("i", "j"):
        y = rows[key]
        _box(ax, (3.0, y), "Φ3D: U-Net\n+ 1×1 projector" + (n3 if key == "i" else "\n(shared weights)"), c3,
             1.9, 0.85, 8)
        _box(ax, (5.0, y), f"$z^{{3D}}_{key}$", cz, 0.8, 0.5)
        _box(ax, (6.7, y), "P3D\n(1×1 MLP)", c3, 1.0, 0.6, 8)
        _box(ax, (8.3, y), f"$p^{{3D}}_{key}$", cp, 0.8, 0.5)
        _arrow(ax, (1.55, y), (2.05, y))
        _arrow(ax, (3.95, y), (4.6, y))
        _arrow(ax, (5.4, y), (6.2, y))
        _arrow(ax, (7.2, y), (7.9, y))
    y = rows["4d"]
    _box(ax, (3.0, y), "Φ4D: 4D U-Net\n+ 1×1×1×1 projector" + n4, c4, 1.9, 0.85, 8)
    _box(ax, (5.0, y + 0.35), "$z^{4D}_i$", cz, 0.8, 0.42)
    _box(ax, (5.0, y - 0.35), "$z^{4D}_j$", cz, 0.8, 0.42)
    _box(ax, (6.7, y), "P4D\n(1×1 MLP)", c4, 1.0, 0.6, 8)
    _box(ax, (8.3, y + 0.35), "$p^{4D}_i$", cp, 0.8, 0.42)
    _box(ax, (8.3, y - 0.35), "$p^{4D}_j$", cp, 0.8, 0.42)
    _arrow(ax, (1.55, y), (2.05, y))
    _arrow(ax, (3.95, y + 0.1), (4.6, y + 0.35))
    _arrow(ax, (3.95, y - 0.1), (4.6, y - 0.35))
    _arrow(ax, (5.4, y), (6.2, y))
    _arrow(ax, (7.2, y + 0.1), (7.9, y + 0.35))
    _arrow(ax, (7.2, y - 0.1), (7.9, y - 0.35))
    # the loss terms
    terms = [
        (4.45, "$L^{3D}$ (Eqs. 3–4)\n½D($p^{3D}_i$, SG $z^{3D}_j$)\n"
               "+ ½D($p^{3D}_j$, SG $z^{3D}_i$)", "#e3f3e3"),
        (2.75, "$L^{3D4D}$ (Eqs. 5–6)\n½D(SG $p^{3D}_i$, $z^{4D}_i$)\n"
               "+ ½D(SG $p^{4D}_i$, $z^{3D}_i$)", "#fdebd9"),
        (0.75, "$L^{4D}$ (Eqs. 7–8)\n½D($p^{4D}_i$, SG $z^{4D}_j$)\n"
               "+ ½D($p^{4D}_j$, SG $z^{4D}_i$)", "#dfeaf6"),
    ]
    for y_term, text, color in terms:
        _box(ax, (11.0, y_term), text, color, 2.6, 0.95, 8)
    # L3D: p (gradient) solid, z (SG) dashed
    _arrow(ax, (8.7, rows["i"]), (9.7, 4.7), green)
    _arrow(ax, (8.7, rows["j"]), (9.7, 4.3), green)
    _arrow(ax, (5.0, rows["i"] + 0.25), (9.9, 4.93), green, "--", 1.0, rad=-0.18, label="SG", label_pos=0.62)
    _arrow(ax, (5.0, rows["j"] + 0.25), (9.75, 4.2), green, "--", 1.0, rad=-0.12, label="SG", label_pos=0.45)
    # L3D4D: z (gradient) solid, p (SG) dashed
    _arrow(ax, (5.25, rows["i"] - 0.25), (9.7, 3.05), orange, rad=0.08)
    _arrow(ax, (5.4, 1.6), (9.7, 2.6), orange, rad=-0.05)
    _arrow(ax, (8.6, rows["i"] - 0.25), (9.85, 3.2), orange, "--", 1.0, label="SG", label_pos=0.55)
    _arrow(ax, (8.7, 1.55), (9.75, 2.35), orange, "--", 1.0, label="SG", label_pos=0.5)
    # L4D
    _arrow(ax, (8.7, 1.55), (9.7, 0.95), blue)
    _arrow(ax, (8.7, 0.85), (9.7, 0.6), blue)
    _arrow(ax, (5.0, 0.54), (9.8, 0.35), blue, "--", 1.0, rad=0.12, label="SG", label_pos=0.6)
    ax.text(11.0, 5.85, "L = w3D·L3D + w3D4D·L3D4D + w4D·L4D  (Eq. 9)", ha="center", fontsize=9.5,
            weight="bold")
    ax.text(0.1, 6.15, "solid arrow into a loss: the gradient flows back along it · dashed, SG: "
            "stop-gradient (treated as a constant)", fontsize=8.5, color="#555555")
    ax.set_title("4DContrast pre-training (paper Fig. 3): one pair of frames (i, j) of a sequence shown; "
                 "the losses run over all pairs / frames", fontsize=10)
    return fig


# --- logged curves ----------------------------------------------------------------------------------
def _series(rows: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None and r.get(key) == r.get(key)]
    if not pts:
        return np.zeros(0), np.zeros(0)
    a = np.asarray(pts, dtype=np.float64)
    return a[:, 0], a[:, 1]


RANK_COLORS = {"erank_backbone_3d": "#17becf", "erank_z3d": "#9467bd", "holdout_erank": "#bcbd22"}
RANK_LABELS = {"erank_backbone_3d": "erank of the 3D backbone output", "erank_z3d": "erank of z3D before BN",
               "holdout_erank": "erank, held-out batch (eval)"}


def plot_pretrain_log(runs, healthy_std: float | None = None, total_steps: int | None = None,
                      title: str | None = None, feature_dim: int | None = None):
    """Curves of one or several pre-training runs: the loss terms, SimSiam's std monitor, the effective
    ranks (the monitor of dimensional collapse, when the log has them) and recall.

    Args:
        runs: the rows of a ``log.csv`` (a list of dicts), or ``{run name: rows}`` for several runs
            (drawn with different line styles, same colour per term).
        healthy_std: the collapse monitor's healthy level ``1/sqrt(d)`` (drawn as a line).
        total_steps: x-axis limit (e.g. while a run is still going).
        title: figure title.
        feature_dim: width d of the features: draws the collapse threshold
            ``COLLAPSE_RANK_FRACTION · d`` on the effective-rank panel.
    """
    if not isinstance(runs, dict):
        runs = {"": runs}
    with_rank = any(len(_series(rows, "erank_backbone_3d")[0]) for rows in runs.values())
    panels = 4 if with_rank else 3
    fig = _figure(4.3 * panels, 3.7)
    axes = [fig.add_subplot(1, panels, k + 1) for k in range(panels)]
    ax_loss, ax_std = axes[0], axes[1]
    ax_rank = axes[2] if with_rank else None
    ax_rec = axes[-1]
    for n, (name, rows) in enumerate(runs.items()):
        ls = RUN_STYLES[n % len(RUN_STYLES)]
        tag = f" — {name}" if name else ""
        for key in ("loss", "loss_3d", "loss_3d4d", "loss_4d"):
            x, y = _series(rows, key)
            if len(x) and not (key != "loss" and np.allclose(y, 0)):
                ax_loss.plot(x, y, ls, color=TERM_COLORS[key], lw=2 if key == "loss" else 1.3,
                             label=TERM_LABELS[key] + tag)
        for key, color in (("std_z3d", "#9467bd"), ("std_z4d", "#8c564b")):
            x, y = _series(rows, key)
            if len(x) and not np.allclose(y, 0):
                ax_std.plot(x, y, ls, color=color, label=f"std of z{key[-2:].upper()}/‖z‖{tag}")
        if ax_rank is not None:
            for key, color in RANK_COLORS.items():
                x, y = _series(rows, key)
                if len(x):
                    ax_rank.plot(x, y, ls, color=color, marker="o" if key == "holdout_erank" else None,
                                 ms=3, label=RANK_LABELS[key] + tag)
        x, y = _series(rows, "recall")
        if len(x):
            ax_rec.plot(x, 100 * y, ls, marker="o", color="#d62728", label=f"recall{tag}")
    simsiam = all(abs(v) <= 3.0 + 1e-6 for rows in runs.values() for v in _series(rows, "loss")[1])
    if simsiam:  # the SimSiam terms are negative cosine similarities
        ax_loss.set_title("loss terms (−1: corresponding features aligned)", fontsize=10)
        ax_loss.set_ylabel("negative cosine similarity")
    else:  # contrastive losses (PointInfoNCE, hardest-contrastive): lower is better, no fixed floor
        ax_loss.set_title("loss terms (contrastive: lower is better)", fontsize=10)
        ax_loss.set_ylabel("loss")
    if not ax_rec.lines:
        ax_rec.text(0.5, 0.5, "no held-out recall logged\n(run.recall_every = 0)", ha="center", va="center",
                    transform=ax_rec.transAxes, fontsize=9, color="#555555")
    if healthy_std is not None:
        ax_std.axhline(healthy_std, color="#2ca02c", lw=0.9, ls=":",
                       label=f"healthy 1/√d = {healthy_std:.3f}")
    ax_std.axhline(0.0, color="#d62728", lw=0.9, ls=":", label="collapsed: 0")
    ax_std.set_title("collapse monitor: std over voxels of z/‖z‖", fontsize=10)
    if ax_rank is not None:
        from fourdcontrast.metrics import COLLAPSE_RANK_FRACTION

        if feature_dim:
            limit = COLLAPSE_RANK_FRACTION * feature_dim
            ax_rank.axhline(limit, color="#d62728", lw=0.9, ls=":",
                            label=f"collapse: {COLLAPSE_RANK_FRACTION:g}·d = {limit:g}")
        ax_rank.set_ylim(bottom=0)
        ax_rank.set_title("dimensional collapse: effective rank", fontsize=10)
        ax_rank.set_ylabel("effective rank (of d)")
    ax_rec.set_title("feature-match recall, held-out batch", fontsize=10)
    ax_rec.set_ylabel("% of matches within the threshold")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if total_steps:
            ax.set_xlim(0, total_steps)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


# --- live view --------------------------------------------------------------------------------------
def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "Terminal" not in type(shell).__name__


def run_with_live_log(target: Callable[[], object], log_path: str | Path,
                      draw: Callable[[list[dict]], object], interval: float = LIVE_INTERVAL_S):
    """Run ``target()`` (e.g. ``lambda: pretrain(config, out, progress=False)``) in a background thread and
    show ``draw(rows)`` of the growing ``log_path`` (a ``log.csv``) in one notebook output, redrawn every
    ``interval`` seconds and once at the end. Returns what ``target`` returns (re-raises its error).

    Outside a notebook the target simply runs in the calling thread.
    """
    from fourdcontrast.train.pretrain import read_log

    if not _in_notebook():
        return target()
    from IPython.display import display

    result: dict = {}

    def work():
        try:
            result["value"] = target()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=work, name="fourdviz-live-pretrain", daemon=True)
    handle = None
    shown = -1
    thread.start()
    while thread.is_alive():
        thread.join(interval)
        rows = read_log(log_path)
        if len(rows) != shown and rows:
            shown = len(rows)
            fig = draw(rows)
            handle = display(fig, display_id=True) if handle is None else (handle.update(fig) or handle)
    if "error" in result:
        raise result["error"]
    fig = draw(read_log(log_path))
    if handle is None:
        display(fig)
    else:
        handle.update(fig)
    return result.get("value")


def steps_per_second(rows: list[dict]) -> float:
    """Optimizer steps per second over the logged rows (from their data + compute seconds per step)."""
    per_step = [r["data_s"] + r["compute_s"] for r in rows if r.get("compute_s") is not None]
    return 1.0 / float(np.mean(per_step)) if per_step else math.nan


__all__ = ["TERM_COLORS", "plot_meta_architecture", "plot_pretrain_log", "run_with_live_log",
           "steps_per_second"]
