"""3D object detection downstream of pre-training, VoteNet-style (Qi et al., ICCV 2019), in plain torch on
the same U-Net as semantic fine-tuning (any backbone, initialised from ``model.init``).

:class:`DetectionNet`: the U-Net — all of it, ``final`` included, so a pre-trained backbone loads
completely — gives per-voxel features (BN + ReLU); **seeds** are up to :data:`NUM_SEEDS` output voxels
chosen by farthest-point sampling of their centres; each seed **votes**: a 3D offset (metres) to the centre
of its object and a feature residual (VoteNet's voting module, an MLP); **proposals** sit at the votes of
the first ``detection.proposals`` seeds of that farthest-point order (VoteNet's ``seed_fps``;
``detection.sampling: vote`` samples the votes themselves, VoteNet's default) and group the votes within
:data:`GROUP_RADIUS` of each (at most :data:`GROUP_SAMPLES`, the nearest); a shared MLP + max-pool + MLP per
group predicts the proposal's **objectness**, its **class**, a residual to the **box centre** and a **log box
size per class** (an axis-aligned box; the predicted class's is used); predictions are thinned by per-class
**3D NMS** (:func:`nms_3d`, IoU :data:`NMS_IOU`). Metric: mAP@0.25 and mAP@0.5 of the boxes over thing
classes (:func:`~fourdcontrast.downstream.metrics.detection_map`).

Training (:func:`detection_loss`): the vote loss (L1 from the seed's vote to the centre of its object's box,
on seeds inside a thing instance), objectness (cross-entropy, positive when the proposal's vote lies within
:data:`NEAR_THRESHOLD` of a box centre, negative beyond :data:`FAR_THRESHOLD`, ignored between; weights
0.2 / 0.8 for negative / positive), on positive proposals the box centre (smooth L1, metres), the log
size of the true class (smooth L1) and the class (cross-entropy) of the nearest box, and a **seed
classification** term (cross-entropy of a linear classifier on the seeds' features against their voxels'
semantic labels, ``detection.seed_class_weight``). Training crops take the boxes of the *whole* objects
they cut (``data.complete_instances``, VoteNet's amodal boxes), as the evaluation on whole rooms sees them.

**Lighter than VoteNet**, plainly:

- **no heading**: rooms (the embedded ones and ScanNet's) are axis-aligned, so boxes are axis-aligned and the
  training rotation about z is by multiples of 90° (a free rotation would make the recomputed axis-aligned
  boxes loose);
- the seeds are voxels of the sparse U-Net's output, not PointNet++ set-abstraction points; grouping takes
  the nearest votes in the radius (VoteNet's ball query takes the first ones found);
- one vote per seed (VoteNet's ScanNet setting too), the vote loss to the one object the seed belongs to;
- the sampled proposal positions and the group geometry are **detached**: the votes learn from the vote loss
  only, the box terms train the proposal module. With SGD at the fine-tuning learning rate (VoteNet uses
  Adam at 1e-3) the box terms' gradients through the positions were ~100x the vote loss's and threw the
  votes metres away within a few steps (measured on the tests' toy scene), so few proposals were positive;
- box size regressed directly as a log size (no size classes with residuals); centre loss to the nearest
  box rather than VoteNet's Chamfer-style pairing; loss weights our choice (:data:`LOSS_WEIGHTS`);
- one class per proposal (VoteNet can emit every class per proposal for evaluation);
- **not in VoteNet, added so that the detector learns in 1000 CPU steps** (measured on the validation
  rooms, ``benchmarks/task_setups.py``): the proposals on the seeds' farthest-point sample (with vote
  sampling the votes of an object collapse onto its centre and farthest-point sampling keeps ~1 of them, so
  ~1 proposal per object a step was positive); one size per class (VoteNet's mean size per class + a
  residual, learnt); the seed classification term, and its mean over a group added as a log prior to the
  proposal's class logits (``detection.seed_class_prior``): ~1000 labelled seeds a step teach the classes
  where a few dozen positive proposals could not; 512 proposals (VoteNet: 256).

The cheaper path — **boxes around the instance clusters** of :mod:`~fourdcontrast.downstream.instance` —
stays as a named baseline (:func:`evaluate_cluster_boxes`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fourdcontrast.downstream.instance import (
    MapMetrics,
    _voxelize,
    backbone_width,
    box_targets,
    cluster_box_record,
    complete_crop,
    ground_truth_boxes,
    load_backbone,
    map_metrics,
    predict_instances,
    stuff_ids,
    thing_ids,
)
from fourdcontrast.downstream.metrics import IGNORE_LABEL, box_iou_3d, detection_map
from fourdcontrast.downstream.training import Task, input_features, voxel_labels
from fourdcontrast.models.resunet import build_backbone
from fourdcontrast.sparse.quantize import quantize

logger = logging.getLogger(__name__)

__all__ = [
    "DETECTION",
    "FAR_THRESHOLD",
    "GROUP_RADIUS",
    "GROUP_SAMPLES",
    "LOSS_WEIGHTS",
    "NEAR_THRESHOLD",
    "NMS_IOU",
    "NUM_PROPOSALS",
    "NUM_SEEDS",
    "DetectionLosses",
    "DetectionNet",
    "DetectionOutput",
    "DetectionTarget",
    "box_map",
    "box_targets",
    "build_detection_model",
    "cluster_box_record",
    "decode_proposals",
    "detection_loss",
    "detection_task_loss",
    "detection_training_sample",
    "evaluate_cluster_boxes",
    "evaluate_detection",
    "farthest_point_sample",
    "nms_3d",
    "predict_boxes",
    "radius_group",
    "vote_targets",
]

NUM_SEEDS: int = 1024
"""Seeds per sample (VoteNet: 1024)."""
NUM_PROPOSALS: int = 512
"""Proposals per sample (VoteNet: 256 on ScanNet; 512 gave ~4x the positive proposals a step of 128 and the
better validation mAP, ``benchmarks/task_setups.py``; ``detection.proposals`` of the config)."""
PROPOSAL_SAMPLINGS: tuple[str, ...] = ("seed", "vote")
"""Where the proposals sit: ``seed`` (VoteNet's ``seed_fps``: the votes of the farthest-point sample of the
seeds) or ``vote`` (VoteNet's default ``vote_fps``: farthest-point sampling of the votes)."""
PROPOSAL_SAMPLING: str = "seed"
"""Default sampling (our choice; measured in ``benchmarks/results/detection_overfit.md``)."""
SEED_CLASS_PRIOR: bool = True
"""Whether a proposal's class logits add the log of the mean seed class probabilities of its group (the
seed classification term's output; module docstring). Our choice, measured in
``benchmarks/results/detection_recipes.md``."""
GROUP_RADIUS: float = 0.3
"""Vote-grouping radius in metres (VoteNet's vote aggregation radius)."""
GROUP_SAMPLES: int = 16
"""Votes per group at most (VoteNet: 16)."""
NEAR_THRESHOLD: float = 0.3
"""A proposal whose vote lies within this distance (metres) of a box centre is positive (VoteNet)."""
FAR_THRESHOLD: float = 0.6
"""A proposal farther than this (metres) from every box centre is negative (VoteNet)."""
OBJECTNESS_WEIGHTS: tuple[float, float] = (0.2, 0.8)
"""Cross-entropy weights of negative / positive proposals (VoteNet)."""
NMS_IOU: float = 0.25
"""Box IoU above which the lower-scored of two boxes of one class is suppressed (VoteNet's 3D NMS)."""
LOSS_WEIGHTS: dict[str, float] = {"vote": 1.0, "objectness": 0.5, "centre": 1.0, "size": 1.0, "class": 1.0,
                                  "seed_class": 1.0}
"""Weights of the loss terms (VoteNet: vote 1, objectness 0.5, box 1, class 0.1; ours gives the class
term 1, our choice: with few steps it learns the class faster). ``seed_class``: the seed classification
term, not in VoteNet (module docstring), also weighted per sample by ``detection.seed_class_weight``."""


# --- targets --------------------------------------------------------------------------------------
def vote_targets(centres: np.ndarray, inverse: np.ndarray, instances: np.ndarray, boxes: np.ndarray,
                 ids: np.ndarray) -> np.ndarray:
    """(M, 3) float32 vote target per voxel: the offset (metres) from the voxel centre ``centres`` (M, 3) to
    the centre of the box of the voxel's majority instance among ``ids`` (NaN where the voxel holds no
    point of those instances). ``inverse``: (N,) voxel of each point; ``instances``: (N,) ids."""
    m = len(centres)
    out = np.full((m, 3), np.nan, dtype=np.float32)
    if len(ids) == 0:
        return out
    pos = np.searchsorted(ids, instances)
    inside = (pos < len(ids)) & (ids[np.minimum(pos, len(ids) - 1)] == instances)
    winner = voxel_labels(inverse, np.where(inside, pos, -1), m, len(ids))
    has = winner >= 0
    box_centre = (boxes[:, :3] + boxes[:, 3:]) / 2
    out[has] = box_centre[winner[has]] - centres[has]
    return out


@dataclass
class DetectionTarget:
    """One training sample's targets: ``votes`` (M, 3) per-voxel vote offsets (metres, NaN: no object),
    ``boxes`` (G, 6) axis-aligned boxes (metres), ``classes`` (G,), and ``labels`` (M,) the per-voxel
    semantic label (``IGNORE_LABEL``: none) of the seed classification term (None: no such term), weighted
    by ``seed_class_weight`` (``detection.seed_class_weight``)."""

    votes: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    labels: np.ndarray | None = None
    seed_class_weight: float = 1.0


# --- sampling and grouping ------------------------------------------------------------------------
def farthest_point_sample(xyz: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (min(k, N),) of ``k`` points of ``xyz`` (N, 3) chosen by farthest-point sampling, starting
    from point 0 (deterministic; ties go to the lowest index).

    On the CPU the loop runs in NumPy on the coordinates laid out axis by axis (6–9x the torch loop's speed:
    it was ~40 % of a detection training step), with the same float operations in the same order, so the
    indices equal the torch loop's (which CUDA tensors keep)."""
    n = len(xyz)
    k = min(k, n)
    if xyz.device.type != "cpu":
        return _farthest_point_sample_torch(xyz, k)
    axes = np.ascontiguousarray(xyz.detach().numpy().T)  # (3, N)
    out = np.zeros(k, dtype=np.int64)
    dist = np.full(n, np.inf, dtype=axes.dtype)
    d, t = np.empty(n, dtype=axes.dtype), np.empty(n, dtype=axes.dtype)
    last = 0
    for i in range(1, k):
        np.square(np.subtract(axes[0], axes[0, last], out=d), out=d)
        for a in (1, 2):
            np.add(d, np.square(np.subtract(axes[a], axes[a, last], out=t), out=t), out=d)
        np.minimum(dist, d, out=dist)
        last = int(dist.argmax())
        out[i] = last
    return torch.from_numpy(out)


def _farthest_point_sample_torch(xyz: torch.Tensor, k: int) -> torch.Tensor:
    """:func:`farthest_point_sample` as a torch loop on ``xyz``'s device (CUDA; the CPU path's reference)."""
    k = min(k, len(xyz))
    out = torch.zeros(k, dtype=torch.long, device=xyz.device)
    dist = torch.full((len(xyz),), float("inf"), device=xyz.device)
    last = 0
    for i in range(1, k):
        dist = torch.minimum(dist, ((xyz - xyz[last]) ** 2).sum(1))
        last = int(torch.argmax(dist))
        out[i] = last
    return out


def radius_group(centres: torch.Tensor, points: torch.Tensor, radius: float,
                 samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For each of ``centres`` (K, 3), the indices of its ``samples`` nearest ``points`` (N, 3) and whether
    each lies within ``radius`` (metres): ``(index (K, S), valid (K, S) bool)``, S = min(samples, N),
    nearest first."""
    d = torch.cdist(centres, points)
    s = min(samples, len(points))
    dist, index = torch.topk(d, s, dim=1, largest=False)
    return index, dist <= radius


# --- model ----------------------------------------------------------------------------------------
@dataclass
class DetectionOutput:
    """Per sample of the batch (lists, one entry each): ``seeds`` (S,) indices of the seed voxels among the
    batch's voxels, ``seed_xyz`` / ``vote_xyz`` (S, 3) metres, ``proposal_xyz`` (K, 3) the sampled votes,
    ``objectness`` (K, 2) logits, ``centres`` (K, 3) metres, ``log_sizes`` (K, num_classes, 3) log metres
    (one box size per class: the size of the proposal as an object of that class), ``classes``
    (K, num_classes) logits, ``seed_classes`` (S, num_classes) logits of the seeds."""

    seeds: list[torch.Tensor]
    seed_xyz: list[torch.Tensor]
    vote_xyz: list[torch.Tensor]
    proposal_xyz: list[torch.Tensor]
    objectness: list[torch.Tensor]
    centres: list[torch.Tensor]
    log_sizes: list[torch.Tensor]
    classes: list[torch.Tensor]
    seed_classes: list[torch.Tensor]


def _mlp(*widths: int, last_plain: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if not (last_plain and i == len(widths) - 2):
            layers += [nn.BatchNorm1d(b), nn.ReLU()]
    return nn.Sequential(*layers)


class DetectionNet(nn.Module):
    """The U-Net (``feature_dim`` outputs) and VoteNet's voting, vote aggregation and proposal modules
    (module docstring). Everything under ``head`` is new; ``net`` is the U-Net."""

    def __init__(self, backbone: str, in_channels: int, num_classes: int, voxel_size: float,
                 feature_dim: int = 32, width: int = 64, num_seeds: int = NUM_SEEDS,
                 num_proposals: int = NUM_PROPOSALS, radius: float = GROUP_RADIUS,
                 samples: int = GROUP_SAMPLES, sampling: str = PROPOSAL_SAMPLING,
                 seed_class_prior: bool = SEED_CLASS_PRIOR) -> None:
        super().__init__()
        if sampling not in PROPOSAL_SAMPLINGS:
            raise ValueError(f"sampling must be one of {PROPOSAL_SAMPLINGS}, got {sampling!r}")
        self.sampling, self.seed_class_prior = sampling, seed_class_prior
        self.num_classes, self.voxel_size = num_classes, float(voxel_size)
        self.num_seeds, self.num_proposals = num_seeds, num_proposals
        self.radius, self.samples = radius, samples
        self.net = build_backbone(backbone, in_channels, feature_dim)
        c = feature_dim
        self.head = nn.ModuleDict({
            "norm": nn.Sequential(nn.BatchNorm1d(c), nn.ReLU()),
            "vote": _mlp(c, c, 3 + c),
            "group": _mlp(3 + c, width, width, last_plain=False),
            "proposal": _mlp(width, width, 2 + 3 + 3 * num_classes + num_classes),
            "seed_class": nn.Linear(c, num_classes),
        })

    def forward(self, x) -> DetectionOutput:
        f = self.head["norm"](self.net(x).features)
        coords = x.coordinates.to(f.device)
        xyz = (coords[:, 1:].to(f.dtype) + 0.5) * self.voxel_size
        batch = coords[:, 0]
        out = DetectionOutput(*([] for _ in range(9)))
        seeds, items = [], []
        for b in range(int(batch.max()) + 1 if len(batch) else 0):
            idx = torch.nonzero(batch == b).flatten()
            seeds.append(idx[farthest_point_sample(xyz[idx], self.num_seeds)])
            items.append(len(seeds[-1]))
        all_seeds = torch.cat(seeds)
        seed_logits = self.head["seed_class"](f[all_seeds])
        v = self.head["vote"](f[all_seeds])
        vote_xyz_all = xyz[all_seeds] + v[:, :3]
        vote_feat_all = F.normalize(f[all_seeds] + v[:, 3:], dim=1)
        start = 0
        for s, n in zip(seeds, items, strict=True):
            out.seed_classes.append(seed_logits[start:start + n])
            vote_xyz, vote_feat = vote_xyz_all[start:start + n], vote_feat_all[start:start + n]
            start += n
            if self.sampling == "seed":  # seeds are in FPS order: the first K are the FPS of K seeds
                pick = torch.arange(min(self.num_proposals, n), device=vote_xyz.device)
            else:
                pick = farthest_point_sample(vote_xyz.detach(), self.num_proposals)
            centre = vote_xyz[pick].detach()  # the votes learn from the vote loss only (docstring)
            index, valid = radius_group(centre, vote_xyz.detach(), self.radius, self.samples)
            rel = (vote_xyz.detach()[index] - centre[:, None]) / self.radius
            g = torch.cat([rel, vote_feat[index]], dim=2)
            k, m, width = g.shape
            g = self.head["group"](g.reshape(k * m, width)).reshape(k, m, -1)
            g = g.masked_fill(~valid[:, :, None], float("-inf")).amax(1)  # the nearest (itself) is valid
            p = self.head["proposal"](g)
            cls = p[:, 5 + 3 * self.num_classes:]
            if self.seed_class_prior:  # + log of the group's mean seed class probabilities
                probs = out.seed_classes[-1].softmax(1)[index] * valid[:, :, None]
                cls = cls + torch.log(probs.sum(1) / valid.sum(1, keepdim=True) + 1e-6)
            out.seeds.append(s)
            out.seed_xyz.append(xyz[s])
            out.vote_xyz.append(vote_xyz)
            out.proposal_xyz.append(centre)
            out.objectness.append(p[:, :2])
            out.centres.append(centre + p[:, 2:5])
            out.log_sizes.append(p[:, 5:5 + 3 * self.num_classes].reshape(k, self.num_classes, 3))
            out.classes.append(cls)
        return out


# --- loss -----------------------------------------------------------------------------------------
@dataclass
class DetectionLosses:
    """The weighted sum ``total`` and its terms (each averaged over the batch's samples)."""

    total: torch.Tensor
    vote: torch.Tensor
    objectness: torch.Tensor
    centre: torch.Tensor
    size: torch.Tensor
    classes: torch.Tensor
    seed_class: torch.Tensor


def detection_loss(output: DetectionOutput, targets: list[DetectionTarget], voxel_offsets: list[int],
                   weights: dict[str, float] | None = None) -> DetectionLosses:
    """VoteNet's losses (module docstring) of a batch.

    Args:
        output: the network's output.
        targets: one :class:`DetectionTarget` per sample.
        voxel_offsets: index of each sample's first voxel in the batch (the seeds index the batch).
        weights: loss weights (default :data:`LOSS_WEIGHTS`).
    """
    w = {**LOSS_WEIGHTS, **(weights or {})}
    terms = {k: [] for k in ("vote", "objectness", "centre", "size", "class", "seed_class")}
    zero = output.objectness[0].sum() * 0
    for b, t in enumerate(targets):
        dev = output.vote_xyz[b].device
        vt = torch.as_tensor(t.votes, device=dev)[output.seeds[b] - voxel_offsets[b]]
        ok = ~torch.isnan(vt).any(1)
        pred_off = output.vote_xyz[b] - output.seed_xyz[b]
        terms["vote"].append((pred_off[ok] - vt[ok]).abs().sum(1).mean() if ok.any() else zero)
        seed_term = zero
        if t.labels is not None:
            lab = torch.as_tensor(t.labels, device=dev)[output.seeds[b] - voxel_offsets[b]]
            if (lab != IGNORE_LABEL).any():
                seed_term = t.seed_class_weight * F.cross_entropy(output.seed_classes[b], lab,
                                                                  ignore_index=IGNORE_LABEL)
        terms["seed_class"].append(seed_term)
        obj = output.objectness[b]
        if len(t.boxes) == 0:
            target = torch.zeros(len(obj), dtype=torch.long, device=dev)
            terms["objectness"].append(F.cross_entropy(obj, target,
                                                       weight=obj.new_tensor(OBJECTNESS_WEIGHTS)))
            for k in ("centre", "size", "class"):
                terms[k].append(zero)
            continue
        boxes = torch.as_tensor(t.boxes, dtype=obj.dtype, device=dev)
        gt_centre, gt_size = (boxes[:, :3] + boxes[:, 3:]) / 2, (boxes[:, 3:] - boxes[:, :3])
        d = torch.cdist(output.proposal_xyz[b].detach(), gt_centre)
        dist, nearest = d.min(1)
        pos, neg = dist < NEAR_THRESHOLD, dist > FAR_THRESHOLD
        label = pos.long()
        mask = pos | neg
        if mask.any():
            terms["objectness"].append(F.cross_entropy(obj[mask], label[mask],
                                                       weight=obj.new_tensor(OBJECTNESS_WEIGHTS)))
        else:
            terms["objectness"].append(zero)
        if pos.any():
            j = nearest[pos]
            terms["centre"].append(F.smooth_l1_loss(output.centres[b][pos], gt_centre[j], beta=0.05,
                                                    reduction="none").sum(1).mean())
            log_gt = torch.log(gt_size[j].clamp_min(1e-2))
            cls = torch.as_tensor(t.classes, device=dev)[j]
            size = output.log_sizes[b][pos][torch.arange(len(cls), device=dev), cls]  # the true class's size
            terms["size"].append(F.smooth_l1_loss(size, log_gt, beta=0.1, reduction="none").sum(1).mean())
            terms["class"].append(F.cross_entropy(output.classes[b][pos], cls))
        else:
            for k in ("centre", "size", "class"):
                terms[k].append(zero)
    mean = {k: torch.stack(v).mean() for k, v in terms.items()}
    total = sum(w[k] * mean[k] for k in mean)
    return DetectionLosses(total, mean["vote"], mean["objectness"], mean["centre"], mean["size"],
                           mean["class"], mean["seed_class"])


# --- prediction -----------------------------------------------------------------------------------
def nms_3d(boxes: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU,
           classes: np.ndarray | None = None) -> np.ndarray:
    """Greedy 3D non-maximum suppression of axis-aligned boxes (K, 6) (min / max xyz): in descending
    ``scores``, keep a box unless a kept box *of the same class* (any kept box when ``classes`` is None)
    overlaps it with IoU > ``iou``. Returns the kept indices, highest score first."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 6)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    ious = box_iou_3d(boxes, boxes)
    same = np.ones((len(boxes), len(boxes)), dtype=bool) if classes is None else \
        np.asarray(classes)[:, None] == np.asarray(classes)[None, :]
    keep: list[int] = []
    for i in order:
        if not any(same[i, j] and ious[i, j] > iou for j in keep):
            keep.append(int(i))
    return np.array(keep, dtype=np.int64)


def decode_proposals(centres: np.ndarray, log_sizes: np.ndarray, objectness: np.ndarray,
                     class_logits: np.ndarray, things: tuple[int, ...],
                     iou: float = NMS_IOU) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Proposals → boxes after per-class NMS.

    Each proposal becomes one box (centre ± size / 2, metres) of its most probable thing class, scored
    ``P(object) · P(class)`` (class probabilities: softmax over the thing classes' logits only), with the
    size predicted for that class (``log_sizes`` (K, num_classes, 3); a (K, 3) array is one size for all).

    Returns:
        ``(boxes (P, 6), classes (P,), scores (P,))``, highest score first.
    """
    obj = torch.as_tensor(objectness).softmax(1)[:, 1].numpy()
    probs = torch.as_tensor(class_logits)[:, list(things)].softmax(1).numpy()
    best = probs.argmax(1)
    classes = np.asarray(things, dtype=np.int64)[best]
    scores = obj * probs[np.arange(len(best)), best]
    log_sizes = np.asarray(log_sizes, dtype=np.float64)
    if log_sizes.ndim == 3:
        log_sizes = log_sizes[np.arange(len(best)), classes]
    size = np.exp(log_sizes)
    boxes = np.concatenate([centres - size / 2, centres + size / 2], axis=1)
    keep = nms_3d(boxes, scores, iou, classes)
    return boxes[keep], classes[keep], scores[keep]


@torch.no_grad()
def predict_boxes(model: DetectionNet, scene, config, things: tuple[int, ...],
                  iou: float = NMS_IOU) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes of one whole scene (model in eval mode): ``(boxes (P, 6), classes (P,), scores (P,))``."""
    model.eval()
    _, x = _voxelize(scene, config)
    out = model(x)
    return decode_proposals(out.centres[0].cpu().numpy(), out.log_sizes[0].cpu().numpy(),
                            out.objectness[0].cpu().numpy(), out.classes[0].cpu().numpy(), things, iou)


def box_map(records: list[dict], class_names: tuple[str, ...]) -> MapMetrics:
    """:class:`~.instance.MapMetrics` of per-scene records as :func:`~.metrics.detection_map` takes them."""
    return map_metrics(records, class_names, detection_map, "boxes")


def evaluate_detection(model: DetectionNet, scenes: list, config, class_names: tuple[str, ...],
                       iou: float = NMS_IOU) -> MapMetrics:
    """Boxes of every whole scene vs the axis-aligned boxes of its thing instances (of a single view's
    objects: the whole objects' boxes, ``data.complete_instances``): mAP@0.5 / @0.25."""
    stuff, things = stuff_ids(class_names), thing_ids(class_names)
    records = []
    for s in scenes:
        boxes, classes, scores = predict_boxes(model, s, config, things, iou)
        records.append({"pred_boxes": boxes, "pred_classes": classes, "pred_scores": scores,
                        **ground_truth_boxes(s, stuff, config.data.complete_instances)})
    return box_map(records, class_names)


def evaluate_cluster_boxes(model, scenes: list, config, class_names: tuple[str, ...]) -> MapMetrics:
    """mAP@0.5 / @0.25 of the baseline "boxes from instance clusters" (:func:`cluster_box_record`) of an
    instance-segmentation network (:class:`~.instance.InstanceNet`)."""
    stuff = stuff_ids(class_names)
    return box_map([cluster_box_record(s, predict_instances(model, s, config, stuff), stuff,
                                       config.data.complete_instances) for s in scenes], class_names)


# --- the task -------------------------------------------------------------------------------------
def build_detection_model(config, num_classes: int, state: dict | None = None):
    """:class:`DetectionNet` of the config, its U-Net initialised from ``state`` (all of it)."""
    d = config.detection
    model = DetectionNet(config.model.backbone, config.model.in_channels, num_classes, config.data.voxel_size,
                         backbone_width(config, state), num_proposals=d.proposals, sampling=d.sampling,
                         seed_class_prior=d.seed_class_prior)
    return model, load_backbone(model.net, config, state)


def detection_training_sample(scene, config, num_classes: int, rng: np.random.Generator):
    """``(voxel coordinates (M, 3), input features (M, C), DetectionTarget)`` of one cropped, augmented
    training scene (rotation about z by multiples of 90°: the boxes stay axis-aligned and tight).

    With ``data.complete_instances`` (default) the boxes and vote targets are those of the *whole* objects
    that the crop cuts (VoteNet's amodal boxes; :func:`~.instance.complete_crop`), otherwise of the
    objects' points inside the crop."""
    pts_all, labels_all, instances_all, idx = complete_crop(scene, config, rng, quarter_turns=True)
    vs = config.data.voxel_size
    q = quantize(pts_all[:len(idx)], vs)
    boxes, classes, ids = box_targets(pts_all, labels_all, instances_all, stuff_ids(scene.class_names))
    votes = vote_targets((q.coordinates + 0.5) * vs, q.inverse, scene.instances[idx], boxes, ids)
    labels = (voxel_labels(q.inverse, scene.labels[idx], len(q.coordinates), num_classes)
              if config.detection.seed_class_weight > 0 else None)
    feats = input_features(scene, idx[q.index], config.data.features, config.model.in_channels)
    return q.coordinates, feats, DetectionTarget(votes, boxes, classes, labels,
                                                 config.detection.seed_class_weight)


def detection_task_loss(output: DetectionOutput, targets: list[DetectionTarget], x=None) -> torch.Tensor:
    """:func:`detection_loss` of a batch (targets of :func:`detection_training_sample`, which carry the
    seed labels only when ``detection.seed_class_weight`` > 0)."""
    sizes = [len(t.votes) for t in targets]
    return detection_loss(output, targets, list(np.cumsum([0, *sizes[:-1]]))).total


DETECTION = Task(name="detection", build_model=build_detection_model,
                 training_sample=detection_training_sample, loss=detection_task_loss,
                 evaluate=evaluate_detection, head_prefixes=("head.",))
"""Detection as a :class:`~fourdcontrast.downstream.training.Task`: everything under ``head.`` is new; the
U-Net (``net.``) is the backbone, loaded whole from a pre-trained state."""
