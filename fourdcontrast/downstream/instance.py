"""Instance segmentation downstream of pre-training, PointGroup-style (Jiang et al., CVPR 2020), on the same
U-Net as semantic fine-tuning (any backbone, initialised from ``model.init``).

The network (:class:`InstanceNet`) is the U-Net — *all* of it, its ``final`` 1×1 layer included, so a
pre-trained backbone loads completely — followed by batch norm + ReLU and two new branches: a linear
semantic classifier and a two-layer MLP predicting, per voxel, the offset in metres from the voxel centre to
the centre of its instance. Training minimises cross-entropy + PointGroup's offset terms (L1 distance and
negative cosine of the direction) on voxels of *thing* instances (:func:`instance_loss`). At inference the
voxel centres shifted by the predicted offsets are clustered per predicted thing class by connected
components within a radius (:func:`cluster_instances`), each cluster is scored, masks go back to every
original point, and mAP@0.5 / @0.25 of the masks is computed over thing classes (:func:`evaluate_instances`,
:func:`~fourdcontrast.downstream.metrics.instance_map`).

**Lighter than PointGroup**, plainly:

- no *dual set*: clusters come from the shifted coordinates only, not also from the original ones;
- no *ScoreNet*: a cluster's score is the mean predicted probability of its class over its voxels;
- no NMS between clusters (with one clustering set they do not overlap);
- connected components via a KD-tree's pairs instead of PointGroup's breadth-first search (same result);
- the radius and smallest cluster are in voxels (:data:`CLUSTER_RADIUS_VOXELS`, :data:`CLUSTER_MIN_VOXELS`).

Stuff classes (:data:`STUFF_CLASSES`: wall, floor) get semantic labels but no instances, as in ScanNet's
instance benchmark. On the embedded rooms every piece of furniture is an instance
(:func:`~fourdcontrast.sources.rooms.make_room`); on ScanNet the instances come from the aggregation/segs
files through :func:`~fourdcontrast.sources.scannet.read_scannet_scene` (-1: no instance).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fourdcontrast.downstream.loading import load_guarded
from fourdcontrast.downstream.metrics import (  # the class helpers live there: views.py needs them too
    IGNORE_LABEL,
    STUFF_CLASSES,
    boxes_from_instances,
    instance_classes,
    instance_map,
    stuff_ids,
    thing_ids,
)
from fourdcontrast.downstream.training import (
    Task,
    augment_sample,
    crop_indices,
    input_features,
    voxel_labels,
)
from fourdcontrast.models.resunet import build_backbone
from fourdcontrast.sparse.quantize import quantize
from fourdcontrast.sparse.tensor import sparse_collate

logger = logging.getLogger(__name__)

__all__ = [
    "CLUSTER_MIN_VOXELS",
    "CLUSTER_RADIUS_VOXELS",
    "INSTANCE",
    "STUFF_CLASSES",
    "InstanceLosses",
    "InstanceNet",
    "InstanceOutput",
    "MapMetrics",
    "backbone_width",
    "build_instance_model",
    "cluster_instances",
    "complete_crop",
    "evaluate_instances",
    "amodal_arrays",
    "box_targets",
    "cluster_box_record",
    "ground_truth_boxes",
    "ground_truth_instances",
    "thing_instances",
    "instance_classes",
    "instance_loss",
    "instance_targets",
    "instance_task_loss",
    "instance_training_sample",
    "load_backbone",
    "mask_map",
    "predict_instances",
    "stuff_ids",
    "voxel_centre_means",
    "thing_ids",
]

CLUSTER_RADIUS_VOXELS: float = 1.5
"""Clustering radius of the shifted voxel centres in voxels: PointGroup's 3 cm at its 2 cm voxels (0.15 m at
the cpu preset's 10 cm)."""

CLUSTER_MIN_VOXELS: int = 20
"""Smallest cluster kept, in voxels (PointGroup: 50 points; 20 voxels scored best at IoU 0.5 among 5 / 20 / 50
on the validation rooms, ``benchmarks/task_setups.py``: 44.5 vs 43.9 at 5)."""


# --- targets --------------------------------------------------------------------------------------
def instance_targets(centres: np.ndarray, inverse: np.ndarray, labels: np.ndarray, instances: np.ndarray,
                     num_classes: int, stuff: tuple[int, ...], instance_centres: dict | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-voxel training targets of one sample.

    Args:
        centres: (M, 3) voxel centres in metres.
        inverse: (N,) the voxel of every point.
        labels: (N,) semantic labels (``IGNORE_LABEL`` = unlabelled).
        instances: (N,) instance ids (-1 = none).
        num_classes: number of semantic classes.
        stuff: class ids without instances.
        instance_centres: instance id → (3,) centre in metres (:func:`voxel_centre_means` of the whole
            instance, :func:`complete_crop`); None: the mean of the instance's voxel centres here.

    Returns:
        ``(semantic, offsets, voxel_instances)``: (M,) majority label per voxel (``IGNORE_LABEL`` for voxels
        without a labelled point); (M, 3) float32 offset in metres from the voxel centre to its instance's
        centre — the mean of the instance's voxel centres — NaN for voxels not in a thing instance; (M,) the
        majority instance id of each voxel among thing instances (-1 otherwise).
    """
    m = len(centres)
    semantic = voxel_labels(inverse, labels, m, num_classes)
    classes = instance_classes(labels, instances)
    things = np.array(sorted(i for i, c in classes.items() if c not in stuff), dtype=np.int64)
    offsets = np.full((m, 3), np.nan, dtype=np.float32)
    vox_inst = np.full(m, -1, dtype=np.int64)
    if len(things) == 0:
        return semantic, offsets, vox_inst
    pos = np.searchsorted(things, instances)
    is_thing = (pos < len(things)) & (things[np.minimum(pos, len(things) - 1)] == instances)
    local = np.where(is_thing, pos, IGNORE_LABEL)
    winner = voxel_labels(inverse, local, m, len(things))
    for k, i in enumerate(things):
        vox = winner == k
        if vox.any():
            vox_inst[vox] = i
            centre = (instance_centres[int(i)] if instance_centres is not None
                      else centres[vox].astype(np.float64).mean(0))
            offsets[vox] = centre - centres[vox]
    return semantic, offsets, vox_inst


# --- model ----------------------------------------------------------------------------------------
@dataclass
class InstanceOutput:
    """Per-voxel outputs: ``semantic`` (M, K) logits, ``offsets`` (M, 3) metres, ``features`` (M, C)."""

    semantic: torch.Tensor
    offsets: torch.Tensor
    features: torch.Tensor


class InstanceNet(nn.Module):
    """The U-Net (``feature_dim`` outputs) → BN + ReLU → a linear semantic classifier and a 2-layer offset
    MLP (PointGroup's two branches). Everything under ``head`` is new; ``net`` is the U-Net that a
    pre-trained backbone loads into completely."""

    def __init__(self, backbone: str, in_channels: int, num_classes: int, feature_dim: int = 32) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.net = build_backbone(backbone, in_channels, feature_dim)
        self.head = nn.ModuleDict({
            "norm": nn.Sequential(nn.BatchNorm1d(feature_dim), nn.ReLU()),
            "semantic": nn.Linear(feature_dim, num_classes),
            "offset": nn.Sequential(nn.Linear(feature_dim, feature_dim), nn.BatchNorm1d(feature_dim),
                                    nn.ReLU(), nn.Linear(feature_dim, 3)),
        })

    def forward(self, x) -> InstanceOutput:
        f = self.head["norm"](self.net(x).features)
        return InstanceOutput(self.head["semantic"](f), self.head["offset"](f), f)


# --- loss -----------------------------------------------------------------------------------------
@dataclass
class InstanceLosses:
    """``total`` = ``semantic`` + ``offset`` + ``direction`` (PointGroup's first three terms, weight 1)."""

    total: torch.Tensor
    semantic: torch.Tensor
    offset: torch.Tensor
    direction: torch.Tensor


def instance_loss(semantic: torch.Tensor, offsets: torch.Tensor, semantic_target: torch.Tensor,
                  offset_target: torch.Tensor) -> InstanceLosses:
    """Cross-entropy on labelled voxels; on voxels of thing instances (finite ``offset_target``) the L1
    distance (metres, summed over xyz) and the negative cosine between predicted and target offsets
    (PointGroup's offset losses). ``semantic`` (M, K), ``offsets`` (M, 3), targets (M,) and (M, 3)."""
    zero = semantic.sum() * 0
    labelled = semantic_target != IGNORE_LABEL
    sem = F.cross_entropy(semantic[labelled], semantic_target[labelled]) if labelled.any() else zero
    valid = ~torch.isnan(offset_target).any(1)
    if valid.any():
        p, t = offsets[valid], offset_target[valid]
        off = (p - t).abs().sum(1).mean()
        direction = -(F.normalize(p, dim=1, eps=1e-8) * F.normalize(t, dim=1, eps=1e-8)).sum(1).mean()
    else:
        off, direction = zero, zero
    return InstanceLosses(sem + off + direction, sem, off, direction)


# --- clustering and prediction --------------------------------------------------------------------
def cluster_instances(shifted: np.ndarray, semantic: np.ndarray, probs: np.ndarray, radius: float,
                      min_voxels: int = CLUSTER_MIN_VOXELS, stuff: tuple[int, ...] = ()) -> list[dict]:
    """Connected components of the shifted voxel centres within ``radius`` (metres), per predicted class
    (stuff classes skipped).

    Args:
        shifted: (M, 3) voxel centres + predicted offsets, metres.
        semantic: (M,) predicted class per voxel.
        probs: (M, K) predicted class probabilities.

    Returns:
        ``[{"voxels": (n,) indices, "class": c, "score": mean probability of c over the voxels}]``, clusters
        of at least ``min_voxels`` voxels.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    out = []
    for c in np.unique(semantic):
        if c in stuff or c == IGNORE_LABEL:
            continue
        idx = np.flatnonzero(semantic == c)
        pairs = cKDTree(shifted[idx]).query_pairs(radius, output_type="ndarray")
        graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(idx), len(idx)))
        n, comp = connected_components(graph, directed=False)
        for k in range(n):
            members = idx[comp == k]
            if len(members) >= min_voxels:
                out.append({"voxels": members, "class": int(c), "score": float(probs[members, c].mean())})
    return out


def _voxelize(scene, config):
    """Quantization and the one-sample sparse input of a whole scene."""
    q = quantize(scene.points, config.data.voxel_size)
    feats = input_features(scene, q.index, config.data.features, config.model.in_channels)
    x = sparse_collate([q.coordinates], [feats], device=config.run.device)
    return q, x


@torch.no_grad()
def predict_instances(model: InstanceNet, scene, config, stuff: tuple[int, ...],
                      radius_voxels: float = CLUSTER_RADIUS_VOXELS,
                      min_voxels: int = CLUSTER_MIN_VOXELS) -> dict:
    """Instances of one whole scene (model in eval mode).

    Returns:
        ``{"masks": (P, N) bool over the scene's points, "classes": (P,), "scores": (P,),
        "semantic": (N,) predicted class per point}``.
    """
    model.eval()
    q, x = _voxelize(scene, config)
    out = model(x)
    vs = config.data.voxel_size
    centres = (q.coordinates + 0.5) * vs
    probs = out.semantic.softmax(1).cpu().numpy()
    sem = probs.argmax(1)
    clusters = cluster_instances(centres + out.offsets.cpu().numpy(), sem, probs, radius_voxels * vs,
                                 min_voxels, stuff)
    masks = np.zeros((len(clusters), len(scene.points)), dtype=bool)
    for k, c in enumerate(clusters):
        vox = np.zeros(len(q.coordinates), dtype=bool)
        vox[c["voxels"]] = True
        masks[k] = vox[q.inverse]
    return {"masks": masks, "classes": np.array([c["class"] for c in clusters], dtype=np.int64),
            "scores": np.array([c["score"] for c in clusters], dtype=np.float64), "semantic": sem[q.inverse]}


def thing_instances(labels: np.ndarray, instances: np.ndarray, stuff: tuple[int, ...]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``(ids (G,), classes (G,))``: the thing instances' ids, sorted, and their classes (the majority label
    of each instance's points, :func:`instance_classes`)."""
    classes = instance_classes(labels, instances)
    ids = np.array(sorted(i for i, c in classes.items() if c not in stuff), dtype=np.int64)
    return ids, np.array([classes[int(i)] for i in ids], dtype=np.int64)


def box_targets(points: np.ndarray, labels: np.ndarray, instances: np.ndarray,
                stuff: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Axis-aligned boxes of the thing instances of a point set.

    Returns:
        ``(boxes (G, 6) min xyz / max xyz metres, classes (G,) majority label, ids (G,) instance ids)``.
    """
    ids, classes = thing_instances(labels, instances, stuff)
    boxes, _ = boxes_from_instances(points, np.where(np.isin(instances, ids), instances, -1), ignore=(-1,))
    return boxes, classes, ids


def amodal_arrays(scene, complete: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(points, labels, instances)`` of a scene with, for a single view (a scene with ``hidden_points``,
    :class:`~.views.View`) and ``complete``, its objects' hidden points appended (the scene's own points
    first): what the boxes and centres of its objects are made from."""
    hidden = getattr(scene, "hidden_points", None)
    if complete and hidden is not None and len(hidden):
        return (np.concatenate([scene.points, hidden]), np.concatenate([scene.labels, scene.hidden_labels]),
                np.concatenate([scene.instances, scene.hidden_instances]))
    return scene.points, scene.labels, scene.instances


def ground_truth_boxes(scene, stuff: tuple[int, ...], complete: bool = True) -> dict:
    """``{"gt_boxes", "gt_classes"}``: the boxes of a scene's thing instances (:func:`box_targets`); for a
    single view and ``complete`` (``data.complete_instances``) the whole objects' (amodal) boxes, with their
    hidden points (:func:`amodal_arrays`)."""
    boxes, classes, _ = box_targets(*amodal_arrays(scene, complete), stuff)
    return {"gt_boxes": boxes, "gt_classes": classes}


def cluster_box_record(scene, predicted: dict, stuff: tuple[int, ...], complete: bool = True) -> dict:
    """One scene's record of the baseline "**boxes from instance clusters**": each predicted instance
    (``predicted``: :func:`predict_instances`' masks, classes and scores) becomes the axis-aligned box of its
    points, scored like it, against the thing instances' boxes (:func:`ground_truth_boxes`)."""
    boxes = np.array([np.concatenate([scene.points[m].min(0), scene.points[m].max(0)])
                      for m in predicted["masks"]])
    return {"pred_boxes": boxes.reshape(-1, 6), "pred_classes": predicted["classes"],
            "pred_scores": predicted["scores"], **ground_truth_boxes(scene, stuff, complete)}


def ground_truth_instances(scene, stuff: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(masks (G, N) bool, classes (G,), ids (G,))`` of the scene's thing instances
    (:func:`thing_instances`)."""
    ids, classes = thing_instances(scene.labels, scene.instances, stuff)
    return scene.instances[None, :] == ids[:, None], classes, ids


@dataclass
class MapMetrics:
    """mAP@0.5 / @0.25 (fractions) over the thing classes with ground truth in the evaluated scenes, of
    instance masks (``kind`` ``"masks"``) or boxes (``"boxes"``), and per-class AP (classes without ground
    truth are not listed); ``predictions`` / ``instances``: how many were predicted / are in the ground
    truth."""

    map50: float
    map25: float
    ap50: dict[str, float] = field(default_factory=dict)
    ap25: dict[str, float] = field(default_factory=dict)
    predictions: int = 0
    instances: int = 0
    kind: str = "masks"
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        out = {"map50": self.map50, "map25": self.map25}
        out.update({f"ap50/{k}": v for k, v in self.ap50.items()})
        out.update({f"ap25/{k}": v for k, v in self.ap25.items()})
        out.update(self.extra)
        return out

    def table(self) -> str:
        lines = [f"{'class':<14} {'AP@0.5':>7} {'AP@0.25':>8}"]
        for k in self.ap50:
            lines.append(f"{k:<14} {100 * self.ap50[k]:7.1f} {100 * self.ap25[k]:8.1f}")
        lines.append(f"{'mean':<14} {100 * self.map50:7.1f} {100 * self.map25:8.1f}  "
                     f"({self.predictions} predicted, {self.instances} ground-truth {self.kind})")
        lines += [f"{k}: {100 * v:.1f}" for k, v in self.extra.items()]
        return "\n".join(lines)


def map_metrics(records: list[dict], class_names: tuple[str, ...], map_fn=instance_map,
                kind: str = "masks") -> MapMetrics:
    """:class:`MapMetrics` at IoU 0.5 and 0.25 of per-scene records, scored by ``map_fn``
    (:func:`~.metrics.instance_map` for masks, :func:`~.metrics.detection_map` for boxes)."""
    things = list(thing_ids(class_names))
    k = len(class_names)
    r50, r25 = map_fn(records, k, 0.5, things), map_fn(records, k, 0.25, things)
    return MapMetrics(r50["map"], r25["map"], {class_names[c]: v for c, v in r50["ap"].items()},
                      {class_names[c]: v for c, v in r25["ap"].items()},
                      sum(len(r["pred_classes"]) for r in records),
                      sum(len(r["gt_classes"]) for r in records), kind=kind)


def mask_map(records: list[dict], class_names: tuple[str, ...]) -> MapMetrics:
    """:class:`MapMetrics` of per-scene records as :func:`~.metrics.instance_map` takes them."""
    return map_metrics(records, class_names, instance_map, "masks")


def evaluate_instances(model: InstanceNet, scenes: list, config, class_names: tuple[str, ...],
                       radius_voxels: float = CLUSTER_RADIUS_VOXELS,
                       min_voxels: int = CLUSTER_MIN_VOXELS) -> MapMetrics:
    """Predict the instances of every whole scene and compute mask mAP@0.5 / @0.25 over thing classes; the
    baseline detector "boxes from instance clusters" (each predicted instance's axis-aligned box, scored
    like it, against the thing instances' boxes) is reported with them as ``extra``
    ``cluster_boxes_map50`` / ``cluster_boxes_map25``."""
    from fourdcontrast.downstream.metrics import detection_map

    stuff = stuff_ids(class_names)
    records, boxes = [], []
    for s in scenes:
        p = predict_instances(model, s, config, stuff, radius_voxels, min_voxels)
        gm, gc, _ = ground_truth_instances(s, stuff)
        records.append({"pred_masks": p["masks"], "pred_classes": p["classes"], "pred_scores": p["scores"],
                        "gt_masks": gm, "gt_classes": gc})
        boxes.append(cluster_box_record(s, p, stuff, config.data.complete_instances))
    metrics = mask_map(records, class_names)
    things = list(thing_ids(class_names))
    metrics.extra = {f"cluster_boxes_map{t}": detection_map(boxes, len(class_names), t / 100, things)["map"]
                     for t in (50, 25)}
    return metrics


# --- the task -------------------------------------------------------------------------------------
def backbone_width(config, state: dict | None) -> int:
    """Output width of the U-Net under the task heads: the pre-trained ``final`` layer's (so that it loads
    too) or ``model.feature_dim`` from scratch."""
    if state is not None and "final.bias" in state:
        return int(state["final.bias"].shape[-1])
    return int(config.model.feature_dim)


def load_backbone(net: nn.Module, config, state: dict | None):
    """Load ``state`` into the U-Net ``net`` — every tensor must fit (``LoadError`` otherwise); None
    without a state."""
    if state is None:
        return None
    return load_guarded(net, state, (), source=config.model.init or "the initialisation")


def build_instance_model(config, num_classes: int, state: dict | None = None):
    """:class:`InstanceNet` of the config, its U-Net initialised from ``state`` (all of it)."""
    model = InstanceNet(config.model.backbone, config.model.in_channels, num_classes,
                        backbone_width(config, state))
    return model, load_backbone(model.net, config, state)


def complete_crop(scene, config, rng: np.random.Generator, quarter_turns: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One training sample's points with the rest of the thing instances it cuts: a crop (``data.crop``),
    extended, when ``data.complete_instances``, by the points outside it of every thing instance it
    touches — and, for a single view (:class:`~.views.View`), by the hidden points of its objects — all
    under one draw of the augmentation (:func:`~.training.augment_sample`).

    Returns:
        ``(points (n', 3) float32 metres, labels (n',), instances (n',), index (n,))``: the first ``n`` points
        are the crop (the network's input; ``index`` into the scene's points), the rest only define the
        instances' extent.
    """
    if scene.labels is None or scene.instances is None:
        raise ValueError(f"scene {scene.name}: instance and detection tasks need labels and instances")
    complete = config.data.complete_instances
    points, labels, instances = amodal_arrays(scene, complete)  # the scene's own points first
    idx = crop_indices(scene.points, scene.labels, config.data.crop, rng) if config.data.crop else \
        np.arange(len(scene.points))
    full = idx
    if complete and (config.data.crop or len(points) > len(scene.points)):
        stuff = stuff_ids(scene.class_names)
        classes = instance_classes(labels, instances)
        present = [i for i in np.unique(instances[idx]) if i in classes and classes[i] not in stuff]
        outside = np.ones(len(points), dtype=bool)
        outside[idx] = False
        full = np.concatenate([idx, np.flatnonzero(np.isin(instances, present) & outside)])
    return augment_sample(points[full], config, rng, quarter_turns), labels[full], instances[full], idx


def voxel_centre_means(points: np.ndarray, instances: np.ndarray, voxel_size: float,
                       quantization=None) -> dict[int, np.ndarray]:
    """Instance id → the mean of the centres of the voxels holding any of its points (metres; ``instances``
    -1 skipped): the instance centre of :func:`instance_targets`. ``quantization``: ``points`` already
    quantized at ``voxel_size`` (:func:`~fourdcontrast.sparse.quantize.quantize`), not done again."""
    q = quantize(points, voxel_size) if quantization is None else quantization
    centres = ((q.coordinates + 0.5) * voxel_size).astype(np.float64)
    keep = instances >= 0
    m = len(centres)
    pairs = np.unique(instances[keep].astype(np.int64) * m + q.inverse[keep])  # (instance, voxel), sorted
    ids, start, counts = np.unique(pairs // m, return_index=True, return_counts=True)
    sums = np.add.reduceat(centres[pairs % m], start, axis=0) if len(pairs) else np.zeros((0, 3))
    return {int(i): sums[k] / counts[k] for k, i in enumerate(ids)}


def instance_training_sample(scene, config, num_classes: int, rng: np.random.Generator):
    """``(voxel coordinates (M, 3), input features (M, C), (semantic (M,), offsets (M, 3)))`` of one
    cropped, augmented training scene (:func:`instance_targets`; with ``data.complete_instances`` the
    offsets point at the centres of the whole instances, :func:`complete_crop`)."""
    pts_all, _, instances_all, idx = complete_crop(scene, config, rng)
    pts = pts_all[:len(idx)]
    vs = config.data.voxel_size
    q = quantize(pts, vs)
    same = len(pts_all) == len(pts)  # nothing added to the crop: its quantization serves the whole instances
    whole = (voxel_centre_means(pts_all, instances_all, vs, q if same else None)
             if config.data.complete_instances else None)
    sem, off, _ = instance_targets((q.coordinates + 0.5) * vs, q.inverse, scene.labels[idx],
                                   scene.instances[idx], num_classes, stuff_ids(scene.class_names), whole)
    feats = input_features(scene, idx[q.index], config.data.features, config.model.in_channels)
    return q.coordinates, feats, (sem, off)


def instance_task_loss(output: InstanceOutput, targets: list, x=None) -> torch.Tensor | None:
    """:func:`instance_loss` of a batch (targets of :func:`instance_training_sample`); None when no voxel
    of the batch is labelled."""
    dev = output.semantic.device
    sem = torch.as_tensor(np.concatenate([t[0] for t in targets]), device=dev)
    off = torch.as_tensor(np.concatenate([t[1] for t in targets]), device=dev)
    if not bool((sem != IGNORE_LABEL).any()):
        return None
    return instance_loss(output.semantic, output.offsets, sem, off).total


INSTANCE = Task(name="instance", build_model=build_instance_model, training_sample=instance_training_sample,
                loss=instance_task_loss, evaluate=evaluate_instances, head_prefixes=("head.",))
"""Instance segmentation as a :class:`~fourdcontrast.downstream.training.Task`: everything under ``head.``
is new; the U-Net (``net.``) is the backbone, loaded whole from a pre-trained state."""
