"""fourdviz — see 4DContrast's data and features: sequences, trajectory sampling, correspondences,
feature similarity and embeddings, over three back ends (matplotlib, plotly/ipywidgets, polyscope)
plus open3d interop.

``import fourdviz`` needs only numpy; each back end's dependencies are imported on first use, and a
missing one raises :class:`MissingBackendError` naming the extra to install (``fourdcontrast[viz]``).

Usage::

    import fourdviz as fv
    fv.save_figure(fv.plot_sequence(seq), "seq.png")            # static (matplotlib), any view
    fv.plot_trajectory_sampling(seq.trajectory, seq.scene)       # height map, floor, valid, candidates, path
    fv.plot_correspondence_check(seq, 0, 1)                      # ok / broken / missing matches
    fv.plot_similarity(seq, feats, query=(0, 123))               # feats: per-frame (n_t, C) arrays
    fv.SequenceExplorer(seq, feats)                              # notebook: slider, toggles, click → heatmap
    fv.TrajectoryExplorer(scene, obj)                            # notebook: sampler parameters on sliders
    fv.EmbeddingExplorer(points, {"random": xy0, "pre-trained": xy1}, colorings)  # select ↔ highlight in 3D
    fv.plot_detection_comparison(points, {"ground truth": {"instances": ids, "boxes": boxes, "classes": c},
                                          "predicted": {...}})   # instances and boxes side by side
    fv.boxes_figure(points, boxes, classes, scores)              # notebook: plotly box wireframes
    fv.plot_pretrain_log(read_log("run/log.csv"))                 # loss terms, collapse monitor, recall
    fv.show(seq, feats)                                          # desktop window (polyscope)
    fv.screenshot(seq, feats, path="seq.png")                    # the same, headless (EGL) to PNG

Command line: ``fourdcontrast view [SHARD.npz --index K] --view all --out outputs/view`` or ``--show``.
"""

from __future__ import annotations

import importlib

# --- viz: back-end-neutral computations (numpy only) ---
from fourdviz._optional import MissingBackendError
from fourdviz.correspondences import (
    CorrespondenceCheck,
    check_correspondences,
    expected_points,
    match_frames,
    position_errors,
)
from fourdviz.features import cosine_similarity, embed, query_similarity

# --- viz: back ends, imported lazily (name → module) ---
_LAZY = {
    # static (matplotlib)
    "plot_sequence": "fourdviz.static",
    "plot_trajectory_sampling": "fourdviz.static",
    "plot_correspondences": "fourdviz.static",
    "plot_correspondences_3d4d": "fourdviz.static",
    "plot_correspondence_check": "fourdviz.static",
    "plot_similarity": "fourdviz.static",
    "plot_embedding": "fourdviz.static",
    "plot_semantic_comparison": "fourdviz.static",
    "save_figure": "fourdviz.static",
    # in-notebook (plotly FigureWidget + ipywidgets)
    "SequenceExplorer": "fourdviz.interactive",
    "TrajectoryExplorer": "fourdviz.interactive",
    "explore_sequence": "fourdviz.interactive",
    "explore_trajectory": "fourdviz.interactive",
    # linked embedding view (plotly + ipywidgets) and its static pictures
    "EmbeddingExplorer": "fourdviz.embedding",
    "explore_embedding": "fourdviz.embedding",
    "embed_many": "fourdviz.embedding",
    "frame_point_labels": "fourdviz.embedding",
    "object_vs_scene": "fourdviz.embedding",
    "voxel_labels_3d": "fourdviz.embedding",
    "plot_embedding_grid": "fourdviz.embedding",
    "plot_linked_selection": "fourdviz.embedding",
    "plot_selection_across": "fourdviz.embedding",
    "plot_similarity_rows": "fourdviz.embedding",
    # instances and boxes: predictions vs ground truth (matplotlib, plotly)
    "plot_instances": "fourdviz.instances",
    "plot_boxes": "fourdviz.instances",
    "plot_detection_comparison": "fourdviz.instances",
    "plot_view": "fourdviz.instances",
    "view_boxes": "fourdviz.instances",
    "instances_figure": "fourdviz.instances",
    "boxes_figure": "fourdviz.instances",
    "instance_colors": "fourdviz.instances",
    "match_instances": "fourdviz.instances",
    "masks_to_ids": "fourdviz.instances",
    "box_corners": "fourdviz.instances",
    "box_segments": "fourdviz.instances",
    # pre-training pictures (matplotlib)
    "plot_meta_architecture": "fourdviz.pretraining",
    "plot_pretrain_log": "fourdviz.pretraining",
    "run_with_live_log": "fourdviz.pretraining",
    # desktop (polyscope)
    "show": "fourdviz.polyscope_view",
    "screenshot": "fourdviz.polyscope_view",
    # open3d interop
    "to_point_cloud": "fourdviz.o3d",
    "from_point_cloud": "fourdviz.o3d",
    "frame_to_point_cloud": "fourdviz.o3d",
    "scene_to_point_cloud": "fourdviz.o3d",
    "scene_from_point_cloud": "fourdviz.o3d",
    "correspondences_to_line_set": "fourdviz.o3d",
    "to_line_set": "fourdviz.o3d",
    "from_line_set": "fourdviz.o3d",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fourdviz' has no attribute {name!r}")


__all__ = [
    "CorrespondenceCheck",
    "MissingBackendError",
    "check_correspondences",
    "cosine_similarity",
    "embed",
    "expected_points",
    "match_frames",
    "position_errors",
    "query_similarity",
    *_LAZY,
]
