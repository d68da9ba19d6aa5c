"""Shape classification on the U-Net (:class:`ShapeClassifier`, ModelNet-style): the U-Net's output features
averaged over an object's voxels (global pooling), then a linear layer; metric: accuracy
(:func:`~fourdcontrast.downstream.metrics.classification_accuracy`).

Instance segmentation (PointGroup-style) and detection (VoteNet-style) live in their task modules,
:mod:`~fourdcontrast.downstream.instance` and :mod:`~fourdcontrast.downstream.detection`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fourdcontrast.models.resunet import build_backbone
from fourdcontrast.sparse.quantize import quantize

__all__ = ["ShapeClassifier", "voxelize"]


def voxelize(points: np.ndarray, voxel_size: float):
    """Quantization and voxel centres (metres) of a point set."""
    q = quantize(points, voxel_size)
    return q, (q.coordinates + 0.5) * voxel_size


class ShapeClassifier(nn.Module):
    """U-Net features averaged over the object's voxels (global pooling) → linear layer."""

    def __init__(self, backbone: str, num_classes: int, feature_dim: int = 32, in_channels: int = 3) -> None:
        super().__init__()
        self.net = build_backbone(backbone, in_channels, feature_dim)
        self.fc = nn.Linear(feature_dim, num_classes)

    def forward(self, x):
        out = self.net(x)
        batch = out.coordinates[:, 0]
        n = int(batch.max()) + 1
        pooled = torch.zeros((n, out.features.shape[1]), dtype=out.features.dtype)
        pooled = pooled.index_add(0, batch, out.features) / torch.bincount(batch, minlength=n)[:, None]
        return self.fc(pooled)
