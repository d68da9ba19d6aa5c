"""Label-free diagnostics of learned features.

:func:`feature_match_recall` asks whether a voxel's nearest neighbour in feature space, among all voxels of
another frame, lands where its true correspondence is — FCGF's per-point inlier ratio on 3DMatch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fourdcontrast.tensor_checks import check_float, check_matrix, check_pairs, random_subset

__all__ = [
    "FMR_CHUNK_SIZE",
    "FMR_NUM_SAMPLES",
    "FMR_THRESHOLD",
    "COLLAPSE_RANK_FRACTION",
    "ERANK_MAX_ROWS",
    "batch_feature_match_recall",
    "effective_rank",
    "feature_match_recall",
]

FMR_THRESHOLD: float = 0.05
"""Distance in metres within which a feature match counts as a hit: 5 cm, our choice (one 5 cm 4D voxel,
2.5 voxels at 2 cm); 3DMatch's τ1 is 10 cm."""

FMR_NUM_SAMPLES: int = 1000
"""Correspondences sampled per call: our choice (FCGF evaluates 5000 points per scan pair)."""

FMR_CHUNK_SIZE: int = 8192
"""Rows of ``feats_j`` compared at once in the nearest-neighbour search; our choice, bounds the
(samples × chunk) distance block to ~32 MiB in float32 at the default 1000 samples."""


def feature_match_recall(
    feats_i: Tensor,
    feats_j: Tensor,
    positions_j: Tensor,
    pairs: Tensor,
    threshold: float = FMR_THRESHOLD,
    num_samples: int = FMR_NUM_SAMPLES,
    generator: torch.Generator | None = None,
    chunk_size: int = FMR_CHUNK_SIZE,
) -> float:
    """Feature-match recall between two frames, per-point form (FCGF's inlier ratio on 3DMatch).

    At most ``num_samples`` correspondences (a, b) are sampled. For each, the nearest neighbour nn of
    feats_i[a] among **all** rows of feats_j is found (Euclidean distance between L2-normalised features,
    computed as the largest dot product, in chunks of ``chunk_size`` rows; ties go to the lowest row); the
    match is a hit when ``‖positions_j[nn] − positions_j[b]‖ <= threshold``. This is the per-point inlier
    ratio of FCGF; FCGF's 3DMatch feature-match recall additionally thresholds it per scan pair (a pair is
    recalled when the ratio exceeds τ2 = 5 %) and averages over scan pairs.

    Args:
        feats_i: (Ni, C) float, features of frame i.
        feats_j: (Nj, C) float, features of frame j.
        positions_j: (Nj, 3) float, positions of frame j's voxels in metres.
        pairs: (K, 2) integer rows (voxel a of frame i, its true corresponding voxel b of frame j).
        threshold: hit distance in metres (:data:`FMR_THRESHOLD`).
        num_samples: most correspondences evaluated (:data:`FMR_NUM_SAMPLES`).
        generator: source of the sampling; nothing is sampled when K <= num_samples.
        chunk_size: rows of feats_j per distance block (:data:`FMR_CHUNK_SIZE`).

    Returns:
        The fraction of hits in [0, 1]; 0.0 when there are no pairs or frame j is empty.

    Raises:
        ValueError: on mismatched shapes or a chunk size < 1.
    """
    check_matrix("feats_i", feats_i)
    check_matrix("feats_j", feats_j)
    check_float("feats_i", feats_i)
    check_float("feats_j", feats_j)
    check_matrix("positions_j", positions_j, 3)
    check_pairs(pairs)
    if feats_i.shape[1] != feats_j.shape[1]:
        raise ValueError(f"feats_i and feats_j widths differ: {feats_i.shape[1]} vs {feats_j.shape[1]}")
    if positions_j.shape[0] != feats_j.shape[0]:
        raise ValueError(
            f"positions_j must have one row per row of feats_j ({feats_j.shape[0]}), "
            f"got {positions_j.shape[0]}"
        )
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if pairs.shape[0] == 0 or feats_j.shape[0] == 0:
        return 0.0
    with torch.no_grad():
        sel = pairs.long()[random_subset(pairs.shape[0], num_samples, feats_i.device, generator)]
        query = F.normalize(feats_i[sel[:, 0]], dim=1)
        best = torch.full((query.shape[0],), float("-inf"), dtype=query.dtype, device=query.device)
        nn = torch.zeros(query.shape[0], dtype=torch.long, device=query.device)
        for start in range(0, feats_j.shape[0], int(chunk_size)):
            block = F.normalize(feats_j[start : start + int(chunk_size)], dim=1)
            score, idx = (query @ block.T).max(1)
            better = score > best  # strict: an earlier chunk keeps a tie
            best = torch.where(better, score, best)
            nn = torch.where(better, idx + start, nn)
        error = torch.linalg.vector_norm(positions_j[nn] - positions_j[sel[:, 1]], dim=1)
        return float((error <= threshold).double().mean())


def batch_feature_match_recall(
    features: Tensor,
    batch,
    frames: tuple[int, int] = (0, 1),
    threshold: float = FMR_THRESHOLD,
    num_samples: int = FMR_NUM_SAMPLES,
    generator: torch.Generator | None = None,
) -> float:
    """:func:`feature_match_recall` between two frames of every sequence of a collated batch, averaged
    over the sequences that have correspondences.

    Distances are measured on ``batch.points_3d`` (representative points in each frame's scene
    coordinates, metres), so the random scale of the 3D views does not stretch the threshold.

    Args:
        features: (N3, C) per-voxel features, one row per row of ``batch.coords_3d`` (any backbone: random,
            pre-trained, or :meth:`~fourdcontrast.models.fourdcontrast.FourDContrast.backbone_features_3d`).
        batch: a :class:`~fourdcontrast.data.dataset.Batch` with ``points_3d``.
        frames: the frame pair (i, j), i < j.
        threshold, num_samples, generator: as :func:`feature_match_recall` (per sequence).

    Raises:
        ValueError: for a frame pair outside the sequences, or a batch without ``points_3d``.
    """
    i, j = frames
    T = batch.length  # noqa: N806
    if not 0 <= i < j < T:
        raise ValueError(f"frames must satisfy 0 <= i < j < {T}, got {frames}")
    if batch.points_3d is None:
        raise ValueError("the batch has no points_3d (collate it with collate_sequences)")
    check_matrix("features", features)
    if features.shape[0] != batch.coords_3d.shape[0]:
        raise ValueError(f"features need one row per 3D voxel ({batch.coords_3d.shape[0]}), "
                         f"got {features.shape[0]}")
    frame_pairs = [(a, b) for a in range(T) for b in range(a + 1, T)]
    p = frame_pairs.index((i, j))
    sizes = torch.bincount(batch.coords_3d[:, 0].long().cpu(), minlength=batch.batch_size * T)
    starts = [0, *torch.cumsum(sizes, 0).tolist()]
    groups = batch.pairs_3d_group.cpu()
    recalls = []
    for b in range(batch.batch_size):
        sel = groups == b * len(frame_pairs) + p
        if not bool(sel.any()):
            continue
        s_i, s_j, e_j = starts[b * T + i], starts[b * T + j], starts[b * T + j + 1]
        local = batch.pairs_3d.cpu()[sel] - torch.tensor([s_i, s_j])
        positions = batch.points_3d[s_j:e_j].to(features.device)
        recalls.append(feature_match_recall(features[s_i:starts[b * T + i + 1]], features[s_j:e_j], positions,
                                            local.to(features.device), threshold, num_samples, generator))
    return float(sum(recalls) / len(recalls)) if recalls else 0.0


ERANK_MAX_ROWS: int = 8192
"""Rows (voxels) sampled for :func:`effective_rank` (our choice): the spectrum of a ``d ≤ 128``-wide
feature matrix is stable to a few percent from a few thousand rows, and the cost stays ~1 ms."""

COLLAPSE_RANK_FRACTION: float = 0.1
"""A run is flagged as dimensionally collapsed when the effective rank of the backbone output or of the
projector's pre-normalisation output falls below this fraction of their width (our choice, measured here:
a random 32-wide MinkUNet14S gives 13.3 (0.42), PointContrast after 40 steps 6.4 (0.20), the collapsed
500-step 4DContrast backbone 1.8 (0.056) and its projector output 2.1 (0.066))."""


def effective_rank(features: Tensor, max_rows: int | None = ERANK_MAX_ROWS,
                   generator: torch.Generator | None = None) -> float:
    """Effective rank of a set of feature vectors (Roy & Vetterli 2007; the standard monitor of dimensional
    collapse, Jing et al. 2022): ``exp(H(p))`` with ``p_k = σ_k² / Σ σ²`` and ``σ`` the singular values
    of the **centred** (N, d) features.

    It lies in [1, d]: d for features spread evenly over all directions, 1 when they vary along a single
    direction (dimensional collapse), and it is not fooled by a per-channel normalisation (a batch norm
    without affine parameters pins every channel's variance, which SimSiam's per-channel std monitor
    reads as healthy, while the channels can still be copies of one another).

    Args:
        features: (N, d) float features, one row per voxel (any device).
        max_rows: use at most this many rows, sampled without replacement (None: all).
        generator: randomness of that sampling (CPU generator; default: torch's global one).

    Returns:
        The effective rank (float); 0.0 when fewer than 2 rows or all rows are equal (no variance).

    Raises:
        ValueError: when ``features`` is not a 2-D float tensor.
    """
    check_matrix("features", features)
    x = features.detach()
    if max_rows is not None and x.shape[0] > max_rows:
        idx = torch.randperm(x.shape[0], generator=generator)[:max_rows].to(x.device)
        x = x[idx]
    if x.shape[0] < 2:
        return 0.0
    x = x.double()
    x = x - x.mean(dim=0, keepdim=True)
    eig = torch.linalg.eigvalsh(x.T @ x).clamp_min(0.0)  # σ² of the centred matrix
    total = eig.sum()
    if not bool(total > 0):
        return 0.0
    p = eig / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))
