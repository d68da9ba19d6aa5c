"""Voxelization of point sets: continuous coordinates → unique integer voxel coordinates."""

from __future__ import annotations

from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Quantization:
    """The result of :func:`quantize`.

    Arrays are numpy arrays when the points were numpy, tensors (on the points' device) otherwise.

    Attributes:
        coordinates: (M, D) int64 unique voxel coordinates ``floor(points / voxel_size)``, sorted
            lexicographically (axis 0 slowest).
        index: (M,) int64 for each voxel, the index of its first input point (``points[index]`` are one
            representative point per voxel).
        inverse: (N,) int64 the voxel of every input point (``coordinates[inverse]`` is the voxel of each
            point), so per-voxel features can be sliced back to every original point.
        features: (M, C) per-voxel features when ``features`` was given: the mean (``reduce="mean"``)
            or the representative point's features (``reduce="first"``).
    """

    coordinates: np.ndarray | torch.Tensor
    index: np.ndarray | torch.Tensor
    inverse: np.ndarray | torch.Tensor
    features: np.ndarray | torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.coordinates)


def pack_keys(coordinates: torch.Tensor) -> tuple[torch.Tensor, list[int]] | None:
    """Pack (N, D) int64 coordinates into (N,) int64 keys that order like the rows (lexicographic).

    Returns:
        ``(keys, bits)`` with ``bits[d]`` the bits used for axis ``d`` (offset by the per-axis minimum),
        or None when the coordinate ranges need more than 62 bits.
    """
    if coordinates.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64, device=coordinates.device), [0] * coordinates.shape[1]
    low = coordinates.min(dim=0).values
    span = coordinates.max(dim=0).values - low + 1
    bits = [int(s).bit_length() for s in span.tolist()]
    if sum(bits) > 62:
        return None
    shifted = coordinates - low
    keys = torch.zeros(coordinates.shape[0], dtype=torch.int64, device=coordinates.device)
    for axis, b in enumerate(bits):
        keys = (keys << b) | shifted[:, axis]
    return keys, bits


def voxel_keys(coordinates: torch.Tensor) -> torch.Tensor:
    """:func:`pack_keys` without the bits; raises ValueError when the ranges do not fit into 62 bits."""
    packed = pack_keys(coordinates)
    if packed is None:
        span = (coordinates.max(dim=0).values - coordinates.min(dim=0).values + 1).tolist()
        raise ValueError(f"coordinate ranges {span} are too large to pack into int64 keys")
    return packed[0]


def unique_voxels(coordinates: torch.Tensor) -> Quantization:
    """Unique rows of (N, D) int64 voxel coordinates (tensors in, tensors out): the sorted unique
    coordinates, the first point of every voxel (``index``) and the voxel of every point (``inverse``)."""
    keys = voxel_keys(coordinates)
    unique_keys, inverse = torch.unique(keys, sorted=True, return_inverse=True)
    n = coordinates.shape[0]
    index = torch.full((unique_keys.shape[0],), n, dtype=torch.int64, device=coordinates.device)
    index = index.scatter_reduce(0, inverse, torch.arange(n, device=coordinates.device), reduce="amin")
    return Quantization(coordinates[index], index, inverse)


def quantize(
    points: np.ndarray | torch.Tensor,
    voxel_size: float | SequenceABC[float],
    features: np.ndarray | torch.Tensor | None = None,
    reduce: str = "first",
) -> Quantization:
    """Voxelize points: unique voxel coordinates plus the maps between points and voxels.

    Args:
        points: (N, D) float point coordinates (metres; for 4D, ``(x, y, z, t)``).
        voxel_size: voxel edge, one value for all axes or one per axis (e.g. ``(0.05, 0.05, 0.05, 1)``
            for 5 cm voxels and one voxel per frame). Paper: 0.02 m for 3D, 0.05 m for 4D.
        features: optional (N, C) per-point features to pool into voxels.
        reduce: ``"first"`` keeps the first point's features per voxel, ``"mean"`` averages them.

    Returns:
        A :class:`Quantization` (numpy arrays for numpy input, tensors for tensor input).
    """
    if reduce not in ("first", "mean"):
        raise ValueError(f"reduce must be 'first' or 'mean', got {reduce!r}")
    as_numpy = not isinstance(points, torch.Tensor)
    pts = torch.as_tensor(np.asarray(points) if as_numpy else points)
    if pts.ndim != 2:
        raise ValueError(f"points must have shape (N, D), got {tuple(pts.shape)}")
    if not torch.isfinite(pts).all():
        raise ValueError("points contain NaN or infinite coordinates")
    size = torch.as_tensor(voxel_size, dtype=torch.float64, device=pts.device).reshape(-1)
    if size.numel() not in (1, pts.shape[1]) or bool((size <= 0).any()):
        raise ValueError(f"voxel_size must be positive, one value or one per axis, got {voxel_size}")
    coords = torch.floor(pts.to(torch.float64) / size).to(torch.int64)
    voxels = unique_voxels(coords)
    index, inverse, n_vox = voxels.index, voxels.inverse, len(voxels)
    out_feats = None
    if features is not None:
        feats = torch.as_tensor(np.asarray(features) if as_numpy else features, device=pts.device)
        if feats.shape[0] != pts.shape[0]:
            raise ValueError(f"features has {feats.shape[0]} rows for {pts.shape[0]} points")
        if reduce == "first":
            out_feats = feats[index]
        else:
            flat = feats.reshape(feats.shape[0], -1).to(torch.float64)
            sums = torch.zeros((n_vox, flat.shape[1]), dtype=torch.float64, device=pts.device)
            sums.index_add_(0, inverse, flat)
            counts = torch.bincount(inverse, minlength=n_vox).to(torch.float64).unsqueeze(1)
            out_feats = (sums / counts).to(feats.dtype if feats.is_floating_point() else torch.float32)
            out_feats = out_feats.reshape((n_vox,) + tuple(feats.shape[1:]))
    result = Quantization(voxels.coordinates, index, inverse, out_feats)
    if as_numpy:
        result = Quantization(
            result.coordinates.numpy(),
            result.index.numpy(),
            result.inverse.numpy(),
            None if out_feats is None else out_feats.numpy(),
        )
    return result
