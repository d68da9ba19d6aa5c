import math

import numpy as np
import pytest

from fourdcontrast.downstream.metrics import (
    ConfusionAccumulator,
    average_precision,
    box_iou_3d,
    boxes_from_instances,
    classification_accuracy,
    confusion_matrix,
    detection_map,
    instance_map,
    segmentation_metrics,
)


def test_confusion_matrix_by_hand_with_ignored_points_and_absent_classes():
    target = np.array([0, 0, 0, 1, 1, -1, -1])
    pred = np.array([0, 0, 1, 1, 2, 2, 0])  # the two ignored points' predictions must not count
    cm = confusion_matrix(pred, target, 4)
    np.testing.assert_array_equal(cm, [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    m = segmentation_metrics(cm)
    np.testing.assert_allclose(m.iou[:3], [2 / 3, 1 / 3, 0.0])  # class 2: predicted, never true → IoU 0
    assert math.isnan(m.iou[3])  # class 3: absent from both → left out
    np.testing.assert_allclose(m.accuracy[:2], [2 / 3, 1 / 2])
    assert math.isnan(m.accuracy[2]) and math.isnan(m.accuracy[3])
    assert m.miou == pytest.approx(1 / 3)
    assert m.macc == pytest.approx(7 / 12)
    assert m.overall_accuracy == pytest.approx(3 / 5)
    d = m.as_dict()
    assert d["miou"] == pytest.approx(1 / 3) and "iou/3" in d
    assert "mean" in m.table()


def test_miou_without_the_structural_classes():
    cm = np.diag([10, 10, 1, 0])  # wall, floor perfect; chair perfect; table absent
    cm[2, 0] = 1  # one chair point predicted as wall: chair IoU 1/2, wall IoU 10/11
    m = segmentation_metrics(cm, class_names=("wall", "floor", "chair", "table"))
    assert m.miou == pytest.approx((10 / 11 + 1 + 1 / 2) / 3)
    assert m.miou_without() == pytest.approx(1 / 2)  # table is NaN: left out, as in mIoU
    assert m.miou_without(("wall",)) == pytest.approx((1 + 1 / 2) / 2)
    with pytest.raises(ValueError, match="not among the classes"):
        m.miou_without(("ceiling",))
    with pytest.raises(ValueError, match="class_names"):
        segmentation_metrics(cm).miou_without()


def test_metrics_accumulate_over_scenes_not_per_scene_mean():
    acc = ConfusionAccumulator(2)
    acc.add(np.array([0, 0, 0, 0]), np.array([0, 0, 0, 1]))  # scene 1: 4 points
    acc.add(np.array([1]), np.array([1]))  # scene 2: 1 point, perfect
    np.testing.assert_array_equal(acc.confusion, [[3, 0], [1, 1]])
    m = acc.metrics()
    assert m.iou.tolist() == pytest.approx([3 / 4, 1 / 2])
    assert m.overall_accuracy == pytest.approx(4 / 5)  # per-scene mean would be (3/4 + 1) / 2


def test_confusion_matrix_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(np.array([5]), np.array([0]), 3)
    with pytest.raises(ValueError, match="predictions"):
        confusion_matrix(np.array([0, 1]), np.array([0]), 3)


def test_average_precision_by_hand():
    # ranked: TP, FP, TP with 3 positives → precision 1, 1/2, 2/3 at recall 1/3, 1/3, 2/3
    ap = average_precision(np.array([0.9, 0.8, 0.7]), np.array([True, False, True]), 3)
    assert ap == pytest.approx(1 / 3 * 1 + 1 / 3 * 2 / 3)
    assert math.isnan(average_precision(np.zeros(0), np.zeros(0, bool), 0))
    assert average_precision(np.zeros(0), np.zeros(0, bool), 2) == 0.0


def test_instance_map_and_detection_map_on_a_hand_case():
    gt = np.array([[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]], bool)
    pred = np.array([[1, 1, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0]], bool)  # IoU 2/3 and 1/3
    scene = dict(pred_masks=pred, pred_classes=np.array([0, 0]), pred_scores=np.array([0.9, 0.8]),
                 gt_masks=gt, gt_classes=np.array([0, 0]))
    assert instance_map([scene], 1, 0.5)["map"] == pytest.approx(0.5)
    assert instance_map([scene], 1, 0.25)["map"] == pytest.approx(1.0)
    box = np.array([[0, 0, 0, 1, 1, 1.0]])
    assert box_iou_3d(box, np.array([[0, 0, 0, 1, 1, 2.0]]))[0, 0] == pytest.approx(0.5)
    det = dict(pred_boxes=np.array([[0, 0, 0, 1, 1, 2.0], [5, 5, 5, 6, 6, 6]]), pred_classes=np.array([1, 1]),
               pred_scores=np.array([0.5, 0.9]), gt_boxes=box, gt_classes=np.array([1]))
    assert detection_map([det], 2, 0.25)["map"] == pytest.approx(0.5)  # FP ranked first, then the TP
    assert detection_map([det], 2, 0.6)["map"] == pytest.approx(0.0)
    pts = np.array([[0, 0, 0], [1, 2, 3], [5, 5, 5.0]])
    boxes, ids = boxes_from_instances(pts, np.array([1, 1, 0]), ignore=(0,))
    assert ids.tolist() == [1] and boxes.tolist() == [[0, 0, 0, 1, 2, 3]]


def test_classification_accuracy():
    out = classification_accuracy(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3)
    assert out["accuracy"] == pytest.approx(0.75)
    assert out["mean_class_accuracy"] == pytest.approx((1 + 1 + 0.5) / 3)
