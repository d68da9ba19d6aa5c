"""Downstream metrics: semantic segmentation (confusion matrix, IoU, accuracy), instance mAP, box mAP,
shape-classification accuracy.

Semantic-segmentation metrics are **accumulated over scenes**: every scene adds its points to one confusion
matrix and IoU / accuracy are computed once from the sum (the ScanNet benchmark's convention), never averaged
per scene. Points whose ground truth is the ignore label are left out entirely (their predictions too).

Conventions for absent classes (ours, spelled out because they change the means):
- a class with no ground-truth point **and** no prediction has IoU and accuracy NaN and is left out of mIoU
  and mAcc (it is simply not part of the evaluation);
- a class with no ground-truth point but some predictions has IoU 0 (its false positives are real
  mistakes) and accuracy NaN (recall is undefined), so it counts in mIoU but not in mAcc.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "STUFF_CLASSES",
    "instance_classes",
    "stuff_ids",
    "thing_ids",
    "IGNORE_LABEL",
    "STRUCTURAL_CLASSES",
    "SegmentationMetrics",
    "ConfusionAccumulator",
    "average_precision",
    "box_iou_3d",
    "boxes_from_instances",
    "classification_accuracy",
    "confusion_matrix",
    "detection_map",
    "instance_map",
    "segmentation_metrics",
]

IGNORE_LABEL: int = -1
"""Ground-truth label of unlabelled points, skipped by every metric and loss (our Scene convention; ScanNet's
benchmark scripts use 255/0 for the same purpose)."""

STRUCTURAL_CLASSES: tuple[str, ...] = ("wall", "floor")
"""Classes left out of the non-structural mIoU (:meth:`SegmentationMetrics.miou_without`): on the embedded
rooms wall and floor are ~72 % of the points and, being easy, most of the mIoU (our choice)."""
STUFF_CLASSES: tuple[str, ...] = STRUCTURAL_CLASSES
"""Classes without instances (wall, floor), as in ScanNet's instance benchmark, which evaluates the 18
other classes."""


def stuff_ids(class_names: tuple[str, ...]) -> tuple[int, ...]:
    """Indices of :data:`STUFF_CLASSES` among ``class_names``."""
    return tuple(i for i, n in enumerate(class_names) if n in STUFF_CLASSES)


def thing_ids(class_names: tuple[str, ...]) -> tuple[int, ...]:
    """Indices of every class that has instances (all but :data:`STUFF_CLASSES`)."""
    return tuple(i for i, n in enumerate(class_names) if n not in STUFF_CLASSES)


def instance_classes(labels: np.ndarray, instances: np.ndarray) -> dict[int, int]:
    """Instance id → the most frequent label of its labelled points (lowest on ties; ids of unlabelled
    instances and ``-1`` are left out)."""
    out = {}
    for i in np.unique(instances):
        if i < 0:
            continue
        known = labels[(instances == i) & (labels != IGNORE_LABEL)]
        if len(known):
            out[int(i)] = int(np.bincount(known).argmax())
    return out


def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int,
                     ignore_label: int = IGNORE_LABEL) -> np.ndarray:
    """(num_classes, num_classes) int64 counts, rows = ground truth, columns = prediction.

    Points whose target equals ``ignore_label`` are skipped. Targets (other than the ignore label) and
    predictions must lie in ``[0, num_classes)``.
    """
    pred = np.asarray(pred).reshape(-1).astype(np.int64)
    target = np.asarray(target).reshape(-1).astype(np.int64)
    if pred.shape != target.shape:
        raise ValueError(f"{pred.size} predictions for {target.size} targets")
    keep = target != ignore_label
    pred, target = pred[keep], target[keep]
    for name, values in (("target", target), ("prediction", pred)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} labels outside [0, {num_classes}) (besides the ignore label "
                             f"{ignore_label}): {np.unique(values[(values < 0) | (values >= num_classes)])}")
    counts = np.bincount(target * num_classes + pred, minlength=num_classes ** 2)
    return counts.reshape(num_classes, num_classes)


@dataclass
class SegmentationMetrics:
    """Metrics of one confusion matrix (rows = ground truth, columns = prediction).

    Attributes:
        iou: (K,) per-class IoU = TP / (TP + FP + FN); NaN for a class absent from both.
        accuracy: (K,) per-class accuracy (recall) = TP / (TP + FN); NaN for a class with no ground truth.
        miou: mean IoU over classes that are not NaN.
        macc: mean per-class accuracy over classes that are not NaN.
        overall_accuracy: correctly labelled points / evaluated points.
        confusion: the (K, K) matrix.
        class_names: names of the classes, when given.
    """

    iou: np.ndarray
    accuracy: np.ndarray
    miou: float
    macc: float
    overall_accuracy: float
    confusion: np.ndarray
    class_names: tuple[str, ...] | None = None

    def miou_without(self, exclude: tuple[str, ...] = STRUCTURAL_CLASSES) -> float:
        """Mean IoU over the classes not named in ``exclude`` (NaN classes left out, as in ``miou``);
        needs ``class_names``."""
        if self.class_names is None:
            raise ValueError("miou_without needs class_names")
        unknown = set(exclude) - set(self.class_names)
        if unknown:
            raise ValueError(f"miou_without: {sorted(unknown)} not among the classes {self.class_names}")
        keep = np.array([n not in exclude for n in self.class_names])
        return _nanmean(self.iou[keep])

    def as_dict(self) -> dict:
        """Flat dict: miou, macc, oa, and iou/<class>, acc/<class> (names or indices)."""
        names = self.class_names or tuple(str(i) for i in range(len(self.iou)))
        out = {"miou": self.miou, "macc": self.macc, "oa": self.overall_accuracy}
        out.update({f"iou/{n}": float(v) for n, v in zip(names, self.iou, strict=True)})
        out.update({f"acc/{n}": float(v) for n, v in zip(names, self.accuracy, strict=True)})
        return out

    def table(self) -> str:
        """A small text table of the per-class figures and the means (percent)."""
        names = self.class_names or tuple(str(i) for i in range(len(self.iou)))
        lines = [f"{'class':<12} {'IoU':>6} {'Acc':>6} {'points':>9}"]
        support = self.confusion.sum(axis=1)
        for n, i, a, s in zip(names, self.iou, self.accuracy, support, strict=True):
            lines.append(f"{n:<12} {100 * i:6.1f} {100 * a:6.1f} {s:9d}")
        lines.append(f"{'mean':<12} {100 * self.miou:6.1f} {100 * self.macc:6.1f}  "
                     f"OA {100 * self.overall_accuracy:.1f}")
        return "\n".join(lines)


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def segmentation_metrics(confusion: np.ndarray,
                         class_names: tuple[str, ...] | None = None) -> SegmentationMetrics:
    """Per-class IoU / accuracy, mIoU, mAcc and overall accuracy of a confusion matrix (see the module
    docstring for absent classes)."""
    confusion = np.asarray(confusion, dtype=np.int64)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"confusion must be square, got {confusion.shape}")
    tp = np.diag(confusion).astype(np.float64)
    gt = confusion.sum(axis=1).astype(np.float64)
    pr = confusion.sum(axis=0).astype(np.float64)
    union = gt + pr - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
        acc = np.where(gt > 0, tp / np.maximum(gt, 1), np.nan)
    total = confusion.sum()
    oa = float(tp.sum() / total) if total else float("nan")
    return SegmentationMetrics(iou, acc, _nanmean(iou), _nanmean(acc), oa, confusion, class_names)


class ConfusionAccumulator:
    """Adds scenes' predictions into one confusion matrix (metrics over all points, not per scene)."""

    def __init__(self, num_classes: int, ignore_label: int = IGNORE_LABEL,
                 class_names: tuple[str, ...] | None = None) -> None:
        self.num_classes, self.ignore_label, self.class_names = num_classes, ignore_label, class_names
        self.confusion = np.zeros((num_classes, num_classes), dtype=np.int64)

    def add(self, pred: np.ndarray, target: np.ndarray) -> None:
        self.confusion += confusion_matrix(pred, target, self.num_classes, self.ignore_label)

    def metrics(self) -> SegmentationMetrics:
        return segmentation_metrics(self.confusion, self.class_names)


# --- instance segmentation and detection -----------------------------------------------------------
def average_precision(scores: np.ndarray, matched: np.ndarray, num_positives: int) -> float:
    """Area under the precision-recall curve of ranked detections (all-point interpolation, as VOC 2010+
    and the ScanNet / VoteNet evaluation scripts): precision made monotone from the right, integrated
    over recall. ``matched[i]`` says whether detection i (in any order) is a true positive. Returns NaN
    when there are no positives."""
    if num_positives == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    tp = np.asarray(matched, dtype=np.float64)[order]
    if tp.size == 0:
        return 0.0
    ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
    recall = ctp / num_positives
    precision = ctp / np.maximum(ctp + cfp, 1e-12)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def _match(ious: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy matching by descending score: a prediction is a true positive when its best still-unmatched
    ground truth has IoU >= threshold. ``ious`` is (P, G)."""
    matched = np.zeros(len(scores), dtype=bool)
    taken = np.zeros(ious.shape[1], dtype=bool)
    for p in np.argsort(-scores, kind="stable"):
        if ious.shape[1] == 0:
            break
        cand = np.where(taken, -1.0, ious[p])
        g = int(np.argmax(cand))
        if cand[g] >= threshold:
            matched[p], taken[g] = True, True
    return matched


def instance_map(scenes: list[dict], num_classes: int, threshold: float = 0.5,
                 classes: list[int] | None = None) -> dict:
    """Instance-segmentation mAP at one mask-IoU threshold (ScanNet's AP@50 for ``threshold=0.5``).

    Args:
        scenes: one dict per scene with ``pred_masks`` (P, N) bool, ``pred_classes`` (P,), ``pred_scores``
            (P,), ``gt_masks`` (G, N) bool, ``gt_classes`` (G,). Masks are over the scene's points.
        num_classes: number of semantic classes.
        threshold: mask IoU for a true positive.
        classes: the classes evaluated (default all); classes without ground truth anywhere are skipped.

    Returns:
        ``{"map": mean over evaluated classes, "ap": {class: AP}}``.
    """
    ap = {}
    for c in (range(num_classes) if classes is None else classes):
        scores, matched, positives = [], [], 0
        for s in scenes:
            pm = np.asarray(s["pred_masks"], dtype=bool)[np.asarray(s["pred_classes"]) == c]
            ps = np.asarray(s["pred_scores"], dtype=np.float64)[np.asarray(s["pred_classes"]) == c]
            gm = np.asarray(s["gt_masks"], dtype=bool)[np.asarray(s["gt_classes"]) == c]
            positives += len(gm)
            if len(pm) == 0:
                continue
            inter = pm.astype(np.float64) @ gm.T.astype(np.float64)
            union = pm.sum(1)[:, None] + gm.sum(1)[None, :] - inter
            ious = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
            scores.append(ps)
            matched.append(_match(ious, ps, threshold))
        if positives == 0:
            continue
        ap[c] = average_precision(np.concatenate(scores) if scores else np.zeros(0),
                                  np.concatenate(matched) if matched else np.zeros(0, bool), positives)
    return {"map": float(np.mean(list(ap.values()))) if ap else float("nan"), "ap": ap}


def boxes_from_instances(points: np.ndarray, instances: np.ndarray,
                         ignore: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned boxes (K, 6) = (min xyz, max xyz) of every instance id (except ``ignore``) and their
    ids (K,)."""
    ids = np.array(sorted(set(np.unique(instances).tolist()) - set(ignore)), dtype=np.int64)
    boxes = np.zeros((len(ids), 6))
    for k, i in enumerate(ids):
        p = points[instances == i]
        boxes[k] = np.concatenate([p.min(0), p.max(0)])
    return boxes, ids


def box_iou_3d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(A, B) IoU of axis-aligned boxes given as (min xyz, max xyz)."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 6), np.asarray(b, dtype=np.float64).reshape(-1, 6)
    lo = np.maximum(a[:, None, :3], b[None, :, :3])
    hi = np.minimum(a[:, None, 3:], b[None, :, 3:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    va = np.prod(a[:, 3:] - a[:, :3], axis=1)
    vb = np.prod(b[:, 3:] - b[:, :3], axis=1)
    union = va[:, None] + vb[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def detection_map(scenes: list[dict], num_classes: int, threshold: float = 0.25,
                  classes: list[int] | None = None) -> dict:
    """3D detection mAP at one box-IoU threshold (VoteNet's mAP@0.25 / @0.5).

    ``scenes``: dicts with ``pred_boxes`` (P, 6), ``pred_classes``, ``pred_scores``, ``gt_boxes`` (G, 6),
    ``gt_classes``; boxes as (min xyz, max xyz). Same matching and AP as :func:`instance_map`."""
    ap = {}
    for c in (range(num_classes) if classes is None else classes):
        scores, matched, positives = [], [], 0
        for s in scenes:
            sel = np.asarray(s["pred_classes"]) == c
            pb, ps = np.asarray(s["pred_boxes"]).reshape(-1, 6)[sel], np.asarray(s["pred_scores"])[sel]
            gb = np.asarray(s["gt_boxes"]).reshape(-1, 6)[np.asarray(s["gt_classes"]) == c]
            positives += len(gb)
            if len(pb) == 0:
                continue
            scores.append(ps)
            matched.append(_match(box_iou_3d(pb, gb), ps, threshold))
        if positives == 0:
            continue
        ap[c] = average_precision(np.concatenate(scores) if scores else np.zeros(0),
                                  np.concatenate(matched) if matched else np.zeros(0, bool), positives)
    return {"map": float(np.mean(list(ap.values()))) if ap else float("nan"), "ap": ap}


def classification_accuracy(pred: np.ndarray, target: np.ndarray, num_classes: int) -> dict:
    """Overall accuracy and mean per-class accuracy of shape classification (ModelNet reports both)."""
    cm = confusion_matrix(pred, target, num_classes, ignore_label=-(10 ** 9))
    m = segmentation_metrics(cm)
    return {"accuracy": m.overall_accuracy, "mean_class_accuracy": m.macc, "confusion": cm}
