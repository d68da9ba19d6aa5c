import numpy as np
import pytest
import torch

from fourdcontrast.downstream.heads import (
    InstanceHead,
    ShapeClassifier,
    boxes_from_clusters,
    instance_loss,
    instance_targets,
    predict_instances,
    voxelize,
)
from fourdcontrast.downstream.metrics import boxes_from_instances, detection_map, instance_map
from fourdcontrast.sparse.tensor import sparse_collate

VOXEL = 0.1


def _toy_scene(rng):
    """A floor (class 0, stuff) with four boxes of classes 1 and 2 (instances 1-4)."""
    g = np.stack(np.meshgrid(np.arange(0, 4, 0.05), np.arange(0, 4, 0.05)), -1).reshape(-1, 2)
    parts = [np.c_[g, np.zeros(len(g))]]
    labels, inst = [np.zeros(len(g), int)], [np.zeros(len(g), int)]
    for i, (cx, cy, c) in enumerate([(0.8, 0.8, 1), (3.0, 0.9, 2), (0.9, 3.0, 2), (3.0, 3.0, 1)], start=1):
        p = rng.uniform([-0.3, -0.3, 0.05], [0.3, 0.3, 0.5 + 0.3 * c], (600, 3)) + [cx, cy, 0]
        parts.append(p)
        labels.append(np.full(600, c))
        inst.append(np.full(600, i))
    return np.concatenate(parts).astype(np.float32), np.concatenate(labels), np.concatenate(inst)


@pytest.mark.slow
def test_instance_and_detection_heads_learn_a_tiny_scene():
    torch.manual_seed(0)
    pts, labels, inst = _toy_scene(np.random.default_rng(0))
    q, centres = voxelize(pts, VOXEL)
    sem_t, off_t = instance_targets(centres, q.inverse, labels, inst, len(q), 3, stuff=(0,))
    model = InstanceHead("MinkUNet14A", 3)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = sparse_collate([q.coordinates], [np.ones((len(q), 3), np.float32)])
    st, ot = torch.as_tensor(sem_t), torch.as_tensor(off_t)
    for _ in range(60):
        model.train()
        logits, off = model(x)
        loss = instance_loss(logits, off, st, ot)
        opt.zero_grad()
        loss.backward()
        opt.step()
    clusters, masks, vcentres = predict_instances(model, pts, VOXEL, stuff=(0,), radius=0.15)
    gt_ids = [1, 2, 3, 4]
    scene = dict(pred_masks=masks, pred_classes=np.array([c["class"] for c in clusters]),
                 pred_scores=np.array([c["score"] for c in clusters]),
                 gt_masks=np.stack([inst == i for i in gt_ids]), gt_classes=np.array([1, 2, 2, 1]))
    ap = instance_map([scene], 3, 0.5, classes=[1, 2])["map"]
    assert ap > 0.5, (ap, len(clusters))
    gt_boxes, _ = boxes_from_instances(pts, inst, ignore=(0,))
    det = dict(pred_boxes=boxes_from_clusters(vcentres, clusters), pred_classes=scene["pred_classes"],
               pred_scores=scene["pred_scores"], gt_boxes=gt_boxes, gt_classes=np.array([1, 2, 2, 1]))
    assert detection_map([det], 3, 0.25, classes=[1, 2])["map"] > 0.5


@pytest.mark.slow
def test_shape_classifier_learns_the_shipped_furniture():
    from fourdcontrast.sources.furniture import default_objects

    torch.manual_seed(0)
    objs = default_objects(seed=0, n=1000)
    cats = sorted({o.category for o in objs})
    y = torch.tensor([cats.index(o.category) for o in objs])
    qs = [voxelize(o.points - o.points.mean(0), 0.05)[0] for o in objs]
    x = sparse_collate([q.coordinates for q in qs], [np.ones((len(q), 3), np.float32) for q in qs])
    model = ShapeClassifier("MinkUNet14A", len(cats))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):
        model.train()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    assert acc > max(0.6, 2 / len(cats)), (acc, len(objs), cats)
