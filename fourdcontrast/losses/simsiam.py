"""The paper's pre-training losses, Sec. 3.1–3.2: SimSiam's D and symmetrised loss (Eqs. 1–2) and the
4DContrast terms L3D, L3D4D, L4D and their weighted sum (Eqs. 3–9).

Plain functions on torch tensors, no trainer state. Every stop-gradient is written where the loss is
formed (``z.detach()``), as in SimSiam's ``builder.py``. The functions run on any device and never copy
to the host.

Correspondences are (K, 2) integer rows ``(a, b)`` indexing rows of the feature tensors (the voxels of the
whole batch); group ids ``b·G + g`` (G = ``groups_per_sequence``) say which frame pair (Eqs. 3, 7) or
which frame (Eq. 5) of which sequence a correspondence belongs to. Indices are not range-checked here
(that would copy to the host); an out-of-range index fails in the indexing itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fourdcontrast.tensor_checks import check_float, check_matrix, check_pairs, check_same_width, is_integer

__all__ = [
    "EQ5_DIRECTIONS",
    "COSINE_EPS",
    "DEFAULT_REDUCTION",
    "REDUCTIONS",
    "W3D",
    "W3D4D",
    "W4D",
    "loss_3d",
    "loss_3d4d",
    "loss_4d",
    "PAIR_CHUNK",
    "negative_cosine_similarity",
    "pair_dot",
    "reduce_groups",
    "simsiam_loss",
    "total_loss",
]

# --------------------------------------------------------------------------------------------------
# Defaults the paper leaves open
# --------------------------------------------------------------------------------------------------

COSINE_EPS: float = 1e-8
"""Lower bound on ‖x‖ when normalising in D (Eq. 1); our choice, the default ``eps`` of
``torch.nn.functional.cosine_similarity``, which SimSiam's criterion uses. A zero vector gives D = 0."""

REDUCTIONS: tuple[str, ...] = ("mean", "sum")
"""The reductions :func:`reduce_groups` accepts."""

DEFAULT_REDUCTION: str = "mean"
"""Our choice: the loss is the mean over the non-empty groups (frame pairs or frames) of the batch, so
its scale does not depend on the sequence length; ``"sum"`` takes the sums of Eqs. 4/6/8 literally."""

W3D: float = 1.0
"""Weight w3D of L3D in Eq. 9; the paper leaves the weights open, 1 is our choice."""

W3D4D: float = 1.0
"""Weight w3D4D of L3D4D in Eq. 9; the paper leaves the weights open, 1 is our choice."""

W4D: float = 1.0
"""Weight w4D of L4D in Eq. 9; the paper leaves the weights open, 1 is our choice."""

PAIR_CHUNK: int = 65_536
"""Correspondences gathered at a time by :func:`pair_dot` (the ``fused`` path of the losses): its
temporary rows take ``PAIR_CHUNK × C`` floats (24 MiB at C = 96), whatever the number of pairs."""


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------


EQ5_DIRECTIONS = ("paper", "simsiam")
"""Stop-gradient placements of :func:`loss_3d4d` (Eq. 5): as printed, or SimSiam's."""


def _check_groups(groups: Tensor, k: int, groups_per_sequence: int) -> None:
    if not isinstance(groups, Tensor) or groups.dim() != 1 or groups.shape[0] != k or not is_integer(groups):
        shape = (tuple(groups.shape), groups.dtype) if isinstance(groups, Tensor) else type(groups).__name__
        raise ValueError(f"groups must be a ({k},) integer tensor (one id per correspondence), got {shape}")
    if int(groups_per_sequence) < 1:
        raise ValueError(f"groups_per_sequence must be >= 1, got {groups_per_sequence}")


# --------------------------------------------------------------------------------------------------
# SimSiam (Sec. 3.1)
# --------------------------------------------------------------------------------------------------


def _unit(x: Tensor) -> Tensor:
    """Rows scaled to unit length, norms clamped at :data:`COSINE_EPS` (the normalisation of D)."""
    return F.normalize(x, dim=1, eps=COSINE_EPS)


def negative_cosine_similarity(p: Tensor, z: Tensor) -> Tensor:
    """D of Eq. 1, row by row: ``D(p, z) = −(p / ‖p‖₂) · (z / ‖z‖₂)``.

    No stop-gradient is applied here; callers write ``z.detach()`` where the equation puts SG.

    Args:
        p: (K, C) float, predictor outputs.
        z: (K, C) float, encoder outputs (same shape as ``p``).

    Returns:
        (K,) float, values in [−1, 1] (−1: same direction). Norms below :data:`COSINE_EPS` are clamped,
        so a zero row gives 0.

    Raises:
        ValueError: if p and z are not 2-D floating-point tensors of the same shape.
    """
    check_matrix("p", p)
    check_matrix("z", z)
    check_float("p", p)
    check_float("z", z)
    if p.shape != z.shape:
        raise ValueError(f"p and z must have the same shape, got {tuple(p.shape)} and {tuple(z.shape)}")
    return -(_unit(p) * _unit(z)).sum(1)


class _PairDot(torch.autograd.Function):
    """``(x[a] * y[b]).sum(1)`` in chunks of :data:`PAIR_CHUNK` rows, keeping only x, y and the indices
    for the backward (autograd would keep the gathered (K, C) rows)."""

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, a: Tensor, b: Tensor, chunk: int) -> Tensor:
        out = torch.empty(a.shape[0], dtype=torch.result_type(x, y), device=x.device)
        for s in range(0, a.shape[0], chunk):
            out[s:s + chunk] = (x[a[s:s + chunk]] * y[b[s:s + chunk]]).sum(1)
        ctx.save_for_backward(x, y, a, b)
        ctx.chunk = chunk
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, y, a, b = ctx.saved_tensors
        need_x, need_y = ctx.needs_input_grad[:2]
        gx = torch.zeros_like(x) if need_x else None
        gy = torch.zeros_like(y) if need_y else None
        for s in range(0, a.shape[0], ctx.chunk):
            g, ia, ib = grad[s:s + ctx.chunk, None], a[s:s + ctx.chunk], b[s:s + ctx.chunk]
            if need_x:
                gx.index_add_(0, ia, (g * y[ib]).to(gx.dtype))
            if need_y:
                gy.index_add_(0, ib, (g * x[ia]).to(gy.dtype))
        return gx, gy, None, None, None


def pair_dot(x: Tensor, y: Tensor, a: Tensor, b: Tensor, chunk: int | None = None) -> Tensor:
    """Row dot products ``(x[a] * y[b]).sum(1)`` of K correspondences, computed ``chunk`` rows at a time.

    Equal to the gathered expression (the same products and sums, row by row; gradients to rounding), but
    the backward keeps x and y (N rows) instead of the gathered copies (K rows each): the memory of the
    ``fused`` losses. Gradients flow into x and y unless they are detached.

    Args:
        x: (N, C) float.
        y: (M, C) float, same C.
        a: (K,) integer rows of x.
        b: (K,) integer rows of y.
        chunk: rows gathered at a time (None: :data:`PAIR_CHUNK`).

    Returns:
        (K,) float.
    """
    chunk = PAIR_CHUNK if chunk is None else int(chunk)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    return _PairDot.apply(x, y, a, b, chunk)


def simsiam_loss(p1: Tensor, z1: Tensor, p2: Tensor, z2: Tensor, stop_gradient: bool = True) -> Tensor:
    """SimSiam's symmetrised loss, Eq. 2: ``½ mean D(p1, SG(z2)) + ½ mean D(p2, SG(z1))``.

    Args:
        p1, p2: (B, C) float, predictor outputs of views 1 and 2.
        z1, z2: (B, C) float, encoder outputs of views 1 and 2.
        stop_gradient: detach z1 and z2 (SimSiam); False is the collapsing ablation.

    Returns:
        Scalar in [−1, 1].

    Raises:
        ValueError: on shapes that differ or are not 2-D.
    """
    if not (p1.shape == z1.shape == p2.shape == z2.shape):
        raise ValueError(
            "p1, z1, p2, z2 must have the same (B, C) shape, got "
            f"{tuple(p1.shape)}, {tuple(z1.shape)}, {tuple(p2.shape)}, {tuple(z2.shape)}"
        )
    if stop_gradient:
        z1, z2 = z1.detach(), z2.detach()
    return 0.5 * negative_cosine_similarity(p1, z2).mean() + 0.5 * negative_cosine_similarity(p2, z1).mean()


# --------------------------------------------------------------------------------------------------
# 4DContrast (Sec. 3.2)
# --------------------------------------------------------------------------------------------------


def reduce_groups(
    values: Tensor, groups: Tensor, groups_per_sequence: int, reduction: str = DEFAULT_REDUCTION,
    weights: Tensor | None = None,
) -> Tensor:
    """Reduce per-correspondence losses to the scalar of Eqs. 4, 6 and 8.

    The sum over correspondences inside Eqs. 3, 5 and 7 is taken as a **mean within each group** (a frame
    pair of Eqs. 3/7, a frame of Eq. 5): a frame pair's term must not scale with how many voxels it has
    (a near object would otherwise outweigh the rest of the sequence), and every term then lies in
    [−1, 1] like SimSiam's D. The groups' terms are then combined:

    - ``"mean"`` (:data:`DEFAULT_REDUCTION`): mean over the non-empty groups of the batch.
    - ``"sum"``: the sums of Eqs. 4/6/8 taken literally — sum of the non-empty groups' terms of each
      sequence (group id // G), then mean over the sequences that have any group.

    Sync-free: groups are found by sorting the ids (no host round trip for their number or range).

    Args:
        values: (K,) float, per-correspondence losses.
        groups: (K,) integer, group id ``b·G + g`` of each correspondence (b: sequence of the batch,
            g < G: frame pair or frame of that sequence); ids must be >= 0 (not checked).
        groups_per_sequence: G, the number of groups one sequence can have (frame pairs or frames).
        reduction: ``"mean"`` or ``"sum"``.
        weights: optional (K,) positive float weights: the mean within each group becomes the weighted
            mean ``Σ w v / Σ w`` (motion-aware sampling weights the pairs touching the moving object);
            None is the plain mean.

    Returns:
        Scalar. K = 0 gives a zero that still has a gradient path into ``values`` (not NaN).

    Raises:
        ValueError: on shapes or dtypes that do not match, G < 1, or an unknown reduction.
    """
    if not isinstance(values, Tensor) or values.dim() != 1:
        raise ValueError(f"values must be a (K,) tensor, got {getattr(values, 'shape', type(values))}")
    check_float("values", values)
    _check_groups(groups, values.shape[0], groups_per_sequence)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if weights is not None and (weights.shape != values.shape or not weights.is_floating_point()):
        raise ValueError(f"weights must be a (K,) float tensor like values {tuple(values.shape)}, "
                         f"got {tuple(weights.shape)} {weights.dtype}")
    k = values.shape[0]
    if k == 0:
        return values.sum() * 0.0
    sorted_ids, order = torch.sort(groups.long())
    starts = torch.ones(k, dtype=torch.bool, device=values.device)
    starts[1:] = sorted_ids[1:] != sorted_ids[:-1]
    slot = torch.cumsum(starts, 0) - 1  # (K,) dense group index of each sorted correspondence
    w = torch.ones_like(values) if weights is None else weights.to(values.dtype)[order]
    counts = torch.zeros(k, dtype=values.dtype, device=values.device).index_add_(0, slot, w)
    # Σ over groups of (weighted mean within the group) = Σ over correspondences of w·value / Σw of its group
    total = (w * values[order] / counts[slot]).sum()
    if reduction == "mean":
        return total / starts.sum()
    sequence = torch.div(sorted_ids, int(groups_per_sequence), rounding_mode="floor")
    sequence_starts = torch.ones_like(starts)
    sequence_starts[1:] = sequence[1:] != sequence[:-1]
    return total / sequence_starts.sum()


def _symmetric_pair_loss(p: Tensor, z: Tensor, pairs: Tensor, stop_gradient: bool, fused: bool = False
                         ) -> Tensor:
    """(K,) per pair ``½ D(p[a], SG z[b]) + ½ D(p[b], SG z[a])`` — the summand of Eqs. 3 and 7.

    ``fused``: the same values from rows normalised once per voxel and :func:`pair_dot` (no gathered
    (K, C) rows kept for the backward)."""
    check_matrix("p", p)
    check_matrix("z", z)
    if p.shape != z.shape:
        raise ValueError(f"p and z must have the same (N, C) shape, got {tuple(p.shape)}, {tuple(z.shape)}")
    check_pairs(pairs)
    a, b = pairs[:, 0], pairs[:, 1]
    if stop_gradient:
        z = z.detach()
    if fused:  # each tensor normalised once, shared by both halves
        pu, zu = _unit(p), _unit(z)
        return -0.5 * pair_dot(pu, zu, a, b) - 0.5 * pair_dot(pu, zu, b, a)
    return 0.5 * negative_cosine_similarity(p[a], z[b]) + 0.5 * negative_cosine_similarity(p[b], z[a])


def loss_3d(
    p: Tensor,
    z: Tensor,
    pairs: Tensor,
    groups: Tensor,
    groups_per_sequence: int,
    reduction: str = DEFAULT_REDUCTION,
    stop_gradient: bool = True,
    weights: Tensor | None = None,
    fused: bool = False,
) -> Tensor:
    """L3D, Eqs. 3–4: inter-frame spatial correspondence between 3D features.

    Per pair ``½ D(p[a], SG(z[b])) + ½ D(p[b], SG(z[a]))``, reduced by :func:`reduce_groups` over the
    frame pairs (i < j) of each sequence. The gradient reaches ``p`` only.

    Args:
        p: (N, C) float, 3D predictor outputs P3D(Φ3D(F)) of all 3D voxels of the batch.
        z: (N, C) float, 3D encoder outputs Φ3D(F) of the same voxels.
        pairs: (K, 2) integer rows (voxel a of frame i, corresponding voxel b of frame j).
        groups: (K,) integer frame-pair id ``b·G + g`` of each pair.
        groups_per_sequence: G, frame pairs per sequence (T(T−1)/2 for T frames).
        reduction: see :func:`reduce_groups`.
        stop_gradient: detach z (the paper); False is the no-stop-gradient ablation.
        weights: optional (K,) per-pair weights of the group means (:func:`reduce_groups`).
        fused: compute the pairs' cosines with :func:`pair_dot` from rows normalised once per voxel: the
            same loss, without the gathered (K, C) rows in memory (``model.fused_pair_losses``).

    Returns:
        Scalar in [−1, 1] with ``"mean"``.

    Raises:
        ValueError: on mismatched shapes.
    """
    values = _symmetric_pair_loss(p, z, pairs, stop_gradient, fused)
    return reduce_groups(values, groups, groups_per_sequence, reduction, weights)


def loss_4d(
    p: Tensor,
    z: Tensor,
    pairs: Tensor,
    groups: Tensor,
    groups_per_sequence: int,
    reduction: str = DEFAULT_REDUCTION,
    stop_gradient: bool = True,
    weights: Tensor | None = None,
    fused: bool = False,
) -> Tensor:
    """L4D, Eqs. 7–8: the form of Eq. 3 on 4D features of one point at two time steps.

    Per pair ``½ D(p[a], SG(z[b])) + ½ D(p[b], SG(z[a]))``, reduced by :func:`reduce_groups` over the
    frame pairs (i < j) of each sequence. The gradient reaches ``p`` only.

    Args:
        p: (N, C) float, 4D predictor outputs P4D(Φ4D(F)) of all 4D voxels of the batch.
        z: (N, C) float, 4D encoder outputs Φ4D(F) of the same voxels.
        pairs: (K, 2) integer rows (4D voxel of the point at time i, 4D voxel of it at time j).
        groups: (K,) integer frame-pair id ``b·G + g`` of each pair.
        groups_per_sequence: G, frame pairs per sequence.
        reduction: see :func:`reduce_groups`.
        stop_gradient: detach z (the paper); False is the no-stop-gradient ablation.
        weights: optional (K,) per-pair weights of the group means (:func:`reduce_groups`).
        fused: compute the pairs' cosines with :func:`pair_dot` from rows normalised once per voxel: the
            same loss, without the gathered (K, C) rows in memory (``model.fused_pair_losses``).

    Returns:
        Scalar in [−1, 1] with ``"mean"``.

    Raises:
        ValueError: on mismatched shapes.
    """
    values = _symmetric_pair_loss(p, z, pairs, stop_gradient, fused)
    return reduce_groups(values, groups, groups_per_sequence, reduction, weights)


def loss_3d4d(
    p3: Tensor,
    z3: Tensor,
    p4: Tensor,
    z4: Tensor,
    pairs: Tensor,
    groups: Tensor,
    groups_per_sequence: int,
    reduction: str = DEFAULT_REDUCTION,
    stop_gradient: bool = True,
    direction: str = "paper",
    weights: Tensor | None = None,
    fused: bool = False,
) -> Tensor:
    """L3D4D, Eqs. 5–6: spatio-temporal correspondence between a 3D voxel and its 4D voxel.

    ``direction="paper"`` (default): per pair ``½ D(SG(p3[a]), z4[w]) + ½ D(SG(p4[w]), z3[a])`` exactly as
    Eq. 5 writes it: unlike Eqs. 3 and 7 the stop-gradient is on the **predictor** outputs and the
    gradient flows into the **encoder** outputs z3 and z4 (the paper's Fig. 3 arrows); p3 and p4 receive
    no gradient from this term. Each encoder output is then regressed onto a detached prediction of the
    other branch with no predictor on the trained side — the configuration SimSiam's Table 1 reports as
    collapsing.

    ``direction="simsiam"``: ``½ D(p3[a], SG(z4[w])) + ½ D(p4[w], SG(z3[a]))``, the form of Eqs. 3 and 7:
    the gradient goes through the predictors.

    Args:
        p3: (N3, C) float, 3D predictor outputs of all 3D voxels of the batch.
        z3: (N3, C) float, 3D encoder outputs of the same voxels.
        p4: (N4, C) float, 4D predictor outputs of all 4D voxels of the batch.
        z4: (N4, C) float, 4D encoder outputs of the same voxels.
        pairs: (K, 2) integer rows (3D voxel a of frame i, the 4D voxel w holding it at time i).
        groups: (K,) integer frame id ``b·G + i`` of each pair.
        groups_per_sequence: G, frames per sequence.
        reduction: see :func:`reduce_groups`.
        stop_gradient: detach the side ``direction`` names (the paper); False is the no-stop-gradient
            ablation.
        direction: ``"paper"`` or ``"simsiam"`` (above).
        weights: optional (K,) per-pair weights of the group means (:func:`reduce_groups`).
        fused: as in :func:`loss_3d` (same loss, no gathered rows kept).

    Returns:
        Scalar in [−1, 1] with ``"mean"``.

    Raises:
        ValueError: on mismatched shapes.
    """
    for name, x in (("p3", p3), ("z3", z3), ("p4", p4), ("z4", z4)):
        check_matrix(name, x)
    if p3.shape != z3.shape or p4.shape != z4.shape:
        raise ValueError(
            f"p3/z3 and p4/z4 must match in shape, got {tuple(p3.shape)}, {tuple(z3.shape)}, "
            f"{tuple(p4.shape)}, {tuple(z4.shape)}"
        )
    check_same_width(p3=p3, p4=p4)
    check_pairs(pairs)
    if direction not in EQ5_DIRECTIONS:
        raise ValueError(f"direction must be one of {EQ5_DIRECTIONS}, got {direction!r}")
    a, w = pairs[:, 0], pairs[:, 1]
    if stop_gradient and direction == "paper":
        p3, p4 = p3.detach(), p4.detach()
    elif stop_gradient:
        z3, z4 = z3.detach(), z4.detach()
    if fused:
        values = -0.5 * pair_dot(_unit(p3), _unit(z4), a, w) - 0.5 * pair_dot(_unit(p4), _unit(z3), w, a)
    else:
        d = negative_cosine_similarity
        values = 0.5 * d(p3[a], z4[w]) + 0.5 * d(p4[w], z3[a])
    return reduce_groups(values, groups, groups_per_sequence, reduction, weights)


def total_loss(
    l3d: Tensor, l3d4d: Tensor, l4d: Tensor, w3d: float = W3D, w3d4d: float = W3D4D, w4d: float = W4D
) -> Tensor:
    """Eq. 9: ``L = w3D·L3D + w3D4D·L3D4D + w4D·L4D``.

    Args:
        l3d, l3d4d, l4d: scalar losses of Eqs. 4, 6 and 8.
        w3d, w3d4d, w4d: the constant weights (defaults :data:`W3D`, :data:`W3D4D`, :data:`W4D`).

    Returns:
        Scalar.
    """
    return w3d * l3d + w3d4d * l3d4d + w4d * l4d
