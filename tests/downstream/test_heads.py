import numpy as np
import pytest
import torch

from fourdcontrast.downstream.heads import ShapeClassifier, voxelize
from fourdcontrast.sparse.tensor import sparse_collate


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
